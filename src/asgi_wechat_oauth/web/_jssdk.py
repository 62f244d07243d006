"""``GET {jssdk_path}?url=<page URL>``: what the page's ``wx.config`` takes, signed with the
official account's ``jsapi_ticket``.

The ticket is kept by an :class:`~asgi_wechat_oauth.tokens.AccessTokenKeeper` over a
:class:`~asgi_wechat_oauth.tokens.JsapiTicketFetcher`, on the middleware's backend: one
getticket call per ticket lifetime, for all requests and all workers sharing the backend.
The page URL must be on the site's own origin (or one of ``jssdk_origins``): a signature is
for this site's pages only. Every answer is JSON, never cached; a ticket that cannot be had
is a 502/503/504 with its reason, never a 500.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from .._core.asgi import Receive, Scope, Send, send_body
from .._core.endpoints import send_error
from .._core.paths import spellings
from ..errors import (
    ErrorReason,
    InvalidCallbackRequest,
    MethodNotAllowed,
    UpstreamError,
    WeChatOAuthError,
)
from ..tokens import AccessTokenKeeper, JsapiTicketFetcher, StableTokenFetcher, jssdk_config

if TYPE_CHECKING:
    from ._middleware import WeChatOAuthMiddleware

logger = logging.getLogger("asgi_wechat_oauth")

#: Longer page URLs are refused (``location.href`` of a real page is far shorter).
MAX_URL_LENGTH = 4096
#: ``http(s)://authority`` then the rest; the authority is ``host[:port]`` or ``[v6][:port]``.
_URL = re.compile(r"(https?)://([^/?#]*)([/?#].*)?", re.IGNORECASE | re.DOTALL)
_AUTHORITY = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, lower-cased, the scheme's default
    port dropped (as browsers serialise origins); None when it is no such URL. A URL with
    user info (``user@host``), a backslash, a space or any character outside printable ASCII
    (``location.href`` has none) is none."""
    if not (url.isascii() and url.isprintable()) or " " in url or "\\" in url:
        return None
    match = _URL.fullmatch(url)
    if match is None or not _AUTHORITY.fullmatch(match[2]):
        return None
    scheme, authority = match[1].lower(), match[2].lower()
    authority = authority.removesuffix(_DEFAULT_PORTS[scheme])
    return f"{scheme}://{authority}"


def origins_problem(name: str, value: object) -> str | None:
    """``jssdk_origins``: a list or tuple of origins such as ``https://example.com``."""
    if isinstance(value, str) or not isinstance(value, (list, tuple, frozenset, set)):
        return f"{name} must be a list of origins such as ['https://example.com']"
    for origin in value:
        if not isinstance(origin, str) or origin_of(origin) != origin.rstrip("/").lower():
            return (
                f"{name} must hold origins (scheme://host[:port], no path), such as "
                f"'https://example.com'; got {origin!r}"
            )
    return None


def parse_origins(value: str) -> tuple[str, ...]:
    """``jssdk_origins`` from the environment: origins separated by commas or spaces."""
    return tuple(part for part in re.split(r"[,\s]+", value) if part)


class JsSdkEndpoint:
    """Answers ``GET {jssdk_path}?url=...`` with ``{"appId", "timestamp", "nonceStr",
    "signature"}``; :attr:`tickets` keeps the ticket (use it to sign in your own code)."""

    def __init__(
        self,
        middleware: WeChatOAuthMiddleware,
        path: str,
        *,
        origins: Iterable[str],
        token_keeper: AccessTokenKeeper | None,
    ) -> None:
        config = middleware.config
        self.paths = spellings(path)
        self.appid = config.appid
        self._middleware = middleware
        allowed = {origin_of(origin) for origin in origins}
        #: With ``redirect_uri`` the site's public origin is known: the request's ``Host``,
        #: which anyone sending a request straight to the server can forge, is not trusted.
        self._trust_host = not config.redirect_uri
        if config.redirect_uri:
            allowed.add(origin_of(config.redirect_uri))
        self._origins = frozenset(origin for origin in allowed if origin)
        self._owned_keeper = token_keeper is None
        if token_keeper is None:
            fetcher = StableTokenFetcher(
                config.appid,
                config.secret,
                api_base_url=config.api_base_url,
                http_client=config.http_client,
                timeout=config.exchange_timeout,
            )
            token_keeper = AccessTokenKeeper(
                fetcher, backend=middleware.backend, exchange_timeout=config.exchange_timeout
            )
        self.token_keeper = token_keeper
        #: The jsapi_ticket's keeper, on the middleware's backend.
        self.tickets = AccessTokenKeeper(
            JsapiTicketFetcher(
                token_keeper,
                api_base_url=config.api_base_url,
                http_client=config.http_client,
                timeout=config.exchange_timeout,
            ),
            backend=middleware.backend,
            exchange_timeout=config.exchange_timeout,
        )

    @classmethod
    def of(cls, middleware: WeChatOAuthMiddleware) -> JsSdkEndpoint:
        """The endpoint of ``middleware``'s ``jssdk_path`` and options."""
        config = middleware.config
        assert config.jssdk_path is not None
        return cls(
            middleware,
            config.jssdk_path,
            origins=config.jssdk_origins,
            token_keeper=config.token_keeper,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["method"] != "GET":
                raise MethodNotAllowed(
                    ErrorReason.METHOD_NOT_ALLOWED, "The JS-SDK endpoint accepts GET only."
                )
            page = self._page_url(scope)
            config = jssdk_config(self.appid, await self._ticket(), page)
        except WeChatOAuthError as exc:
            self._middleware.counters.errors[exc.reason] += 1
            logger.info("wechat_oauth.jssdk_refused reason=%s", exc.reason)
            await send_error(scope, send, exc, allow=b"GET")
            return
        body = json.dumps(config).encode()
        nosniff = (b"x-content-type-options", b"nosniff")
        await send_body(send, 200, body, b"application/json", nosniff, *self._cors(scope))

    async def aclose(self) -> None:
        """Close the ticket's keeper, and the token's when this endpoint made it."""
        await self.tickets.aclose()
        if self._owned_keeper:
            await self.token_keeper.aclose()

    def _page_url(self, scope: Scope) -> str:
        """The page URL of ``?url=``, fragment removed, on an allowed origin."""
        try:
            pairs: list[tuple[str, str]] = parse_qsl(
                scope["query_string"].decode("utf-8"),
                keep_blank_values=True,
                errors="strict",
                max_num_fields=16,
            )
        except ValueError:
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_QUERY, "The query string could not be read."
            ) from None
        urls = [value for name, value in pairs if name == "url"]
        if len(urls) > 1:
            raise InvalidCallbackRequest(
                ErrorReason.DUPLICATE_PARAMETER, "Give the page URL once (?url=)."
            )
        if not urls or not urls[0]:
            raise InvalidCallbackRequest(
                ErrorReason.MISSING_URL, "Give the page URL: ?url=encodeURIComponent(page URL)."
            )
        page = urls[0].split("#", 1)[0]
        origin = origin_of(page) if len(page) <= MAX_URL_LENGTH else None
        if origin is None:
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_URL,
                "The page URL must be a full http(s) URL, as location.href gives it.",
            )
        if origin not in self._origins and not (
            self._trust_host and origin == self._own_origin(scope)
        ):
            raise InvalidCallbackRequest(
                ErrorReason.URL_NOT_ALLOWED,
                "The page URL is not on this site's origin (nor one of jssdk_origins).",
            )
        return page

    def _own_origin(self, scope: Scope) -> str | None:
        try:
            return origin_of(self._middleware._login.own_origin(scope))
        except InvalidCallbackRequest:
            return None  # no usable Host: only the configured origins are this site's

    async def _ticket(self) -> str:
        """The current ticket; a failure to get one is an upstream error (502, 503, 504),
        never a 500."""
        try:
            return await self.tickets.get()
        except WeChatOAuthError as exc:
            if exc.status_code >= 500 and exc.status_code not in (502, 503, 504):
                # WeChat refused the account's setup (configuration_error): logged as such by
                # the fetch; the page is told WeChat refused.
                raise UpstreamError(exc.reason, exc.message, errcode=exc.errcode) from None
            raise
        except Exception as exc:  # whatever it is, the page gets an answer, not a 500
            logger.error("wechat_oauth.jssdk_ticket_failed error=%s", type(exc).__name__)
            raise UpstreamError(
                ErrorReason.UPSTREAM_UNAVAILABLE, "The JS-SDK ticket is unavailable; try again."
            ) from None

    def _cors(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """A page on one of ``jssdk_origins`` may read the answer from its own origin."""
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                origin = value.decode("latin-1")
                if origin in self._origins:
                    return [(b"access-control-allow-origin", value), (b"vary", b"origin")]
                break
        return [(b"vary", b"origin")] if self._origins else []
