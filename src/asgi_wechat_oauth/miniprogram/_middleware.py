"""The ASGI middleware: intercept the login POST, trade its code once, hand on the session."""

from __future__ import annotations

import logging
from functools import partial
from typing import Literal, get_args

import anyio
import httpx

from .._core.apiclient import DEFAULT_API_BASE_URL
from .._core.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    send_json,
)
from .._core.counters import Counters
from .._core.lifespan import serve_lifespan
from .._core.paths import matches, spellings
from .._core.singleflight import MINIPROGRAM_NAMESPACE, SingleFlight, code_hash, flight_key
from ..backends import Backend, MemoryBackend, check_lease
from ..errors import (
    CredentialsRejected,
    ErrorReason,
    InvalidCallbackRequest,
    MethodNotAllowed,
    RiskyUserRejected,
    UpstreamError,
    UpstreamTimeout,
    WeChatOAuthError,
)
from ._body import parse_body, read_body, replaying
from ._client import MiniProgramClient
from ._duplicates import holder, idempotency_key, take
from ._identity import MiniProgramIdentity

logger = logging.getLogger("asgi_wechat_oauth")

#: Where the app finds the login body's fields (all but the code), JSON or form alike.
FIELDS_KEY = "wechat_fields"
#: What a request with a code whose session another request was given gets: ``"share"`` the
#: same session (for ``result_ttl``), ``"reject"`` 400 ``code_used``.
Duplicates = Literal["share", "reject"]
#: How much longer than its session a hand-out is remembered: past the flight's own bound.
_HANDOUT_GRACE = 60.0


class MiniProgramMiddleware:
    """Trade each ``wx.login()`` code once, however many requests carry it.

    A ``POST`` to ``login_path`` with ``{"code": "..."}`` (JSON, or a form) has its code traded
    at ``sns/jscode2session``; the :class:`MiniProgramIdentity` is put in ``scope["wechat"]``,
    the body's other fields in ``scope["wechat_fields"]`` (a dict, whichever the client sent),
    and the app is called with the body replayed. Concurrent and late duplicates of the code (a
    retried request, two pages logging in at once) share that one exchange, across workers with
    a shared backend; with ``duplicates="reject"`` only one request (and its retries, by their
    ``Idempotency-Key``) is given the session. Everything else passes through untouched; errors
    are JSON.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        appid: str,
        secret: str,
        login_path: str = "/wechat/miniprogram/login",
        backend: Backend | None = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        result_ttl: float = 120.0,
        exchange_timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
        counters: Counters | None = None,
        duplicates: Duplicates = "share",
    ) -> None:
        if not appid or not secret:
            raise ValueError("appid and secret are required")
        if not login_path.startswith("/"):
            raise ValueError("login_path must start with '/'")
        if not result_ttl >= 0:  # NaN too
            raise ValueError("result_ttl must not be negative")
        if not exchange_timeout > 0:
            raise ValueError("exchange_timeout must be positive")
        if duplicates not in get_args(Duplicates):
            raise ValueError(f"duplicates must be 'share' or 'reject', got {duplicates!r}")
        self.app = app
        self.appid = appid
        self.login_path = login_path
        self._login_paths = spellings(login_path)
        self.exchange_timeout = exchange_timeout
        self.duplicates = duplicates
        self.backend: Backend = backend if backend is not None else MemoryBackend()
        check_lease(self.backend, exchange_timeout, "exchange_timeout")
        self.counters = counters if counters is not None else Counters()
        self.client = MiniProgramClient(
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

    def __repr__(self) -> str:
        return (
            f"MiniProgramMiddleware(appid={self.appid!r}, login_path={self.login_path!r}, "
            f"duplicates={self.duplicates!r}, backend={self.backend!r})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and matches(scope, self._login_paths):
            await self._login(scope, receive, send)
        elif scope["type"] == "lifespan":
            await serve_lifespan(self.app, scope, receive, send, self.aclose)
        else:
            await self.app(scope, receive, send)

    async def aclose(self) -> None:
        """Let exchanges in flight finish (bounded), then close the owned HTTP client and the
        backend. Called on lifespan shutdown; call it yourself when there is no lifespan."""
        await self._flight.runner.drain(timeout=self.exchange_timeout)
        await self.client.aclose()
        await self.backend.aclose()

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = None
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(
                    ErrorReason.METHOD_NOT_ALLOWED, "The login endpoint accepts POST only."
                )
            body = await read_body(scope, receive)
            if body is None:
                return  # the client left before sending its body: nobody to answer
            code, fields = parse_body(scope, body)
            # Checked before the exchange: bad input never reaches WeChat.
            retry_of = idempotency_key(scope) if self.duplicates == "reject" else None
            key = flight_key(MINIPROGRAM_NAMESPACE, self.appid, code)
            outcome = await self._flight.run(key, partial(self._trade, code))
            if isinstance(outcome, MiniProgramIdentity) and self.duplicates == "reject":
                await take(self.backend, key, holder(retry_of), ttl=self._handout_ttl())
        except WeChatOAuthError as exc:
            await self._respond_error(scope, send, exc, key)
            return
        if isinstance(outcome, MiniProgramIdentity):
            scope["wechat"] = outcome
            scope[FIELDS_KEY] = fields
            await self.app(scope, replaying(body, receive), send)
        elif isinstance(outcome, WeChatOAuthError):
            await self._respond_error(scope, send, outcome, key)
        else:
            raise TypeError(f"a {type(outcome).__name__} is stored under a mini-program key")

    def _handout_ttl(self) -> float:
        """How long a hand-out is remembered: the session is stored within the flight's bound
        of the first hand-out and kept ``result_ttl``; the hand-out outlives every copy."""
        flight_bound = self.exchange_timeout + self.backend.lease_ttl
        return self._flight.result_ttl + flight_bound + _HANDOUT_GRACE

    async def _respond_error(
        self, scope: Scope, send: Send, error: WeChatOAuthError, key: str | None
    ) -> None:
        self.counters.errors[error.reason] += 1
        logger.log(
            _failure_level(error),
            "wechat_miniprogram.login_failed reason=%s status=%s code_hash=%s",
            error.reason,
            error.status_code,
            code_hash(key) if key else None,
        )
        headers = []
        if isinstance(error, MethodNotAllowed):
            headers.append((b"allow", b"POST"))
        if error.retry_after is not None:
            headers.append((b"retry-after", str(error.retry_after).encode()))
        payload = {"error": error.reason, "message": error.message}
        await send_json(send, error.status_code, payload, headers, head=scope["method"] == "HEAD")

    async def _trade(self, code: str) -> MiniProgramIdentity:
        with anyio.move_on_after(self.exchange_timeout):
            try:
                return await self.client.code2session(code)
            except UpstreamError as exc:
                if exc.errcode != -1:
                    raise
            return await self.client.code2session(code)  # -1 "busy": one retry, then fail
        raise UpstreamTimeout(ErrorReason.UPSTREAM_TIMEOUT, "WeChat did not answer in time.")


def _failure_level(error: WeChatOAuthError) -> int:
    """Only failures a user sees for no fault of their own log at WARNING."""
    if isinstance(error, (UpstreamError, CredentialsRejected)):
        return logging.DEBUG  # the exchange's own record already said it, once
    if isinstance(error, (InvalidCallbackRequest, RiskyUserRejected)):
        return logging.INFO  # bad input, or WeChat's verdict on the user
    return logging.WARNING
