"""What every product's endpoints share: matching their paths, the GET check, the 302, and the
one function that answers an error (JSON today; HTML pages for browsers plug in here)."""

from __future__ import annotations

import json

from .asgi import Scope, Send
from .errors import MethodNotAllowed, WeChatOAuthError


def matches(scope: Scope, path: str) -> bool:
    """Whether the request is for ``path``. Servers differ on whether ``scope["path"]``
    includes ``root_path``, so both spellings match."""
    if scope["path"] == path:
        return True
    root_path: str = scope.get("root_path", "")
    return bool(root_path) and scope["path"] == root_path + path


def require_get(scope: Scope, what: str) -> None:
    """Raise a 405 unless the request is a GET or HEAD (``what`` names the endpoint)."""
    if scope["method"] not in ("GET", "HEAD"):
        raise MethodNotAllowed("method_not_allowed", f"{what} accepts GET only.")


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


async def send_error(scope: Scope, send: Send, error: WeChatOAuthError) -> None:
    """Answer ``error`` with its status and ``{"error": reason, "message": ...}``."""
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
