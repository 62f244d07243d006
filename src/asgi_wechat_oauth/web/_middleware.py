"""The ASGI middleware: intercept the callback, trade its code once, hand on the identity."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Literal
from urllib.parse import urlencode

import anyio
import httpx

from .._core.asgi import ASGIApp, Message, Receive, Scope, Send
from .._core.callback import parse_callback_query
from .._core.counters import Counters
from .._core.errors import (
    ConfigurationError,
    InvalidCallbackRequest,
    MethodNotAllowed,
    SnapshotUserRejected,
    StateRejected,
    UpstreamError,
    UpstreamTimeout,
    WeChatOAuthError,
)
from .._core.singleflight import SingleFlight, code_hash
from .._core.state import StateSigner, VerifiedState, derive_state_secret
from ..backends import Backend, MemoryBackend, Outcome
from ._authorize import DEFAULT_AUTHORIZE_BASE_URL, SCOPES
from ._client import DEFAULT_API_BASE_URL, WeChatOAuthClient
from ._identity import AccessToken, UserInfo, WeChatIdentity
from ._login import LoginEndpoint, read_cookie

logger = logging.getLogger("asgi_wechat_oauth")

#: WeChat's answers that a code can never be traded, which a fresh login fixes.
_UNUSABLE_CODE = frozenset({"code_invalid", "code_used", "code_expired"})

#: Scopes whose grant lets the app read ``sns/userinfo``.
USERINFO_SCOPES = frozenset({"snsapi_userinfo", "snsapi_login"})

OnError = Callable[[Scope, WeChatOAuthError], "ASGIApp | None"]


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
    ) -> None:
        if not appid:
            raise ValueError("appid is required")
        if not secret:
            raise ValueError("secret is required")
        if not callback_path.startswith("/"):
            raise ValueError("callback_path must start with '/'")
        if result_ttl < 0:
            raise ValueError("result_ttl must not be negative")
        if exchange_timeout <= 0:
            raise ValueError("exchange_timeout must be positive")
        if login_path is not None and (
            not login_path.startswith("/") or login_path == callback_path
        ):
            raise ValueError("login_path must start with '/' and differ from callback_path")
        if verify_state is None:
            verify_state = login_path is not None
        if verify_state and login_path is None:
            raise ValueError("verify_state needs login_path: the login endpoint sets the cookie")
        if default_scope not in SCOPES:
            raise ValueError(f"default_scope must be one of {sorted(SCOPES)}")
        if redirect_uri is not None and not redirect_uri.startswith(("https://", "http://")):
            raise ValueError("redirect_uri must be an absolute http(s) URL")
        if state_max_age <= 0:
            raise ValueError("state_max_age must be positive")
        if not nonce_cookie or not nonce_cookie.isascii() or not nonce_cookie.isidentifier():
            raise ValueError("nonce_cookie must be a plain ASCII name")
        if on_invalid_code is None:
            on_invalid_code = "reauthorize" if login_path is not None else "error"
        if on_invalid_code not in ("reauthorize", "error"):
            raise ValueError("on_invalid_code must be 'reauthorize' or 'error'")
        if on_invalid_code == "reauthorize" and login_path is None:
            raise ValueError("on_invalid_code='reauthorize' needs login_path")
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
        self._exact_paths = frozenset(self._own_paths)
        self.on_invalid_code = on_invalid_code
        self.snapshot_users = snapshot_users
        self.verify_state = verify_state
        self.nonce_cookie = nonce_cookie
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A path this middleware answers is one of its own paths, or (when the server puts
        # root_path in front) ends with one: a set look-up lets all other requests through
        # at once, and the suffix test runs only under a root_path.
        try:
            path = scope["path"]
        except KeyError:  # no path: lifespan
            path = ""
            if scope["type"] == "lifespan":
                send = self._closing_on_shutdown(send)
        if (
            path in self._exact_paths or (scope.get("root_path") and path.endswith(self._own_paths))
        ) and scope["type"] == "http":
            if _matches(scope, self.callback_path):
                await self._callback(scope, receive, send)
                return
            if self.login_path and _matches(scope, self.login_path):
                await self._redirect_to_wechat(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def aclose(self) -> None:
        """Let exchanges in flight finish (bounded), then close the owned HTTP client and the
        backend. Called on lifespan shutdown; call it yourself when there is no lifespan."""
        await self._flight.runner.drain(timeout=self._flight.exchange_timeout)
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
        outcome: WeChatIdentity | WeChatOAuthError
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise MethodNotAllowed(
                    "method_not_allowed", "The WeChat callback accepts GET only."
                )
            params = parse_callback_query(scope["query_string"])
            if self.verify_state:
                nonce = read_cookie(scope, self.nonce_cookie)
                verified = self._signer.verify(params.state, nonce)
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
            await self.app(scope, receive, send)
        elif outcome.reason in _UNUSABLE_CODE and self._reauthorizes(verified):
            assert verified is not None and key is not None  # a code error comes from a flight
            self.counters.reauthorized += 1
            logger.debug(
                "wechat_oauth.reauthorize reason=%s code_hash=%s", outcome.reason, code_hash(key)
            )
            await self._send_redirect(send, self._login_again_url(scope, verified))
        else:
            self.counters.errors[outcome.reason] += 1
            logger.log(
                self._failure_level(scope, outcome),
                "wechat_oauth.callback_failed reason=%s status=%s code_hash=%s",
                outcome.reason,
                outcome.status_code,
                code_hash(key) if key else None,
            )
            await self._respond_error(scope, receive, send, outcome)

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

    def _reauthorizes(self, verified: VerifiedState | None) -> bool:
        """Send the browser through login again, once: only with a verified state (it carries
        ``next`` and the scope) that did not itself come from a re-authorization."""
        return (
            self.on_invalid_code == "reauthorize" and verified is not None and not verified.retried
        )

    def _login_again_url(self, scope: Scope, verified: VerifiedState) -> str:
        query = {"scope": verified.scope, "retry": "1"}
        if verified.next:
            query["next"] = verified.next
        return f"{scope.get('root_path', '')}{self.login_path}?{urlencode(query)}"

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
        self, scope: Scope, receive: Receive, send: Send, error: WeChatOAuthError
    ) -> None:
        if self.on_error is not None:
            replacement = self.on_error(scope, error)
            if replacement is not None:
                await replacement(scope, receive, send)
                return
        body = json.dumps({"error": error.reason, "message": error.message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
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


def _matches(scope: Scope, path: str) -> bool:
    """Whether the request is for ``path``. Servers differ on whether ``scope["path"]``
    includes ``root_path``, so both spellings match."""
    if scope["path"] == path:
        return True
    root_path: str = scope.get("root_path", "")
    return bool(root_path) and scope["path"] == root_path + path
