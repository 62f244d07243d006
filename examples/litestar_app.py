"""A Litestar app logging users in with WeChat: a login link, a session, back to ``next``.

    pip install asgi-wechat-oauth 'litestar[cryptography]' uvicorn
    WECHAT_APPID=wx... WECHAT_SECRET=... uvicorn examples.litestar_app:app

Configured from the environment (``WeChatOAuthConfig.from_env``), built at import so that a bad
option fails before the server starts. The middleware wraps the Litestar app from outside:
Litestar runs its own middleware only on requests that match a route, and the login path has
none (the middleware answers it).
"""

from __future__ import annotations

import html
import os

from litestar import Litestar, Request, get, post
from litestar.middleware.session.client_side import CookieBackendConfig
from litestar.response import Redirect, Response

from asgi_wechat_oauth import WeChatIdentity, WeChatOAuthConfig, WeChatOAuthMiddleware, login_url

DEFAULTS = {
    "WECHAT_LOGIN_PATH": "/wechat/login",
    "WECHAT_DEFAULT_SCOPE": "snsapi_userinfo",  # to show the nickname; snsapi_base is silent
}
config = WeChatOAuthConfig.from_env(environ={**DEFAULTS, **os.environ}, ignore=["SESSION_SECRET"])


@get("/wechat/callback")
async def wechat_callback(request: Request) -> Redirect:
    # Only reached when the exchange succeeded: the middleware answers failures itself.
    me: WeChatIdentity = request.scope["wechat"]  # type: ignore[typeddict-item]
    nickname = me.userinfo.nickname if me.userinfo else ""
    # Encrypted by Litestar, but keep the tokens on the server anyway.
    request.set_session({"openid": me.openid, "nickname": nickname})
    # 303 to a clean URL: the code leaves the address bar and the history.
    return Redirect(me.next or "/", status_code=303)


@get("/")
async def home(request: Request) -> Response[str]:
    user = request.session
    if user:
        name = html.escape(user["nickname"] or user["openid"])
        body = (
            f"<h1>Hello, {name}</h1>"
            '<form method="post" action="/logout"><button>Log out</button></form>'
        )
    else:
        link = html.escape(login_url(request, next="/"))
        body = f'<h1>Welcome</h1><p><a id="login" href="{link}">Log in with WeChat</a></p>'
    page = f'<!doctype html><meta charset="utf-8"><title>Home</title>{body}'
    return Response(page, media_type="text/html")


@post("/logout")
async def logout(request: Request) -> Redirect:
    request.clear_session()
    return Redirect("/", status_code=303)


# 16, 24 or 32 bytes; random per process when unset (sessions then end with the process).
session_secret = os.environ.get("WECHAT_SESSION_SECRET", "").encode() or os.urandom(32)
sessions = CookieBackendConfig(secret=session_secret, samesite="lax", secure=False)
app = WeChatOAuthMiddleware(
    Litestar([home, wechat_callback, logout], middleware=[sessions.middleware]), config=config
)
