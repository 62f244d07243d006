"""A Starlette app logging users in with WeChat, configured from the environment.

    WECHAT_APPID=wx... WECHAT_SECRET=... WECHAT_LOGIN_PATH=/wechat/login \\
    WECHAT_SESSION_SECRET=... uvicorn examples.starlette_app:app --workers 4

Environment (read by ``WeChatOAuthConfig.from_env``, which refuses unknown ``WECHAT_*`` names):

- ``WECHAT_APPID``, ``WECHAT_SECRET``: the app's credentials (defaults: the emulator's).
- ``WECHAT_API_BASE_URL``, ``WECHAT_AUTHORIZE_BASE_URL``: WeChat's API and consent pages; point
  both at an emulator (``python -m asgi_wechat_oauth emulator``) to run without WeChat.
- ``WECHAT_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``) switches to the Redis backend, which
  several workers need; ``WECHAT_REDIS_PREFIX`` and ``WECHAT_LEASE_TTL`` tune it, and
  ``WECHAT_REDIS_CLUSTER=1`` reads the URL as one node of a Redis Cluster;
  ``WECHAT_REDIS_TIMEOUT`` bounds each Redis call (2 seconds).
- ``WECHAT_EXCHANGE_TIMEOUT``: seconds one exchange may take (10).
- ``WECHAT_LOGIN_PATH`` (e.g. ``/wechat/login``) turns on the login flow: the home page links
  there, the middleware signs the state and checks it against the browser's cookie, and the
  callback stores the user in the session and redirects to ``next``. Without it the callback
  answers the identity as JSON (with the worker's pid), for clients that build the authorize
  URL themselves, such as the multi-worker tests.
- ``WECHAT_WEBSITE_APPID``, ``WECHAT_WEBSITE_SECRET``: a website app beside the official
  account: desktop browsers then log in by QR code (``connect/qrconnect``), WeChat's browser
  with the official account. The login link then names no scope (set
  ``WECHAT_DEFAULT_SCOPE=snsapi_userinfo`` for the profile): a desktop browser cannot use an
  official-account scope.
- ``WECHAT_DESKTOP_LOGIN=phone``: without a website app, desktop browsers get the page that
  moves the login to the phone instead of logging the computer in through the phone (the
  default, ``handoff``: docs/en/products/desktop-login.md); ``WECHAT_HANDOFF_TTL`` (120) is
  how long its QR code stays valid.
- ``WECHAT_SNAPSHOT_USERS=reject`` refuses WeChat's snapshot-mode users with a page asking them
  to open the full service (``snapshot_users``; the default, ``allow``, lets them in).
- ``WECHAT_SESSION_SECRET``: signs the session cookie. Set it whenever the login flow is on with
  several workers or restarts; the default, random per process, forgets sessions.

``GET /metrics`` serves the middleware's counters to Prometheus when ``prometheus_client`` is
installed (``pip install 'asgi-wechat-oauth[prometheus]'``).
"""

from __future__ import annotations

import html
import os
import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from asgi_wechat_oauth import WeChatIdentity, WeChatOAuthConfig, WeChatOAuthMiddleware, login_url


async def callback(request: Request) -> Response:
    me: WeChatIdentity = request.scope["wechat"]
    nickname = me.userinfo.nickname if me.userinfo else None
    if request.app.state.login_path is None:
        return JSONResponse(
            {"openid": me.openid, "unionid": me.unionid, "nickname": nickname, "pid": os.getpid()}
        )
    # The session cookie is signed, not encrypted: keep the tokens out of it (store them on the
    # server if you need them later, e.g. to refresh with WeChatOAuthClient).
    request.session["wechat"] = {"openid": me.openid, "nickname": nickname}
    # 303 to a clean URL: the code leaves the address bar and the history.
    return RedirectResponse(me.next or "/", status_code=303)


async def home(request: Request) -> HTMLResponse:
    user = request.session.get("wechat")
    login_path = request.app.state.login_path
    if user:
        name = html.escape(user["nickname"] or user["openid"])
        body = (
            f"<h1>Hello, {name}</h1><p>openid: <code>{html.escape(user['openid'])}</code></p>"
            '<form method="post" action="/logout"><button>Log out</button></form>'
        )
    elif login_path:
        link = html.escape(login_url(request, next="/", scope=request.app.state.login_scope))
        body = f'<h1>Welcome</h1><p><a id="login" href="{link}">Log in with WeChat</a></p>'
    else:
        body = "<h1>Welcome</h1><p>The login flow is off (set WECHAT_LOGIN_PATH).</p>"
    return HTMLResponse(f'<!doctype html><meta charset="utf-8"><title>Home</title>{body}')


async def logout(request: Request) -> RedirectResponse:
    request.session.clear()
    return RedirectResponse("/", status_code=303)


async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(
        generate_latest(request.app.state.metrics), headers={"content-type": CONTENT_TYPE_LATEST}
    )


#: Without WECHAT_APPID and WECHAT_SECRET: the emulator's (python -m asgi_wechat_oauth emulator).
EMULATOR_CREDENTIALS = {
    "WECHAT_APPID": "wxemulated0000001",
    "WECHAT_SECRET": "emulated-app-secret-0123456789ab",
}


def config_from_env(**overrides: Any) -> WeChatOAuthConfig:
    """The middleware's options, from the environment variables above (``WECHAT_REDIS_URL``
    makes the Redis backend); ``overrides`` win."""
    return WeChatOAuthConfig.from_env(
        environ={**EMULATOR_CREDENTIALS, **os.environ}, ignore=["SESSION_SECRET"], **overrides
    )


def create_app(
    *, session_secret: str | None = None, session_https_only: bool = False, **wechat_options: Any
) -> Starlette:
    """The app; ``wechat_options`` override the middleware options read from the environment
    (tests pass ``http_client=`` and the emulator's URLs). The config is built (and checked)
    here, when the module is imported, not when the server starts. ``session_https_only=True``
    is right in production; over plain http the browser then never sends the session back (a
    login loop, which the middleware detects)."""
    config = config_from_env(**wechat_options)
    routes = [
        Route("/", home),
        Route("/wechat/callback", callback),
        Route("/logout", logout, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.login_path = config.login_path
    app.state.login_scope = None if config.website_appid else "snsapi_userinfo"
    app.add_middleware(WeChatOAuthMiddleware, config=config)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret
        or os.environ.get("WECHAT_SESSION_SECRET")
        or secrets.token_urlsafe(32),
        same_site="lax",  # the callback is a top-level navigation from WeChat: Lax sends it
        https_only=session_https_only,  # True in production, so the cookie never goes in clear
    )
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:
        return app
    from asgi_wechat_oauth.prometheus import WeChatOAuthCollector

    # A registry of the app's own, so that building a second app (tests) never collides with
    # names in prometheus_client's global REGISTRY.
    app.state.metrics = CollectorRegistry()
    app.state.metrics.register(WeChatOAuthCollector(app))
    app.router.routes.append(Route("/metrics", metrics))
    return app


app = create_app()
