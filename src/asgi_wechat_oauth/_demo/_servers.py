"""The app under test, both ways (a naive callback and the same app behind the middleware), a
counter of the requests that reach it, and uvicorn serving it (and the emulator) on loopback."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Generator

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._core.asgi import ASGIApp, Receive, Scope, Send
from ..testing import WeChatEmulator
from ..web import WeChatOAuthMiddleware
from ._model import MIDDLEWARE_PATH, NAIVE_PATH

_STARTUP_TIMEOUT = 10.0
_SETTLE_TIMEOUT = 30.0


def build_app(
    *, emulator: WeChatEmulator, api_base_url: str, upstream: httpx.AsyncClient
) -> ASGIApp:
    """The Starlette app with both callbacks; ``/wechat/callback`` goes through the middleware."""

    async def naive_callback(request: Request) -> Response:
        # What many apps do: trade the code on every callback. The duplicate trades it again.
        answer = await upstream.get(
            f"{api_base_url}/sns/oauth2/access_token",
            params={
                "appid": emulator.appid,
                "secret": emulator.secret,
                "code": request.query_params.get("code", ""),
                "grant_type": "authorization_code",
            },
        )
        data = answer.json()  # WeChat labels its JSON text/plain
        if data.get("errcode"):
            return JSONResponse(data, status_code=400)
        return JSONResponse({"openid": data["openid"]})

    async def middleware_callback(request: Request) -> Response:
        return JSONResponse({"openid": request.scope["wechat"].openid})

    app = Starlette(
        routes=[
            Route(NAIVE_PATH, naive_callback),
            Route(MIDDLEWARE_PATH, middleware_callback),
        ]
    )
    return WeChatOAuthMiddleware(
        app,
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=api_base_url,
        callback_path=MIDDLEWARE_PATH,
    )


class RequestTracker:
    """Counts the requests that reach the wrapped app, by path, and knows when none is running.

    The count proves both callbacks of every login really arrived; waiting for idleness lets an
    aborted callback #1, whose handler goes on after the client left, finish before counting.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.received: Counter[str] = Counter()
        self.active = 0
        self._idle: anyio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.received[scope["path"]] += 1
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            if not self.active and self._idle is not None:
                self._idle.set()

    async def wait_idle(self, timeout: float = _SETTLE_TIMEOUT) -> None:
        if self.active:
            self._idle = anyio.Event()
            with anyio.fail_after(timeout):
                await self._idle.wait()


class _InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: two servers in one process would stack their
    SIGINT handlers, and Ctrl-C should simply stop the demo."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL; stop it on exit
    (uvicorn then runs the app's lifespan shutdown, which closes the middleware's client)."""
    # log_config=None: leave the host's logging alone (warnings still reach stderr).
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", log_config=None, access_log=False
    )
    server = _InProcessServer(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        try:
            with anyio.fail_after(_STARTUP_TIMEOUT):
                while not server.started:  # noqa: ASYNC110 - uvicorn has no startup event
                    await anyio.sleep(0.005)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
