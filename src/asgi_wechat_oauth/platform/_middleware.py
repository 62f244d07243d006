"""The third-party platform's middleware: the ticket push, and web login on behalf of the
official accounts that authorized the platform, each code traded once."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import anyio
import httpx

from .._core.apiclient import DEFAULT_API_BASE_URL
from .._core.asgi import ASGIApp, Receive, Scope, Send
from .._core.callback import CallbackParams, form_pairs, parse_callback_query
from .._core.counters import Counters
from .._core.middleware import OAuthMiddleware, Trade
from .._core.options import InvalidCodeAction, OnError
from .._core.pages import DEFAULT_ERROR_PAGES, ErrorPages
from .._core.paths import matches, spellings
from .._core.sites import Site, Sites, one_app, signer_for
from .._core.state import StateSigner, VerifiedState
from ..backends import Backend
from ..errors import ErrorReason, StateRejected, WeChatOAuthError
from ..tokens import AccessTokenKeeper
from ..web import AccessToken, WeChatIdentity
from ..web._authorize import DEFAULT_AUTHORIZE_BASE_URL
from ..web._links import LOGIN_PATH_KEY
from ..web._sns import SnsLogin
from ._client import ComponentOAuthClient
from ._component import ComponentTokenFetcher, ticket_pending
from ._config import Authorizer, PlatformOAuthConfig, PlatformScope
from ._crypto import MessageCrypto
from ._login import PlatformLoginEndpoint
from ._ticket import TicketEndpoint
from ._tickets import TicketStore

logger = logging.getLogger("asgi_wechat_oauth")


class PlatformOAuthMiddleware(SnsLogin, OAuthMiddleware):
    """Log users in on behalf of the official accounts that authorized a third-party platform.

    ``ticket_path`` takes WeChat's ``component_verify_ticket`` pushes (kept in ``backend``, so
    every worker sharing it has the ticket); the ``component_access_token`` is fetched once
    for all of them by an :class:`~asgi_wechat_oauth.tokens.AccessTokenKeeper`. ``login_path``
    sends the user to the consent page of the request's authorizer (``authorizer``: an AppID,
    or a function of the scope), and the callback's code is traded once per (authorizer, code)
    at ``sns/oauth2/component/access_token``, however many callbacks carry it. The identity, a
    :class:`~asgi_wechat_oauth.WeChatIdentity` whose ``appid`` is the authorizer, goes in
    ``scope["wechat"]``. Until the first ticket arrives, logins get a 503
    ``platform_ticket_pending`` (a page or JSON) and one log line says why.
    """

    config_type = PlatformOAuthConfig
    scope_key = "wechat"
    identity_type = WeChatIdentity
    provider = "WeChat"
    log_prefix = "wechat_platform"
    login_path_key = LOGIN_PATH_KEY
    extra_paths = ("ticket_path",)
    allow = b"GET, HEAD"
    config: PlatformOAuthConfig
    client: ComponentOAuthClient

    def __init__(
        self,
        app: ASGIApp,
        config: PlatformOAuthConfig | None = None,
        *,
        component_appid: str = "",
        component_secret: str = "",
        token: str = "",
        encoding_aes_key: str = "",
        authorizer: Authorizer = "",
        ticket_path: str = "/wechat/platform/ticket",
        callback_path: str = "/wechat/platform/callback",
        login_path: str | None = None,
        backend: Backend | None = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        http_client: httpx.AsyncClient | None = None,
        fetch_profile: bool | None = None,
        result_ttl: float = 120.0,
        exchange_timeout: float = 10.0,
        on_error: OnError | None = None,
        redirect_uri: str | None = None,
        default_scope: PlatformScope = "snsapi_base",
        trust_forwarded: bool = False,
        state_secret: str | bytes | None = None,
        verify_state: bool | None = None,
        state_max_age: float = 600.0,
        max_codes_per_state: int = 3,
        authorize_base_url: str = DEFAULT_AUTHORIZE_BASE_URL,
        nonce_cookie: str = "wechat_platform_nonce",
        connect_redirect: bool = True,
        on_invalid_code: InvalidCodeAction | None = None,
        snapshot_users: Any = "allow",
        counters: Counters | None = None,
        error_pages: ErrorPages | None = DEFAULT_ERROR_PAGES,
        login_loop_limit: int | None = 5,
        login_loop_window: float = 120.0,
    ) -> None:
        config = PlatformOAuthConfig.chosen(config, locals())
        super().__init__(app, config)
        self.component_appid = config.component_appid
        self.fetch_profile = config.fetch_profile
        self.snapshot_users = config.snapshot_users
        self._key_prefix = b""  # every code is keyed by its authorizer (see _site_of)
        #: Where the ticket WeChat pushes is kept: every worker sharing ``backend`` reads it.
        self.tickets = TicketStore(self.backend, config.component_appid)
        crypto = MessageCrypto(config.token, config.encoding_aes_key, config.component_appid)
        self.ticket_endpoint = TicketEndpoint(crypto=crypto, tickets=self.tickets)
        #: The ``component_access_token``, fetched once for every worker sharing ``backend``.
        self.token_keeper = AccessTokenKeeper(
            ComponentTokenFetcher(
                config.component_appid,
                config.component_secret,
                self.tickets,
                api_base_url=config.api_base_url,
                http_client=config.http_client,
                timeout=config.exchange_timeout,
            ),
            backend=self.backend,
            exchange_timeout=config.exchange_timeout,
        )
        self.client = ComponentOAuthClient(
            config.component_appid,
            config.component_secret,
            api_base_url=config.api_base_url,
            http_client=config.http_client,
            timeout=config.exchange_timeout,
        )
        fixed = config.fixed_authorizer
        resolve = one_app(fixed) if fixed is not None else config.authorizer
        self._sites = Sites(resolve, self._site_of)  # type: ignore[arg-type]
        self._ticket_paths = spellings(config.ticket_path)
        #: Whether this process has seen a ticket (then a login needs no look-up for it), and
        #: what the last look-up said, and the look-up in flight.
        self._ticket_seen = False
        self._no_ticket = False
        self._checking: anyio.Event | None = None
        self._pending_logged = False

    def __repr__(self) -> str:
        return (
            f"PlatformOAuthMiddleware(component_appid={self.component_appid!r}, "
            f"callback_path={self.callback_path!r}, backend={self.backend!r})"
        )

    async def aclose(self) -> None:
        await super().aclose()
        await self.token_keeper.aclose()

    def _site_of(self, authorizer: str) -> Site | None:
        """The authorizer's site: its states signed with a key of its own, its codes keyed
        under its AppID."""
        if authorizer == self.component_appid:
            return None  # the platform itself has no consent page
        config = self.config
        signer = signer_for(config.state_key, authorizer, max_age=config.state_max_age)
        login = self._login_endpoint(authorizer, signer)
        return Site(authorizer, signer, login, f"component:{authorizer}:".encode())

    def _login_endpoint(
        self, authorizer: str | None = None, signer: StateSigner | None = None
    ) -> PlatformLoginEndpoint:
        """An authorizer's login endpoint; without one, what the callback reads the login
        cookie with (each authorizer's own starts the logins)."""
        config = self.config
        return PlatformLoginEndpoint(
            authorizer=authorizer or config.component_appid,
            component_appid=config.component_appid,
            authorize_base_url=config.authorize_base_url,
            connect_redirect=config.connect_redirect,
            signer=signer or self._signer,
            callback_path=config.callback_path,
            redirect_uri=config.redirect_uri,
            default_scope=config.default_scope,
            trust_forwarded=config.trust_forwarded,
            cookie_name=config.nonce_cookie,
        )

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if matches(scope, self._ticket_paths):
                await self.ticket_endpoint(scope, receive, send)
                return
            if (
                self._login_paths
                and matches(scope, self._login_paths)
                and not await self._has_ticket()
            ):
                error = ticket_pending()
                self.counters.errors[error.reason] += 1
                await self._respond_error(scope, receive, send, error)
                return
        await super()._serve(scope, receive, send)

    async def _has_ticket(self) -> bool:
        """Whether a ticket has arrived: looked up until this process has seen one (the
        component token's own fetch says if it lapses later), once for all the logins that
        ask at the same moment. A backend that cannot tell now lets the login go on (the
        callback answers for it); a backend that says none refuses it. While waiting, each
        refused login logs one line: a WARNING the first time, then at DEBUG."""
        if self._ticket_seen:
            return True
        checking = self._checking
        if checking is not None:
            await checking.wait()
        else:
            self._checking = anyio.Event()
            try:
                self._ticket_seen = await self.tickets.current() is not None
                self._no_ticket = not self._ticket_seen
            except WeChatOAuthError:
                self._no_ticket = False
            finally:
                done, self._checking = self._checking, None
                done.set()
        if self._no_ticket:
            logger.log(
                logging.DEBUG if self._pending_logged else logging.WARNING,
                "wechat_platform.ticket_pending component_appid=%s: the platform waits for "
                "WeChat's component_verify_ticket push (every 10 minutes) at %s; logins get "
                "503 until it arrives",
                self.component_appid,
                self.config.ticket_path,
            )
            self._pending_logged = True
        return not self._no_ticket

    def _parse(self, site: Site, query_string: bytes) -> CallbackParams:
        """The callback names its authorizer (``appid``): it must be this request's."""
        params = parse_callback_query(query_string)
        named = [value for name, value in form_pairs(query_string) if name == "appid"]
        if named != [site.appid]:
            raise StateRejected(
                ErrorReason.APP_MISMATCH,
                "This login belongs to another official account; please log in again.",
            )
        return params

    def _exchange_for(self, site: Site, verified: VerifiedState | None) -> tuple[bytes, Trade]:
        return site.key_prefix, partial(self._trade_for, site.appid)

    async def _trade(self, code: str, state: str | None, next_path: str | None) -> Any:
        raise NotImplementedError("a platform's codes are traded per authorizer")

    async def _trade_for(
        self, authorizer: str, code: str, state: str | None, next_path: str | None
    ) -> WeChatIdentity:
        deadline = anyio.current_time() + self.exchange_timeout

        async def exchange() -> AccessToken:
            return await self.token_keeper.call(
                partial(self.client.exchange_component_code, authorizer, code)
            )

        token = await self._in_time(exchange)
        userinfo = None
        if self._wants_userinfo(token):
            userinfo = await self._fetch_userinfo(self.client, token, deadline)
        return WeChatIdentity.from_token(
            token, userinfo, state=state, next=next_path, appid=authorizer
        )
