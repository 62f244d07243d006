"""The login endpoint, signed state bound to the browser, the replay guard, authorize URLs."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_wechat_oauth import WeChatOAuthMiddleware, authorize_url
from asgi_wechat_oauth._core.state import StateSigner, derive_state_secret
from support import APP_URL, CALLBACK, WECHAT_URL

pytestmark = pytest.mark.anyio

LOGIN = "/wechat/login"


async def _identity(request: Request) -> JSONResponse:
    me = request.scope["wechat"]
    return JSONResponse({"openid": me.openid, "next": me.next, "state": me.state})


@pytest.fixture
def downstream() -> Starlette:
    return Starlette(routes=[Route(CALLBACK, _identity)])


@pytest.fixture
async def login_app(make_app):
    """The middleware with ``login_path`` set and WeChat's consent page at the emulator."""
    return await make_app(login_path=LOGIN, authorize_base_url=WECHAT_URL)


# --- the redirect ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "path"),
    [
        ("snsapi_base", "/connect/oauth2/authorize"),
        ("snsapi_userinfo", "/connect/oauth2/authorize"),
        ("snsapi_login", "/connect/qrconnect"),
    ],
)
async def test_login_redirects_to_wechat_with_each_parameter_right(login_app, scope, path):
    middleware, client = login_app
    response = await client.get(LOGIN, params={"scope": scope, "next": "/profile"})
    assert response.status_code == 302
    assert response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    url = urlsplit(location)
    assert f"{url.scheme}://{url.netloc}" == WECHAT_URL
    assert url.path == path
    assert url.fragment == "wechat_redirect" and location.endswith("#wechat_redirect")
    params = parse_qsl(url.query)
    assert [name for name, _ in params] == [
        "appid",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "connect_redirect",
    ]
    values = dict(params)
    assert values["appid"] == middleware.appid
    assert values["redirect_uri"] == f"{APP_URL}{CALLBACK}"
    assert "%2F" in url.query  # redirect_uri travels URL-encoded
    assert values["response_type"] == "code"
    assert values["scope"] == scope
    assert values["connect_redirect"] == "1"
    state = values["state"]
    assert len(state) <= 128 and state.isascii() and state.isalnum()
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("wechat_oauth_nonce=")
    # The cookie outlives the state by a day, so that an expired login restarts with its next.
    for attribute in ("HttpOnly", "SameSite=Lax", f"Path={CALLBACK}", "Max-Age=87000"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http


async def test_default_scope_is_used_without_a_scope_parameter(make_app):
    _, client = await make_app(login_path=LOGIN, default_scope="snsapi_userinfo")
    response = await client.get(LOGIN)
    assert dict(parse_qsl(urlsplit(response.headers["location"]).query))["scope"] == (
        "snsapi_userinfo"
    )


async def test_https_request_gets_a_secure_cookie(make_app):
    middleware, _ = await make_app(login_path=LOGIN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware), base_url="https://app.test"
    ) as client:
        response = await client.get(LOGIN)
    assert "Secure" in response.headers["set-cookie"]
    redirect_uri = dict(parse_qsl(urlsplit(response.headers["location"]).query))["redirect_uri"]
    assert redirect_uri == f"https://app.test{CALLBACK}"


@pytest.mark.parametrize("trust", [False, True])
async def test_forwarded_headers_are_honoured_only_when_trusted(make_app, trust):
    _, client = await make_app(login_path=LOGIN, trust_forwarded=trust)
    response = await client.get(
        LOGIN, headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.example.com"}
    )
    redirect_uri = dict(parse_qsl(urlsplit(response.headers["location"]).query))["redirect_uri"]
    if trust:
        assert redirect_uri == f"https://www.example.com{CALLBACK}"
        assert "Secure" in response.headers["set-cookie"]
    else:
        assert redirect_uri == f"{APP_URL}{CALLBACK}"


async def test_explicit_redirect_uri_wins(make_app):
    explicit = f"https://login.example.com{CALLBACK}"
    _, client = await make_app(login_path=LOGIN, redirect_uri=explicit)
    response = await client.get(LOGIN)
    redirect_uri = dict(parse_qsl(urlsplit(response.headers["location"]).query))["redirect_uri"]
    assert redirect_uri == explicit
    # An https callback gets a __Host- cookie, which browsers hold to Path=/ and this host.
    assert response.headers["set-cookie"].startswith("__Host-wechat_oauth_nonce=")
    assert "Path=/;" in response.headers["set-cookie"]
    assert "Secure" in response.headers["set-cookie"]


async def test_bad_host_header_is_400_not_a_broken_redirect(login_app):
    _, client = login_app
    response = await client.get(LOGIN, headers={"Host": "evil.com/path?"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_host"


async def test_login_rejects_unknown_scope_and_non_get(login_app, emulator):
    _, client = login_app
    response = await client.get(LOGIN, params={"scope": "snsapi_everything"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"
    response = await client.post(LOGIN)
    assert response.status_code == 405
    assert emulator.total_exchanges == 0


@pytest.mark.parametrize(
    "next_path",
    [
        "//evil.com",
        "///evil.com",
        "/\\evil.com",
        "\\\\evil",
        "https://evil.com",
        "javascript:alert(1)",
        "evil.com",
        "/ok\r\nSet-Cookie: x=1",
        "/tab\there",
        "/ok\\..\\evil",
        # Apps and proxies decode: what the decoded form says counts too.
        "/%2F%2Fevil.example",
        "/%2f/evil.example",
        "/%5Cevil.example",
        "/%5c%2Fevil.example",
        "/%252F%252Fevil.example",
        "/%25252F%25252Fevil.example",
        "/ok%0d%0aSet-Cookie:x=1",
        "/%09/evil.example",
        "/\u2028x",
        "/\u202eevil",
    ],
)
async def test_open_redirect_attempts_are_rejected(login_app, next_path):
    _, client = login_app
    response = await client.get(LOGIN, params={"next": next_path})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_next"
    assert "set-cookie" not in response.headers


async def test_too_long_next_is_rejected(login_app):
    _, client = login_app
    response = await client.get(LOGIN, params={"next": "/" + "a" * 2000})  # 2,001 bytes
    assert response.status_code == 400 and response.json()["error"] == "invalid_next"
    response = await client.get(LOGIN, params={"next": "/" + "文" * 667})  # 2,002 bytes
    assert response.status_code == 400 and response.json()["error"] == "invalid_next"


def test_authorize_url_helper_builds_what_wechat_checks():
    url = authorize_url(
        "wx123",
        "https://example.com/cb?x=1",
        scope="snsapi_userinfo",
        state="abc",
        force_popup=True,
    )
    assert url == (
        "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx123"
        "&redirect_uri=https%3A%2F%2Fexample.com%2Fcb%3Fx%3D1&response_type=code"
        "&scope=snsapi_userinfo&state=abc&forcePopup=true&connect_redirect=1#wechat_redirect"
    )
    qr = authorize_url(
        "wx123", "https://example.com/cb", scope="snsapi_login", connect_redirect=False
    )
    assert qr.startswith("https://open.weixin.qq.com/connect/qrconnect?")
    assert "connect_redirect" not in qr and qr.endswith("&state=#wechat_redirect")
    for bad in ({"scope": "x"}, {"state": "s" * 129}):
        with pytest.raises(ValueError):
            authorize_url("wx123", "https://example.com/cb", **bad)
    with pytest.raises(ValueError):
        authorize_url("wx123", "/relative")


# --- the whole flow ----------------------------------------------------------------------------


async def test_full_flow_through_consent_ends_at_the_handler(login_app, browser_factory, emulator):
    middleware, _ = login_app
    browser = browser_factory(middleware)
    response = await browser.get(LOGIN, params={"next": "/profile?tab=1"}, follow_redirects=True)
    assert response.status_code == 200, response.text
    assert response.json()["openid"] == emulator.user.openid
    assert response.json()["next"] == "/profile?tab=1"
    assert emulator.total_exchanges == 1


async def test_double_callback_with_verified_state_is_one_exchange_two_successes(
    consent, login_app, browser_factory, emulator
):
    middleware, _ = login_app
    browser = browser_factory(middleware)
    callback = await consent(browser)
    responses: list[httpx.Response] = []

    async def hit() -> None:
        responses.append(await browser.get(callback))

    async with anyio.create_task_group() as tg:
        tg.start_soon(hit)
        tg.start_soon(hit)
    assert [r.status_code for r in responses] == [200, 200]
    assert emulator.total_exchanges == 1


# --- state that must not pass ------------------------------------------------------------------


def _callback_parts(callback: str) -> tuple[str, str]:
    params = dict(parse_qsl(urlsplit(callback).query))
    return params["code"], params["state"]


async def test_forged_state_is_403_and_the_code_is_not_traded(
    consent, login_app, browser_factory, emulator
):
    middleware, _ = login_app
    browser = browser_factory(middleware)
    code, state = _callback_parts(await consent(browser))
    forged = state[:-1] + ("A" if state[-1] != "A" else "B")
    response = await browser.get(CALLBACK, params={"code": code, "state": forged})
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_state"
    assert emulator.exchange_count(code) == 0


async def test_expired_state_is_403(login_app, emulator):
    _, client = login_app
    code = emulator.issue_code()
    # A state signed with the app's key and its cookie, issued 11 minutes ago.
    signer = StateSigner(derive_state_secret(emulator.secret), max_age=600)
    old_state, cookie = signer.issue("/a", issued_at=int(time.time()) - 660)
    response = await client.get(
        CALLBACK,
        params={"code": code, "state": old_state},
        headers={"cookie": f"wechat_oauth_nonce={cookie}"},
    )  # not a browser navigation: no page, no second login, just the 403
    assert response.status_code == 403 and response.json()["error"] == "invalid_state"
    assert emulator.exchange_count(code) == 0


async def test_state_from_another_browser_is_403(consent, login_app, browser_factory, emulator):
    middleware, _ = login_app
    victim, attacker = browser_factory(middleware), browser_factory(middleware)
    await consent(attacker)  # the attacker has a nonce cookie of their own
    callback = await consent(victim)
    response = await attacker.get(callback)  # login CSRF / a leaked link
    assert response.status_code == 403 and response.json()["error"] == "invalid_state"
    assert emulator.total_exchanges == 0
    assert (await victim.get(callback)).status_code == 200


async def test_missing_cookie_is_403(consent, login_app, browser_factory, emulator):
    middleware, client = login_app
    browser = browser_factory(middleware)
    callback = await consent(browser)
    response = await client.get(callback)  # no cookie jar entry for the nonce
    assert response.status_code == 403 and response.json()["error"] == "invalid_state"
    assert emulator.total_exchanges == 0


async def test_replayed_code_without_the_cookie_gets_403_and_the_victim_keeps_the_identity(
    consent, login_app, browser_factory, emulator
):
    middleware, client = login_app
    victim = browser_factory(middleware)
    callback = await consent(victim)
    first = await victim.get(callback)
    assert first.status_code == 200
    replay = await client.get(callback)  # same code and state, no nonce cookie
    assert replay.status_code == 403
    assert "openid" not in replay.text
    assert emulator.total_exchanges == 1
    again = await victim.get(callback)  # the victim's own refresh still works
    assert again.status_code == 200 and again.json()["openid"] == emulator.user.openid


async def test_without_verification_a_cached_result_goes_only_to_the_same_state(make_app, emulator):
    middleware, client = await make_app()
    assert middleware.verify_state is False
    code = emulator.issue_code()
    first = await client.get(CALLBACK, params={"code": code, "state": "victim"})
    assert first.status_code == 200
    replay = await client.get(CALLBACK, params={"code": code, "state": "attacker"})
    assert replay.status_code == 403
    assert replay.json()["error"] == "state_mismatch"
    assert emulator.exchange_count(code) == 1
    same = await client.get(CALLBACK, params={"code": code, "state": "victim"})
    assert same.status_code == 200


def test_constructor_rejects_inconsistent_login_options(downstream):
    base = {"appid": "wx1", "secret": "s" * 16}
    for options in (
        {"verify_state": True},
        {"login_path": CALLBACK},
        {"login_path": "login"},
        {"login_path": LOGIN, "default_scope": "snsapi_all"},
        {"login_path": LOGIN, "redirect_uri": "/relative"},
        {"login_path": LOGIN, "state_max_age": 0},
        {"login_path": LOGIN, "state_secret": b"short"},
    ):
        with pytest.raises(ValueError):
            WeChatOAuthMiddleware(downstream, **base, **options)


async def test_state_secret_option_signs_states(consent, make_app, browser_factory, emulator):
    middleware, _ = await make_app(
        login_path=LOGIN, authorize_base_url=WECHAT_URL, state_secret="x" * 32
    )
    browser = browser_factory(middleware)
    callback = await consent(browser)
    _, state = _callback_parts(callback)
    StateSigner(b"x" * 32, max_age=600).verify(
        unquote(state), browser.cookies["wechat_oauth_nonce"]
    )  # raises if it was signed with another key
    assert (await browser.get(callback)).status_code == 200


async def test_mounted_app_builds_the_callback_url_with_its_root_path(make_app):
    middleware, _ = await make_app(login_path=LOGIN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware, root_path="/app"), base_url=APP_URL
    ) as client:
        response = await client.get(f"/app{LOGIN}")
    assert response.status_code == 302
    redirect_uri = dict(parse_qsl(urlsplit(response.headers["location"]).query))["redirect_uri"]
    assert redirect_uri == f"{APP_URL}/app{CALLBACK}"
    assert f"Path=/app{CALLBACK}" in response.headers["set-cookie"]
