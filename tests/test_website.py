"""One login link for every browser: the official account inside WeChat, the website app's QR
login elsewhere, the QR page of the login link when there is no website app, WxLogin's
parameters, and each code traded with the app that issued it."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio
import httpx
import pytest
import segno
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth._core.state import StateSigner
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.testing import EmulatedUser
from support import APP_URL, CALLBACK, WECHAT_URL, CountingBackend, code_key, wait_until

pytestmark = pytest.mark.anyio

LOGIN = "/wechat/login"
UNIONID = "oUnionEmulated000000000000001"

WECHAT_ANDROID = (
    "Mozilla/5.0 (Linux; Android 13; V2218A Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 "
    "MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 "
    "Weixin NetType/WIFI Language/zh_CN ABI/arm64"
)
WECHAT_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI "
    "Language/zh_CN"
)
DESKTOP_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
WECOM = (
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/53.0.2785.116 Safari/537.36 QBCore/4.0.1326.400 QQBrowser/9.0.2524.400 "
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/81.0.4044.138 Safari/537.36 NetType/WIFI MicroMessenger/7.0.20.1781(0x6700143B) "
    "WindowsWechat(0x63090a13) wxwork/4.1.20 (MicroMessenger/6.2) WeChat/2.0.4"
)
ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
)
WECOM_ANDROID = (
    "Mozilla/5.0 (Linux; Android 13; V2218A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 MicroMessenger/8.0.47 wxwork/4.1.20"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/12.1 Mobile/15E148 Safari/604.1"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
IN_WECHAT = [pytest.param(WECHAT_ANDROID, id="wechat-android"), pytest.param(WECHAT_IOS, id="ios")]
ELSEWHERE = [pytest.param(DESKTOP_CHROME, id="chrome"), pytest.param(WECOM, id="wecom")]
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def _who(request: Request) -> JSONResponse:
    me = request.scope["wechat"]
    return JSONResponse(
        {"appid": me.appid, "openid": me.openid, "unionid": me.unionid, "scope": me.scope}
    )


@pytest.fixture
def downstream() -> Starlette:
    return Starlette(routes=[Route(CALLBACK, _who)])


@pytest.fixture
def emulator(emulator):
    emulator.user = EmulatedUser(unionid=UNIONID)
    return emulator


@pytest.fixture
def both(flow, emulator):
    """``await both(**options)`` → (middleware, browser) with the official account and the
    website app."""

    async def make(**options):
        return await flow(
            website_appid=emulator.website_appid,
            website_secret=emulator.website_secret,
            **options,
        )

    return make


def _as(browser: httpx.AsyncClient, user_agent: str, accept: str = "*/*") -> httpx.AsyncClient:
    browser.headers["user-agent"] = user_agent
    browser.headers["accept"] = accept
    return browser


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


async def _to_callback(browser: httpx.AsyncClient, **params: str) -> tuple[str, str]:
    """Walk login and consent; return (the authorize URL, the callback URL not yet requested)."""
    to_wechat = await browser.get(LOGIN, params=params)
    assert to_wechat.status_code == 302, to_wechat.text
    authorize = to_wechat.headers["location"]
    to_callback = await browser.get(authorize.split("#")[0])
    assert to_callback.status_code == 302, to_callback.text
    return authorize, to_callback.headers["location"]


# --- both apps: the route each browser takes ------------------------------------------------


@pytest.mark.parametrize("user_agent", IN_WECHAT)
@pytest.mark.parametrize("asked", [None, "snsapi_base", "snsapi_userinfo"])
async def test_wechat_browser_logs_in_with_the_official_account(both, emulator, user_agent, asked):
    middleware, browser = await both()
    params = {"scope": asked} if asked else {}
    authorize, callback = await _to_callback(_as(browser, user_agent), **params)
    assert urlsplit(authorize).path == "/connect/oauth2/authorize"
    assert _query(authorize)["appid"] == emulator.appid
    assert _query(authorize)["scope"] == (asked or "snsapi_base")
    response = await browser.get(callback)
    assert response.status_code == 200, response.text
    assert response.json()["appid"] == emulator.appid
    assert response.json()["openid"] == emulator.user.openid
    assert response.json()["scope"] == (asked or "snsapi_base")
    assert emulator.total_exchanges == 1


@pytest.mark.parametrize("user_agent", ELSEWHERE)
@pytest.mark.parametrize("asked", [None, "snsapi_login"])
async def test_other_browsers_log_in_with_the_website_app(both, emulator, user_agent, asked):
    middleware, browser = await both()
    params = {"scope": asked} if asked else {}
    authorize, callback = await _to_callback(_as(browser, user_agent, HTML), **params)
    assert urlsplit(authorize).path == "/connect/qrconnect"
    assert _query(authorize)["appid"] == emulator.website_appid
    assert _query(authorize)["scope"] == "snsapi_login"
    assert len(_query(callback)["state"]) <= 128
    response = await browser.get(callback)
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["appid"] == emulator.website_appid
    assert me["openid"] == emulator.user.website_openid
    assert me["unionid"] == UNIONID
    assert emulator.total_exchanges == 1
    assert middleware.website_client is not None
    assert middleware.website_client.appid == emulator.website_appid


async def test_one_person_has_two_openids_and_one_unionid(both, emulator, browser_factory):
    middleware, phone = await both(default_scope="snsapi_userinfo")
    desktop = browser_factory(middleware)
    seen = []
    for browser, agent in ((phone, WECHAT_IOS), (desktop, DESKTOP_CHROME)):
        _, callback = await _to_callback(_as(browser, agent))
        seen.append((await browser.get(callback)).json())
    assert {me["appid"] for me in seen} == {emulator.appid, emulator.website_appid}
    assert seen[0]["openid"] != seen[1]["openid"]
    assert seen[0]["unionid"] == seen[1]["unionid"] == UNIONID


@pytest.mark.parametrize(
    ("user_agent", "asked"),
    [
        (WECHAT_ANDROID, "snsapi_login"),
        (WECHAT_IOS, "snsapi_login"),
        (DESKTOP_CHROME, "snsapi_base"),
        (DESKTOP_CHROME, "snsapi_userinfo"),
        (WECOM, "snsapi_userinfo"),
    ],
)
async def test_a_scope_that_cannot_work_in_this_browser_is_400(both, user_agent, asked):
    _, browser = await both()
    response = await _as(browser, user_agent).get(LOGIN, params={"scope": asked})
    assert response.status_code == 400
    assert response.json()["error"] == "scope_not_supported_here"
    assert "set-cookie" not in response.headers


async def test_a_browser_gets_the_400_as_a_page_in_its_language(both):
    _, browser = await both()
    browser.headers["accept-language"] = "zh-CN,zh;q=0.9"
    response = await _as(browser, WECHAT_ANDROID, HTML).get(LOGIN, params={"scope": "snsapi_login"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "这个浏览器不能用这种方式登录" in response.text


# --- the double callback and the other app's code ---------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "app"), [(WECHAT_ANDROID, "official"), (DESKTOP_CHROME, "website")]
)
async def test_double_callback_on_each_route_is_one_exchange_with_its_app(
    both, emulator, gate, gated_upstream, user_agent, app
):
    backend = CountingBackend(MemoryBackend())
    middleware, browser = await both(http_client=gated_upstream, backend=backend)
    _, callback = await _to_callback(_as(browser, user_agent))
    responses: list[httpx.Response] = []

    async def hit() -> None:
        responses.append(await browser.get(callback))

    async with anyio.create_task_group() as tg:
        tg.start_soon(hit)
        await wait_until(lambda: gate.arrived == 1)
        tg.start_soon(hit)
        await wait_until(lambda: middleware.counters.waiting == 1)
        gate.open()
    late = await browser.get(callback)  # Back or refresh: served from the stored result
    appid = emulator.website_appid if app == "website" else emulator.appid
    code = _query(callback)["code"]
    assert [r.status_code for r in [*responses, late]] == [200, 200, 200]
    assert {r.json()["appid"] for r in [*responses, late]} == {appid}
    assert emulator.exchange_count(code) == 1
    assert await backend.inner.wait(code_key(appid, code), timeout=1) is not None


async def test_a_code_is_traded_only_with_the_app_its_state_names(both, emulator):
    """A website app's code under an official-account state is traded with the official
    account (never guessed from the code) and refused by WeChat as invalid."""
    _, browser = await both(on_invalid_code="error")
    _, callback = await _to_callback(_as(browser, WECHAT_IOS))
    website_code = emulator.issue_code("snsapi_login", appid=emulator.website_appid)
    response = await browser.get(
        CALLBACK, params={"code": website_code, "state": _query(callback)["state"]}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "code_invalid"


async def test_a_website_state_without_a_website_app_is_refused_before_any_trade(
    both, make_app, browser_factory, emulator
):
    """The configuration changed mid-login: no app here can trade the code, so none tries."""
    secret = b"s" * 32
    middleware, browser = await both(state_secret=secret)
    _, callback = await _to_callback(_as(browser, DESKTOP_CHROME))
    official_only, _ = await make_app(
        login_path=LOGIN, authorize_base_url=WECHAT_URL, state_secret=secret
    )
    later = browser_factory(official_only)
    later.cookies = browser.cookies
    response = await later.get(callback)
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_state"
    assert emulator.total_exchanges == 0


def test_the_state_records_the_app_and_stays_within_128_characters():
    signer = StateSigner(b"k" * 32, max_age=600)
    for website_app in (False, True):
        state, cookie = signer.issue(
            "/" + "x" * 1999, scope="snsapi_login", website_app=website_app
        )
        assert len(state) <= 128 and state.isalnum()
        assert signer.verify(state, cookie).website_app is website_app


@pytest.mark.parametrize(
    "options",
    [
        {"website_appid": "wxweb"},
        {"website_secret": "s" * 32},
        {"website_appid": "wxemulated0000001", "website_secret": "s" * 32},
        {"website_appid": "wxweb", "website_secret": "s" * 32, "login_path": None},
        {"website_appid": "wxweb", "website_secret": "s" * 32, "verify_state": False},
        {"website_appid": "wxweb", "website_secret": "s" * 32, "default_scope": "snsapi_login"},
    ],
)
def test_website_app_options_are_validated(options):
    settings = {"appid": "wxemulated0000001", "secret": "x" * 32, "login_path": LOGIN}
    with pytest.raises(ValueError, match="website"):
        WeChatOAuthMiddleware(Starlette(), **{**settings, **options})


# --- no website app: the QR page of the login link -----------------------------------------
# (desktop_login="phone": the default desktop page is the handoff's, tests/test_handoff.py)


@pytest.mark.parametrize("user_agent", ELSEWHERE)
async def test_desktop_browser_gets_a_qr_code_of_the_login_link(flow, emulator, user_agent):
    _, browser = await flow(desktop_login="phone")
    browser.headers["accept-language"] = "zh-CN,zh;q=0.9,en;q=0.8"
    response = await _as(browser, user_agent, HTML).get(LOGIN, params={"next": "/me?a=1&b=<"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in response.headers  # the phone starts its own login
    link = f"{APP_URL}{LOGIN}?next=%2Fme%3Fa%3D1%26b%3D%3C"
    page = response.text
    assert "请用微信扫码登录" in page
    assert f'<code id="login-link">{html.escape(link)}</code>' in page
    expected = segno.make(link, error="m", micro=False).svg_inline(
        scale=4, border=2, title="QR", omitsize=True
    )
    assert expected in page  # the QR code says exactly the login link
    assert not any(fetch in page for fetch in ("src=", "url(", "@import"))
    assert re.findall(r'href="([^"]*)"', page) == ["/"]  # the way back; nothing fetched


async def test_the_qr_link_is_under_root_path_and_in_english(make_app):
    middleware, _ = await make_app(login_path=LOGIN, desktop_login="phone")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware, root_path="/app"),
        base_url=APP_URL,
        headers={"user-agent": DESKTOP_CHROME, "accept": HTML, "accept-language": "en-US"},
    ) as client:
        response = await client.get(f"/app{LOGIN}", params={"scope": "snsapi_userinfo"})
    assert response.status_code == 200
    assert "Scan with WeChat to log in" in response.text
    assert f"{APP_URL}/app{LOGIN}?scope=snsapi_userinfo" in response.text


async def test_json_client_gets_the_link_and_a_program_the_redirect(flow, emulator):
    _, browser = await flow()
    answer = await _as(browser, DESKTOP_CHROME, "application/json").get(LOGIN)
    assert answer.status_code == 200
    assert answer.json() == {"open_in_wechat": True, "login_url": f"{APP_URL}{LOGIN}"}
    program = await _as(browser, "python-httpx", "*/*").get(LOGIN)
    assert program.status_code == 302
    assert _query(program.headers["location"])["appid"] == emulator.appid


async def test_head_gets_headers_only_and_the_link_uses_redirect_uris_origin(make_app):
    middleware, _ = await make_app(
        login_path=LOGIN, redirect_uri="https://www.example.com/wechat/callback"
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware),
        base_url="http://10.0.0.7:8000",
        headers={"user-agent": DESKTOP_CHROME, "accept": "application/json"},
    ) as client:
        head = await client.head(LOGIN)
        answer = await client.get(LOGIN, params={"next": "/me"})
    assert head.status_code == 200 and head.content == b""
    assert answer.json()["login_url"] == f"https://www.example.com{LOGIN}?next=%2Fme"


@pytest.mark.parametrize("user_agent", IN_WECHAT)
async def test_wechat_browser_still_goes_straight_to_the_official_account(
    flow, emulator, user_agent
):
    _, browser = await flow()
    _, callback = await _to_callback(_as(browser, user_agent, HTML))
    response = await browser.get(callback)
    assert response.status_code == 200
    assert response.json()["appid"] == emulator.appid


async def test_the_plain_install_draws_the_qr_code_and_tells_visitors_nothing_of_installs(
    make_app,
):
    """``segno`` is a core dependency: the page the title promises, every time, with a way
    back to the site under the ``root_path``; no note for the site's administrator."""
    middleware, _ = await make_app(login_path=LOGIN, desktop_login="phone")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware, root_path="/shop"),
        base_url=APP_URL,
        headers={"user-agent": DESKTOP_CHROME, "accept": HTML, "accept-language": "zh-CN"},
    ) as client:
        response = await client.get(f"/shop{LOGIN}")
    page = response.text
    assert "请用微信扫码登录" in page and '<div class="qr" id="qr"><svg' in page
    assert "也可以复制这个链接" in page  # an "or" with its first option above it
    assert "asgi-wechat-oauth" not in page and "[qr]" not in page
    assert '<a class="back" id="back" href="/shop/">返回网站</a>' in page


@pytest.mark.parametrize(
    ("user_agent", "language", "title", "copy", "back"),
    [
        (ANDROID_CHROME, "zh-CN,zh;q=0.9", "请在微信里打开", "复制链接", "返回网站"),
        (
            IPHONE_SAFARI,
            "en-US,en;q=0.9",
            "Open this page in WeChat",
            "Copy link",
            "Back to the site",
        ),
        (WECOM_ANDROID, "zh-CN", "请在微信里打开", "复制链接", "返回网站"),
    ],
    ids=["android-chrome", "iphone-safari", "wecom-phone"],
)
async def test_a_phone_outside_wechat_is_told_to_open_the_link_in_wechat(
    flow, emulator, user_agent, language, title, copy, back
):
    """A phone cannot scan its own screen: no QR code, the link to copy (a button copies it,
    with a few lines of inline script) and to open in WeChat, and the way back."""
    _, browser = await flow()
    browser.headers["accept-language"] = language
    response = await _as(browser, user_agent, HTML).get(LOGIN, params={"next": "/me"})
    assert response.status_code == 200
    page = response.text
    assert f"<h1>{title}</h1>" in page
    assert "<svg" not in page and "扫" not in page and "Scan" not in page
    assert f'<code id="login-link">{html.escape(f"{APP_URL}{LOGIN}?next=%2Fme")}</code>' in page
    assert '<button id="copy" type="button" data-copied="' in page and f">{copy}</button>" in page
    assert f'href="/">{back}</a>' in page
    assert "<script>" in page and "src=" not in page  # inline: nothing loaded from elsewhere
    assert "set-cookie" not in response.headers  # the login starts in WeChat
    assert emulator.total_exchanges == 0


async def test_a_tablet_gets_the_qr_code(flow):
    """An iPad's or another tablet's screen is big enough for a phone to scan."""
    _, browser = await flow()
    for agent in (IPAD, ANDROID_TABLET):
        response = await _as(browser, agent, HTML).get(LOGIN)
        assert '<div class="qr" id="qr"><svg' in response.text, agent


async def test_an_official_account_whose_app_is_a_website_app_keeps_qr_login(flow, emulator):
    """``default_scope="snsapi_login"`` (``appid`` is itself a website app): qrconnect."""
    _, browser = await flow(default_scope="snsapi_login")
    authorize, callback = await _to_callback(_as(browser, DESKTOP_CHROME, HTML))
    assert urlsplit(authorize).path == "/connect/qrconnect"
    assert (await browser.get(callback)).json()["appid"] == emulator.appid


# --- WxLogin -------------------------------------------------------------------------------


async def test_wxlogin_parameters_drive_the_embedded_qr_panel(both, emulator):
    _, browser = await both()
    answer = await _as(browser, DESKTOP_CHROME, "application/json").get(
        LOGIN, params={"format": "wxlogin", "id": "login-box", "next": "/me"}
    )
    assert answer.status_code == 200
    options = answer.json()
    assert options == {
        "self_redirect": False,
        "id": "login-box",
        "appid": emulator.website_appid,
        "scope": "snsapi_login",
        "redirect_uri": options["redirect_uri"],
        "state": options["state"],
    }
    assert unquote(options["redirect_uri"]) == f"{APP_URL}{CALLBACK}"
    assert "wechat_oauth_nonce=" in answer.headers["set-cookie"]
    # What WxLogin's iframe does after the scan: qrconnect, then the callback in this browser.
    consent = await browser.get(
        f"{WECHAT_URL}/connect/qrconnect?appid={options['appid']}"
        f"&redirect_uri={options['redirect_uri']}&response_type=code"
        f"&scope={options['scope']}&state={options['state']}"
    )
    response = await browser.get(consent.headers["location"])
    assert response.status_code == 200, response.text
    assert response.json()["appid"] == emulator.website_appid


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"format": "wxlogin"}, "wxlogin_unavailable"),
        ({"format": "svg"}, "invalid_query"),
    ],
)
async def test_wxlogin_needs_a_website_app_and_a_known_format(flow, params, reason):
    _, browser = await flow()
    response = await _as(browser, DESKTOP_CHROME).get(LOGIN, params=params)
    assert response.status_code == 400
    assert response.json()["error"] == reason


async def test_wxlogin_element_id_is_checked(both):
    _, browser = await both()
    response = await _as(browser, DESKTOP_CHROME).get(
        LOGIN, params={"format": "wxlogin", "id": '"><script>'}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_query"


# --- the emulator serves both apps ----------------------------------------------------------


async def test_emulator_binds_each_code_to_its_app(upstream, emulator):
    official = emulator.issue_code("snsapi_userinfo")
    website = emulator.issue_code("snsapi_login", appid=emulator.website_appid)

    async def trade(code: str, appid: str, secret: str) -> dict[str, object]:
        response = await upstream.get(
            "/sns/oauth2/access_token",
            params={
                "appid": appid,
                "secret": secret,
                "code": code,
                "grant_type": "authorization_code",
            },
        )
        answer: dict[str, object] = response.json()
        return answer

    crossed = [
        await trade(official, emulator.website_appid, emulator.website_secret),
        await trade(website, emulator.appid, emulator.secret),
    ]
    assert [answer["errcode"] for answer in crossed] == [40029, 40029]
    assert (await trade(website, emulator.appid, emulator.website_secret))["errcode"] == 40125
    granted = await trade(website, emulator.website_appid, emulator.website_secret)
    assert granted["openid"] == emulator.user.website_openid
    refresh = await upstream.get(
        "/sns/oauth2/refresh_token",
        params={
            "appid": emulator.appid,
            "grant_type": "refresh_token",
            "refresh_token": granted["refresh_token"],
        },
    )
    assert refresh.json()["errcode"] == 40030


async def test_emulator_has_no_official_account_page_for_the_website_app(upstream, emulator):
    response = await upstream.get(
        "/connect/oauth2/authorize",
        params={
            "appid": emulator.website_appid,
            "redirect_uri": f"{APP_URL}{CALLBACK}",
            "response_type": "code",
            "scope": "snsapi_base",
        },
    )
    assert response.status_code == 400


# --- two workers sharing Redis: the website route ---------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the Redis client is asyncio-only
async def test_two_workers_on_redis_trade_a_website_code_once(
    both, make_app, browser_factory, emulator, redis_server
):
    """The WeChat browser's duplicate of a website login lands on another worker: one exchange,
    with the website app, and both workers answer the identity."""
    from asgi_wechat_oauth.backends.redis import RedisBackend

    prefix = f"website-{id(emulator)}"
    first, browser = await both(backend=RedisBackend(redis_server.url, prefix=prefix))
    second, _ = await make_app(
        login_path=LOGIN,
        authorize_base_url=WECHAT_URL,
        website_appid=emulator.website_appid,
        website_secret=emulator.website_secret,
        backend=RedisBackend(redis_server.url, prefix=prefix),
    )
    _, callback = await _to_callback(_as(browser, DESKTOP_CHROME))
    other = browser_factory(second)
    other.cookies = browser.cookies
    answers = [await browser.get(callback), await other.get(callback)]
    assert [a.status_code for a in answers] == [200, 200]
    assert {a.json()["appid"] for a in answers} == {emulator.website_appid}
    assert emulator.exchange_count(_query(callback)["code"]) == 1
