"""``examples/miniprogram_app.py`` end to end against the emulator: ``wx.login()``'s code posted
once and twice, the app's own token, ``/me`` with it, and the web flow beside it on demand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from _apps import load_example, running
from asgi_wechat_oauth.testing import consent, double_login
from support import APP_URL, WECHAT_URL

pytestmark = pytest.mark.anyio

EXAMPLE = load_example("miniprogram_app")
LOGIN = EXAMPLE.LOGIN

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(emulator, upstream) -> AsyncIterator[MakeClient]:
    """``await make_client()`` → a client of the example's app (lifespan running), whose
    middlewares talk to the emulator."""
    async with AsyncExitStack() as stack:

        async def factory(**options: Any) -> httpx.AsyncClient:
            app = EXAMPLE.create_app(
                token_secret=b"t" * 32, api_base_url=WECHAT_URL, http_client=upstream, **options
            )
            await stack.enter_async_context(running(app))
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=APP_URL)
            stack.push_async_callback(client.aclose)
            return client

        yield factory


async def test_login_gives_a_token_that_identifies_the_user(emulator, make_client):
    client = await make_client()
    code = emulator.issue_miniprogram_code()
    response = await client.post(LOGIN, json={"code": code, "scene": 1001})
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["openid"], data["scene"]) == (emulator.user.openid, 1001)
    (session_key,) = emulator._session_keys
    assert session_key not in response.text  # it stays on the server
    me = await client.get("/me", headers={"authorization": f"Bearer {data['token']}"})
    assert me.json() == {"openid": emulator.user.openid}
    forged = await client.get("/me", headers={"authorization": f"Bearer {data['openid']}.00"})
    assert forged.status_code == 401


async def test_retried_login_gets_the_same_token_from_one_exchange(emulator, make_client):
    emulator.latency = 0.05
    client = await make_client()
    code = emulator.issue_miniprogram_code()
    first = await client.post(LOGIN, json={"code": code})
    retried = await double_login(client, code)
    assert retried.status_code == 200
    assert retried.json()["token"] == first.json()["token"]
    assert emulator.exchange_count(code) == 1


async def test_web_flow_is_off_unless_configured(emulator, make_client):
    client = await make_client()
    assert (await client.get("/wechat/callback?code=abc")).status_code == 404


async def test_web_flow_beside_the_miniprogram_on_request(
    emulator, upstream, make_client, monkeypatch
):
    monkeypatch.setenv("WECHAT_APPID", emulator.appid)
    monkeypatch.setenv("WECHAT_SECRET", emulator.secret)
    client = await make_client()
    callback = await consent(
        upstream, WECHAT_URL, appid=emulator.appid, redirect_uri=f"{APP_URL}/wechat/callback"
    )
    web = await client.get(callback)
    assert web.status_code == 200 and web.json()["openid"] == emulator.user.openid
    code = emulator.issue_miniprogram_code()
    assert (await client.post(LOGIN, json={"code": code})).status_code == 200
