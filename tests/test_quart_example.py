"""The Quart example end to end against the emulator: the middleware wrapped around
``app.asgi_app``, Quart's own session, the WeChat browser's double callback.

Asyncio only: Quart's ASGI handling calls asyncio directly (``asyncio.ensure_future``,
``asyncio.wait``; trio needs the separate quart-trio), so this module pins the ``anyio_backend``
fixture to asyncio instead of running on trio too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from _apps import LOGIN, NICKNAME, browser, code_of, consent, load_example, running
from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.testing import double_callback
from support import WECHAT_URL

pytestmark = pytest.mark.anyio

QUART = load_example("quart_app")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(emulator, upstream) -> AsyncIterator[httpx.AsyncClient]:
    app = QUART.create_app(
        session_secret="s" * 32,
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=WECHAT_URL,
        authorize_base_url=WECHAT_URL,
        http_client=upstream,
    )
    assert isinstance(app.asgi_app, WeChatOAuthMiddleware)
    async with running(app), browser(app, emulator) as client:
        yield client


async def test_login_link_ends_on_the_home_page_greeting_the_user(client, emulator):
    assert 'href="/wechat/login?next=/"' in (await client.get("/")).text
    page = await client.get(f"{LOGIN}?next=/")
    assert page.status_code == 200, page.text
    assert f"Hello, {NICKNAME}" in page.text
    assert page.url.path == "/"
    assert [r.status_code for r in page.history] == [302, 302, 303]
    assert emulator.total_exchanges == 1


async def test_wechat_browser_double_callback_is_one_exchange_and_a_greeting(client, emulator):
    emulator.latency = 0.05  # callback #2 arrives while #1's exchange is in flight
    callback = await consent(client, f"{LOGIN}?next=/me")
    page = await double_callback(client, callback)
    assert page.status_code == 200, page.text
    assert page.url.path == "/me"
    assert page.json() == {"openid": emulator.user.openid, "nickname": NICKNAME}
    assert emulator.exchange_count(code_of(callback)) == 1


async def test_me_needs_the_session_and_logout_ends_it(client):
    assert (await client.get("/me")).status_code == 401
    await client.get(f"{LOGIN}?next=/")
    assert (await client.get("/me")).status_code == 200
    await client.post("/logout")
    assert (await client.get("/me")).status_code == 401


async def test_a_refused_callback_is_answered_by_the_middleware(client, emulator):
    callback = await consent(client, f"{LOGIN}?next=/")
    response = await client.get(callback.replace("state=", "state=X"))
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_state"
    assert emulator.total_exchanges == 0
