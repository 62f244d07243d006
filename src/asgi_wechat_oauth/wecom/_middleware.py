"""The WeCom middleware: the shared request handling of ``_core.middleware`` with WeCom's
login pages, its ``auth/getuserinfo`` exchange, and a declined QR login told apart."""

from __future__ import annotations

import dataclasses
import logging
from urllib.parse import parse_qsl

import anyio
import httpx

from .._core.apiclient import WECOM_API_BASE_URL
from .._core.asgi import ASGIApp
from .._core.callback import CallbackParams, parse_callback_query
from .._core.counters import Counters
from .._core.middleware import OAuthMiddleware
from .._core.options import InvalidCodeAction, OnError
from .._core.pages import ErrorPages
from .._core.sites import Site
from ..backends import Backend
from ..errors import (
    ErrorReason,
    InvalidCallbackRequest,
    LoginDeclined,
    WeChatOAuthError,
)
from ..tokens import AccessTokenKeeper
from ._authorize import DEFAULT_AUTHORIZE_BASE_URL, DEFAULT_QR_LOGIN_BASE_URL
from ._client import WeComOAuthClient
from ._config import WeComOAuthConfig, WeComScope
from ._identity import WeComIdentity, WeComUserDetail
from ._login import WeComLoginEndpoint
from ._pages import DEFAULT_WECOM_ERROR_PAGES

logger = logging.getLogger("asgi_wechat_oauth")


class WeComOAuthMiddleware(OAuthMiddleware):
    """Trade each WeCom login code once, however many callbacks carry it.

    Requests to ``callback_path`` have their code traded at ``auth/getuserinfo`` (with the
    corp token, one per app across all workers sharing ``backend``) for a
    :class:`WeComIdentity` put in ``scope["wecom"]``; duplicates share that one exchange. With
    ``login_path`` set, a GET there redirects to WeCom's authorize page (inside WeCom's browser)
    or its QR login page (elsewhere), with a signed state bound to the browser by a cookie.
    """

    config_type = WeComOAuthConfig
    scope_key = "wecom"
    identity_type = WeComIdentity
    provider = "WeCom"
    log_prefix = "wecom_oauth"
    config: WeComOAuthConfig
    client: WeComOAuthClient

    def __init__(
        self,
        app: ASGIApp,
        config: WeComOAuthConfig | None = None,
        *,
        corpid: str = "",
        agentid: str = "",
        secret: str = "",
        callback_path: str = "/wecom/callback",
        login_path: str | None = None,
        backend: Backend | None = None,
        fetch_profile: bool = False,
        default_scope: WeComScope = "snsapi_base",
        redirect_uri: str | None = None,
        trust_forwarded: bool = False,
        state_secret: str | bytes | None = None,
        verify_state: bool | None = None,
        state_max_age: float = 600.0,
        max_codes_per_state: int = 3,
        nonce_cookie: str = "wecom_oauth_nonce",
        on_invalid_code: InvalidCodeAction | None = None,
        result_ttl: float = 120.0,
        exchange_timeout: float = 10.0,
        api_base_url: str = WECOM_API_BASE_URL,
        authorize_base_url: str = DEFAULT_AUTHORIZE_BASE_URL,
        qr_login_base_url: str = DEFAULT_QR_LOGIN_BASE_URL,
        http_client: httpx.AsyncClient | None = None,
        token_keeper: AccessTokenKeeper | None = None,
        on_error: OnError | None = None,
        counters: Counters | None = None,
        error_pages: ErrorPages | None = DEFAULT_WECOM_ERROR_PAGES,
        login_loop_limit: int | None = 5,
        login_loop_window: float = 120.0,
    ) -> None:
        # The keywords are WeComOAuthConfig's fields, spelled out for type checkers (and
        # Starlette's ``Middleware(cls, **options)``); the config validates them.
        config = WeComOAuthConfig.chosen(config, locals())
        super().__init__(app, config)
        self.fetch_profile = config.fetch_profile
        self._key_prefix = f"wecom:{config.corpid}:{config.agentid}:".encode()
        self.client = WeComOAuthClient(
            config.corpid,
            config.agentid,
            config.secret,
            backend=self.backend,
            api_base_url=config.api_base_url,
            http_client=config.http_client,
            timeout=config.exchange_timeout,
            token_keeper=config.token_keeper,
        )

    def _login_endpoint(self) -> WeComLoginEndpoint:
        config = self.config
        return WeComLoginEndpoint(
            corpid=config.corpid,
            agentid=config.agentid,
            signer=self._signer,
            callback_path=config.callback_path,
            redirect_uri=config.redirect_uri,
            default_scope=config.default_scope,
            trust_forwarded=config.trust_forwarded,
            cookie_name=config.nonce_cookie,
            authorize_base_url=config.authorize_base_url,
            qr_login_base_url=config.qr_login_base_url,
        )

    def __repr__(self) -> str:
        return (
            f"WeComOAuthMiddleware(corpid={self.client.corpid!r}, "
            f"agentid={self.client.agentid!r}, backend={self.backend!r})"
        )

    @property
    def token_keeper(self) -> AccessTokenKeeper:
        """The corp token keeper: use it for the app's other WeCom API calls."""
        return self.client.token_keeper

    def _parse(self, site: Site, query_string: bytes) -> CallbackParams:
        return _parse_wecom(query_string)

    async def _trade(self, code: str, state: str | None, next_path: str | None) -> WeComIdentity:
        deadline = anyio.current_time() + self.exchange_timeout
        # The client retries a busy answer itself, within the corp token's call.
        identity = await self._in_time(lambda: self.client.get_identity(code), busy_retry=False)
        detail = None
        if self.fetch_profile and identity.user_ticket:
            detail = await self._fetch_detail(identity.user_ticket, identity.userid, deadline)
        return dataclasses.replace(identity, detail=detail, state=state, next=next_path)

    async def _fetch_detail(
        self, user_ticket: str, userid: str | None, deadline: float
    ) -> WeComUserDetail | None:
        """The details of member ``userid``, or None: the code is spent by now, so failing the
        login would lose it; the identity keeps the ticket for a later try."""
        reason, errcode = "upstream_timeout", None
        with anyio.move_on_after(deadline - anyio.current_time()):
            try:
                detail = await self.client.get_user_detail(user_ticket)
            except WeChatOAuthError as exc:  # any errcode (60020 too): not the code's fate
                reason, errcode = exc.reason, exc.errcode
            else:
                if detail.userid == userid:
                    return detail
                reason = "userid_mismatch"  # another member's details: never attach them
        logger.warning("wecom_oauth.user_detail_unavailable reason=%s errcode=%s", reason, errcode)
        return None


def _parse_wecom(query_string: bytes) -> CallbackParams:
    """The callback's code and state; a declined QR login (state, no code) is said so."""
    try:
        return parse_callback_query(query_string)
    except InvalidCallbackRequest as exc:
        if exc.reason == "missing_code" and _has_state(query_string):
            raise LoginDeclined(
                ErrorReason.LOGIN_DECLINED,
                "The login was declined in WeCom. Log in again to continue.",
            ) from None
        raise


def _has_state(query_string: bytes) -> bool:
    pairs = parse_qsl(query_string.decode("latin-1"), max_num_fields=64)
    return any(name == "state" and value for name, value in pairs)
