"""A FastAPI app logging members in with WeCom (企业微信): QR login on the desktop, the
authorize page inside WeCom, a signed session, and the corp token shared by all workers.

    pip install 'asgi-wechat-oauth[fastapi,redis]' uvicorn
    WECOM_CORPID=ww... WECOM_AGENTID=1000002 WECOM_SECRET=... WECOM_SESSION_SECRET=... \\
    WECOM_REDIS_URL=redis://localhost:6379/0 uvicorn examples.wecom_app:app --workers 4

Every option comes from a ``WECOM_*`` variable (``WeComOAuthConfig.from_env``: a misspelt one
is refused with the name meant). Try it without WeCom: run ``uvicorn --factory
asgi_wechat_oauth.testing:WeComEmulator --port 8901`` and set ``WECOM_API_BASE_URL``,
``WECOM_AUTHORIZE_BASE_URL`` and ``WECOM_QR_LOGIN_BASE_URL`` to ``http://127.0.0.1:8901`` (the
emulator's credentials are the defaults below).
"""

from __future__ import annotations

import html
import os
import secrets
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware

from asgi_wechat_oauth.wecom import WeComIdentity, WeComOAuthConfig, WeComOAuthMiddleware

LOGIN = "/wecom/login"


#: The emulator's credentials: used where the environment sets none.
EMULATED = {
    "WECOM_CORPID": "wwemulated00000001",
    "WECOM_AGENTID": "1000002",
    "WECOM_SECRET": "emulated-wecom-agent-secret-0123456789",
}


def create_app(*, session_secret: str | None = None, **wecom_options: Any) -> FastAPI:
    """The app; ``wecom_options`` override the options read from the environment (tests pass
    ``http_client=`` and the emulator's URLs)."""
    config = WeComOAuthConfig.from_env(
        environ={**EMULATED, **os.environ},
        ignore=["SESSION_SECRET"],  # this app's own variable
        **{"login_path": LOGIN, **wecom_options},
    )
    app = FastAPI(title="WeCom login with FastAPI")
    app.add_middleware(WeComOAuthMiddleware, config=config)
    app.add_middleware(
        SessionMiddleware,
        # Set WECOM_SESSION_SECRET in production, the same on every worker.
        secret_key=(
            session_secret or os.environ.get("WECOM_SESSION_SECRET") or secrets.token_urlsafe(32)
        ),
        same_site="lax",  # the callback is a top-level navigation from WeCom: Lax sends it
        https_only=False,  # True in production
    )

    @app.get("/wecom/callback", include_in_schema=False)
    async def wecom_callback(request: Request) -> RedirectResponse:
        # Only reached when the exchange succeeded; the middleware answers failures itself.
        user: WeComIdentity = request.scope["wecom"]
        if not user.is_member:
            raise HTTPException(403, detail="This app is for members of the company.")
        request.session["wecom"] = {"userid": user.userid}
        # 303 to a clean URL: the code leaves the address bar and the history.
        return RedirectResponse(user.next or "/", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> HTMLResponse:
        user = request.session.get("wecom")
        if user:
            body = f"<h1>Hello, {html.escape(user['userid'])}</h1>"
        else:
            body = f'<h1>Welcome</h1><p><a id="login" href="{LOGIN}?next=/">Log in with WeCom</a>'
        return HTMLResponse(f'<!doctype html><meta charset="utf-8"><title>Home</title>{body}')

    @app.get("/me")
    async def me(request: Request) -> dict[str, str]:
        user: dict[str, str] | None = request.session.get("wecom")
        if not user:
            raise HTTPException(401, detail=f"Log in first: {LOGIN}?next=/me")
        return user

    return app


app = create_app()
