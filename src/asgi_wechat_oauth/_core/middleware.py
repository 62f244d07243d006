"""The middleware every product is: its callback and login paths, everything else passed on.

A product subclasses :class:`OAuthMiddleware`, sets up its client, flight, signer and login
endpoint in ``__init__``, and says how to trade a code (``_trade``); the request handling is
this one class: the GET check, strict parsing, the state and its cookie, one exchange per
code, the replay guard, one re-authorization for an unusable code, logging and the error
answer.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, ClassVar
from urllib.parse import urlencode

from ..errors import UNUSABLE_CODE_REASONS, ErrorReason, LoginLoop, StateRejected, WeChatOAuthError
from .asgi import ASGIApp, Receive, Scope, Send
from .callback import CallbackParams, parse_callback_query
from .contract import Backend, Outcome, Result
from .cookies import cookie_name
from .counters import Counters
from .endpoints import failure_level, require_get, send_error, send_redirect
from .lifespan import serve_lifespan
from .login import LoginEndpoint
from .loops import COOKIE as LOOP_COOKIE
from .loops import LoginLoopGuard, check_loop_options, with_cookies
from .pages import ErrorPages, wants_html
from .paths import matches, remember, spellings
from .singleflight import SingleFlight, code_hash
from .state import StateSigner, UnverifiedState, VerifiedState, require_same_state

logger = logging.getLogger("asgi_wechat_oauth")

OnError = Callable[[Scope, WeChatOAuthError], "ASGIApp | None"]
#: Trades a code: ``(code, state, next_path) -> identity``.
Trade = Callable[[str, "str | None", "str | None"], Awaitable[Result]]
#: Sends a login endpoint's answer.
Answer = Callable[[Send], Awaitable[None]]


def redirect_answer(location: str, cookie: str) -> Answer:
    """The 302 to ``location`` that sets the login cookie."""

    async def answer(send: Send) -> None:
        await send_redirect(send, location, (b"set-cookie", cookie.encode()))

    return answer


def marking(app: ASGIApp, key: str, value: str) -> ASGIApp:
    """``app``, called with ``scope[key] = value`` set. A plain function that returns the app's
    awaitable: no coroutine of its own for every request."""

    def pass_on(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        scope[key] = value
        return app(scope, receive, send)

    return pass_on


class OAuthMiddleware:
    """Request handling shared by the products; subclasses set the attributes below."""

    #: Where the identity goes in the ASGI scope, and its type.
    scope_key: ClassVar[str]
    identity_type: ClassVar[type[Any]]
    #: The provider's name in messages, and the prefix of log events.
    provider: ClassVar[str]
    log_prefix: ClassVar[str]
    #: A scope key that tells the app's helpers where the login endpoint is (or None).
    login_path_key: ClassVar[str | None] = None

    callback_path: str
    login_path: str | None
    verify_state: bool
    #: Distinct codes one verified state may trade (a product may make it an option).
    max_codes_per_state: int = 3
    nonce_cookie: str
    on_invalid_code: str
    on_error: OnError | None
    error_pages: ErrorPages | None
    counters: Counters
    backend: Backend
    client: Any  # the product's client: closed with the middleware
    _flight: SingleFlight
    _signer: StateSigner
    _login: LoginEndpoint
    _key_prefix: bytes
    _callback_paths: tuple[str, ...]
    _login_paths: tuple[str, ...]
    _own_paths: tuple[str, ...]
    _exact_paths: frozenset[str]
    _app_paths: set[str]
    _remembering: bool
    #: What every request the app gets is told, for its login links (see login_url()).
    _login_mark: tuple[str, str] | None = None
    _app: ASGIApp
    _pass_on: ASGIApp
    _loops: LoginLoopGuard | None

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
        if self._login_mark is not None:  # for the app, and for on_error's answers too
            scope[self._login_mark[0]] = self._login_mark[1]
        if scope["type"] == "http":
            if matches(scope, self._callback_paths):
                await self._callback(scope, receive, send)
                return
            if self._login_paths and matches(scope, self._login_paths):
                await self._redirect_to_login(scope, receive, send)
                return
        await self._app(scope, receive, send)

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

    def _set_paths(self, callback_path: str, login_path: str | None) -> None:
        """The paths this middleware answers, each spelled with and without a trailing slash."""
        self._callback_paths = spellings(callback_path)
        self._login_paths = spellings(login_path)
        self._own_paths = self._callback_paths + self._login_paths
        self._exact_paths = frozenset(self._own_paths)
        #: The app's first paths: one of them is passed on after a set look-up.
        self._app_paths = set()
        self._remembering = True
        key = self.login_path_key
        self._login_mark = (key, login_path) if login_path and key else None
        self.app = self._app  # passed on with the mark, or without

    def _set_pages_and_loops(
        self, error_pages: ErrorPages | None, loop_limit: int | None, loop_window: float
    ) -> None:
        """Validate and set ``error_pages`` and the login loop guard (after ``login_path``)."""
        if error_pages is not None and not isinstance(error_pages, ErrorPages):
            raise ValueError("error_pages must be an ErrorPages or None")
        check_loop_options(loop_limit, loop_window)
        self.error_pages = error_pages
        self._loops = self._loop_guard(loop_limit, loop_window)

    def _loop_guard(self, limit: int | None, window: float) -> LoginLoopGuard | None:
        """The login loop guard (after ``login_path`` and the state signer), or None."""
        if not (self.login_path and limit):
            return None
        key = self._signer.derive(b"asgi-wechat-oauth/login-loops/v1")
        return LoginLoopGuard(limit=limit, window=window, key=key)

    def _read_loops(self, scope: Scope, path: str) -> tuple[str | None, list[str]]:
        """The login counter cookie, trusted only when sent once (see :mod:`.cookies`)."""
        return self._login.read_cookie(scope, LOOP_COOKIE, path)

    # --- what a product says ------------------------------------------------------------------

    async def _trade(self, code: str, state: str | None, next_path: str | None) -> Result:
        """Trade ``code`` for an identity carrying ``state`` and ``next_path``."""
        raise NotImplementedError

    def _exchange_for(self, verified: VerifiedState | None) -> tuple[bytes, Trade]:
        """The key prefix and the trade of the app that issued the callback's code: the
        product's one app, unless a product with several reads it from the signed state."""
        return self._key_prefix, self._trade

    def _start_login(self, scope: Scope) -> Answer:
        """The login endpoint's answer once the request passed the common checks: the 302 to
        the consent page with its cookie (a product may answer otherwise). Raises a
        :class:`WeChatOAuthError` for a login that cannot start."""
        location, cookie = self._login.redirect(scope)
        return redirect_answer(location, cookie)

    def _watch_answer(self, scope: Scope, send: Send) -> Send:
        """``send`` for the app's answer to a callback that got its identity (a product may
        check that the app really handled it)."""
        return send

    def _parse(self, query_string: bytes) -> CallbackParams:
        return parse_callback_query(query_string)

    def _admit(self, identity: Any, state: str | None) -> None:
        """Refuse an identity this request may not have (raises a 403 error)."""
        require_same_state(identity.state, state)

    # --- the callback -------------------------------------------------------------------------

    async def _callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        verified: VerifiedState | None = None
        key = None
        nonce: str | None = None
        outcome: Any
        if self.verify_state:
            # A login cookie sent twice (one tossed by a sibling site) is trusted in neither
            # copy; the answer expires the tossed ones, whatever it is.
            nonce, expiries = self._login.read_nonce(scope)
            send = with_cookies(send, *expiries)
        try:
            require_get(scope, f"The {self.provider} callback")
            params = self._parse(scope["query_string"])
            if self.verify_state:
                verified = self._signer.verify(params.state, nonce)
            key_prefix, trade = self._exchange_for(verified)
            key = hashlib.sha256(key_prefix + params.code.encode()).hexdigest()
            if verified is not None and not self._flight.knows(key):
                # A code in flight or answered here was counted by the request that traded
                # it, and will not reach the provider again: no round trip to count it.
                await self._count_code(params.state, key)
            next_path = verified.next if verified is not None else None
            outcome = self._narrow(
                await self._flight.run(key, partial(trade, params.code, params.state, next_path))
            )
            if not isinstance(outcome, WeChatOAuthError):
                self._admit(outcome, params.state)
        except WeChatOAuthError as exc:
            outcome = exc
        if not isinstance(outcome, WeChatOAuthError):
            scope[self.scope_key] = outcome
            if self._loops is not None:
                counter, expiries = self._read_loops(scope, self.callback_path)
                https = self._login.is_https(scope)
                name = cookie_name(LOOP_COOKIE, https=https)
                counted = self._loops.completed(counter, outcome.state, name=name, https=https)
                send = with_cookies(send, counted, *expiries)
            await self._app(scope, receive, self._watch_answer(scope, send))
            return
        # What a state we signed says, verified or not: enough to start that login again.
        signed = outcome.signed if isinstance(outcome, UnverifiedState) else verified
        if self._reauthorizes(scope, outcome, signed):
            assert signed is not None
            self.counters.reauthorized += 1
            logger.debug(
                "%s.reauthorize reason=%s code_hash=%s",
                self.log_prefix,
                outcome.reason,
                code_hash(key) if key else None,
            )
            await send_redirect(send, self._login_url(scope, signed, retry=True))
            return
        self.counters.errors[outcome.reason] += 1
        logger.log(
            failure_level(outcome, has_nonce_cookie=nonce is not None),
            "%s.callback_failed reason=%s status=%s code_hash=%s",
            self.log_prefix,
            outcome.reason,
            outcome.status_code,
            code_hash(key) if key else None,
        )
        await self._respond_error(scope, receive, send, outcome, signed)

    async def _count_code(self, state: str | None, key: str) -> None:
        """Refuse a code beyond ``max_codes_per_state`` distinct ones under one verified state
        (raises a 403 error): a valid state and cookie must not turn into any number of calls
        to the provider with made-up codes. Counted as long as the state is valid."""
        group = hashlib.sha256(self._key_prefix + b"state:" + str(state).encode()).hexdigest()
        ttl = self._signer.max_age + 60  # states from up to a minute ahead are accepted
        if not await self.backend.note_code(group, key, limit=self.max_codes_per_state, ttl=ttl):
            raise StateRejected(
                ErrorReason.TOO_MANY_CODES,
                "This login link was used too many times; please log in again.",
            )

    def _reauthorizes(
        self, scope: Scope, error: WeChatOAuthError, signed: VerifiedState | None
    ) -> bool:
        """Send the browser through login again, once, instead of an error: for a code that
        can never be traded (the state verified), or for a browser navigation whose state we
        signed but that expired or lost its cookie (no code is traded for it). Only with a
        state that says the scope and ``next`` and did not itself come from a re-authorization.
        """
        if self.on_invalid_code != "reauthorize" or signed is None or signed.retried:
            return False
        if isinstance(error, UnverifiedState):
            return scope["method"] == "GET" and wants_html(scope)
        return error.reason in UNUSABLE_CODE_REASONS

    def _login_url(self, scope: Scope, signed: VerifiedState | None, *, retry: bool) -> str:
        """The login endpoint (under ``root_path``), with the scope and ``next`` when known."""
        query = {"scope": signed.scope} if signed is not None else {}
        if retry:
            query["retry"] = "1"
        if signed is not None and signed.next:
            query["next"] = signed.next
        url = f"{scope.get('root_path', '')}{self.login_path}"
        return f"{url}?{urlencode(query)}" if query else url

    def _narrow(self, outcome: Outcome) -> Any:
        """Under this middleware's keys only its own identities are stored."""
        if isinstance(outcome, (self.identity_type, WeChatOAuthError)):
            return outcome
        raise TypeError(f"a {type(outcome).__name__} is stored under a {self.provider} key")

    async def _redirect_to_login(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            require_get(scope, "The login page")
            if self._loops is not None:
                counter, expiries = self._read_loops(scope, self.login_path or "/")
                send = with_cookies(send, *expiries)
                if self._loops.exceeded(counter):
                    raise LoginLoop(
                        ErrorReason.LOGIN_LOOP,
                        "This browser keeps logging in, but its session is not kept: "
                        "allow cookies and try again later.",
                    )
            answer = self._start_login(scope)
        except WeChatOAuthError as exc:
            self.counters.errors[exc.reason] += 1
            logger.info("%s.login_refused reason=%s", self.log_prefix, exc.reason)
            await self._respond_error(scope, receive, send, exc)
            return
        await answer(send)

    async def _respond_error(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: WeChatOAuthError,
        signed: VerifiedState | None = None,
    ) -> None:
        """``on_error``'s answer; else a page for a browser, JSON for anyone else."""
        if self.on_error is not None:
            replacement = self.on_error(scope, error)
            if replacement is not None:
                await replacement(scope, receive, send)
                return
        login_href = self._login_url(scope, signed, retry=False) if self.login_path else None
        await send_error(scope, send, error, pages=self.error_pages, login_href=login_href)
