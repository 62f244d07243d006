"""The ASGI middleware: intercept the callback, trade its code once, hand on the identity."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from functools import partial

import anyio
import httpx

from .._core.apiclient import DEFAULT_API_BASE_URL
from .._core.asgi import ASGIApp, Receive, Scope, Send
from .._core.counters import Counters
from .._core.middleware import Answer, OAuthMiddleware, Trade, redirect_answer
from .._core.options import InvalidCodeAction, OnError
from .._core.pages import DEFAULT_ERROR_PAGES, ErrorPages, wants_html
from .._core.paths import matches
from .._core.sites import AppResolver, Site, Sites, signer_for
from .._core.state import StateSigner, VerifiedState, derive_state_secret
from ..backends import Backend
from ..errors import (
    ErrorReason,
    InvalidCallbackRequest,
    StateRejected,
)
from ..tokens import AccessTokenKeeper
from ._authorize import DEFAULT_AUTHORIZE_BASE_URL, QR_LOGIN_SCOPE
from ._browsers import LoginRoute
from ._client import WeChatOAuthClient
from ._config import DesktopLogin, SnapshotPolicy, WeChatOAuthConfig, WeChatScope
from ._handoff_routes import HandoffRoutes
from ._identity import WeChatIdentity
from ._jssdk import JsSdkEndpoint
from ._kept import KeptNexts
from ._links import LOGIN_PATH_KEY
from ._login import LoginEndpoint, LoginQuery, wxlogin_params
from ._qrpage import on_a_phone, send_json, send_open_in_wechat, wants_json
from ._sns import SnsLogin
from ._unhandled import watch_the_answer

logger = logging.getLogger("asgi_wechat_oauth")


class WeChatOAuthMiddleware(HandoffRoutes, SnsLogin, OAuthMiddleware):
    """Trade each WeChat OAuth code once, however many callbacks carry it.

    Requests to ``callback_path`` (GET or HEAD) have their ``code`` traded for an identity that
    is put in ``scope["wechat"]`` before the app is called; concurrent and late duplicates of
    the same code share that one exchange. With ``login_path`` set, a GET there redirects to
    WeChat's consent page with a signed state bound to the browser by a cookie, and callbacks
    are verified against it. Everything else passes through untouched.
    """

    config_type = WeChatOAuthConfig
    scope_key = "wechat"
    identity_type = WeChatIdentity
    provider = "WeChat"
    log_prefix = "wechat_oauth"
    login_path_key = LOGIN_PATH_KEY
    extra_paths = ("jssdk_path",)
    config: WeChatOAuthConfig
    client: WeChatOAuthClient
    _login: LoginEndpoint

    def __init__(
        self,
        app: ASGIApp,
        config: WeChatOAuthConfig | None = None,
        *,
        appid: str = "",
        secret: str = "",
        callback_path: str = "/wechat/callback",
        backend: Backend | None = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        fetch_profile: bool | None = None,
        result_ttl: float = 120.0,
        exchange_timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
        on_error: OnError | None = None,
        login_path: str | None = None,
        redirect_uri: str | None = None,
        default_scope: WeChatScope = "snsapi_base",
        trust_forwarded: bool = False,
        state_secret: str | bytes | None = None,
        verify_state: bool | None = None,
        state_max_age: float = 600.0,
        max_codes_per_state: int = 3,
        authorize_base_url: str = DEFAULT_AUTHORIZE_BASE_URL,
        nonce_cookie: str = "wechat_oauth_nonce",
        connect_redirect: bool = True,
        on_invalid_code: InvalidCodeAction | None = None,
        snapshot_users: SnapshotPolicy = "allow",
        counters: Counters | None = None,
        error_pages: ErrorPages | None = DEFAULT_ERROR_PAGES,
        login_loop_limit: int | None = 5,
        login_loop_window: float = 120.0,
        website_appid: str | None = None,
        website_secret: str | None = None,
        apps: Mapping[str, str] | None = None,
        resolve_app: AppResolver | None = None,
        jssdk_path: str | None = None,
        jssdk_origins: tuple[str, ...] = (),
        token_keeper: AccessTokenKeeper | None = None,
        desktop_login: DesktopLogin = "handoff",
        handoff_ttl: float = 120.0,
    ) -> None:
        # The keywords are WeChatOAuthConfig's fields, spelled out so that type checkers (and
        # Starlette's ``Middleware(cls, **options)``) check them; the config validates them.
        config = WeChatOAuthConfig.chosen(config, locals())
        super().__init__(app, config)
        self.appid = config.appid
        self.fetch_profile = config.fetch_profile
        self.snapshot_users = config.snapshot_users
        self._key_prefix = f"{config.appid}:".encode()
        #: Each official account's client (one, or one per ``apps``).
        self.clients = {
            appid: self._client(appid, secret)
            for appid, secret in (config.apps or {config.appid: config.secret}).items()
        }
        #: The official account's client (with ``apps``, the first one's).
        self.client = next(iter(self.clients.values()))
        #: The website app's own client, with its own secret: used only for its codes.
        self.website_client = (
            self._client(config.website_appid, config.website_secret)
            if config.website_appid and config.website_secret
            else None
        )
        if config.apps and config.resolve_app is not None:
            sites = {appid: self._site_of(appid, secret) for appid, secret in config.apps.items()}
            self._sites = Sites(config.resolve_app, sites.get, limit=len(sites))
        #: A desktop's login handed over from a phone (None: the QR page moves it to the phone).
        self._handoffs = self._handoff_endpoints()
        #: ``jssdk_path``'s endpoint; ``jssdk.tickets`` keeps the jsapi_ticket.
        self.jssdk = JsSdkEndpoint.of(self) if config.jssdk_path else None

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        jssdk = self.jssdk
        if jssdk is not None and scope["type"] == "http" and matches(scope, jssdk.paths):
            await jssdk(scope, receive, send)
            return
        await super()._serve(scope, receive, send)

    def _client(self, appid: str, secret: str) -> WeChatOAuthClient:
        config = self.config
        return WeChatOAuthClient(
            appid,
            secret,
            api_base_url=config.api_base_url,
            http_client=config.http_client,
            timeout=config.exchange_timeout,
        )

    def _site_of(self, appid: str, secret: str) -> Site:
        """One of ``apps``: its states signed with a key of its own."""
        config = self.config
        key = config.state_key if config.state_secret is not None else derive_state_secret(secret)
        signer = signer_for(key, appid, max_age=config.state_max_age)
        return Site(appid, signer, self._login_endpoint(appid, signer), f"{appid}:".encode())

    def _login_endpoint(
        self, appid: str | None = None, signer: StateSigner | None = None
    ) -> LoginEndpoint:
        config = self.config
        return LoginEndpoint(
            appid=config.appid if appid is None else appid,
            signer=self._signer if signer is None else signer,
            callback_path=config.callback_path,
            login_path=config.login_path or "",
            redirect_uri=config.redirect_uri,
            default_scope=config.default_scope,
            trust_forwarded=config.trust_forwarded,
            authorize_base_url=config.authorize_base_url,
            cookie_name=config.nonce_cookie,
            connect_redirect=config.connect_redirect,
            website_appid=config.website_appid,
        )

    def __repr__(self) -> str:
        apps = f"apps={sorted(self.clients)!r}" if self.config.apps else f"appid={self.appid!r}"
        return (
            f"WeChatOAuthMiddleware({apps}, callback_path={self.callback_path!r}, "
            f"backend={self.backend!r})"
        )

    async def aclose(self) -> None:
        if self.jssdk is not None:
            await self.jssdk.aclose()
        await super().aclose()
        for client in (*self.clients.values(), self.website_client):
            if client is not None and client is not self.client:
                await client.aclose()

    def _exchange_for(self, site: Site, verified: VerifiedState | None) -> tuple[bytes, Trade]:
        """The code is traded with the app the signed state says issued it (never guessed);
        the appid in the key keeps the two apps' codes apart."""
        if verified is None or not verified.website_app:
            if not site.appid:
                return site.key_prefix, self._trade
            return site.key_prefix, partial(self._trade_with, self.clients[site.appid])
        if self.website_client is None:
            # Signed by this site for a website app it no longer has (configuration changed
            # mid-login): no app here can trade the code.
            raise StateRejected(
                ErrorReason.INVALID_STATE, "The login was started elsewhere; please log in again."
            )
        key_prefix = f"{self.website_client.appid}:".encode()
        return key_prefix, partial(self._trade_with, self.website_client)

    def _start_login(self, scope: Scope) -> Answer:
        """The app this browser can log in with (official account in WeChat's browser, the
        website app elsewhere), the QR page of the login link, or WxLogin's parameters."""
        site = self._site(scope)
        login: LoginEndpoint = site.login
        query = login.read_query(scope)
        route = login.route(scope, query)
        if query.format == "wxlogin" and (route is None or route.scope != QR_LOGIN_SCOPE):
            raise InvalidCallbackRequest(
                ErrorReason.WXLOGIN_UNAVAILABLE, "WxLogin needs a website app (website_appid)."
            )
        handoffs = self._handoffs
        handoff = handoffs.phone_link_id(scope) if handoffs is not None else None
        if handoff is not None:
            return self._phone_login(scope, query, route, handoff)
        kept = KeptNexts(self.backend, site.appid or self.appid, self._signer.max_age)
        if (
            route is None
            and handoffs is not None
            and query.next_id is None
            and wants_html(scope)
            and not on_a_phone(scope)
        ):
            # A computer: the QR code of a login link bound to it, confirmed on the phone.
            return self._guarded(scope, partial(handoffs.desktop_page, scope, query))
        if route is None:
            # Only the official account logs in, and this is not WeChat's browser.
            if wants_html(scope) or wants_json(scope):
                link = login.link(scope, query)
                named = partial(login.link, scope, query)

                async def qr_page(send: Send) -> None:
                    # A long next is kept by the backend: the QR code holds a short link.
                    qr_link = await kept.qr_link(link, query.next, named)
                    await send_open_in_wechat(scope, send, qr_link)

                return qr_page
            # A program, not a browser: the redirect, as before.
            route = LoginRoute(login.appid, query.scope or login.default_scope, False)

        def answer(query: LoginQuery, route: LoginRoute) -> Answer:
            start = login.start(scope, query, route)
            if query.format == "wxlogin":
                options = wxlogin_params(start, query.element_id)

                async def wxlogin(send: Send) -> None:
                    await send_json(scope, send, options, (b"set-cookie", start.cookie.encode()))

                return wxlogin
            return redirect_answer(start.location, start.cookie)

        if query.next_id is None:
            return answer(query, route)
        next_id, found = query.next_id, route

        async def with_kept_next() -> Answer:
            # A QR page's link: its next is read from the backend, then the login starts.
            next_path = await kept.find(next_id)
            return answer(dataclasses.replace(query, next=next_path, next_id=None), found)

        return self._guarded(scope, with_kept_next, "login_refused")

    def _watch_answer(self, scope: Scope, send: Send) -> Send:
        return watch_the_answer(scope, send, self.callback_path, self._callback_paths)

    async def _trade(self, code: str, state: str | None, next_path: str | None) -> WeChatIdentity:
        return await self._trade_with(self.client, code, state, next_path)

    async def _trade_with(
        self, client: WeChatOAuthClient, code: str, state: str | None, next_path: str | None
    ) -> WeChatIdentity:
        deadline = anyio.current_time() + self.exchange_timeout
        token = await self._in_time(lambda: client.exchange_code(code))
        userinfo = None
        if self._wants_userinfo(token):
            userinfo = await self._fetch_userinfo(client, token, deadline)
        return WeChatIdentity.from_token(
            token, userinfo, state=state, next=next_path, appid=client.appid
        )
