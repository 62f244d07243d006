"""What the error pages say, where the first version said something untrue or lost the way
back (issue 28): WeChat's browser has no cookie settings and no private mode; a login declined
at WeChat logs in again to the page the user wanted; each page has its own title.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from asgi_wechat_oauth import ErrorPages
from asgi_wechat_oauth._core.pages import DEFAULT_TEXTS
from asgi_wechat_oauth.errors import ErrorReason
from support import CALLBACK

pytestmark = pytest.mark.anyio

LOGIN = "/wechat/login"
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
WECHAT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI "
    "Language/zh_CN"
)
WECOM = (
    "Mozilla/5.0 (Linux; Android 13; V2218A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 MicroMessenger/8.0.47 wxwork/4.1.20"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
#: What the built-in pages say about cookies and private mode, in either language.
COOKIE_ADVICE = re.compile(r"Cookie|cookie|无痕|private mode")


def _headers(agent: str, language: str) -> dict[str, str]:
    return {"user-agent": agent, "accept": HTML, "accept-language": language}


def _title(page: str) -> str:
    found = re.search(r"<h1>(.*?)</h1>", page)
    assert found is not None, page
    return found.group(1)


def _button(page: str) -> str:
    found = re.search(r'<a id="action" href="([^"]*)"', page)
    assert found is not None, page
    return found.group(1).replace("&amp;", "&")


async def _expired_login(flow, consent, next_path: str = "/orders/42") -> tuple[object, str]:
    """A browser whose login cookie is gone, and the callback it comes back to (with the code
    WeChat gave): ``invalid_state``, after the one re-authorization."""
    _, browser = await flow(on_invalid_code="error")
    callback = await consent(browser, next_path=next_path)
    browser.cookies.clear()
    return browser, callback


@pytest.mark.parametrize("agent", [WECHAT, WECOM], ids=["wechat", "wecom"])
@pytest.mark.parametrize("language", ["zh-CN,zh;q=0.9", "en-US,en;q=0.9"])
async def test_inside_wechat_invalid_state_gives_no_cookie_advice(
    flow, consent, emulator, agent, language
):
    browser, callback = await _expired_login(flow, consent)
    page = await browser.get(callback, headers=_headers(agent, language))
    assert page.status_code == 403
    assert "invalid_state" in page.text
    assert not COOKIE_ADVICE.search(page.text), page.text
    assert ("转发" if language.startswith("zh") else "forwarded") in page.text
    assert emulator.total_exchanges == 0


@pytest.mark.parametrize("language", ["zh-CN,zh;q=0.9", "en-US,en;q=0.9"])
async def test_other_browsers_keep_the_cookie_advice(flow, consent, language):
    browser, callback = await _expired_login(flow, consent)
    page = await browser.get(callback, headers=_headers(CHROME, language))
    assert page.status_code == 403 and COOKIE_ADVICE.search(page.text)


async def test_an_apps_own_text_is_said_in_wechat_too(flow, consent):
    pages = ErrorPages(texts={"invalid_state": {"zh": ("请重新扫码", "本店的说明。")}})
    _, browser = await flow(on_invalid_code="error", error_pages=pages)
    callback = await consent(browser)
    browser.cookies.clear()
    zh = await browser.get(callback, headers=_headers(WECHAT, "zh-CN"))
    assert _title(zh.text) == "请重新扫码" and "本店的说明。" in zh.text
    en = await browser.get(callback, headers=_headers(WECHAT, "en-US"))
    assert "forwarded" in en.text  # a language the app did not give: the built-in WeChat text


#: Reasons only programs meet: endpoints that answer JSON alone (the mini-program's login, the
#: JS-SDK signature, a third-party platform's ticket push, which WeChat's servers send). Not
#: ``rate_limited``: a platform's component token can meet it during a browser's login.
JSON_ONLY = frozenset(
    {
        "body_too_large",
        "invalid_body",
        "invalid_idempotency_key",
        "risky_user",
        "push_signature_invalid",
        "push_stale",
        "push_unreadable",
        "push_wrong_appid",
        "missing_url",
        "invalid_url",
        "url_not_allowed",
    }
)


def test_every_reason_a_browser_can_meet_has_its_own_words():
    """A new reason a browser can meet gets its own title and text in both languages, not
    the fallback's "something went wrong" (add it to DEFAULT_TEXTS, or to JSON_ONLY)."""
    for reason in sorted({reason.value for reason in ErrorReason} - JSON_ONLY):
        assert reason in DEFAULT_TEXTS, f"no page text for {reason}"
        for language in ("zh", "en"):
            title, body = DEFAULT_TEXTS[reason][language]
            assert title.strip() and body.strip(), (reason, language)


def test_a_platform_waiting_for_its_ticket_says_minutes_not_a_fault():
    for reason in ("platform_ticket_pending", "platform_ticket_rejected"):
        zh_title, zh_body = DEFAULT_TEXTS[reason]["zh"]
        en_title, en_body = DEFAULT_TEXTS[reason]["en"]
        assert "几分钟" in zh_body and "a few minutes" in en_body, reason
        assert "微信登录" in zh_title and "WeChat login" in en_title, reason
    pending = {DEFAULT_TEXTS["platform_ticket_pending"][lang][0] for lang in ("zh", "en")}
    rejected = {DEFAULT_TEXTS["platform_ticket_rejected"][lang][0] for lang in ("zh", "en")}
    assert not pending & rejected


def test_each_spent_code_reason_has_a_title_of_its_own():
    for language in ("zh", "en"):
        titles = {
            reason: DEFAULT_TEXTS[reason][language][0]
            for reason in ("invalid_state", "code_invalid", "code_used", "state_mismatch")
        }
        assert len(set(titles.values())) == len(titles), titles


@pytest.mark.parametrize("declined", [True, False], ids=["state-only", "nothing"])
async def test_the_button_after_a_declined_login_keeps_next(flow, consent, emulator, declined):
    """WeChat comes back without a code (the user declined): the page's "重新登录" starts the
    same login again, with its scope and ``next``; nothing is traded."""
    _, browser = await flow()
    callback = await consent(browser, next_path="/orders/42?tab=paid", scope="snsapi_userinfo")
    params = dict(parse_qsl(urlsplit(callback).query))
    query = urlencode({"state": params["state"]}) if declined else ""
    page = await browser.get(f"{CALLBACK}?{query}", headers=_headers(WECHAT, "zh-CN"))
    assert page.status_code == 400 and "没有完成授权" in page.text
    button = _button(page.text)
    if declined:
        assert urlsplit(button).path == LOGIN
        assert dict(parse_qsl(urlsplit(button).query)) == {
            "scope": "snsapi_userinfo",
            "next": "/orders/42?tab=paid",
        }
    else:
        assert button == LOGIN  # no state: nothing to start again but a login
    assert emulator.total_exchanges == 0


async def test_a_forged_state_on_a_declined_login_gives_no_next(flow, consent):
    _, browser = await flow()
    callback = await consent(browser, next_path="/orders/42")
    state = dict(parse_qsl(urlsplit(callback).query))["state"]
    forged = state[:-1] + ("A" if state[-1] != "A" else "B")
    page = await browser.get(f"{CALLBACK}?state={forged}", headers=_headers(WECHAT, "zh-CN"))
    assert _button(page.text) == LOGIN
