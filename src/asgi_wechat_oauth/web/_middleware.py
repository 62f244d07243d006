"""The ASGI middleware: intercept the callback, trade its code once, hand on the identity."""

from __future__ import annotations

import dataclasses
import logging
from functools import partial

import anyio
import httpx

from .._core.apiclient import DEFAULT_API_BASE_URL
from .._core.asgi import ASGIApp, Scope, Send
from .._core.counters import Counters
from .._core.middleware import Answer, OAuthMiddleware, Trade, redirect_answer
from .._core.options import InvalidCodeAction, OnError
from .._core.pages import DEFAULT_ERROR_PAGES, ErrorPages, wants_html
from .._core.state import VerifiedState
from ..backends import Backend
from ..errors import (
    ErrorReason,
    InvalidCallbackRequest,
    SnapshotUserRejected,
    StateRejected,
    WeChatOAuthError,
)
from ._authorize import DEFAULT_AUTHORIZE_BASE_URL, QR_LOGIN_SCOPE
from ._browsers import LoginRoute
from ._client import WeChatOAuthClient
from ._config import DesktopLogin, SnapshotPolicy, WeChatOAuthConfig, WeChatScope
from ._handoff_routes import HandoffRoutes
from ._identity import AccessToken, UserInfo, WeChatIdentity
from ._kept import KeptNexts, bodiless_request
from ._links import LOGIN_PATH_KEY
from ._login import LoginEndpoint, LoginQuery, wxlogin_params
from ._qrpage import on_a_phone, send_json, send_open_in_wechat, wants_json
from ._unhandled import watch_the_answer

logger = logging.getLogger("asgi_wechat_oauth")

#: Scopes whose grant lets the app read ``sns/userinfo``.
USERINFO_SCOPES = frozenset({"snsapi_userinfo", "snsapi_login"})


class WeChatOAuthMiddleware(HandoffRoutes, OAuthMiddleware):
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
        self.client = self._client(config.appid, config.secret)
        #: The website app's own client, with its own secret: used only for its codes.
        self.website_client = (
            self._client(config.website_appid, config.website_secret)
            if config.website_appid and config.website_secret
            else None
        )
        #: A desktop's login handed over from a phone (None: the QR page moves it to the phone).
        self._handoffs = self._handoff_endpoints()

    def _client(self, appid: str, secret: str) -> WeChatOAuthClient:
        config = self.config
        return WeChatOAuthClient(
            appid,
            secret,
            api_base_url=config.api_base_url,
            http_client=config.http_client,
            timeout=config.exchange_timeout,
        )

    def _login_endpoint(self) -> LoginEndpoint:
        config = self.config
        return LoginEndpoint(
            appid=config.appid,
            signer=self._signer,
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
        return (
            f"WeChatOAuthMiddleware(appid={self.appid!r}, callback_path={self.callback_path!r}, "
            f"backend={self.backend!r})"
        )

    async def aclose(self) -> None:
        await super().aclose()
        if self.website_client is not None:
            await self.website_client.aclose()

    def _exchange_for(self, verified: VerifiedState | None) -> tuple[bytes, Trade]:
        """The code is traded with the app the signed state says issued it (never guessed);
        the appid in the key keeps the two apps' codes apart."""
        if verified is None or not verified.website_app:
            return self._key_prefix, self._trade
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
        query = self._login.read_query(scope)
        route = self._login.route(scope, query)
        if query.format == "wxlogin" and (route is None or route.scope != QR_LOGIN_SCOPE):
            raise InvalidCallbackRequest(
                ErrorReason.WXLOGIN_UNAVAILABLE, "WxLogin needs a website app (website_appid)."
            )
        handoffs = self._handoffs
        handoff = handoffs.phone_link_id(scope) if handoffs is not None else None
        if handoff is not None:
            return self._phone_login(scope, query, route, handoff)
        kept = KeptNexts(self.backend, self.appid, self._signer.max_age)
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
                link = self._login.link(scope, query)
                named = partial(self._login.link, scope, query)

                async def qr_page(send: Send) -> None:
                    # A long next is kept by the backend: the QR code holds a short link.
                    qr_link = await kept.qr_link(link, query.next, named)
                    await send_open_in_wechat(scope, send, qr_link)

                return qr_page
            # A program, not a browser: the redirect, as before.
            route = LoginRoute(self.appid, query.scope or self._login.default_scope, False)

        def answer(query: LoginQuery, route: LoginRoute) -> Answer:
            start = self._login.start(scope, query, route)
            if query.format == "wxlogin":
                options = wxlogin_params(start, query.element_id)

                async def wxlogin(send: Send) -> None:
                    await send_json(scope, send, options, (b"set-cookie", start.cookie.encode()))

                return wxlogin
            return redirect_answer(start.location, start.cookie)

        if query.next_id is None:
            return answer(query, route)
        next_id, found = query.next_id, route

        async def with_kept_next(send: Send) -> None:
            # A QR page's link: its next is read from the backend, then the login starts.
            try:
                next_path = await kept.find(next_id)
                resolved = answer(dataclasses.replace(query, next=next_path, next_id=None), found)
            except WeChatOAuthError as exc:  # refused as _redirect_to_login refuses a login
                self.counters.errors[exc.reason] += 1
                logger.info("%s.login_refused reason=%s", self.log_prefix, exc.reason)
                await self._respond_error(scope, bodiless_request(), send, exc)
                return
            await resolved(send)

        return with_kept_next

    def _watch_answer(self, scope: Scope, send: Send) -> Send:
        return watch_the_answer(scope, send, self.callback_path, self._callback_paths)

    def _admit(self, identity: WeChatIdentity, state: str | None) -> None:
        super()._admit(identity, state)
        if identity.is_snapshotuser and self.snapshot_users == "reject":
            raise SnapshotUserRejected(
                ErrorReason.SNAPSHOT_USER,
                "This page is open in WeChat's snapshot mode. Tap the button at the bottom to "
                "use the full service, then log in again.",
            )

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

    async def _fetch_userinfo(
        self, client: WeChatOAuthClient, token: AccessToken, deadline: float
    ) -> UserInfo | None:
        """The profile, or None: the code is spent by now, so failing the login would lose it
        for good. The app gets the tokens and can fetch the profile later."""
        reason, errcode = "upstream_timeout", None
        with anyio.move_on_after(deadline - anyio.current_time()):
            try:
                info = await client.get_userinfo(token.access_token, token.openid)
            except WeChatOAuthError as exc:  # any errcode, 40029 included: not the code's fate
                reason, errcode = exc.reason, exc.errcode
            except Exception as exc:  # whatever it is, it must not lose the login now
                reason = f"unexpected_{type(exc).__name__}"
            else:
                if info.openid == token.openid:
                    return info
                reason = "openid_mismatch"  # another user's profile: never attach it
        logger.warning("wechat_oauth.userinfo_unavailable reason=%s errcode=%s", reason, errcode)
        return None

    def _wants_userinfo(self, token: AccessToken) -> bool:
        if self.fetch_profile is not None:
            return self.fetch_profile
        return bool(token.scopes & USERINFO_SCOPES)
