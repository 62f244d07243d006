"""The ASGI middleware: intercept the callback, trade its code once, hand on the identity."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
from functools import partial
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx

from .._core.apiclient import DEFAULT_API_BASE_URL
from .._core.asgi import ASGIApp, Receive, Scope, Send
from .._core.callback import parse_callback_query
from .._core.counters import Counters
from .._core.errors import (
    ConfigurationError,
    InvalidCallbackRequest,
    LoginLoop,
    MethodNotAllowed,
    SnapshotUserRejected,
    StateRejected,
    UpstreamError,
    UpstreamTimeout,
    WeChatOAuthError,
)
from .._core.lifespan import serve_lifespan
from .._core.loops import COOKIE as LOOP_COOKIE
from .._core.loops import LoginLoopGuard, with_cookie
from .._core.pages import DEFAULT_ERROR_PAGES, ErrorPages, preferred_language, wants_html
from .._core.paths import matches, spellings
from .._core.singleflight import SingleFlight, code_hash
from .._core.state import StateSigner, UnverifiedState, VerifiedState, derive_state_secret
from ..backends import Backend, MemoryBackend, Outcome
from ._authorize import DEFAULT_AUTHORIZE_BASE_URL
from ._client import WeChatOAuthClient
from ._config import InvalidCodeAction, OnError, SnapshotPolicy, WeChatOAuthConfig, WeChatScope
from ._identity import AccessToken, UserInfo, WeChatIdentity
from ._links import LOGIN_PATH_KEY
from ._login import LoginEndpoint, read_cookie
from ._unhandled import watch_the_answer

logger = logging.getLogger("asgi_wechat_oauth")

#: WeChat's answers that a code can never be traded, which a fresh login fixes.
_UNUSABLE_CODE = frozenset({"code_invalid", "code_used", "code_expired"})

#: Scopes whose grant lets the app read ``sns/userinfo``.
USERINFO_SCOPES = frozenset({"snsapi_userinfo", "snsapi_login"})


class WeChatOAuthMiddleware:
    """Trade each WeChat OAuth code once, however many callbacks carry it.

    Requests to ``callback_path`` (GET or HEAD) have their ``code`` traded for an identity that
    is put in ``scope["wechat"]`` before the app is called; concurrent and late duplicates of
    the same code share that one exchange. With ``login_path`` set, a GET there redirects to
    WeChat's consent page with a signed state bound to the browser by a cookie, and callbacks
    are verified against it. Everything else passes through untouched.
    """

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
        fetch_userinfo: bool | None = None,
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
        authorize_base_url: str = DEFAULT_AUTHORIZE_BASE_URL,
        nonce_cookie: str = "wechat_oauth_nonce",
        connect_redirect: bool = True,
        on_invalid_code: InvalidCodeAction | None = None,
        snapshot_users: SnapshotPolicy = "allow",
        counters: Counters | None = None,
        error_pages: ErrorPages | None = DEFAULT_ERROR_PAGES,
        login_loop_limit: int | None = 5,
        login_loop_window: float = 120.0,
    ) -> None:
        # The keywords are WeChatOAuthConfig's fields, spelled out so that type checkers (and
        # Starlette's ``Middleware(cls, **options)``) check them; the config validates them.
        options = {name: value for name, value in locals().items() if name in _OPTION_NAMES}
        self.config = config = _config_of(config, options)
        self.app = app
        self.appid = config.appid
        self.callback_path = config.callback_path
        self.fetch_userinfo = config.fetch_userinfo
        self.exchange_timeout = config.exchange_timeout
        self.on_error = config.on_error
        self.backend: Backend = config.backend if config.backend is not None else MemoryBackend()
        self.counters = config.counters if config.counters is not None else Counters()
        self.client = WeChatOAuthClient(
            config.appid,
            config.secret,
            api_base_url=config.api_base_url,
            http_client=config.http_client,
            timeout=config.exchange_timeout,
        )
        self._flight = SingleFlight(
            self.backend,
            exchange_timeout=config.exchange_timeout,
            result_ttl=config.result_ttl,
            counters=self.counters,
        )
        self._key_prefix = f"{config.appid}:".encode()
        self.login_path = config.login_path
        self._callback_paths = spellings(config.callback_path)
        self._login_paths = spellings(config.login_path)
        self._own_paths = self._callback_paths + self._login_paths
        self._exact_paths = frozenset(self._own_paths)
        self.on_invalid_code = config.resolved_on_invalid_code
        self.snapshot_users = config.snapshot_users
        self.verify_state = config.resolved_verify_state
        self.nonce_cookie = config.nonce_cookie
        self.error_pages = config.error_pages
        self._loops = (
            LoginLoopGuard(limit=config.login_loop_limit, window=config.login_loop_window)
            if config.login_path and config.login_loop_limit
            else None
        )
        state_secret = config.state_secret
        if isinstance(state_secret, str):
            state_secret = state_secret.encode()
        if state_secret is None:
            state_secret = derive_state_secret(config.secret)
        self._signer = StateSigner(state_secret, max_age=config.state_max_age)
        self._login = LoginEndpoint(
            appid=config.appid,
            signer=self._signer,
            callback_path=config.callback_path,
            redirect_uri=config.redirect_uri,
            default_scope=config.default_scope,
            trust_forwarded=config.trust_forwarded,
            authorize_base_url=config.authorize_base_url,
            cookie_name=config.nonce_cookie,
            connect_redirect=config.connect_redirect,
        )

    def __repr__(self) -> str:
        return (
            f"WeChatOAuthMiddleware(appid={self.appid!r}, callback_path={self.callback_path!r}, "
            f"backend={self.backend!r})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.login_path is not None:
                scope[LOGIN_PATH_KEY] = self.login_path  # for login_url()
            # A path this middleware answers is one of its own paths, or (when the server puts
            # root_path in front) ends with one: a set look-up lets all other requests through
            # at once, and the suffix test runs only under a root_path.
            path = scope["path"]
            if path in self._exact_paths or (
                scope.get("root_path") and path.endswith(self._own_paths)
            ):
                if matches(scope, self._callback_paths):
                    await self._callback(scope, receive, send)
                    return
                if self._login_paths and matches(scope, self._login_paths):
                    await self._redirect_to_wechat(scope, receive, send)
                    return
        elif scope["type"] == "lifespan":
            await serve_lifespan(self.app, scope, receive, send, self.aclose)
            return
        await self.app(scope, receive, send)

    async def aclose(self) -> None:
        """Let exchanges in flight finish (bounded), then close the owned HTTP client and the
        backend. Called on lifespan shutdown; call it yourself when there is no lifespan."""
        await self._flight.runner.drain(timeout=self._flight.exchange_timeout)
        await self.client.aclose()
        await self.backend.aclose()

    async def _callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        verified: VerifiedState | None = None
        key = None
        outcome: WeChatIdentity | WeChatOAuthError
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise MethodNotAllowed(
                    "method_not_allowed", "The WeChat callback accepts GET only."
                )
            params = parse_callback_query(scope["query_string"])
            if self.verify_state:
                cookie = read_cookie(scope, self.nonce_cookie)
                verified = self._signer.verify(params.state, cookie)
            key = hashlib.sha256(self._key_prefix + params.code.encode()).hexdigest()
            next_path = verified.next if verified is not None else None
            outcome = _web_outcome(
                await self._flight.run(
                    key, partial(self._trade, params.code, params.state, next_path)
                )
            )
            if isinstance(outcome, WeChatIdentity):
                self._admit(outcome, params.state)
        except WeChatOAuthError as exc:
            outcome = exc
        if isinstance(outcome, WeChatIdentity):
            scope["wechat"] = outcome
            if self._loops is not None:
                counted = self._loops.completed(
                    scope, read_cookie(scope, LOOP_COOKIE), outcome.state
                )
                send = with_cookie(send, counted)
            send = watch_the_answer(scope, send, self.callback_path, self._callback_paths)
            await self.app(scope, receive, send)
            return
        # What a state we signed says, verified or not: enough to start that login again.
        signed = outcome.signed if isinstance(outcome, UnverifiedState) else verified
        if self._reauthorizes(scope, outcome, signed):
            assert signed is not None
            self.counters.reauthorized += 1
            logger.debug(
                "wechat_oauth.reauthorize reason=%s code_hash=%s",
                outcome.reason,
                code_hash(key) if key else None,
            )
            await self._send_redirect(send, self._login_url(scope, signed, retry=True))
            return
        self.counters.errors[outcome.reason] += 1
        logger.log(
            self._failure_level(scope, outcome),
            "wechat_oauth.callback_failed reason=%s status=%s code_hash=%s",
            outcome.reason,
            outcome.status_code,
            code_hash(key) if key else None,
        )
        await self._respond_error(scope, receive, send, outcome, signed)

    def _admit(self, identity: WeChatIdentity, state: str | None) -> None:
        """Refuse an identity this request may not have (raises a 403 error)."""
        if identity.state != state:
            # The identity belongs to the request that traded the code; a request with another
            # state carries a replayed or leaked code and gets nothing.
            raise StateRejected(
                "state_mismatch", "This login link was already used; please log in again."
            )
        if identity.is_snapshotuser and self.snapshot_users == "reject":
            raise SnapshotUserRejected(
                "snapshot_user",
                "This page is open in WeChat's snapshot mode. Tap the button at the bottom to "
                "use the full service, then log in again.",
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
        return error.reason in _UNUSABLE_CODE

    def _login_url(self, scope: Scope, signed: VerifiedState | None, *, retry: bool) -> str:
        """The login endpoint (under ``root_path``), with the scope and ``next`` when known."""
        query = {"scope": signed.scope} if signed is not None else {}
        if retry:
            query["retry"] = "1"
        if signed is not None and signed.next:
            query["next"] = signed.next
        url = f"{scope.get('root_path', '')}{self.login_path}"
        return f"{url}?{urlencode(query)}" if query else url

    def _failure_level(self, scope: Scope, error: WeChatOAuthError) -> int:
        """Only failures a user sees log at WARNING; the rest is expected noise."""
        if isinstance(error, (UpstreamError, ConfigurationError)):
            return logging.DEBUG  # the exchange's own record already said it, once
        if isinstance(error, (InvalidCallbackRequest, SnapshotUserRejected)):
            return logging.INFO  # bad or refused input, not a failure of ours
        if (
            isinstance(error, StateRejected)
            and error.reason == "invalid_state"
            and read_cookie(scope, self.nonce_cookie) is None
        ):
            return logging.DEBUG  # no browser of ours: a stray duplicate, a bot, a stale link
        return logging.WARNING

    async def _send_redirect(
        self, send: Send, location: str, *extra_headers: tuple[bytes, bytes]
    ) -> None:
        headers = [
            (b"location", location.encode()),
            *extra_headers,
            (b"cache-control", b"no-store"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _redirect_to_wechat(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise MethodNotAllowed("method_not_allowed", "The login page accepts GET only.")
            if self._loops is not None and self._loops.exceeded(read_cookie(scope, LOOP_COOKIE)):
                raise LoginLoop(
                    "login_loop",
                    "This browser keeps logging in, but its session is not kept: "
                    "allow cookies and try again later.",
                )
            location, cookie = self._login.redirect(scope)
        except WeChatOAuthError as exc:
            self.counters.errors[exc.reason] += 1
            logger.info("wechat_oauth.login_refused reason=%s", exc.reason)
            await self._respond_error(scope, receive, send, exc)
            return
        await self._send_redirect(send, location, (b"set-cookie", cookie.encode()))

    async def _trade(self, code: str, state: str | None, next_path: str | None) -> WeChatIdentity:
        deadline = anyio.current_time() + self.exchange_timeout
        token: AccessToken | None = None
        with anyio.move_on_after(self.exchange_timeout):
            try:
                token = await self.client.exchange_code(code)
            except UpstreamError as exc:
                if exc.errcode != -1:
                    raise
                token = await self.client.exchange_code(code)  # -1 "busy": one retry, then fail
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
        if self.error_pages is not None and wants_html(scope):
            root_path = scope.get("root_path", "")
            body = self.error_pages.render(
                error.reason,
                error.status_code,
                preferred_language(scope),
                login_href=self._login_url(scope, signed, retry=False) if self.login_path else None,
                back_href=f"{root_path}/",
            )
            content_type = b"text/html; charset=utf-8"
        else:
            body = json.dumps({"error": error.reason, "message": error.message}).encode()
            content_type = b"application/json"
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if self.error_pages is not None:
            headers.append((b"vary", b"accept, accept-language"))
        if isinstance(error, MethodNotAllowed):
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})


def _web_outcome(outcome: Outcome) -> WeChatIdentity | WeChatOAuthError:
    """Narrow a flight's outcome: under this middleware's keys only web identities are stored."""
    if isinstance(outcome, (WeChatIdentity, WeChatOAuthError)):
        return outcome
    raise TypeError(f"a {type(outcome).__name__} is stored under a web OAuth key")


def _config_of(config: WeChatOAuthConfig | None, options: dict[str, Any]) -> WeChatOAuthConfig:
    """The middleware's config: the one given, or one built from the keyword options."""
    if config is None:
        return WeChatOAuthConfig(**options)
    if not isinstance(config, WeChatOAuthConfig):
        raise TypeError(f"config must be a WeChatOAuthConfig, not {type(config).__name__}")
    given = sorted(
        name
        for name, value in options.items()
        if value is not _DEFAULTS[name] and value != _DEFAULTS[name]
    )
    if given:
        raise TypeError(f"pass either config= or options, not both (got {', '.join(given)})")
    return config


_OPTION_NAMES = frozenset(option.name for option in dataclasses.fields(WeChatOAuthConfig))
#: The constructor's defaults, to tell the options a caller gave from those left alone.
_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(WeChatOAuthMiddleware.__init__).parameters.items()
    if name in _OPTION_NAMES
}
