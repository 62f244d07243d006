"""Helpers for the framework and example tests: load an example, run an app's lifespan, and walk
the login flow with a cookie-carrying client, as a browser would."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx

from asgi_wechat_oauth.testing import WeChatEmulator
from support import APP_URL, WECHAT_URL

ROOT = Path(__file__).resolve().parent.parent
LOGIN = "/wechat/login"
NICKNAME = WeChatEmulator().user.nickname


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` by path: ``examples`` is not a package on ``sys.path``
    when pytest runs from elsewhere. Its module-level ``app`` is built from the environment."""
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    """Run ``app``'s ASGI lifespan around the block, as a server does: startup before, shutdown
    after (which is when the middleware closes what it opened)."""
    to_app, app_receives = anyio.create_memory_object_stream[dict[str, Any]](2)
    app_sends, from_app = anyio.create_memory_object_stream[dict[str, Any]](2)

    async def receive() -> dict[str, Any]:
        return await app_receives.receive()

    async def send(message: Any) -> None:
        await app_sends.send(dict(message))

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    async with to_app, app_receives, app_sends, from_app, anyio.create_task_group() as tg:
        tg.start_soon(app, scope, receive, send)
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        yield
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


def browser(app: Any, emulator: WeChatEmulator) -> httpx.AsyncClient:
    """One cookie jar; ``app.test`` served by ``app`` and ``wechat.test`` by the emulator, and
    redirects followed, so a GET walks login → consent → callback → next like a browser."""
    return httpx.AsyncClient(
        mounts={
            APP_URL: httpx.ASGITransport(app=app),
            WECHAT_URL: httpx.ASGITransport(app=emulator),
        },
        base_url=APP_URL,
        follow_redirects=True,
    )


async def consent(client: httpx.AsyncClient, login: str) -> str:
    """Walk the login link to WeChat's consent page; return the callback URL it redirects to,
    not yet requested (to send it twice)."""
    to_wechat = await client.get(login, follow_redirects=False)
    assert to_wechat.status_code == 302, to_wechat.text
    to_callback = await client.get(to_wechat.headers["location"], follow_redirects=False)
    assert to_callback.status_code == 302, to_callback.text
    callback: str = to_callback.headers["location"]
    return callback


def code_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["code"][0]
