"""What a person sees: error pages in their language for browsers, JSON for programs; any
same-site ``next``; no dead end after an expired login; login loops caught."""

from __future__ import annotations

import logging
import re
import time
from html.parser import HTMLParser
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
from starlette.responses import PlainTextResponse

from _apps import LOGIN, load_example, running
from _apps import browser as example_browser
from asgi_wechat_oauth import ErrorPages, WeChatOAuthMiddleware
from asgi_wechat_oauth._core.pages import preferred_language, wants_html
from asgi_wechat_oauth._core.state import StateSigner, derive_state_secret
from support import APP_URL, CALLBACK, WECHAT_URL

pytestmark = pytest.mark.anyio

#: What WeChat's in-app browser sends on a navigation (Android, Chinese UI).
WECHAT_BROWSER = {
    "user-agent": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 "
        "MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 Weixin NetType/WIFI "
        "Language/zh_CN ABI/arm64"
    ),
    "accept": (
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
        "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
    ),
    "accept-language": "zh-CN,zh;q=0.9,en-US;q=0.8,en;q=0.7",
}
DESKTOP_EN = {**WECHAT_BROWSER, "accept-language": "en-US,en;q=0.9"}
#: Chrome on a desktop, Chinese UI: not WeChat's browser.
CHROME_ZH = {
    **WECHAT_BROWSER,
    "user-agent": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    ),
}


def _scope(method: str = "GET", **headers: str) -> dict[str, object]:
    return {
        "type": "http",
        "method": method,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


class _Page(HTMLParser):
    """The page's visible text, its button's target, and every external reference."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.visible: list[str] = []
        self.links: dict[str, str] = {}
        self.external: list[str] = []
        self.meta: dict[str, str] = {}
        self._hidden = 0
        self._anchor: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag in ("style", "title", "script"):
            self._hidden += 1
        if tag == "meta" and "name" in values:
            self.meta[values["name"]] = values.get("content", "")
        if tag == "a":
            self._anchor = values.get("href", "")
        for name in ("src", "srcset", "data", "action"):
            if name in values:
                self.external.append(values[name])
        if tag in ("link", "script", "img", "iframe", "object"):
            self.external.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "script"):
            self._hidden -= 1
        if tag == "a":
            self._anchor = None

    def handle_data(self, data: str) -> None:
        if self._hidden or not data.strip():
            return
        self.visible.append(data.strip())
        if self._anchor is not None:
            self.links[data.strip()] = self._anchor

    @property
    def text(self) -> str:
        return " ".join(self.visible)


# --- 1. pages for people, JSON for programs ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "accept", "page"),
    [
        ("GET", WECHAT_BROWSER["accept"], True),
        ("GET", "text/html", True),
        ("GET", "text/html;q=0.9, application/json;q=0.5", True),
        ("POST", "text/html", True),
        ("HEAD", WECHAT_BROWSER["accept"], False),
        ("GET", "*/*", False),  # httpx, curl, most HTTP libraries
        ("GET", "", False),
        ("GET", "application/json", False),
        ("GET", "application/json, text/html", False),  # a tie goes to JSON
        ("GET", "text/html;q=0.5, application/json", False),
        ("GET", "text/html;q=0, */*", False),
        ("GET", "text/html;q=nan, */*;q=0.1", False),
        ("GET", "text/*, */*;q=0.1", False),  # only a named text/html asks for a page
    ],
)
def test_a_page_only_for_a_request_that_prefers_html(method, accept, page):
    assert wants_html(_scope(method, accept=accept)) is page


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("zh-CN,zh;q=0.9,en-US;q=0.8,en;q=0.7", "zh"),
        ("zh_CN", "zh"),  # as WeChat spells it in places
        ("zh-TW", "zh"),
        ("ZH-hk;q=0.8, fr", "zh"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("fr-FR, en;q=0.5, zh;q=0.4", "en"),
        ("*", "en"),
        ("", "en"),
        ("de", "en"),
        ("en;q=0.1, zh;q=0.2", "zh"),
        ("zh;q=0", "en"),
    ],
)
def test_language_follows_the_weights_of_accept_language(header, language):
    assert preferred_language(_scope(**{"accept-language": header})) == language


async def test_a_browser_gets_a_chinese_page_with_the_same_status(flow, consent, emulator):
    middleware, browser = await flow(on_invalid_code="error")
    callback = await consent(browser, next_path="/orders/42", scope="snsapi_userinfo")
    emulator.expire_code(_query(callback)["code"])
    response = await browser.get(callback, headers=WECHAT_BROWSER)
    assert response.status_code == 400  # code_expired, as for JSON
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["vary"] == "accept, accept-language"
    assert int(response.headers["content-length"]) == len(response.content)
    page = _Page(response.text)
    assert '<html lang="zh-CN">' in response.text
    assert "登录已超时" in page.text and "code_expired" in page.text
    # One action: log in again, with the original next and scope.
    assert list(page.links) == ["重新登录"]
    target = page.links["重新登录"]
    assert urlsplit(target).path == LOGIN
    assert _query(target) == {"scope": "snsapi_userinfo", "next": "/orders/42"}
    assert page.meta["viewport"] == "width=device-width, initial-scale=1"
    assert page.external == []  # self-contained: inline CSS, no script, no image, no link
    assert "http" not in response.text.split("<body>")[1]
    assert middleware.counters.errors["code_expired"] == 1


async def test_an_english_browser_gets_english(flow, consent, emulator):
    _, browser = await flow(on_invalid_code="error")
    callback = await consent(browser)
    emulator.expire_code(_query(callback)["code"])
    page = _Page((await browser.get(callback, headers=DESKTOP_EN)).text)
    assert "Your login has timed out" in page.text
    assert page.links == {"Log in again": f"{LOGIN}?scope=snsapi_base"}


@pytest.mark.parametrize(
    "headers", [{}, {"accept": "application/json"}, {**WECHAT_BROWSER, "accept": "*/*"}]
)
async def test_programs_keep_the_json_body(flow, consent, emulator, headers):
    _, browser = await flow(on_invalid_code="error")
    callback = await consent(browser)
    emulator.expire_code(_query(callback)["code"])
    response = await browser.get(callback, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "code_expired"


async def test_head_gets_the_json_headers_and_no_body(make_app):
    _, client = await make_app()
    response = await client.head(CALLBACK, headers=WECHAT_BROWSER)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.content == b""


async def test_without_a_login_path_the_button_goes_back_under_the_root_path(make_app):
    middleware, _ = await make_app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware, root_path="/shop"), base_url=APP_URL
    ) as client:
        response = await client.get(f"/shop{CALLBACK}", headers=WECHAT_BROWSER)
    assert response.status_code == 400
    page = _Page(response.text)
    assert "没有完成授权" in page.text  # missing_code: the user may have declined
    assert page.links == {"返回": "/shop/"}


async def test_the_button_logs_in_again_under_the_root_path(flow, emulator):
    middleware, _ = await flow()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware, root_path="/shop"), base_url=APP_URL
    ) as client:
        response = await client.get(
            f"/shop{CALLBACK}", params={"code": emulator.issue_code()}, headers=DESKTOP_EN
        )
    assert response.status_code == 403  # no state: refused before WeChat
    assert _Page(response.text).links == {"Log in again": f"/shop{LOGIN}"}
    assert emulator.total_exchanges == 0


async def test_a_fix_that_is_not_a_new_login_gets_back(make_app, emulator):
    _, client = await make_app(secret="not-the-secret", login_path=LOGIN, verify_state=False)
    response = await client.get(
        CALLBACK, params={"code": emulator.issue_code()}, headers=WECHAT_BROWSER
    )
    assert response.status_code == 500
    page = _Page(response.text)
    assert "微信登录暂不可用" in page.text and page.links == {"返回": "/"}
    bad_next = await client.get(LOGIN, params={"next": "//evil.example"}, headers=DESKTOP_EN)
    assert bad_next.status_code == 400
    assert _Page(bad_next.text).links == {"Back": "/"}


async def test_on_error_still_replaces_both(flow, consent, emulator):
    seen = []

    def on_error(scope, error):
        seen.append(error.reason)
        return PlainTextResponse(f"custom {error.reason}", status_code=418)

    _, browser = await flow(on_invalid_code="error", on_error=on_error)
    callback = await consent(browser)
    emulator.expire_code(_query(callback)["code"])
    response = await browser.get(callback, headers=WECHAT_BROWSER)
    assert (response.status_code, response.text) == (418, "custom code_expired")
    assert seen == ["code_expired"]


async def test_texts_and_the_template_can_be_replaced(flow, consent, emulator):
    pages = ErrorPages(
        texts={
            "code_expired": {"zh": ("链接过期啦", "请点下面的按钮 <重新> 登录 & 继续。")},
            "my_reason": {"en": ("Mine", "Body")},
        },
        template=(
            '<!doctype html><html lang="$lang"><title>$title</title><h1>$title</h1>'
            '<p>$body</p><a href="$action_href">$action_label</a><i>$status/$reason $$5</i>'
        ),
    )
    _, browser = await flow(on_invalid_code="error", error_pages=pages)
    callback = await consent(browser, next_path='/a?b=<c>&d="e"')
    emulator.expire_code(_query(callback)["code"])
    response = await browser.get(callback, headers=WECHAT_BROWSER)
    assert response.status_code == 400
    assert "<h1>链接过期啦</h1>" in response.text
    assert "请点下面的按钮 &lt;重新&gt; 登录 &amp; 继续。" in response.text  # escaped
    assert "<i>400/code_expired $5</i>" in response.text
    page = _Page(response.text)
    assert _query(page.links["重新登录"])["next"] == '/a?b=<c>&d="e"'
    assert "&lt;c&gt;" not in response.text and "%3Cc%3E" in response.text
    # Languages and reasons not overridden keep the built-in texts.
    callback = await consent(browser)
    emulator.expire_code(_query(callback)["code"])
    english = await browser.get(callback, headers=DESKTOP_EN)
    assert "Your login has timed out" in english.text


async def test_pages_can_be_turned_off(flow, consent, emulator):
    _, browser = await flow(on_invalid_code="error", error_pages=None)
    callback = await consent(browser)
    emulator.expire_code(_query(callback)["code"])
    response = await browser.get(callback, headers=WECHAT_BROWSER)
    assert response.json()["error"] == "code_expired"
    assert "vary" not in response.headers


@pytest.mark.parametrize(
    "options",
    [
        {"error_pages": {"code_expired": {"zh": ("a", "b")}}},
        {"error_pages": ErrorPages},
        {"login_loop_limit": 1},
        {"login_loop_limit": True},
        {"login_loop_window": 0},
    ],
)
def test_page_and_loop_options_are_checked(downstream, options):
    with pytest.raises(ValueError):
        WeChatOAuthMiddleware(downstream, appid="wx1", secret="s" * 16, **options)


@pytest.mark.parametrize(
    "arguments",
    [
        {"texts": {"code_expired": {"fr": ("a", "b")}}},
        {"texts": {"code_expired": {"zh": ("only a title",)}}},
        {"texts": {"code_expired": {"zh": ["a", "b"]}}},
        {"texts": {"code_expired": ("a", "b")}},
        {"template": "<p>$titel</p>"},
        {"template": "<p>costs $</p>"},
        {"template": "<p>${body</p>"},
    ],
)
def test_error_pages_are_checked_when_built(arguments):
    with pytest.raises(ValueError):
        ErrorPages(**arguments)


def test_every_reason_renders_escaped_in_both_languages():
    pages = ErrorPages(texts={"x": {"zh": ("<script>", "'\"&")}})
    for reason in ["code_used", "upstream_busy", "snapshot_user", "login_loop", "x", "unknown"]:
        for language in ("zh", "en"):
            body = pages.render(
                reason, 400, language, login_href="/l?next=%2F&a=<b>", back_href="/"
            ).decode()
            assert "<script>" not in body and "<b>" not in body
            assert len(_Page(body).links) == 1
    assert (
        "登录没有完成"
        in pages.render("unknown", 500, "zh", login_href=None, back_href="/").decode()
    )


# --- 3. any same-site next ----------------------------------------------------------------------

NEXTS = [
    "/shop/orders/20241130123456?tab=detail&from=wechat_menu&utm_source=wx",  # 75 bytes
    "/文章/1",
    "/%E6%96%87%E7%AB%A0/1?q=%25&x=a+b",  # percent-encoded, kept as it is
    "/search?q=caf\u00e9 au lait&sort=new#top",
    "/a%2Fb/c?redirect=%2F%2Fnot-at-the-start",
    "/" + "文" * 600 + "?" + "x" * 198,  # 2,000 bytes
]
assert len(NEXTS[-1].encode()) == 2000


@pytest.mark.parametrize("next_path", NEXTS, ids=range(len(NEXTS)))
async def test_any_same_site_next_round_trips_exactly(flow, consent, emulator, next_path):
    _, browser = await flow()
    callback = await consent(browser, next_path=next_path)
    state = _query(callback)["state"]
    assert len(state) <= 128 and re.fullmatch(r"[A-Za-z0-9]+", state)
    response = await browser.get(callback)
    assert response.status_code == 200, response.text
    assert response.json()["next"] == next_path


async def test_the_cookie_cannot_swap_the_next(flow, consent, emulator):
    middleware, browser = await flow()
    callback = await consent(browser, next_path="/mine")
    nonce = browser.cookies["wechat_oauth_nonce"].split(".")[0]
    forged = f"{nonce}.L2V2aWw"  # base64 of /evil, with the browser's own nonce
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware), base_url=APP_URL
    ) as client:
        response = await client.get(callback, headers={"cookie": f"wechat_oauth_nonce={forged}"})
    assert response.status_code == 403 and response.json()["error"] == "invalid_state"
    assert emulator.total_exchanges == 0


async def test_a_next_that_would_not_fit_a_cookie_is_refused(flow):
    _, browser = await flow()
    response = await browser.get(LOGIN, params={"next": "/" + "文" * 667}, headers=DESKTOP_EN)
    assert response.status_code == 400
    assert "set-cookie" not in response.headers
    assert "This login link is wrong" in _Page(response.text).text


# --- 4. no dead end after expiry -----------------------------------------------------------------


def _old_state(emulator, next_path, **options) -> tuple[str, str]:
    """A state and its cookie as the login endpoint issued them 11 minutes ago."""
    signer = StateSigner(derive_state_secret(emulator.secret), max_age=600)
    return signer.issue(next_path, issued_at=int(time.time()) - 660, **options)


async def test_an_expired_login_goes_through_login_again_with_its_next(flow, emulator):
    middleware, browser = await flow()
    next_path = "/文章/1?from=menu"
    state, cookie = _old_state(emulator, next_path, scope="snsapi_userinfo")
    browser.cookies.set("wechat_oauth_nonce", cookie, domain="app.test", path=CALLBACK)
    code = emulator.issue_code()
    response = await browser.get(
        CALLBACK, params={"code": code, "state": state}, headers=WECHAT_BROWSER
    )
    assert response.status_code == 302
    location = response.headers["location"]
    assert urlsplit(location).path == LOGIN
    assert _query(location) == {"scope": "snsapi_userinfo", "retry": "1", "next": next_path}
    assert emulator.exchange_count(code) == 0  # no code traded for an expired state
    final = await browser.get(location, headers=WECHAT_BROWSER, follow_redirects=True)
    assert final.status_code == 200
    assert final.json()["next"] == next_path
    assert final.json()["scope"] == "snsapi_userinfo"
    assert middleware.counters.reauthorized == 1


async def test_a_lost_cookie_goes_through_login_once_then_the_page(flow, consent, emulator):
    _, browser = await flow()
    callback = await consent(browser, next_path="/orders/42")
    browser.cookies.clear()  # the browser lost (or never kept) the login cookie
    first = await browser.get(callback, headers=WECHAT_BROWSER)
    assert first.status_code == 302
    assert _query(first.headers["location"]) == {"scope": "snsapi_base", "retry": "1"}
    to_wechat = await browser.get(first.headers["location"], headers=WECHAT_BROWSER)
    to_callback = await browser.get(to_wechat.headers["location"].split("#")[0])
    browser.cookies.clear()  # and loses it again: cookies are blocked
    second = await browser.get(to_callback.headers["location"], headers=WECHAT_BROWSER)
    assert second.status_code == 403
    page = _Page(second.text)
    # WeChat's browser has no cookie settings and no private mode: no advice about them.
    assert "登录已失效" in page.text and "Cookie" not in page.text and "转发" in page.text
    assert page.links == {"重新登录": f"{LOGIN}?scope=snsapi_base"}
    assert emulator.total_exchanges == 0
    desktop = await browser.get(to_callback.headers["location"], headers=CHROME_ZH)
    assert "登录已失效" in _Page(desktop.text).text and "Cookie" in _Page(desktop.text).text


async def test_a_forged_state_gets_the_page_not_a_new_login(flow, consent, emulator):
    _, browser = await flow()
    callback = await consent(browser)
    state = _query(callback)["state"]
    forged = callback.replace(state, state[:-1] + ("A" if state[-1] != "A" else "B"))
    response = await browser.get(forged, headers=WECHAT_BROWSER)
    assert response.status_code == 403 and "登录已失效" in _Page(response.text).text
    assert emulator.total_exchanges == 0


async def test_no_second_login_when_reauthorization_is_off(flow, emulator):
    _, browser = await flow(on_invalid_code="error")
    state, cookie = _old_state(emulator, "/a")
    browser.cookies.set("wechat_oauth_nonce", cookie, domain="app.test", path=CALLBACK)
    code = emulator.issue_code()
    response = await browser.get(
        CALLBACK, params={"code": code, "state": state}, headers=DESKTOP_EN
    )
    assert response.status_code == 403
    assert _Page(response.text).links == {"Log in again": f"{LOGIN}?scope=snsapi_base&next=%2Fa"}


async def test_a_cookieless_stray_duplicate_still_cannot_trade_the_code(flow, consent, emulator):
    middleware, browser = await flow()
    callback = await consent(browser, next_path="/home")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware), base_url=APP_URL
    ) as tencent_server:  # the same URL, browser headers, none of the user's cookies
        stray = await tencent_server.get(callback, headers=WECHAT_BROWSER)
    assert stray.status_code == 302 and urlsplit(stray.headers["location"]).path == LOGIN
    assert "next" not in _query(stray.headers["location"])  # the cookie holds it: unknown
    assert "set-cookie" not in stray.headers
    assert emulator.total_exchanges == 0
    mine = await browser.get(callback, headers=WECHAT_BROWSER)
    assert mine.status_code == 200 and mine.json()["next"] == "/home"
    assert emulator.total_exchanges == 1


async def test_login_csrf_stays_closed(flow, consent, browser_factory, emulator):
    middleware, attacker = await flow()
    victim = browser_factory(middleware)
    await consent(victim)  # the victim has a login cookie of their own
    planted = await consent(attacker, next_path="/attacker-chosen")
    response = await victim.get(planted, headers=WECHAT_BROWSER)  # the attacker's link
    assert response.status_code == 302
    assert "next" not in _query(response.headers["location"])  # the victim's cookie: no match
    assert emulator.exchange_count(_query(planted)["code"]) == 0
    # Following it logs the victim in with a code of the victim's own.
    final = await victim.get(response.headers["location"], follow_redirects=True)
    assert final.status_code == 200
    assert final.json()["state"] != _query(planted)["state"]
    assert emulator.exchange_count(_query(planted)["code"]) == 0
    assert (await attacker.get(planted)).status_code == 200  # still the attacker's to use


# --- 5. login loops ----------------------------------------------------------------------------


@pytest.fixture
async def dropping_example(emulator, upstream):
    """The Starlette example with ``SessionMiddleware(https_only=True)`` served over plain http:
    a real httpx client stores the Secure session cookie and never sends it back."""
    module = load_example("starlette_app")
    app = module.create_app(
        session_secret="s" * 32,
        session_https_only=True,
        login_path=LOGIN,
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=WECHAT_URL,
        authorize_base_url=WECHAT_URL,
        http_client=upstream,
    )
    async with running(app), example_browser(app, emulator) as client:
        yield client


async def test_a_login_loop_warns_once_then_stops_sending_the_browser_to_wechat(
    dropping_example, emulator, caplog
):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    client = dropping_example
    link = f"{LOGIN}?scope=snsapi_userinfo&next=/"
    for _ in range(5):  # each time: WeChat, the callback, the session set ... and not kept
        page = await client.get(link, headers=WECHAT_BROWSER)
        assert page.status_code == 200 and "Welcome" in page.text
    assert emulator.total_exchanges == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("wechat_oauth.login_loop logins=3")
    assert "Secure" in warnings[0] and "SameSite=Strict" in warnings[0]
    stopped = await client.get(link, headers=WECHAT_BROWSER)
    assert stopped.status_code == 429
    assert str(stopped.url) == f"{APP_URL}{link}"  # answered at the login endpoint
    page = _Page(stopped.text)
    assert "无法保持登录" in page.text and "Cookie" in page.text
    assert page.links == {"返回": "/"}
    assert emulator.total_exchanges == 5  # no sixth trip to WeChat
    json = await client.get(link)
    assert json.status_code == 429 and json.json()["error"] == "login_loop"


async def test_a_kept_session_is_no_loop_and_duplicates_count_once(
    make_app, browser_factory, consent, emulator, caplog
):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    middleware, _ = await make_app(
        login_path=LOGIN, authorize_base_url=WECHAT_URL, login_loop_limit=2
    )
    browser = browser_factory(middleware)
    callback = await consent(browser)
    for _ in range(3):  # the WeChat browser's duplicate and two refreshes: one login
        assert (await browser.get(callback)).status_code == 200
    assert browser.cookies["wechat_oauth_logins"].startswith("1.")
    to_wechat = await browser.get(LOGIN)
    assert to_wechat.status_code == 302  # one login is no loop
    assert (await browser.get(await consent(browser))).status_code == 200
    refused = await browser.get(LOGIN, headers=DESKTOP_EN)
    assert refused.status_code == 429
    assert "You are not being kept logged in" in _Page(refused.text).text
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1  # at the limit, when it is lower than 3


async def test_loop_detection_can_be_turned_off(make_app, browser_factory, consent, emulator):
    middleware, _ = await make_app(
        login_path=LOGIN, authorize_base_url=WECHAT_URL, login_loop_limit=None
    )
    browser = browser_factory(middleware)
    for _ in range(6):
        response = await browser.get(await consent(browser))
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
    assert emulator.total_exchanges == 6


def test_an_encoded_next_is_quoted_once_in_the_button():
    pages = ErrorPages()
    href = f"{LOGIN}?next={quote('/文章/1', safe='')}"
    body = pages.render("code_used", 400, "zh", login_href=href, back_href="/").decode()
    assert f'href="{href}"' in body


def test_a_custom_template_can_start_from_the_built_in_one():
    template = ErrorPages.default_template.replace("#07c160", "#1485ee")
    body = ErrorPages(template=template).render(
        "upstream_busy", 502, "zh", login_href="/login", back_href="/"
    )
    assert "#1485ee" in body.decode() and ErrorPages.default_texts["upstream_busy"]["zh"][0] in (
        body.decode()
    )
