"""The ASGI middleware: intercept the login POST, trade its code once, hand on the session."""

from __future__ import annotations

from functools import partial

import httpx

from .._core.apiclient import DEFAULT_API_BASE_URL
from .._core.asgi import ASGIApp, Receive, Scope, Send
from .._core.base import Middleware
from .._core.counters import Counters
from .._core.singleflight import MINIPROGRAM_NAMESPACE, flight_key
from ..backends import Backend
from ..errors import ErrorReason, MethodNotAllowed, WeChatOAuthError
from ._body import parse_body, read_body, replaying
from ._client import MiniProgramClient
from ._config import Duplicates, MiniProgramConfig
from ._duplicates import holder, idempotency_key, take
from ._identity import MiniProgramIdentity

#: Where the app finds the login body's fields (all but the code), JSON or form alike.
FIELDS_KEY = "wechat_fields"
#: How much longer than its session a hand-out is remembered: past the flight's own bound.
_HANDOUT_GRACE = 60.0


class MiniProgramMiddleware(Middleware):
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

    config_type = MiniProgramConfig
    scope_key = "wechat"
    identity_type = MiniProgramIdentity
    provider = "WeChat"
    log_prefix = "wechat_miniprogram"
    allow = b"POST"
    config: MiniProgramConfig
    client: MiniProgramClient

    def __init__(
        self,
        app: ASGIApp,
        config: MiniProgramConfig | None = None,
        *,
        appid: str = "",
        secret: str = "",
        login_path: str = "/wechat/miniprogram/login",
        backend: Backend | None = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        result_ttl: float = 120.0,
        exchange_timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
        counters: Counters | None = None,
        duplicates: Duplicates = "share",
    ) -> None:
        # The keywords are MiniProgramConfig's fields, spelled out for type checkers (and
        # Starlette's ``Middleware(cls, **options)``); the config validates them.
        config = MiniProgramConfig.chosen(config, locals())
        super().__init__(app, config)
        self.appid = config.appid
        self.login_path = config.login_path
        self.duplicates = config.duplicates
        self._answer_at(config.login_path)
        self.client = MiniProgramClient(
            config.appid,
            config.secret,
            api_base_url=config.api_base_url,
            http_client=config.http_client,
            timeout=config.exchange_timeout,
        )

    def __repr__(self) -> str:
        return (
            f"MiniProgramMiddleware(appid={self.appid!r}, login_path={self.login_path!r}, "
            f"duplicates={self.duplicates!r}, backend={self.backend!r})"
        )

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._login(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        key, body = None, b""
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(
                    ErrorReason.METHOD_NOT_ALLOWED, "The login endpoint accepts POST only."
                )
            received = await read_body(scope, receive)
            if received is None:
                return  # the client left before sending its body: nobody to answer
            body = received
            code, fields = parse_body(scope, body)
            # Checked before the exchange: bad input never reaches WeChat.
            retry_of = idempotency_key(scope) if self.duplicates == "reject" else None
            key = flight_key(MINIPROGRAM_NAMESPACE, self.appid, code)
            outcome = self._narrow(await self._flight.run(key, partial(self._trade, code)))
            if isinstance(outcome, MiniProgramIdentity) and self.duplicates == "reject":
                await take(self.backend, key, holder(retry_of), ttl=self._handout_ttl())
        except WeChatOAuthError as exc:
            outcome = exc
        if isinstance(outcome, WeChatOAuthError):
            self._failed("login_failed", outcome, key)
            await self._respond_error(scope, receive, send, outcome)
            return
        scope[self.scope_key] = outcome
        scope[FIELDS_KEY] = fields
        await self.app(scope, replaying(body, receive), send)

    def _handout_ttl(self) -> float:
        """How long a hand-out is remembered: the session is stored within the flight's bound
        of the first hand-out and kept ``result_ttl``; the hand-out outlives every copy."""
        flight_bound = self.exchange_timeout + self.backend.lease_ttl
        return self._flight.result_ttl + flight_bound + _HANDOUT_GRACE

    async def _trade(self, code: str) -> MiniProgramIdentity:
        return await self._in_time(lambda: self.client.code2session(code))
