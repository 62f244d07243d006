"""A FastAPI app for a third-party platform (第三方平台): one app serving two sites, each
logging users in on behalf of its own official account (authorizer), with one component token
for every worker.

    pip install 'asgi-wechat-oauth[fastapi,platform,redis]' uvicorn
    WECHAT_PLATFORM_COMPONENT_APPID=wx... WECHAT_PLATFORM_COMPONENT_SECRET=... \\
    WECHAT_PLATFORM_TOKEN=... WECHAT_PLATFORM_ENCODING_AES_KEY=... \\
    WECHAT_PLATFORM_HOSTS="a.example.com=wxAUTHORIZER1,b.example.com=wxAUTHORIZER2" \\
    WECHAT_PLATFORM_SESSION_SECRET=... WECHAT_PLATFORM_REDIS_URL=redis://localhost:6379/0 \\
    uvicorn examples.platform_app:app --workers 4

Set the open platform's 授权事件接收 URL to ``https://<a host>/wechat/platform/ticket``:
WeChat pushes ``component_verify_ticket`` there every 10 minutes, and until the first push
arrives logins answer 503 ``platform_ticket_pending``. Redis keeps the ticket (and the one
component token) for every worker, across restarts. ``WECHAT_PLATFORM_HOSTS`` names each site's
authorizer by the request's ``Host``; a host not listed gets 404 ``unknown_app``. Every other
option comes from a ``WECHAT_PLATFORM_*`` variable (``PlatformOAuthConfig.from_env``).

Try it without WeChat: ``python -m asgi_wechat_oauth emulator --port 8900``, then
``WECHAT_PLATFORM_API_BASE_URL=http://127.0.0.1:8900
WECHAT_PLATFORM_AUTHORIZE_BASE_URL=http://127.0.0.1:8900 uvicorn examples.platform_app:app``
(the emulator's platform credentials and authorizers are the defaults below: ``localhost`` and
``127.0.0.1`` are the two sites), push a ticket as WeChat would with ``curl -X POST
'http://127.0.0.1:8900/_emulator/push_ticket?url=http://127.0.0.1:8000/wechat/platform/ticket'``
and open http://localhost:8000/ and http://127.0.0.1:8000/.
"""

from __future__ import annotations

import html
import os
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware

from asgi_wechat_oauth import WeChatIdentity
from asgi_wechat_oauth.platform import PlatformOAuthConfig, PlatformOAuthMiddleware

LOGIN = "/wechat/platform/login"
CALLBACK = "/wechat/platform/callback"

#: The emulator's platform credentials and its two authorizers: used where the environment
#: sets none.
EMULATED = {
    "WECHAT_PLATFORM_COMPONENT_APPID": "wxemulatedcomp0001",
    "WECHAT_PLATFORM_COMPONENT_SECRET": "emulated-component-secret-0123456789",
    "WECHAT_PLATFORM_TOKEN": "emulatedcomponenttoken01",
    "WECHAT_PLATFORM_ENCODING_AES_KEY": "EmulatedEncodingAESKey0123456789abcdefghijk",
    "WECHAT_PLATFORM_HOSTS": "localhost=wxemulatedauth0001,127.0.0.1=wxemulatedauth0002",
}


def parse_hosts(text: str) -> dict[str, str]:
    """``"a.example=wxAUTH1,b.example=wxAUTH2"`` → ``{"a.example": "wxAUTH1", ...}``."""
    hosts: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        host, sep, appid = (piece.strip() for piece in entry.partition("="))
        if not (sep and host and appid):
            raise ValueError(f"WECHAT_PLATFORM_HOSTS: {entry!r} is not host=AppID")
        hosts[host.lower()] = appid
    if not hosts:
        raise ValueError("WECHAT_PLATFORM_HOSTS names no host=AppID")
    return hosts


def request_host(scope: Mapping[str, Any]) -> str:
    """The request's ``Host``, lower case, without its port."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host: str = value.decode("latin-1").lower()
            if host.startswith("["):  # [::1]:8000
                return host.partition("]")[0] + "]"
            return host.partition(":")[0]
    return ""


def by_host(hosts: Mapping[str, str]) -> Any:
    """The ``authorizer`` function: the request's host's AppID (``None``: 404 ``unknown_app``)."""

    def authorizer(scope: Mapping[str, Any]) -> str | None:
        return hosts.get(request_host(scope))

    return authorizer


def create_app(
    *,
    session_secret: str | None = None,
    hosts: Mapping[str, str] | None = None,
    **platform_options: Any,
) -> FastAPI:
    """The app; ``hosts`` (host → authorizer AppID) and ``platform_options`` override what the
    environment says (tests pass ``http_client=`` and the emulator's URLs)."""
    environ = {**EMULATED, **os.environ}
    if hosts is None:
        hosts = parse_hosts(environ["WECHAT_PLATFORM_HOSTS"] or EMULATED["WECHAT_PLATFORM_HOSTS"])
    config = PlatformOAuthConfig.from_env(
        environ=environ,
        ignore=["SESSION_SECRET", "HOSTS"],  # this app's own variables
        **{"authorizer": by_host(hosts), "login_path": LOGIN, **platform_options},
    )
    app = FastAPI(title="Third-party platform login with FastAPI")
    app.add_middleware(PlatformOAuthMiddleware, config=config)
    app.add_middleware(
        SessionMiddleware,
        # Set WECHAT_PLATFORM_SESSION_SECRET in production, the same on every worker.
        secret_key=(
            session_secret
            or environ.get("WECHAT_PLATFORM_SESSION_SECRET")
            or secrets.token_urlsafe(32)
        ),
        same_site="lax",  # the callback is a top-level navigation from WeChat: Lax sends it
        https_only=False,  # True in production
    )

    @app.get(CALLBACK, include_in_schema=False)
    async def platform_callback(request: Request) -> RedirectResponse:
        # Only reached when the exchange succeeded; the middleware answers failures itself.
        user: WeChatIdentity = request.scope["wechat"]
        # The session cookie is the host's own: each site keeps its own login.
        request.session["wechat"] = {"appid": user.appid, "openid": user.openid}
        # 303 to a clean URL: the code leaves the address bar and the history.
        return RedirectResponse(user.next or "/", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> HTMLResponse:
        site = html.escape(request_host(request.scope))
        account = html.escape(hosts.get(request_host(request.scope), "no official account"))
        user = request.session.get("wechat")
        if user:
            body = (
                f"<h1>Hello, {html.escape(user['openid'])}</h1>"
                f"<p>Logged in to {site} with the official account {html.escape(user['appid'])}"
            )
        else:
            body = (
                f"<h1>Welcome to {site}</h1><p>Its official account: {account}. "
                f'<a id="login" href="{LOGIN}?next=/">Log in with WeChat</a>'
            )
        return HTMLResponse(f'<!doctype html><meta charset="utf-8"><title>Home</title>{body}')

    @app.get("/me")
    async def me(request: Request) -> dict[str, str]:
        user: dict[str, str] | None = request.session.get("wechat")
        if not user:
            raise HTTPException(401, detail=f"Log in first: {LOGIN}?next=/me")
        return user

    return app


app = create_app()
