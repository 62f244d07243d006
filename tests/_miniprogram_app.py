"""The app behind the mini-program middleware in the tests, and the fixtures that put the
middleware in front of it (registered in conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from asgi_wechat_oauth.miniprogram import MiniProgramIdentity, MiniProgramMiddleware
from support import CALLBACK, WECHAT_URL, Gate

LOGIN = "/wechat/miniprogram/login"


async def _login_route(request: Request) -> JSONResponse:
    me: MiniProgramIdentity = request.scope["wechat"]
    return JSONResponse(
        {
            "openid": me.openid,
            "unionid": me.unionid,
            "appid": me.appid,
            "has_session_key": bool(me.session_key),
            "body": (await request.body()).decode(),  # the body, replayed by the middleware
            "repr": repr(me),
        }
    )


async def _web_callback(request: Request) -> JSONResponse:
    return JSONResponse({"openid": request.scope["wechat"].openid})


async def _other(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.method} wechat={'wechat' in request.scope}")


def mp_app() -> Starlette:
    return Starlette(
        routes=[
            Route(LOGIN, _login_route, methods=["POST"]),
            Route(CALLBACK, _web_callback),
            Route("/other", _other, methods=["GET", "POST"]),
        ]
    )


MakeMP = Callable[..., Awaitable[tuple[MiniProgramMiddleware, httpx.AsyncClient]]]


@pytest.fixture
def make_mp(make_app) -> MakeMP:
    """``await make_mp(**options)`` → ``(middleware, client)``: conftest's ``make_app`` with
    the mini-program middleware in front of ``mp_app()``."""
    return partial(make_app, middleware=MiniProgramMiddleware, app=mp_app())


@pytest.fixture
def mp_gate(emulator) -> Gate:
    """Holds ``sns/jscode2session`` calls until opened."""
    return Gate(emulator, path="/sns/jscode2session")


@pytest.fixture
async def mp_gated_upstream(mp_gate) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mp_gate), base_url=WECHAT_URL
    ) as client:
        yield client
    mp_gate.open()
