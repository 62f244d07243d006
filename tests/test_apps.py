"""Several official accounts behind one middleware (``apps=`` and ``resolve_app=``): each
request logs in with the account its resolver names, keys and states per account, and a
state or code of one account presented at another is refused, never attributed."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from asgi_wechat_oauth import WeChatOAuthConfig, WeChatOAuthMiddleware
from asgi_wechat_oauth.errors import InvalidConfig
from asgi_wechat_oauth.testing import WeChatEmulator, web_login
from support import WECHAT_URL, browser_at

pytestmark = pytest.mark.anyio

APP_A = "wxa000000000000001"
APP_B = "wxb000000000000002"
SECRETS = {APP_A: "secret-of-account-a-0123456789", APP_B: "secret-of-account-b-0123456789"}
HOSTS = {"a.example": APP_A, "b.example": APP_B}


def by_host(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return HOSTS.get(value.decode("latin-1"))
    return None


@pytest.fixture
def emulator() -> WeChatEmulator:
    return WeChatEmulator(apps=dict(SECRETS))


@pytest.fixture
async def two_accounts(
    emulator: WeChatEmulator, upstream: httpx.AsyncClient, downstream: Starlette
) -> Any:
    middleware = WeChatOAuthMiddleware(
        downstream,
        apps=SECRETS,
        resolve_app=by_host,
        login_path="/wechat/login",
        api_base_url=WECHAT_URL,
        authorize_base_url=WECHAT_URL,
        http_client=upstream,
    )
    yield middleware
    await middleware.aclose()


@pytest.mark.parametrize(("host", "appid"), sorted(HOSTS.items()))
async def test_each_host_logs_in_with_its_own_account(
    two_accounts: Any, emulator: WeChatEmulator, host: str, appid: str
) -> None:
    async with browser_at(two_accounts, emulator, host) as client:
        response = await web_login(client, emulator, next="/home")
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["openid"] == emulator.user.openid_in(
        appid, main_appid=emulator.appid, website_appid=emulator.website_appid
    )
    assert me["next"] == "/home"
    # The double callback (two requests) shared one exchange, made with this host's account.
    assert list(emulator.exchanges.values()) == [1]
    assert two_accounts.counters.exchanges == 1


async def test_the_consent_link_names_the_hosts_account(
    two_accounts: Any, emulator: WeChatEmulator
) -> None:
    for host, appid in HOSTS.items():
        async with browser_at(two_accounts, emulator, host) as client:
            to_wechat = await client.get(
                "/wechat/login", headers={"user-agent": "MicroMessenger/8.0"}
            )
        assert to_wechat.status_code == 302
        query = parse_qs(urlsplit(to_wechat.headers["location"]).query)
        assert query["appid"] == [appid]
        assert query["redirect_uri"] == [f"http://{host}/wechat/callback"]


async def test_a_state_of_one_account_is_refused_at_the_other(
    two_accounts: Any, emulator: WeChatEmulator
) -> None:
    async with browser_at(two_accounts, emulator, "a.example") as client_a:
        to_wechat = await client_a.get(
            "/wechat/login", headers={"user-agent": "MicroMessenger/8.0"}
        )
        to_callback = await client_a.get(to_wechat.headers["location"].split("#")[0])
        callback = urlsplit(to_callback.headers["location"])
        cookies = dict(client_a.cookies)
    # The same browser (its cookie too) brings A's code and state to B's callback.
    async with browser_at(two_accounts, emulator, "b.example") as client_b:
        client_b.cookies.update(cookies)
        answer = await client_b.get(
            f"/wechat/callback?{callback.query}", headers={"accept": "application/json"}
        )
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "invalid_state"
    assert emulator.calls["access_token"] == 0  # never traded, never attributed to B


@pytest.mark.parametrize("path", ["/wechat/login", "/wechat/callback?code=abc&state=x"])
async def test_a_host_without_an_account_gets_404(
    two_accounts: Any, emulator: WeChatEmulator, path: str
) -> None:
    async with browser_at(two_accounts, emulator, "c.example") as client:
        answer = await client.get(path, headers={"accept": "application/json"})
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_app"
    assert sum(emulator.calls.values()) == 0


async def test_a_resolver_naming_something_else_is_404(
    emulator: WeChatEmulator, upstream: httpx.AsyncClient, downstream: Starlette
) -> None:
    for named in ["wx-not-listed", "wxc000000000000003", "", "wx../x", 42]:
        middleware = WeChatOAuthMiddleware(
            downstream,
            apps=SECRETS,
            resolve_app=lambda scope, named=named: named,  # type: ignore[misc]
            api_base_url=WECHAT_URL,
            http_client=upstream,
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=middleware), base_url="http://a.example"
        ) as client:
            answer = await client.get("/wechat/callback?code=abc", headers={"accept": "*/*"})
        await middleware.aclose()
        assert answer.status_code == 404, named
        assert answer.json()["error"] == "unknown_app"
    assert sum(emulator.calls.values()) == 0


def test_apps_are_checked_where_written() -> None:
    def problems(**options: Any) -> list[str]:
        with pytest.raises(InvalidConfig) as raised:
            WeChatOAuthConfig(**options)
        return raised.value.problems

    assert problems(apps=SECRETS) == [
        "apps needs resolve_app: a function of the ASGI scope that returns the request's AppID"
    ]
    assert problems(apps=SECRETS, resolve_app=by_host, appid=APP_A, secret="s" * 20) == [
        "give apps, or appid and secret: not both"
    ]
    assert problems(resolve_app=by_host, appid=APP_A, secret="s" * 20) == [
        "resolve_app needs apps: the AppIDs it may name, with their secrets"
    ]
    assert problems(apps={}, resolve_app=by_host) == [
        "apps must map AppIDs to their secrets, at least one"
    ]
    assert problems(apps={APP_A: ""}, resolve_app=by_host) == [
        "apps must map AppIDs (text) to secrets (non-empty text)"
    ]
    assert any("original ID" in p for p in problems(apps={"gh_abc": "x"}, resolve_app=by_host))
    config = WeChatOAuthConfig(apps=SECRETS, resolve_app=by_host)
    assert "secret-of" not in repr(config)
    # Each account's states are signed with a key of its own, none of them the plain secret.
    assert dataclasses.replace(config, state_max_age=60).state_max_age == 60
