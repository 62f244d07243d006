"""A third-party platform logs users in on behalf of the official accounts that authorized it:
the ticket push, 503 before the first ticket, one component token for every request, one
exchange per (authorizer, code) under the WeChat browser's double callback, and a code or state
of one authorizer refused at another's site."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_wechat_oauth.errors import InvalidConfig
from asgi_wechat_oauth.platform import PlatformOAuthConfig, PlatformOAuthMiddleware
from asgi_wechat_oauth.testing import WeChatEmulator, web_login
from support import WECHAT_URL, browser_at

pytestmark = pytest.mark.anyio

CALLBACK = "/wechat/platform/callback"
TICKET = "/wechat/platform/ticket"
LOGIN = "/wechat/platform/login"
WECHAT_UA = {"user-agent": "Mozilla/5.0 MicroMessenger/8.0.47"}


async def _who(request: Request) -> JSONResponse:
    me = request.scope["wechat"]
    return JSONResponse(
        {
            "appid": me.appid,
            "openid": me.openid,
            "next": me.next,
            "nickname": me.userinfo.nickname if me.userinfo is not None else None,
        }
    )


def hosts(emulator: WeChatEmulator) -> dict[str, str]:
    first, second = emulator.authorizer_appids[:2]
    return {"a.example": first, "b.example": second}


def by_host(table: dict[str, str]) -> Any:
    def resolve(scope: dict[str, Any]) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == b"host":
                return table.get(value.decode("latin-1"))
        return None

    return resolve


def platform(emulator: WeChatEmulator, upstream: httpx.AsyncClient, **options: Any) -> Any:
    settings: dict[str, Any] = {
        "component_appid": emulator.component_appid,
        "component_secret": emulator.component_secret,
        "token": emulator.component_token,
        "encoding_aes_key": emulator.component_encoding_aes_key,
        "authorizer": by_host(hosts(emulator)),
        "login_path": LOGIN,
        "api_base_url": WECHAT_URL,
        "authorize_base_url": WECHAT_URL,
        "http_client": upstream,
    }
    settings.update(options)
    return PlatformOAuthMiddleware(Starlette(routes=[Route(CALLBACK, _who)]), **settings)


@pytest.fixture
async def site(emulator: WeChatEmulator, upstream: httpx.AsyncClient) -> Any:
    middleware = platform(emulator, upstream)
    yield middleware
    await middleware.aclose()


async def push_ticket(middleware: Any, emulator: WeChatEmulator) -> None:
    async with browser_at(middleware, emulator, "platform.example") as client:
        answer = await emulator.push_ticket(f"http://platform.example{TICKET}", client=client)
    assert answer.status_code == 200, answer.text
    assert answer.text == "success"


async def login(middleware: Any, emulator: WeChatEmulator, host: str, **kw: Any) -> Any:
    async with browser_at(middleware, emulator, host) as client:
        return await web_login(client, emulator, login_path=LOGIN, **kw)


async def test_before_the_first_ticket_a_login_is_503_with_one_warning(
    site: Any, emulator: WeChatEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    async with browser_at(site, emulator, "a.example") as client:
        as_json = await client.get(LOGIN, headers={**WECHAT_UA, "accept": "application/json"})
        as_page = await client.get(
            LOGIN, headers={**WECHAT_UA, "accept": "text/html", "accept-language": "zh-CN"}
        )
    assert as_json.status_code == 503
    assert as_json.json()["error"] == "platform_ticket_pending"
    assert as_page.status_code == 503
    assert as_page.headers["content-type"].startswith("text/html")
    assert "<h1>微信登录还没准备好</h1>" in as_page.text  # minutes, not a fault of the user's
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "ticket" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "ticket push" in warnings[0].getMessage()
    assert sum(emulator.calls.values()) == 0  # nothing asked of WeChat
    assert site.counters.errors["platform_ticket_pending"] == 2


@pytest.mark.parametrize("host", ["a.example", "b.example"])
async def test_a_login_on_behalf_of_the_hosts_authorizer(
    site: Any, emulator: WeChatEmulator, host: str
) -> None:
    await push_ticket(site, emulator)
    response = await login(site, emulator, host, next="/home")
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["appid"] == hosts(emulator)[host]
    assert me["next"] == "/home"
    # The double callback: two requests, one exchange, one component token.
    assert emulator.calls["component_access_token"] == 1
    assert emulator.calls["api_component_token"] == 1
    assert list(emulator.exchanges.values()) == [1]


async def test_one_component_token_for_every_login(site: Any, emulator: WeChatEmulator) -> None:
    await push_ticket(site, emulator)
    for host in ["a.example", "b.example", "a.example", "b.example"]:
        response = await login(site, emulator, host)
        assert response.status_code == 200, response.text
    assert emulator.calls["api_component_token"] == 1
    assert emulator.calls["component_access_token"] == 4


async def test_the_consent_link_is_the_authorizers_on_behalf_of_the_platform(
    site: Any, emulator: WeChatEmulator
) -> None:
    await push_ticket(site, emulator)
    async with browser_at(site, emulator, "b.example") as client:
        answer = await client.get(LOGIN, params={"scope": "snsapi_userinfo"}, headers=WECHAT_UA)
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.endswith("#wechat_redirect")
    query = parse_qs(urlsplit(location).query)
    assert query["appid"] == [hosts(emulator)["b.example"]]
    assert query["component_appid"] == [emulator.component_appid]
    assert query["scope"] == ["snsapi_userinfo"]
    assert query["redirect_uri"] == [f"http://b.example{CALLBACK}"]


async def test_the_profile_with_snsapi_userinfo(site: Any, emulator: WeChatEmulator) -> None:
    await push_ticket(site, emulator)
    response = await login(site, emulator, "a.example", scope="snsapi_userinfo")
    assert response.status_code == 200, response.text
    assert response.json()["nickname"] == emulator.user.nickname


async def consented(site: Any, emulator: WeChatEmulator, host: str) -> tuple[str, dict[str, str]]:
    """Walk the login and consent page at ``host``; the callback's query, and the cookies."""
    async with browser_at(site, emulator, host) as client:
        to_wechat = await client.get(LOGIN, headers=WECHAT_UA)
        to_callback = await client.get(to_wechat.headers["location"].split("#")[0])
        return urlsplit(to_callback.headers["location"]).query, dict(client.cookies)


async def callback_at(
    site: Any, emulator: WeChatEmulator, host: str, query: str, cookies: dict[str, str]
) -> httpx.Response:
    async with browser_at(site, emulator, host) as client:
        client.cookies.update(cookies)
        return await client.get(f"{CALLBACK}?{query}", headers={"accept": "application/json"})


async def test_a_code_of_one_authorizer_is_refused_at_the_other(
    site: Any, emulator: WeChatEmulator
) -> None:
    await push_ticket(site, emulator)
    query, cookies = await consented(site, emulator, "a.example")
    # As it came: the callback names authorizer A, at B's site.
    answer = await callback_at(site, emulator, "b.example", query, cookies)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "app_mismatch"
    # The appid rewritten to B's: A's state does not verify at B.
    params = parse_qs(query)
    params["appid"] = [hosts(emulator)["b.example"]]
    forged = "&".join(f"{k}={v[0]}" for k, v in params.items())
    answer = await callback_at(site, emulator, "b.example", forged, cookies)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "invalid_state"
    # Without its appid at all.
    bare = "&".join(f"{k}={v[0]}" for k, v in parse_qs(query).items() if k != "appid")
    answer = await callback_at(site, emulator, "a.example", bare, cookies)
    assert answer.status_code == 403
    assert answer.json()["error"] == "app_mismatch"
    assert emulator.calls["component_access_token"] == 0  # never traded
    # And where it belongs, it still works.
    answer = await callback_at(site, emulator, "a.example", query, cookies)
    assert answer.status_code == 200, answer.text
    assert answer.json()["appid"] == hosts(emulator)["a.example"]


async def test_a_host_without_an_authorizer_is_404(site: Any, emulator: WeChatEmulator) -> None:
    await push_ticket(site, emulator)
    async with browser_at(site, emulator, "elsewhere.example") as client:
        for path in [LOGIN, f"{CALLBACK}?code=abc&state=x&appid=wx1"]:
            answer = await client.get(path, headers={"accept": "application/json"})
            assert answer.status_code == 404
            assert answer.json()["error"] == "unknown_app"
    assert emulator.calls["component_access_token"] == 0


async def test_a_forged_push_stores_nothing(site: Any, emulator: WeChatEmulator) -> None:
    push = emulator.ticket_push()
    push.params["msg_signature"] = "0" * 40
    async with browser_at(site, emulator, "platform.example") as client:
        answer = await push.send(f"http://platform.example{TICKET}", client=client)
    assert answer.status_code == 403
    assert answer.json()["error"] == "push_signature_invalid"
    assert await site.tickets.current() is None
    async with browser_at(site, emulator, "a.example") as client:
        refused = await client.get(LOGIN, headers={**WECHAT_UA, "accept": "application/json"})
    assert refused.status_code == 503


async def test_a_fixed_authorizer(emulator: WeChatEmulator, upstream: httpx.AsyncClient) -> None:
    middleware = platform(emulator, upstream, authorizer=emulator.authorizer_appids[0])
    try:
        await push_ticket(middleware, emulator)
        response = await login(middleware, emulator, "any.example")
        assert response.status_code == 200, response.text
        assert response.json()["appid"] == emulator.authorizer_appids[0]
    finally:
        await middleware.aclose()


def test_options_are_checked_where_written(emulator: WeChatEmulator) -> None:
    good: dict[str, Any] = {
        "component_appid": emulator.component_appid,
        "component_secret": emulator.component_secret,
        "token": emulator.component_token,
        "encoding_aes_key": emulator.component_encoding_aes_key,
        "authorizer": "wxauthorizer000001",
    }
    PlatformOAuthConfig(**good)
    PlatformOAuthConfig(**{**good, "authorizer": by_host({})})

    def problems(**changes: Any) -> list[str]:
        with pytest.raises(InvalidConfig) as raised:
            PlatformOAuthConfig(**{**good, **changes})
        return raised.value.problems

    assert problems(component_secret="") == ["component_secret is required"]
    assert problems(authorizer=42) == [
        "authorizer must be text, got int",
        "authorizer must be an AppID or a function of the ASGI scope",
    ]
    assert problems(authorizer=good["component_appid"]) == [
        "authorizer is an official account's AppID, not the platform's own"
    ]
    assert problems(ticket_path=CALLBACK, callback_path=CALLBACK) == [
        "ticket_path must differ from callback_path and login_path"
    ]
    assert any("encoding_aes_key" in p for p in problems(encoding_aes_key="short"))
    shown = repr(PlatformOAuthConfig(**good))
    for secret in ("component_secret", "token", "encoding_aes_key"):
        assert good[secret] not in shown
