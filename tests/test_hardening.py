"""Findings of the outside audit (issue 18) and of the review after it, each a regression test:
state lifetimes and spellings, backends whose ``complete`` fails, text that cannot be encoded,
the number of codes one state may trade, hostile callbacks."""

from __future__ import annotations

import math
from urllib.parse import parse_qsl, urlsplit

import pytest
from starlette.applications import Starlette

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth._core.state import StateSigner
from support import CALLBACK, WECHAT_URL

pytestmark = pytest.mark.anyio

LOGIN = "/wechat/login"


def _callback_parts(callback: str) -> tuple[str, str]:
    params = dict(parse_qsl(urlsplit(callback).query))
    return params["code"], params["state"]


# --- defect 7: state lifetimes and spellings ---------------------------------------------------


@pytest.mark.parametrize("max_age", [0.5, 0.999, 0, -1, math.nan, math.inf])
def test_state_max_age_under_a_second_or_not_finite_is_refused(max_age):
    with pytest.raises(ValueError, match="state_max_age"):
        WeChatOAuthMiddleware(
            Starlette(), appid="wx", secret="s", login_path=LOGIN, state_max_age=max_age
        )
    with pytest.raises(ValueError):
        StateSigner(b"k" * 16, max_age=max_age)


@pytest.mark.parametrize(
    "options",
    [{"exchange_timeout": math.nan}, {"exchange_timeout": math.inf}, {"result_ttl": math.nan}],
)
def test_non_finite_timeouts_are_refused(options):
    with pytest.raises(ValueError):
        WeChatOAuthMiddleware(Starlette(), appid="wx", secret="s", **options)


@pytest.mark.parametrize(("max_age", "cookie_max_age"), [(1, 1), (1.2, 2), (600.0, 600)])
async def test_cookie_max_age_is_never_zero(make_app, max_age, cookie_max_age):
    middleware, client = await make_app(login_path=LOGIN, state_max_age=max_age)
    response = await client.get(LOGIN)
    assert response.status_code == 302
    assert f"Max-Age={cookie_max_age};" in response.headers["set-cookie"]


@pytest.mark.parametrize("prefix", ["0", "00", "0000000"])
async def test_non_canonical_state_spelling_is_403(
    consent, make_app, browser_factory, emulator, prefix
):
    middleware, _ = await make_app(login_path=LOGIN, authorize_base_url=WECHAT_URL)
    browser = browser_factory(middleware)
    code, state = _callback_parts(await consent(browser))
    response = await browser.get(CALLBACK, params={"code": code, "state": prefix + state})
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_state"
    assert emulator.exchange_count(code) == 0
    canonical = await browser.get(CALLBACK, params={"code": code, "state": state})
    assert canonical.status_code == 200
