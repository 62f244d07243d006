"""ASGI type aliases and the few helpers every product middleware needs, in one place."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ..errors import ErrorReason, RequestTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Attributes that lead from an app to the app it wraps, in the order they are tried.
_INNER = ("middleware_stack", "asgi_app", "app")


def inner_app(node: object) -> object | None:
    """The app ``node`` wraps, if any: Starlette's built stack, Quart's replaced ``asgi_app``,
    or a middleware's ``app``. Bound methods (Quart's own ``asgi_app``) lead nowhere."""
    for attribute in _INNER:
        inner: object | None = getattr(node, attribute, None)
        if inner is not None and not hasattr(inner, "__self__"):
            return inner
    return None


async def send_json(
    send: Send,
    status: int,
    payload: object,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    head: bool = False,
) -> None:
    """Send ``payload`` as a complete JSON response that no cache keeps (only its headers when
    answering a ``HEAD`` request)."""
    body = json.dumps(payload).encode()
    await send_body(send, status, body, b"application/json", *headers, head=head)


async def send_body(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    *headers: tuple[bytes, bytes],
    head: bool = False,
) -> None:
    """Send ``body`` as a complete response that no cache keeps (only its headers when
    answering a ``HEAD`` request)."""
    start = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def read_body(scope: Scope, receive: Receive, *, limit: int, what: str) -> bytes | None:
    """The whole request body, or ``None`` if the client went away; a 413 ``body_too_large``
    past ``limit`` bytes (by ``Content-Length`` before reading anything, else while reading):
    a body is never read whole before it is bounded. ``what`` names it in the message."""
    too_large = RequestTooLarge(ErrorReason.BODY_TOO_LARGE, f"{what} is larger than {limit} bytes.")
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-length":
            declared = bytes(value).decode("latin-1")
            if declared.isdecimal() and int(declared) > limit:
                raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
