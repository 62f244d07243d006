"""The middleware of a product whose users come back to a callback from a consent page that
a login endpoint sends them to (WeChat's web login, WeCom's).

:class:`OAuthMiddleware` adds to :class:`.base.Middleware` the callback and the login page: the
state signer and its cookie, the GET check and strict parsing, one exchange per code, the
replay guard, one re-authorization for an unusable code, the login loop guard, logging and the
error pages. A product's constructor builds its config and calls the base; it says how to
trade a code (``_trade``) and builds its login endpoint (``_login_endpoint``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, ClassVar
from urllib.parse import urlencode

from ..errors import ErrorReason, LoginLoop, StateRejected, WeChatOAuthError
from .asgi import ASGIApp, Receive, Scope, Send
from .base import Middleware
from .callback import CallbackParams, form_pairs, parse_callback_query
from .contract import Result
from .cookies import cookie_name
from .endpoints import require_get, send_redirect
from .errcodes import UNUSABLE_CODE_REASONS
from .login import LoginEndpoint
from .loops import COOKIE as LOOP_COOKIE
from .loops import LoginLoopGuard, with_cookies
from .oauth_options import OAuthOptions
from .pages import wants_html
from .paths import matches, spellings
from .singleflight import code_hash
from .sites import Site, Sites
from .state import StateSigner, UnverifiedState, VerifiedState, require_same_state

logger = logging.getLogger("asgi_wechat_oauth")

#: Trades a code: ``(code, state, next_path) -> identity``.
Trade = Callable[[str, "str | None", "str | None"], Awaitable[Result]]
#: Sends a login endpoint's answer.
Answer = Callable[[Send], Awaitable[None]]
#: A callback without a code: its page logs in again to the state's ``next``.
_NO_CODE = frozenset({ErrorReason.MISSING_CODE, ErrorReason.LOGIN_DECLINED})


def redirect_answer(location: str, cookie: str) -> Answer:
    """The 302 to ``location`` that sets the login cookie."""

    async def answer(send: Send) -> None:
        await send_redirect(send, location, (b"set-cookie", cookie.encode()))

    return answer


class OAuthMiddleware(Middleware):
    """A product whose users come back to a callback, sent from a login page: the request
    handling of both, from an :class:`OAuthOptions`."""

    #: A scope key that tells the app's helpers where the login endpoint is (or None).
    login_path_key: ClassVar[str | None] = None
    #: The product's other path options (the JS-SDK's, the ticket push's): answered too.
    extra_paths: ClassVar[tuple[str, ...]] = ()

    config: OAuthOptions
    callback_path: str
    login_path: str | None
    verify_state: bool
    max_codes_per_state: int
    nonce_cookie: str
    on_invalid_code: str
    _signer: StateSigner
    _login: LoginEndpoint
    _key_prefix: bytes
    _callback_paths: tuple[str, ...]
    _login_paths: tuple[str, ...]
    _loops: LoginLoopGuard | None
    #: The apps of a middleware that serves several, picked per request; None: one app.
    _sites: Sites | None = None
    _one_site: Site | None = None

    def __init__(self, app: ASGIApp, config: OAuthOptions) -> None:
        super().__init__(app, config)
        self.callback_path = config.callback_path
        self.login_path = config.login_path
        self.verify_state = config.resolved_verify_state
        self.on_invalid_code = config.resolved_on_invalid_code
        self.max_codes_per_state = config.max_codes_per_state
        self.nonce_cookie = config.nonce_cookie
        self.on_error = config.on_error
        self.error_pages = config.error_pages
        self._signer = StateSigner(config.state_key, max_age=config.state_max_age)
        self._set_paths(config.callback_path, config.login_path)
        self._loops = self._loop_guard(config.login_loop_limit, config.login_loop_window)
        self._login = self._login_endpoint()

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
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

    def _set_paths(self, callback_path: str, login_path: str | None) -> None:
        self._callback_paths = spellings(callback_path)
        self._login_paths = spellings(login_path)
        extra = (getattr(self.config, option) for option in self.extra_paths)
        self._answer_at(callback_path, login_path, *extra)
        key = self.login_path_key
        self._login_mark = (key, login_path) if login_path and key else None
        self.app = self._app  # passed on with the mark, or without

    def _loop_guard(self, limit: int | None, window: float) -> LoginLoopGuard | None:
        """The login loop guard (after ``login_path`` and the state signer), or None."""
        if not (self.login_path and limit):
            return None
        key = self._signer.derive(b"asgi-wechat-oauth/login-loops/v1")
        return LoginLoopGuard(limit=limit, window=window, key=key, ours=[self.nonce_cookie])

    def _read_loops(self, scope: Scope, path: str) -> tuple[str | None, list[str]]:
        """The login counter cookie, trusted only when sent once (see :mod:`.cookies`)."""
        return self._login.read_cookie(scope, LOOP_COOKIE, path)

    # --- what a product says ------------------------------------------------------------------

    def _login_endpoint(self) -> LoginEndpoint:
        """The product's login endpoint, from ``self.config`` and ``self._signer``."""
        raise NotImplementedError

    async def _trade(self, code: str, state: str | None, next_path: str | None) -> Result:
        """Trade ``code`` for an identity carrying ``state`` and ``next_path``."""
        raise NotImplementedError

    def _site(self, scope: Scope) -> Site:
        """The app this request logs in with: the product's one app, or the one its resolver
        names (a 404 ``unknown_app`` error when it names none this middleware has)."""
        if self._sites is not None:
            return self._sites.for_request(scope)
        site = self._one_site
        if site is None:  # its appid is the product's own: not needed to tell sites apart
            site = self._one_site = Site("", self._signer, self._login, self._key_prefix)
        return site

    def _exchange_for(self, site: Site, verified: VerifiedState | None) -> tuple[bytes, Trade]:
        """The key prefix and the trade of the app that issued the callback's code: the
        site's app, unless a product with several per site reads it from the signed state."""
        return site.key_prefix, self._trade

    def _start_login(self, scope: Scope) -> Answer:
        """The login endpoint's answer once the request passed the common checks: the 302 to
        the consent page with its cookie (a product may answer otherwise). Raises a
        :class:`WeChatOAuthError` for a login that cannot start."""
        location, cookie = self._site(scope).login.redirect(scope)
        return redirect_answer(location, cookie)

    def _watch_answer(self, scope: Scope, send: Send) -> Send:
        """``send`` for the app's answer to a callback that got its identity (a product may
        check that the app really handled it)."""
        return send

    def _divert(
        self, scope: Scope, receive: Receive, identity: Any, verified: VerifiedState | None
    ) -> Answer | None:
        """The answer to a callback whose identity does not go to the app (a product's own
        flow, such as a desktop's handoff), or None: the app gets it."""
        return None

    def _parse(self, site: Site, query_string: bytes) -> CallbackParams:
        return parse_callback_query(query_string)

    def _admit(self, identity: Any, state: str | None) -> None:
        """Refuse an identity this request may not have (raises a 403 error)."""
        require_same_state(identity.state, state)

    # --- the callback -------------------------------------------------------------------------

    async def _callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        verified: VerifiedState | None = None
        site: Site | None = None
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
            site = self._site(scope)
            params = self._parse(site, scope["query_string"])
            if self.verify_state:
                verified = site.signer.verify(params.state, nonce)
            key_prefix, trade = self._exchange_for(site, verified)
            key = hashlib.sha256(key_prefix + params.code.encode()).hexdigest()
            if verified is not None and not self._flight.knows(key):
                # A code in flight or answered here was counted by the request that traded
                # it, and will not reach the provider again: no round trip to count it.
                await self._count_code(site, params.state, key)
            next_path = verified.next if verified is not None else None
            outcome = self._narrow(
                await self._flight.run(key, partial(trade, params.code, params.state, next_path))
            )
            if not isinstance(outcome, WeChatOAuthError):
                self._admit(outcome, params.state)
        except WeChatOAuthError as exc:
            outcome = exc
        if not isinstance(outcome, WeChatOAuthError):
            diverted = self._divert(scope, receive, outcome, verified)
            if diverted is not None:  # the identity goes elsewhere (a desktop's handoff)
                await diverted(send)
                return
            await self._deliver(scope, receive, send, outcome)
            return
        # What a state we signed says, verified or not: enough to start that login again.
        signed = outcome.signed if isinstance(outcome, UnverifiedState) else verified
        if signed is None and site is not None and self.verify_state and outcome.reason in _NO_CODE:
            signed = self._state_without_code(site, scope, nonce)
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
        self._failed("callback_failed", outcome, key, nonce=nonce is not None)
        await self._respond_error(scope, receive, send, outcome, signed=signed)

    async def _deliver(self, scope: Scope, receive: Receive, send: Send, identity: Any) -> None:
        """Call the app with ``identity`` in the scope, counting the login (the loop guard)."""
        scope[self.scope_key] = identity
        if self._loops is not None:
            counter, expiries = self._read_loops(scope, self.callback_path)
            https = self._login.is_https(scope)
            name = cookie_name(LOOP_COOKIE, https=https)
            send = self._loops.counting(
                send, counter, identity.state, name=name, https=https, also=expiries
            )
        await self._app(scope, receive, self._watch_answer(scope, send))

    def _state_without_code(
        self, site: Site, scope: Scope, nonce: str | None
    ) -> VerifiedState | None:
        """What the state of a callback without a code says (the user declined, or nothing
        came back), so that its page logs in again to the same ``next``; nothing is traded."""
        try:
            states = [v for k, v in form_pairs(scope["query_string"]) if k == "state"]
        except ValueError:
            return None
        if len(states) != 1:
            return None
        try:
            return site.signer.verify(states[0], nonce)
        except UnverifiedState as exc:
            return exc.signed
        except StateRejected:
            return None

    async def _count_code(self, site: Site, state: str | None, key: str) -> None:
        """Refuse a code beyond ``max_codes_per_state`` distinct ones under one verified state
        (raises a 403 error): a valid state and cookie must not turn into any number of calls
        to the provider with made-up codes. Counted as long as the state is valid."""
        group = hashlib.sha256(site.key_prefix + b"state:" + str(state).encode()).hexdigest()
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
        if signed is not None and signed.handoff:
            query["handoff"] = signed.handoff  # a phone's login for a desktop stays one
        url = f"{scope.get('root_path', '')}{self.login_path}"
        return f"{url}?{urlencode(query)}" if query else url

    async def _redirect_to_login(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            require_get(scope, "The login page")
            if self._loops is not None:
                counter, expiries = self._read_loops(scope, self.login_path or "/")
                https = self._login.is_https(scope)
                name = cookie_name(LOOP_COOKIE, https=https)
                exceeded, ended = self._loops.at_login(scope, counter, name=name, https=https)
                send = with_cookies(send, *expiries, *ended)
                if exceeded:
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
        login_href: str | None = None,
        signed: VerifiedState | None = None,
    ) -> None:
        """The error answer, whose page logs in again at the login endpoint (with the scope and
        ``next`` the state said)."""
        if login_href is None and self.login_path:
            login_href = self._login_url(scope, signed, retry=False)
        await super()._respond_error(scope, receive, send, error, login_href)
