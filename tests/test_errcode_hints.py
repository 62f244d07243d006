"""Errors name WeChat's errcode, what it means and the fix, in English; reasons do not change."""

from __future__ import annotations

import logging

import pytest

from asgi_wechat_oauth import WeChatOAuthClient
from asgi_wechat_oauth._core.errcodes import errcode_hint, error_from_errcode
from asgi_wechat_oauth.errors import UpstreamError
from support import CALLBACK, WECHAT_URL

pytestmark = pytest.mark.anyio

#: The errcodes of README.zh-CN.md's FAQ, with the reason each maps to (unchanged by hints).
FAQ = {
    40029: "code_invalid",
    40163: "code_used",
    42003: "code_expired",
    40125: "configuration_error",
    40013: "configuration_error",
    48001: "upstream_error",
    41008: "missing_code",
}


@pytest.mark.parametrize(("errcode", "reason"), FAQ.items())
def test_reasons_are_unchanged_and_every_faq_errcode_has_a_hint(errcode, reason):
    error = error_from_errcode(errcode)
    assert error.reason == reason
    assert error.hint is not None
    assert error.hint.startswith(f"errcode {errcode}: ")
    meaning, fix = error.hint.removeprefix(f"errcode {errcode}: ").split("; fix: ")
    assert meaning and fix


@pytest.mark.parametrize("errcode", [45011, 40226])
def test_mini_program_errcodes_have_hints(errcode):
    assert "; fix: " in errcode_hint(errcode)


def test_the_appsecret_hint_says_what_happened_and_what_to_do():
    error = error_from_errcode(40125)
    assert error.hint == (
        "errcode 40125: the AppSecret is wrong or was reset in the console; fix: copy the current"
        " AppSecret from the WeChat console into secret= (resetting it there invalidates the old"
        " one at once)"
    )
    # Configuration and unknown upstream errors are the developer's business: the message
    # carries the hint; code errors keep a message for the user and the hint on the side.
    assert error.message == f"WeChat rejected the app's credentials: {error.hint}."
    assert error_from_errcode(40029).message.endswith("Please log in again.")


def test_unknown_errcodes_still_name_the_errcode():
    error = error_from_errcode(47001)
    assert error.reason == "upstream_error"
    assert error.hint == "errcode 47001: see WeChat's global return codes"
    assert error.message == "WeChat answered errcode 47001: see WeChat's global return codes."
    assert error_from_errcode(-1).hint.startswith("errcode -1: WeChat's system is busy")


def test_the_hint_is_derived_so_stored_errors_keep_it():
    error = error_from_errcode(40163)
    copy = type(error).from_dict(error.to_dict())
    assert copy.hint == error.hint
    assert "hint" not in error.to_dict()


@pytest.mark.parametrize(
    ("option", "meaning"),
    [
        ("secret", "the AppSecret is wrong or was reset in the console"),
        ("appid", "the AppID is invalid"),
    ],
)
async def test_the_configuration_error_log_line_names_the_meaning_and_the_fix(
    emulator, make_app, caplog, option, meaning
):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    # A wrong AppID of WeChat's form (the config refuses one with punctuation where written).
    wrong = {"secret": "wrong-secret", "appid": "wx00000000000000ff"}[option]
    _, client = await make_app(**{option: wrong})
    response = await client.get(CALLBACK, params={"code": emulator.issue_code()})
    assert (response.status_code, response.json()["error"]) == (500, "configuration_error")
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    line = record.getMessage()
    assert line.startswith("wechat_oauth.exchange ")
    assert "outcome=configuration_error" in line
    assert meaning in line and "; fix: copy the" in line
    assert "wrong-secret" not in caplog.text


async def test_a_refused_code_logs_its_meaning(emulator, make_app, caplog):
    caplog.set_level(logging.INFO, logger="asgi_wechat_oauth")
    _, client = await make_app()
    code = emulator.issue_code()
    emulator.expire_code(code)
    assert (await client.get(CALLBACK, params={"code": code})).status_code == 400
    (record,) = [r for r in caplog.records if r.getMessage().startswith("wechat_oauth.exchange ")]
    assert "errcode 42003: the code has expired" in record.getMessage()


async def test_client_errors_explain_a_missing_scope(emulator, upstream):
    async with WeChatOAuthClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    ) as client:
        token = await client.exchange_code(emulator.issue_code("snsapi_base"))
        with pytest.raises(UpstreamError) as exc:
            await client.get_userinfo(token.access_token, token.openid)
    assert exc.value.reason == "upstream_error"
    assert "errcode 48001: the API is not authorized" in str(exc.value)
    assert "snsapi_userinfo" in str(exc.value)
