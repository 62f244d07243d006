"""A Quart app logging users in with WeChat: a login link, Quart's session, back to ``next``.

    pip install 'asgi-wechat-oauth[quart]'
    WECHAT_APPID=wx... WECHAT_SECRET=... WECHAT_SESSION_SECRET=... hypercorn examples.quart_app:app

Try it without WeChat: run ``python -m asgi_wechat_oauth emulator`` and set
``WECHAT_API_BASE_URL`` and ``WECHAT_AUTHORIZE_BASE_URL`` to ``http://127.0.0.1:8900``.

Quart wraps middleware around ``app.asgi_app`` (so that ``app`` stays a ``Quart`` for its CLI);
the middleware then sees every request first and hands the identity to the callback view in
``request.scope["wechat"]``.
"""

from __future__ import annotations

import html
import os
import secrets
from typing import Any

from quart import Quart, redirect, request, session
from quart.typing import ResponseReturnValue

from asgi_wechat_oauth import WeChatIdentity, WeChatOAuthMiddleware

LOGIN = "/wechat/login"


def create_app(*, session_secret: str | None = None, **wechat_options: Any) -> Quart:
    """The app; ``wechat_options`` override the middleware options (tests pass
    ``http_client=`` and the emulator's URLs). The middleware is ``app.asgi_app``."""
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
    app = Quart(__name__)
    # Quart's session is a signed cookie. Random per process when unset: sessions then end with
    # the process and are not shared between workers. Set WECHAT_SESSION_SECRET in production.
    app.secret_key = (
        session_secret or os.environ.get("WECHAT_SESSION_SECRET") or secrets.token_urlsafe(32)
    )
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"  # WeChat's redirect is top-level: Lax sends it
    # Quart types ASGI scopes as TypedDicts, the middleware as plain mappings: same protocol,
    # hence the type: ignore comments here and on request.scope below.
    middleware = WeChatOAuthMiddleware(app.asgi_app, **options)  # type: ignore[arg-type]
    app.asgi_app = middleware  # type: ignore[assignment,method-assign]

    @app.get("/wechat/callback")
    async def wechat_callback() -> ResponseReturnValue:
        # Only reached when the exchange succeeded; the middleware answers failures itself.
        me: WeChatIdentity = request.scope["wechat"]  # type: ignore[typeddict-item]
        # The session cookie is signed, not encrypted: keep the tokens out of it.
        nickname = me.userinfo.nickname if me.userinfo else ""
        session["wechat"] = {"openid": me.openid, "nickname": nickname}
        # 303 to a clean URL: the code leaves the address bar and the history.
        return redirect(me.next or "/", 303)

    @app.get("/")
    async def home() -> ResponseReturnValue:
        user = session.get("wechat")
        if user:
            name = html.escape(user["nickname"] or user["openid"])
            body = (
                f"<h1>Hello, {name}</h1>"
                '<form method="post" action="/logout"><button>Log out</button></form>'
            )
        else:
            body = f'<h1>Welcome</h1><p><a id="login" href="{LOGIN}?next=/">Log in with WeChat</a>'
        return f'<!doctype html><meta charset="utf-8"><title>Home</title>{body}'

    @app.get("/me")
    async def me() -> ResponseReturnValue:
        user = session.get("wechat")
        if not user:
            return {"detail": f"Log in first: {LOGIN}?next=/me"}, 401
        return dict(user)

    @app.post("/logout")
    async def logout() -> ResponseReturnValue:
        session.clear()
        return redirect("/", 303)

    return app


app = create_app()
