"""A mini-program's backend: ``wx.login()`` codes traded once, then a token of the app's own.

    WECHAT_MINIPROGRAM_APPID=wx... WECHAT_MINIPROGRAM_SECRET=... TOKEN_SECRET=... \\
    uvicorn examples.miniprogram_app:app --workers 2

The mini-program posts ``{"code": ...}`` from ``wx.login()`` to ``/wechat/miniprogram/login``
(JSON or a form); the middleware trades the code once (a retried request or a second page with
the same code gets the same session) and the route answers a token. Later requests send it as
``Authorization: Bearer <token>``; ``GET /me`` shows who that is.

Environment:

- ``WECHAT_MINIPROGRAM_APPID``, ``WECHAT_MINIPROGRAM_SECRET``: the mini-program's credentials
  (defaults: the emulator's). ``WECHAT_API_BASE_URL``: WeChat's API, or an emulator
  (``python -m asgi_wechat_oauth emulator``).
- ``WECHAT_REDIS_URL`` (and ``WECHAT_REDIS_PREFIX``): one ``RedisBackend`` for every worker.
- ``WECHAT_APPID``, ``WECHAT_SECRET``: an official account's or website's; when set, the web
  OAuth callback ``/wechat/callback`` is served too, on the *same* backend (keys kept apart).
- ``WECHAT_MINIPROGRAM_DUPLICATES``: ``reject`` hands each code's session to one request (and
  to retries that repeat its ``Idempotency-Key`` header); others get 400 ``code_used``. Default
  ``share``.
- ``TOKEN_SECRET``: signs the tokens; random per process when unset (tokens then work only on
  the worker that issued them).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_wechat_oauth import WeChatIdentity, WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import Backend
from asgi_wechat_oauth.miniprogram import MiniProgramIdentity, MiniProgramMiddleware

LOGIN = "/wechat/miniprogram/login"


def issue_token(secret: bytes, openid: str) -> str:
    """The app's own session token (keep ``session_key`` on the server: never send it)."""
    mac = hmac.new(secret, openid.encode(), hashlib.sha256).hexdigest()
    return f"{openid}.{mac}"


def token_owner(secret: bytes, token: str) -> str | None:
    openid, _, mac = token.rpartition(".")
    expected = hmac.new(secret, openid.encode(), hashlib.sha256).hexdigest()
    return openid if openid and hmac.compare_digest(mac, expected) else None


async def login(request: Request) -> JSONResponse:
    me: MiniProgramIdentity = request.scope["wechat"]
    # The body's other fields, parsed by the middleware from JSON or a form alike (a form's
    # values are text): no request.json(), which fails on the form bodies the middleware takes.
    fields: dict[str, Any] = request.scope["wechat_fields"]
    # me.session_key decrypts wx.getPhoneNumber() and friends: keep it server-side if needed.
    return JSONResponse(
        {
            "token": issue_token(request.app.state.token_secret, me.openid),
            "openid": me.openid,
            "unionid": me.unionid,
            "scene": fields.get("scene"),
            "pid": os.getpid(),
        }
    )


async def me(request: Request) -> JSONResponse:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    openid = token_owner(request.app.state.token_secret, token) if scheme == "Bearer" else None
    if openid is None:
        return JSONResponse({"error": "login_required"}, status_code=401)
    return JSONResponse({"openid": openid})


async def web_callback(request: Request) -> JSONResponse:
    user: WeChatIdentity = request.scope["wechat"]
    return JSONResponse({"openid": user.openid, "pid": os.getpid()})


def _backend() -> Backend | None:
    url = os.environ.get("WECHAT_REDIS_URL")
    if not url:
        return None  # each middleware gets its own MemoryBackend: one worker only
    from asgi_wechat_oauth.backends.redis import RedisBackend

    return RedisBackend(url, prefix=os.environ.get("WECHAT_REDIS_PREFIX", "wechat-oauth"))


def create_app(*, token_secret: bytes | None = None, **options: Any) -> Starlette:
    """The app; ``options`` override the middlewares' options read from the environment
    (tests pass ``http_client=`` and the emulator's URL)."""
    options = {
        "api_base_url": os.environ.get("WECHAT_API_BASE_URL", "https://api.weixin.qq.com"),
        "backend": _backend(),
        **options,
    }
    duplicates = options.pop("duplicates", os.environ.get("WECHAT_MINIPROGRAM_DUPLICATES", "share"))
    app = Starlette(routes=[Route(LOGIN, login, methods=["POST"]), Route("/me", me)])
    app.state.token_secret = (
        token_secret or os.environ.get("TOKEN_SECRET", "").encode() or secrets.token_bytes(32)
    )
    app.add_middleware(
        MiniProgramMiddleware,
        appid=os.environ.get("WECHAT_MINIPROGRAM_APPID", "wxemulated0000001"),
        secret=os.environ.get("WECHAT_MINIPROGRAM_SECRET", "emulated-app-secret-0123456789ab"),
        login_path=LOGIN,
        duplicates=duplicates,
        **options,
    )
    if os.environ.get("WECHAT_APPID") and os.environ.get("WECHAT_SECRET"):
        app.router.routes.append(Route("/wechat/callback", web_callback))
        app.add_middleware(
            WeChatOAuthMiddleware,
            appid=os.environ["WECHAT_APPID"],
            secret=os.environ["WECHAT_SECRET"],
            **options,
        )
    return app


app = create_app()
