"""The ASGI middleware: intercept the callback, trade its code once, hand on the identity."""

from __future__ import annotations

import logging
from typing import Literal

import anyio
import httpx

from .._core.apiclient import DEFAULT_API_BASE_URL
from .._core.asgi import ASGIApp
from .._core.counters import Counters
from .._core.errors import SnapshotUserRejected, UpstreamError, UpstreamTimeout
from .._core.login import check_login_options
from .._core.middleware import OAuthMiddleware, OnError
from .._core.pages import ErrorPages
from .._core.singleflight import SingleFlight
from .._core.state import StateSigner, derive_state_secret
from .._core.upstream import once_more_if_busy
from ..backends import Backend, MemoryBackend
from ._authorize import DEFAULT_AUTHORIZE_BASE_URL, SCOPES
from ._client import WeChatOAuthClient
from ._identity import AccessToken, UserInfo, WeChatIdentity
from ._login import LoginEndpoint

logger = logging.getLogger("asgi_wechat_oauth")

#: Scopes whose grant lets the app read ``sns/userinfo``.
USERINFO_SCOPES = frozenset({"snsapi_userinfo", "snsapi_login"})

#: The built-in pages: Simplified Chinese or English, the default texts and look.
DEFAULT_ERROR_PAGES = ErrorPages()


class WeChatOAuthMiddleware(OAuthMiddleware):
    """Trade each WeChat OAuth code once, however many callbacks carry it.

    Requests to ``callback_path`` (GET or HEAD) have their ``code`` traded for an identity that
    is put in ``scope["wechat"]`` before the app is called; concurrent and late duplicates of
    the same code share that one exchange. With ``login_path`` set, a GET there redirects to
    WeChat's consent page with a signed state bound to the browser by a cookie, and callbacks
    are verified against it. Everything else passes through untouched.
    """

    scope_key = "wechat"
    identity_type = WeChatIdentity
    provider = "WeChat"
    log_prefix = "wechat_oauth"
    client: WeChatOAuthClient

    def __init__(
        self,
        app: ASGIApp,
        *,
        appid: str,
        secret: str,
        callback_path: str = "/wechat/callback",
        backend: Backend | None = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        fetch_userinfo: bool | None = None,
        result_ttl: float = 120.0,
        exchange_timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
        on_error: OnError | None = None,
        login_path: str | None = None,
        redirect_uri: str | None = None,
        default_scope: str = "snsapi_base",
        trust_forwarded: bool = False,
        state_secret: str | bytes | None = None,
        verify_state: bool | None = None,
        state_max_age: float = 600.0,
        authorize_base_url: str = DEFAULT_AUTHORIZE_BASE_URL,
        nonce_cookie: str = "wechat_oauth_nonce",
        connect_redirect: bool = True,
        on_invalid_code: Literal["reauthorize", "error"] | None = None,
        snapshot_users: Literal["allow", "reject"] = "allow",
        counters: Counters | None = None,
        error_pages: ErrorPages | None = DEFAULT_ERROR_PAGES,
        login_loop_limit: int | None = 5,
        login_loop_window: float = 120.0,
    ) -> None:
        if not appid:
            raise ValueError("appid is required")
        if not secret:
            raise ValueError("secret is required")
        if result_ttl < 0:
            raise ValueError("result_ttl must not be negative")
        if exchange_timeout <= 0:
            raise ValueError("exchange_timeout must be positive")
        if default_scope not in SCOPES:
            raise ValueError(f"default_scope must be one of {sorted(SCOPES)}")
        verify_state, on_invalid_code = check_login_options(
            callback_path=callback_path,
            login_path=login_path,
            verify_state=verify_state,
            on_invalid_code=on_invalid_code,
            redirect_uri=redirect_uri,
            state_max_age=state_max_age,
            nonce_cookie=nonce_cookie,
        )
        if snapshot_users not in ("allow", "reject"):
            raise ValueError("snapshot_users must be 'allow' or 'reject'")
        self.app = app
        self.appid = appid
        self.callback_path = callback_path
        self.fetch_userinfo = fetch_userinfo
        self.exchange_timeout = exchange_timeout
        self.on_error = on_error
        self.backend: Backend = backend if backend is not None else MemoryBackend()
        self.counters = counters if counters is not None else Counters()
        self.client = WeChatOAuthClient(
            appid,
            secret,
            api_base_url=api_base_url,
            http_client=http_client,
            timeout=exchange_timeout,
        )
        self._flight = SingleFlight(
            self.backend,
            exchange_timeout=exchange_timeout,
            result_ttl=result_ttl,
            counters=self.counters,
        )
        self._key_prefix = f"{appid}:".encode()
        self.login_path = login_path
        self._own_paths = (callback_path, login_path) if login_path else (callback_path,)
        self.on_invalid_code = on_invalid_code
        self.snapshot_users = snapshot_users
        self.verify_state = verify_state
        self.nonce_cookie = nonce_cookie
        self._set_pages_and_loops(error_pages, login_loop_limit, login_loop_window)
        if isinstance(state_secret, str):
            state_secret = state_secret.encode()
        if state_secret is None:
            state_secret = derive_state_secret(secret)
        self._signer = StateSigner(state_secret, max_age=state_max_age)
        self._login = LoginEndpoint(
            appid=appid,
            signer=self._signer,
            callback_path=callback_path,
            redirect_uri=redirect_uri,
            default_scope=default_scope,
            trust_forwarded=trust_forwarded,
            authorize_base_url=authorize_base_url,
            cookie_name=nonce_cookie,
            connect_redirect=connect_redirect,
        )

    def __repr__(self) -> str:
        return (
            f"WeChatOAuthMiddleware(appid={self.appid!r}, callback_path={self.callback_path!r}, "
            f"backend={self.backend!r})"
        )

    def _admit(self, identity: WeChatIdentity, state: str | None) -> None:
        super()._admit(identity, state)
        if identity.is_snapshotuser and self.snapshot_users == "reject":
            raise SnapshotUserRejected(
                "snapshot_user",
                "This page is open in WeChat's snapshot mode. Tap the button at the bottom to "
                "use the full service, then log in again.",
            )

    async def _trade(self, code: str, state: str | None, next_path: str | None) -> WeChatIdentity:
        deadline = anyio.current_time() + self.exchange_timeout
        token: AccessToken | None = None
        with anyio.move_on_after(self.exchange_timeout):
            token = await once_more_if_busy(lambda: self.client.exchange_code(code))
        if token is None:
            raise UpstreamTimeout("upstream_timeout", "WeChat did not answer in time.")
        userinfo = None
        if self._wants_userinfo(token):
            userinfo = await self._fetch_userinfo(token, deadline)
        return WeChatIdentity.from_token(token, userinfo, state=state, next=next_path)

    async def _fetch_userinfo(self, token: AccessToken, deadline: float) -> UserInfo | None:
        """The profile, or None: the code is spent by now, so failing the login would lose it
        for good. The app gets the tokens and can fetch the profile later."""
        reason, errcode = "upstream_timeout", None
        with anyio.move_on_after(deadline - anyio.current_time()):
            try:
                return await self.client.get_userinfo(token.access_token, token.openid)
            except UpstreamError as exc:
                reason, errcode = exc.reason, exc.errcode
        logger.warning("wechat_oauth.userinfo_unavailable reason=%s errcode=%s", reason, errcode)
        return None

    def _wants_userinfo(self, token: AccessToken) -> bool:
        if self.fetch_userinfo is not None:
            return self.fetch_userinfo
        return bool(token.scopes & USERINFO_SCOPES)
