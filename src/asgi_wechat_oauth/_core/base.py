"""The base of every product's middleware, built from its config.

:class:`Middleware` holds what every product shares: the config (given, or built from the
constructor's keywords, a misspelt one answered with the name meant), the backend, the
counters, one flight per code, the paths it answers (everything else passed on after a set
look-up), lifespan and ``aclose``, the exchange's time bound and busy retry, the log line and
the answer of a failed request. A product adds its endpoint (``_serve``), its identity and its
client.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any, ClassVar, TypeVar

import anyio

from ..errors import ErrorReason, InvalidConfig, UpstreamTimeout, WeChatOAuthError
from .asgi import ASGIApp, Receive, Scope, Send
from .contract import Backend, Outcome
from .counters import Counters
from .endpoints import failure_level, send_error
from .lifespan import serve_lifespan
from .options import OnError, Options, keyword_problems, unknown
from .pages import ErrorPages
from .paths import remember, spellings
from .singleflight import SingleFlight, code_hash
from .upstream import once_more_if_busy

logger = logging.getLogger("asgi_wechat_oauth")
_T = TypeVar("_T")
_M = TypeVar("_M", bound="Middleware")


def marking(app: ASGIApp, key: str, value: str) -> ASGIApp:
    """``app``, called with ``scope[key] = value`` set. A plain function that returns the app's
    awaitable: no coroutine of its own for every request."""

    def pass_on(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        scope[key] = value
        return app(scope, receive, send)

    return pass_on


class Middleware:
    """What every product's middleware is; a product sets the class attributes below, and its
    constructor takes ``config=`` or the same options as keywords (checked at import: see
    :meth:`__init_subclass__`)."""

    #: The product's options; its constructor's keywords are their fields.
    config_type: ClassVar[type[Options]]
    #: Where the identity goes in the ASGI scope, and its type.
    scope_key: ClassVar[str]
    identity_type: ClassVar[type[Any]]
    #: The provider's name in messages, and the prefix of log events.
    provider: ClassVar[str]
    log_prefix: ClassVar[str]
    #: The methods the endpoint takes, for a 405's ``Allow``.
    allow: ClassVar[bytes] = b"GET, HEAD"

    config: Options
    backend: Backend
    counters: Counters
    exchange_timeout: float
    client: Any  # the product's client: closed with the middleware
    on_error: OnError | None = None
    error_pages: ErrorPages | None = None
    _flight: SingleFlight
    _own_paths: tuple[str, ...]
    _exact_paths: frozenset[str]
    _app_paths: set[str]
    _remembering: bool
    #: What every request the app gets is told, for its login links (see login_url()).
    _login_mark: tuple[str, str] | None = None
    _app: ASGIApp
    _pass_on: ASGIApp

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A product's constructor must take its config's options as keywords, with the same
        defaults: an option added to the config and not to the constructor fails at import."""
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__ and hasattr(cls, "config_type"):
            problems = keyword_problems(inspect.signature(cls.__init__), cls.config_type)
            if problems:
                raise TypeError(f"{cls.__name__}.__init__: {'; '.join(problems)}")

    def __new__(cls: type[_M], *args: Any, **options: Any) -> _M:
        # A misspelt keyword gets the name meant, not the bare TypeError of __init__'s binding
        # (checked here, not with a ``**misspelt`` in the signature, which would stop type
        # checkers from matching the class to Starlette's ``Middleware(cls, **options)``).
        names = {"app", "config"} | {option.name for option in fields(cls.config_type)}
        problems = [
            unknown(cls.config_type, name, "option") for name in options if name not in names
        ]
        if problems:
            raise InvalidConfig(problems)
        return super().__new__(cls)

    def __init__(self, app: ASGIApp, config: Options) -> None:
        self.config = config
        self.app = app
        self.exchange_timeout = config.exchange_timeout
        self.backend = config.new_backend()
        self.counters = config.counters if config.counters is not None else Counters()
        self._flight = SingleFlight(
            self.backend,
            exchange_timeout=config.exchange_timeout,
            result_ttl=config.result_ttl,
            counters=self.counters,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # This runs for every request of the app. The common case, one of the app's paths
        # remembered (see remember()), costs a subscript and a set look-up: about what
        # comparing the path with one string costs. Only lifespan scopes have no path;
        # websocket ones are told apart by their type once the path matched.
        try:
            path = scope["path"]
        except KeyError:
            if scope["type"] == "lifespan":
                await serve_lifespan(self.app, scope, receive, send, self.aclose)
                return
            path = ""
        if path in self._app_paths:
            await self._pass_on(scope, receive, send)
            return
        # Ours: one of our paths, or (when the server puts root_path in front) ending with one.
        if path not in self._exact_paths:
            try:
                root_path = scope["root_path"]
            except KeyError:  # optional in the ASGI spec, though servers send it
                root_path = ""
            if not (root_path and path.endswith(self._own_paths)):
                if self._remembering:
                    self._remembering = remember(self._app_paths, path, self._own_paths)
                await self._pass_on(scope, receive, send)
                return
        await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request for one of our paths (or ending with one, under a ``root_path``)."""
        raise NotImplementedError

    @property
    def app(self) -> ASGIApp:
        """The app behind the middleware."""
        return self._app

    @app.setter
    def app(self, app: ASGIApp) -> None:
        self._app = app
        # Requests passed on are told the login path by a plain function in front of the app.
        mark = self._login_mark
        self._pass_on = app if mark is None else marking(app, mark[0], mark[1])

    async def aclose(self) -> None:
        """Let exchanges in flight finish (bounded), then close the owned HTTP client and the
        backend. Called on lifespan shutdown; call it yourself when there is no lifespan."""
        await self._flight.runner.drain(timeout=self._flight.exchange_timeout)
        await self.client.aclose()
        await self.backend.aclose()

    def _answer_at(self, *paths: str | None) -> None:
        """The paths this middleware answers, each spelled with and without a trailing slash."""
        self._own_paths = spellings(*paths)
        self._exact_paths = frozenset(self._own_paths)
        #: The app's first paths: one of them is passed on after a set look-up.
        self._app_paths = set()
        self._remembering = True

    async def _in_time(self, call: Callable[[], Awaitable[_T]], *, busy_retry: bool = True) -> _T:
        """``call()`` within ``exchange_timeout``, once more if the provider answered busy
        (unless the client retries each call itself); :class:`UpstreamTimeout` past the bound."""
        with anyio.move_on_after(self.exchange_timeout):
            return await (once_more_if_busy(call) if busy_retry else call())
        raise UpstreamTimeout(
            ErrorReason.UPSTREAM_TIMEOUT, f"{self.provider} did not answer in time."
        )

    def _failed(
        self, event: str, error: WeChatOAuthError, key: str | None, *, nonce: bool = False
    ) -> None:
        """Count and log a failed request (``nonce``: it carried a login cookie)."""
        self.counters.errors[error.reason] += 1
        logger.log(
            failure_level(error, has_nonce_cookie=nonce),
            "%s.%s reason=%s status=%s code_hash=%s",
            self.log_prefix,
            event,
            error.reason,
            error.status_code,
            code_hash(key) if key else None,
        )

    async def _respond_error(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: WeChatOAuthError,
        login_href: str | None = None,
    ) -> None:
        """``on_error``'s answer; else a page for a browser (with ``error_pages``), JSON for
        anyone else."""
        if self.on_error is not None:
            replacement = self.on_error(scope, error)
            if replacement is not None:
                await replacement(scope, receive, send)
                return
        await send_error(
            scope, send, error, pages=self.error_pages, login_href=login_href, allow=self.allow
        )

    def _narrow(self, outcome: Outcome) -> Any:
        """Under this middleware's keys only its own identities are stored."""
        if isinstance(outcome, (self.identity_type, WeChatOAuthError)):
            return outcome
        raise TypeError(f"a {type(outcome).__name__} is stored under a {self.provider} key")
