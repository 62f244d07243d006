"""What every product's endpoints share: the GET check, the 302, the log level of a failure,
and the one function that answers an error (a page for browsers, JSON for programs)."""

from __future__ import annotations

import json
import logging

from ..errors import (
    CredentialsRejected,
    ErrorReason,
    InvalidCallbackRequest,
    LoginDeclined,
    MethodNotAllowed,
    RiskyUserRejected,
    SnapshotUserRejected,
    StateRejected,
    UpstreamError,
    WeChatOAuthError,
)
from .asgi import Scope, Send
from .pages import ErrorPages, in_app_browser, preferred_language, wants_html


def require_get(scope: Scope, what: str) -> None:
    """Raise a 405 unless the request is a GET or HEAD (``what`` names the endpoint)."""
    if scope["method"] not in ("GET", "HEAD"):
        raise MethodNotAllowed(ErrorReason.METHOD_NOT_ALLOWED, f"{what} accepts GET only.")


def failure_level(error: WeChatOAuthError, *, has_nonce_cookie: bool) -> int:
    """The level a failed request is logged at: only failures a user sees log at WARNING."""
    if isinstance(error, (UpstreamError, CredentialsRejected)):
        return logging.DEBUG  # the exchange's own record already said it, once
    if isinstance(
        error, (InvalidCallbackRequest, SnapshotUserRejected, LoginDeclined, RiskyUserRejected)
    ):
        return logging.INFO  # bad or refused input, or the provider's verdict on the user
    if (
        isinstance(error, StateRejected)
        and error.reason == "invalid_state"
        and not has_nonce_cookie
    ):
        return logging.DEBUG  # no browser of ours: a stray duplicate, a bot, a stale link
    return logging.WARNING


async def send_redirect(send: Send, location: str, *extra_headers: tuple[bytes, bytes]) -> None:
    """A bodiless, uncacheable 302."""
    headers = [
        (b"location", location.encode()),
        *extra_headers,
        (b"cache-control", b"no-store"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def send_error(
    scope: Scope,
    send: Send,
    error: WeChatOAuthError,
    *,
    pages: ErrorPages | None = None,
    login_href: str | None = None,
    allow: bytes = b"GET, HEAD",
) -> None:
    """Answer ``error`` with its status: a page for a browser (with ``pages``; its button logs
    in again at ``login_href``), ``{"error": reason, "message": ...}`` for anyone else; a 405
    says the methods ``allow``ed, an error that knows when to try again says
    ``Retry-After``."""
    if pages is not None and wants_html(scope):
        body = pages.render(
            error.reason,
            error.status_code,
            preferred_language(scope),
            login_href=login_href,
            back_href=f"{scope.get('root_path', '')}/",
            in_app=in_app_browser(scope),
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
    if pages is not None:
        headers.append((b"vary", b"accept, accept-language"))
    if isinstance(error, MethodNotAllowed):
        headers.append((b"allow", allow))
    if error.retry_after is not None:
        headers.append((b"retry-after", str(error.retry_after).encode()))
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    if scope["method"] == "HEAD":
        body = b""
    await send({"type": "http.response.body", "body": body})
