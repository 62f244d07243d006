"""The lifespan protocol for middleware that owns resources (an HTTP client, a backend)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .asgi import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("asgi_wechat_oauth")


async def serve_lifespan(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, close: Callable[[], Awaitable[None]]
) -> None:
    """Pass the lifespan protocol to ``app``, running ``close`` at shutdown.

    An app that refuses the protocol (Django raises, others return without reading a message)
    gets it answered here instead, so the server sees a working lifespan and shutdown still
    closes what the middleware opened. An app that speaks lifespan and fails keeps its error.
    """
    asked = False

    async def receive_watched() -> Message:
        nonlocal asked
        asked = True
        return await receive()

    async def send_closing(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            await close()
        await send(message)

    try:
        await app(scope, receive_watched, send_closing)
    except Exception as exc:
        if asked:
            raise  # the app speaks lifespan and failed: its error is the server's to report
        logger.debug(
            "wechat_oauth.lifespan: the app refused the lifespan protocol (%s); "
            "the middleware answers it",
            type(exc).__name__,
        )
    if not asked:
        await _answer_lifespan(receive, send, close)


async def _answer_lifespan(
    receive: Receive, send: Send, close: Callable[[], Awaitable[None]]
) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await close()
            await send({"type": "lifespan.shutdown.complete"})
            return
