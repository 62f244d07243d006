"""A Starlette app logging users in with WeChat, configured from the environment.

    WECHAT_APPID=wx... WECHAT_SECRET=... uvicorn examples.starlette_app:app --workers 4

``WECHAT_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``) switches to the Redis backend, which
several workers need; ``WECHAT_API_BASE_URL`` points the middleware at an emulator
(``python -m asgi_wechat_oauth emulator``) instead of api.weixin.qq.com.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from asgi_wechat_oauth import WeChatIdentity, WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import Backend


async def callback(request: Request) -> JSONResponse:
    me: WeChatIdentity = request.scope["wechat"]
    # A real app would store me.openid in its session and redirect (303) to a clean URL, so that
    # the code leaves the browser's history.
    return JSONResponse(
        {
            "openid": me.openid,
            "unionid": me.unionid,
            "nickname": me.userinfo.nickname if me.userinfo else None,
            "pid": os.getpid(),
        }
    )


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def _backend() -> Backend | None:
    url = os.environ.get("WECHAT_REDIS_URL")
    if not url:
        return None  # the default MemoryBackend: dedupes within one worker only
    from asgi_wechat_oauth.backends.redis import RedisBackend

    return RedisBackend(
        url,
        prefix=os.environ.get("WECHAT_REDIS_PREFIX", "wechat-oauth"),
        lock_ttl=float(os.environ.get("WECHAT_LOCK_TTL", "15")),
    )


app = Starlette(routes=[Route("/", home), Route("/wechat/callback", callback)])
app.add_middleware(
    WeChatOAuthMiddleware,
    appid=os.environ.get("WECHAT_APPID", "wxemulated0000001"),
    secret=os.environ.get("WECHAT_SECRET", "emulated-app-secret-0123456789ab"),
    api_base_url=os.environ.get("WECHAT_API_BASE_URL", "https://api.weixin.qq.com"),
    exchange_timeout=float(os.environ.get("WECHAT_EXCHANGE_TIMEOUT", "10")),
    backend=_backend(),
)
