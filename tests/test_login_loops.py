"""The login-loop guard tells a loop from a person logging in again (issue 28).

A loop: login, WeChat, the callback, the app, and the login endpoint again within seconds,
the app's session never coming back. A person: logs in, uses the site, logs in again (to switch
accounts, after logging out, or just because), with a session that works. Five real logins
within two minutes by such a person used to get the 429 page saying the site could not keep
them logged in, which was untrue.

Real exchanges through the examples and the emulator; the clock the guard reads is moved only
where a test says a person comes back later.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from _apps import LOGIN, load_example, running
from _apps import browser as example_browser
from asgi_wechat_oauth import WeChatIdentity, WeChatOAuthMiddleware, login_url
from asgi_wechat_oauth._core import loops
from asgi_wechat_oauth.testing import EmulatedUser
from support import WECHAT_URL

pytestmark = pytest.mark.anyio

WECHAT_BROWSER = {
    "user-agent": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 "
        "MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 Weixin NetType/WIFI "
        "Language/zh_CN ABI/arm64"
    ),
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "accept-language": "zh-CN,zh;q=0.9",
}
LINK = f"{LOGIN}?scope=snsapi_userinfo&next=/"


def _starlette_example(emulator: Any, upstream: httpx.AsyncClient, **options: Any) -> Any:
    module = load_example("starlette_app")
    return module.create_app(
        session_secret="s" * 32,
        login_path=LOGIN,
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=WECHAT_URL,
        authorize_base_url=WECHAT_URL,
        http_client=upstream,
        **options,
    )


# --- a person whose session works ----------------------------------------------------------


async def test_six_quick_logins_by_a_person_whose_session_works_are_no_loop(emulator, upstream):
    """The README's pattern (Starlette's ``SessionMiddleware`` in front of the middleware):
    logged in each time, the person logs in again at once, six times, as other WeChat users
    in turn (switching accounts): never the 429 page, every login traded."""
    app = _starlette_example(emulator, upstream)
    async with running(app), example_browser(app, emulator) as person:
        for turn in range(7):
            emulator.user = EmulatedUser(nickname=f"用户{turn}")
            page = await person.get(LINK, headers=WECHAT_BROWSER)
            assert page.status_code == 200, page.text
            assert f"Hello, 用户{turn}" in page.text  # logged in: the session works
            home = await person.get("/", headers=WECHAT_BROWSER)  # and uses the site
            assert f"Hello, 用户{turn}" in home.text
    assert emulator.total_exchanges == 7


async def test_a_person_whose_session_cookie_the_app_sets_itself_is_no_loop(
    emulator, upstream, caplog
):
    """A session middleware behind ours (Django's, Quart's, Starlette's added first): the
    guard sees the app's answer set the cookie, and the browser send it back."""
    caplog.set_level(logging.WARNING, logger="asgi_wechat_oauth")
    app = _inner_session_app(emulator, upstream, https_only=False)
    async with running(app), example_browser(app, emulator) as person:
        for _ in range(7):
            page = await person.get(LINK, headers=WECHAT_BROWSER)
            assert page.status_code == 200 and "Hello" in page.text, page.text
    assert emulator.total_exchanges == 7
    assert not [r for r in caplog.records if "login_loop" in r.getMessage()]


async def test_a_person_who_comes_back_later_starts_a_new_count(make_app, browser_factory,
                                                                consent, monkeypatch):  # fmt: skip
    """An app that keeps no cookie the guard can see (a token in the page, say): a login that
    starts more than ``QUICK`` seconds after the previous one completed is a person's."""
    clock = _Clock(monkeypatch)
    middleware, _ = await make_app(login_path=LOGIN, authorize_base_url=WECHAT_URL,
                                   login_loop_limit=2)  # fmt: skip
    browser = browser_factory(middleware)
    for _ in range(5):
        assert (await browser.get(await consent(browser))).status_code == 200
        clock.advance(loops.QUICK + 1)  # reads the page, logs out, comes back
    # Without the pause, the second login in a row is already the limit.
    assert (await browser.get(await consent(browser))).status_code == 200
    assert (await browser.get(LOGIN)).status_code == 302  # the first of the run
    assert (await browser.get(await consent(browser))).status_code == 200
    refused = await browser.get(LOGIN)
    assert refused.status_code == 429 and refused.json()["error"] == "login_loop"


# --- a loop ----------------------------------------------------------------------------------


async def test_a_loop_whose_app_sets_its_cookie_is_still_caught(emulator, upstream, caplog):
    """The session middleware behind ours sets a ``Secure`` cookie over plain http: the browser
    never sends it back, the app sends the browser to login again at once."""
    caplog.set_level(logging.WARNING, logger="asgi_wechat_oauth")
    app = _inner_session_app(emulator, upstream, https_only=True)
    async with running(app), example_browser(app, emulator) as browser:
        for _ in range(5):
            page = await browser.get(LINK, headers=WECHAT_BROWSER)
            assert page.status_code == 200 and "Welcome" in page.text, page.text
        stopped = await browser.get(LINK, headers=WECHAT_BROWSER)
    assert stopped.status_code == 429 and "无法保持登录" in stopped.text
    assert emulator.total_exchanges == 5  # no sixth trip to WeChat
    [warning] = [r.getMessage() for r in caplog.records if "login_loop" in r.getMessage()]
    assert warning.startswith("wechat_oauth.login_loop logins=3")


async def test_a_redirect_loop_of_the_readme_pattern_is_caught(emulator, upstream):
    """``SessionMiddleware(https_only=True)`` in front, over plain http, and a page that sends
    anyone without a session straight to login: the loop goes by redirects alone."""
    app = _starlette_example(emulator, upstream, session_https_only=True)
    app.router.routes.append(Route("/me", _me_or_login))
    async with running(app), example_browser(app, emulator) as browser:
        browser.max_redirects = 30  # five trips of four redirects, then the answer
        answer = await browser.get("/me", headers=WECHAT_BROWSER)
    assert answer.status_code == 429
    assert [str(r.url.path) for r in answer.history].count(LOGIN) == 5
    assert emulator.total_exchanges == 5


async def test_a_forged_run_that_claims_a_working_session_changes_nothing(
    make_app, browser_factory, consent
):
    """A counter is worth something only as signed: one that says the app set a cookie the
    browser sends is ignored, and the real one keeps counting."""
    middleware, _ = await make_app(login_path=LOGIN, authorize_base_url=WECHAT_URL,
                                   login_loop_limit=2)  # fmt: skip
    browser = browser_factory(middleware)
    for _ in range(2):
        assert (await browser.get(await consent(browser))).status_code == 200
    counter = browser.cookies["wechat_oauth_logins"]
    count, rest = counter.split(".", 1)
    assert count == "2"
    forged = f"9.{rest.rsplit('.', 1)[0]}abcdef.{'0' * 32}"
    browser.cookies.set("wechat_oauth_logins", forged, domain="app.test")
    assert (await browser.get(LOGIN)).status_code == 302  # not trusted: no run at all
    browser.cookies.set("wechat_oauth_logins", counter, domain="app.test")
    assert (await browser.get(LOGIN)).status_code == 429


# --- helpers -----------------------------------------------------------------------------------


class _Clock:
    """The guard's clock, moved forward by hand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        real = loops._now
        monkeypatch.setattr(loops, "_now", lambda: real() + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def _me_or_login(request: Request) -> Response:
    if request.session.get("wechat"):
        return HTMLResponse("<h1>Me</h1>")
    return RedirectResponse(login_url(request, next="/me"), status_code=302)


def _inner_session_app(emulator: Any, upstream: httpx.AsyncClient, *, https_only: bool) -> Any:
    """Starlette with its ``SessionMiddleware`` behind (inside) the WeChat middleware, as
    Django's and Quart's sessions are: the session cookie is set in the app's answer that the
    guard sees."""

    async def callback(request: Request) -> Response:
        me: WeChatIdentity = request.scope["wechat"]
        request.session["openid"] = me.openid
        return RedirectResponse(me.next or "/", status_code=303)

    async def home(request: Request) -> Response:
        if request.session.get("openid"):
            return HTMLResponse("<h1>Hello</h1>")
        return HTMLResponse(f'<h1>Welcome</h1><a href="{login_url(request, next="/")}">in</a>')

    inner = Starlette(routes=[Route("/", home), Route("/wechat/callback", callback)])
    inner.add_middleware(
        SessionMiddleware,
        secret_key=secrets.token_urlsafe(32),
        same_site="lax",
        https_only=https_only,
    )
    return WeChatOAuthMiddleware(
        inner,
        appid=emulator.appid,
        secret=emulator.secret,
        login_path=LOGIN,
        api_base_url=WECHAT_URL,
        authorize_base_url=WECHAT_URL,
        http_client=upstream,
    )
