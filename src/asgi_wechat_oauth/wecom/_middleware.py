"""The WeCom middleware: the web middleware's flow over the same core, with WeCom's endpoints."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from functools import partial
from typing import Literal
from urllib.parse import parse_qsl

import anyio
import httpx

from .._core.asgi import ASGIApp, Message, Receive, Scope, Send
from .._core.callback import CallbackParams, parse_callback_query
from .._core.counters import Counters
from .._core.endpoints import failure_level, matches, require_get, send_error, send_redirect
from .._core.errors import (
    InvalidCallbackRequest,
    LoginDeclined,
    UpstreamError,
    UpstreamTimeout,
    WeChatOAuthError,
)
from .._core.login import login_again_url, should_reauthorize
from .._core.singleflight import SingleFlight, code_hash
from .._core.state import (
    StateSigner,
    VerifiedState,
    derive_state_secret,
    read_cookie,
    require_same_state,
)
from ..backends import Backend, MemoryBackend, Outcome
from ..tokens import AccessTokenKeeper
from ..tokens._fetchers import WECOM_API_BASE_URL
from ._authorize import DEFAULT_AUTHORIZE_BASE_URL, DEFAULT_QR_LOGIN_BASE_URL, SCOPES
from ._client import WeComOAuthClient
from ._identity import WeComIdentity, WeComUserDetail
from ._login import WeComLoginEndpoint

logger = logging.getLogger("asgi_wechat_oauth")


class WeComOAuthMiddleware:
    """Trade each WeCom login code once, however many callbacks carry it.

    Requests to ``callback_path`` have their code traded at ``auth/getuserinfo`` (with the
    corp token, one per app across all workers sharing ``backend``) for a
    :class:`WeComIdentity` put in ``scope["wecom"]``; duplicates share that one exchange. With
    ``login_path`` set, a GET there redirects to WeCom's authorize page (inside WeCom's browser)
    or its QR login page (elsewhere), with a signed state bound to the browser by a cookie.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        corpid: str,
        agentid: str,
        secret: str,
        callback_path: str = "/wecom/callback",
        login_path: str | None = None,
        backend: Backend | None = None,
        fetch_user_detail: bool = False,
        default_scope: str = "snsapi_base",
        redirect_uri: str | None = None,
        trust_forwarded: bool = False,
        state_secret: str | bytes | None = None,
        verify_state: bool | None = None,
        state_max_age: float = 600.0,
        nonce_cookie: str = "wecom_oauth_nonce",
        on_invalid_code: Literal["reauthorize", "error"] | None = None,
        result_ttl: float = 120.0,
        exchange_timeout: float = 10.0,
        api_base_url: str = WECOM_API_BASE_URL,
        authorize_base_url: str = DEFAULT_AUTHORIZE_BASE_URL,
        qr_login_base_url: str = DEFAULT_QR_LOGIN_BASE_URL,
        http_client: httpx.AsyncClient | None = None,
        token_keeper: AccessTokenKeeper | None = None,
        counters: Counters | None = None,
    ) -> None:
        if not callback_path.startswith("/"):
            raise ValueError("callback_path must start with '/'")
        if login_path is not None and (
            not login_path.startswith("/") or login_path == callback_path
        ):
            raise ValueError("login_path must start with '/' and differ from callback_path")
        if verify_state is None:
            verify_state = login_path is not None
        if verify_state and login_path is None:
            raise ValueError("verify_state needs login_path: the login endpoint sets the cookie")
        if on_invalid_code is None:
            on_invalid_code = "reauthorize" if login_path is not None else "error"
        if on_invalid_code not in ("reauthorize", "error"):
            raise ValueError("on_invalid_code must be 'reauthorize' or 'error'")
        if on_invalid_code == "reauthorize" and login_path is None:
            raise ValueError("on_invalid_code='reauthorize' needs login_path")
        if default_scope not in SCOPES:
            raise ValueError(f"default_scope must be one of {sorted(SCOPES)}")
        if redirect_uri is not None and not redirect_uri.startswith(("https://", "http://")):
            raise ValueError("redirect_uri must be an absolute http(s) URL")
        if result_ttl < 0 or exchange_timeout <= 0 or state_max_age <= 0:
            raise ValueError("result_ttl, exchange_timeout and state_max_age must be positive")
        if not nonce_cookie or not nonce_cookie.isascii() or not nonce_cookie.isidentifier():
            raise ValueError("nonce_cookie must be a plain ASCII name")
        self.app = app
        self.callback_path = callback_path
        self.login_path = login_path
        self.fetch_user_detail = fetch_user_detail
        self.verify_state = verify_state
        self.nonce_cookie = nonce_cookie
        self.on_invalid_code = on_invalid_code
        self.exchange_timeout = exchange_timeout
        self.backend: Backend = backend if backend is not None else MemoryBackend()
        self.counters = counters if counters is not None else Counters()
        self.client = WeComOAuthClient(
            corpid,
            agentid,
            secret,
            backend=self.backend,
            api_base_url=api_base_url,
            http_client=http_client,
            timeout=exchange_timeout,
            tokens=token_keeper,
        )
        self._flight = SingleFlight(
            self.backend,
            exchange_timeout=exchange_timeout,
            result_ttl=result_ttl,
            counters=self.counters,
        )
        self._key_prefix = f"wecom:{corpid}:{agentid}:".encode()
        self._own_paths = (callback_path, login_path) if login_path else (callback_path,)
        if isinstance(state_secret, str):
            state_secret = state_secret.encode()
        self._signer = StateSigner(
            state_secret or derive_state_secret(secret), max_age=state_max_age
        )
        self._login = WeComLoginEndpoint(
            corpid=corpid,
            agentid=agentid,
            signer=self._signer,
            callback_path=callback_path,
            redirect_uri=redirect_uri,
            default_scope=default_scope,
            trust_forwarded=trust_forwarded,
            cookie_name=nonce_cookie,
            authorize_base_url=authorize_base_url,
            qr_login_base_url=qr_login_base_url,
        )

    def __repr__(self) -> str:
        return (
            f"WeComOAuthMiddleware(corpid={self.client.corpid!r}, "
            f"agentid={self.client.agentid!r}, backend={self.backend!r})"
        )

    @property
    def token_keeper(self) -> AccessTokenKeeper:
        """The corp token keeper: use it for the app's other WeCom API calls."""
        return self.client.tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith(self._own_paths):
            if matches(scope, self.callback_path):
                await self._callback(scope, receive, send)
                return
            if self.login_path and matches(scope, self.login_path):
                await self._redirect_to_wecom(scope, send)
                return
        elif scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        await self.app(scope, receive, send)

    async def aclose(self) -> None:
        """Let exchanges in flight finish (bounded), then close the client, its token keeper
        and the backend. Called on lifespan shutdown."""
        await self._flight.runner.drain(timeout=self.exchange_timeout)
        await self.client.aclose()
        await self.backend.aclose()

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def send_wrapper(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.aclose()
            await send(message)

        return send_wrapper

    async def _callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        verified: VerifiedState | None = None
        key = None
        outcome: WeComIdentity | WeChatOAuthError
        try:
            require_get(scope, "The WeCom callback")
            params = _parse(scope["query_string"])
            if self.verify_state:
                nonce = read_cookie(scope, self.nonce_cookie)
                verified = self._signer.verify(params.state, nonce)
            key = hashlib.sha256(self._key_prefix + params.code.encode()).hexdigest()
            next_path = verified.next if verified is not None else None
            trade = partial(self._trade, params.code, params.state, next_path)
            outcome = _wecom_outcome(await self._flight.run(key, trade))
            if isinstance(outcome, WeComIdentity):
                require_same_state(outcome.state, params.state)
        except WeChatOAuthError as exc:
            outcome = exc
        if isinstance(outcome, WeComIdentity):
            scope["wecom"] = outcome
            await self.app(scope, receive, send)
        elif should_reauthorize(outcome, verified, enabled=self.on_invalid_code == "reauthorize"):
            assert verified is not None and key is not None and self.login_path is not None
            self.counters.reauthorized += 1
            logger.debug(
                "wecom_oauth.reauthorize reason=%s code_hash=%s", outcome.reason, code_hash(key)
            )
            await send_redirect(send, login_again_url(scope, self.login_path, verified))
        else:
            self.counters.errors[outcome.reason] += 1
            has_cookie = read_cookie(scope, self.nonce_cookie) is not None
            logger.log(
                failure_level(outcome, has_nonce_cookie=has_cookie),
                "wecom_oauth.callback_failed reason=%s status=%s code_hash=%s",
                outcome.reason,
                outcome.status_code,
                code_hash(key) if key else None,
            )
            await send_error(scope, send, outcome)

    async def _redirect_to_wecom(self, scope: Scope, send: Send) -> None:
        try:
            require_get(scope, "The login page")
            location, cookie = self._login.redirect(scope)
        except WeChatOAuthError as exc:
            self.counters.errors[exc.reason] += 1
            logger.info("wecom_oauth.login_refused reason=%s", exc.reason)
            await send_error(scope, send, exc)
            return
        await send_redirect(send, location, (b"set-cookie", cookie.encode()))

    async def _trade(self, code: str, state: str | None, next_path: str | None) -> WeComIdentity:
        deadline = anyio.current_time() + self.exchange_timeout
        identity: WeComIdentity | None = None
        with anyio.move_on_after(self.exchange_timeout):
            identity = await self.client.get_identity(code)
        if identity is None:
            raise UpstreamTimeout("upstream_timeout", "WeCom did not answer in time.")
        detail = None
        if self.fetch_user_detail and identity.user_ticket:
            detail = await self._fetch_detail(identity.user_ticket, deadline)
        return dataclasses.replace(identity, detail=detail, state=state, next=next_path)

    async def _fetch_detail(self, user_ticket: str, deadline: float) -> WeComUserDetail | None:
        """The member's details, or None: the code is spent by now, so failing the login would
        lose it; the identity keeps the ticket for a later try."""
        reason, errcode = "upstream_timeout", None
        with anyio.move_on_after(deadline - anyio.current_time()):
            try:
                return await self.client.get_user_detail(user_ticket)
            except UpstreamError as exc:
                reason, errcode = exc.reason, exc.errcode
        logger.warning("wecom_oauth.user_detail_unavailable reason=%s errcode=%s", reason, errcode)
        return None


def _parse(query_string: bytes) -> CallbackParams:
    """The callback's code and state; a declined QR login (state, no code) is said so."""
    try:
        return parse_callback_query(query_string)
    except InvalidCallbackRequest as exc:
        if exc.reason == "missing_code" and _has_state(query_string):
            raise LoginDeclined(
                "login_declined", "The login was declined in WeCom. Log in again to continue."
            ) from None
        raise


def _has_state(query_string: bytes) -> bool:
    pairs = parse_qsl(query_string.decode("latin-1"), max_num_fields=64)
    return any(name == "state" and value for name, value in pairs)


def _wecom_outcome(outcome: Outcome) -> WeComIdentity | WeChatOAuthError:
    """Narrow a flight's outcome: under this middleware's keys only WeCom identities are stored."""
    if isinstance(outcome, (WeComIdentity, WeChatOAuthError)):
        return outcome
    raise TypeError(f"a {type(outcome).__name__} is stored under a WeCom key")
