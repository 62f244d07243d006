"""A FastAPI app logging users in with WeChat: a login link, a signed session, back to ``next``.

    pip install 'asgi-wechat-oauth[fastapi]' uvicorn
    WECHAT_APPID=wx... WECHAT_SECRET=... WECHAT_SESSION_SECRET=... uvicorn examples.fastapi_app:app

Try it without WeChat: run ``python -m asgi_wechat_oauth emulator`` and set
``WECHAT_API_BASE_URL`` and ``WECHAT_AUTHORIZE_BASE_URL`` to ``http://127.0.0.1:8900``.

The flow: ``/`` links to ``/wechat/login?next=/``; the middleware redirects to WeChat's consent
page with a signed state; WeChat redirects to ``/wechat/callback``, where the middleware trades
the code (once, however many times the WeChat browser sends it) and the route, given the identity
by the ``WeChatUser`` dependency, stores the user in the session and redirects to ``next``.
"""

from __future__ import annotations

import html
import os
import secrets
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware

from asgi_wechat_oauth import WeChatOAuthMiddleware, login_url
from asgi_wechat_oauth.fastapi import WeChatUser

LOGIN = "/wechat/login"


def session_user(request: Request) -> dict[str, str]:
    """The logged-in user from the session; 401 with the way to log in otherwise."""
    user: dict[str, str] | None = request.session.get("wechat")
    if not user:
        raise HTTPException(401, detail=f"Log in first: {login_url(request, next='/me')}")
    return user


SessionUser = Annotated[dict[str, str], Depends(session_user)]


def create_app(*, session_secret: str | None = None, **wechat_options: Any) -> FastAPI:
    """The app; ``wechat_options`` override the middleware options (tests pass
    ``http_client=`` and the emulator's URLs)."""
    options: dict[str, Any] = {
        "appid": os.environ.get("WECHAT_APPID", "wxemulated0000001"),
        "secret": os.environ.get("WECHAT_SECRET", "emulated-app-secret-0123456789ab"),
        "api_base_url": os.environ.get("WECHAT_API_BASE_URL", "https://api.weixin.qq.com"),
        "authorize_base_url": os.environ.get(
            "WECHAT_AUTHORIZE_BASE_URL", "https://open.weixin.qq.com"
        ),
        "login_path": LOGIN,
        "default_scope": "snsapi_userinfo",  # to show the nickname; snsapi_base is silent
        **wechat_options,
    }
    app = FastAPI(title="WeChat login with FastAPI")
    app.add_middleware(WeChatOAuthMiddleware, **options)
    app.add_middleware(
        SessionMiddleware,
        # Random per process when unset: sessions then end with the process and are not shared
        # between workers. Set WECHAT_SESSION_SECRET in production.
        secret_key=session_secret
        or os.environ.get("WECHAT_SESSION_SECRET")
        or secrets.token_urlsafe(32),
        same_site="lax",  # the callback is a top-level navigation from WeChat: Lax sends it
        https_only=False,  # True in production (https only), so the cookie never goes in clear
    )

    @app.get("/wechat/callback", include_in_schema=False)
    async def wechat_callback(request: Request, user: WeChatUser) -> RedirectResponse:
        # Only reached when the exchange succeeded; the middleware answers failures itself.
        # The session cookie is signed, not encrypted: keep the tokens out of it (store them on
        # the server if you need them later, e.g. to refresh with WeChatOAuthClient).
        nickname = user.userinfo.nickname if user.userinfo else ""
        request.session["wechat"] = {"openid": user.openid, "nickname": nickname}
        # 303 to a clean URL: the code leaves the address bar and the history.
        return RedirectResponse(user.next or "/", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> HTMLResponse:
        user = request.session.get("wechat")
        if user:
            name = html.escape(user["nickname"] or user["openid"])
            body = (
                f"<h1>Hello, {name}</h1>"
                '<form method="post" action="/logout"><button>Log out</button></form>'
            )
        else:
            link = html.escape(login_url(request, next="/"))
            body = f'<h1>Welcome</h1><p><a id="login" href="{link}">Log in with WeChat</a>'
        return HTMLResponse(f'<!doctype html><meta charset="utf-8"><title>Home</title>{body}')

    @app.get("/me")
    async def me(user: SessionUser) -> dict[str, str]:
        return user

    @app.post("/logout")
    async def logout(request: Request) -> RedirectResponse:
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    return app


app = create_app()
