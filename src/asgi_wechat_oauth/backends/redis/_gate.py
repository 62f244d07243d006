"""A burst waits its turn: at most ``capacity`` Redis calls of this process in flight, and up to
``max_queued`` more waiting, first come first served.

redis-py's cluster client keeps a pool per node that does not wait: a call beyond it fails at
once (``MaxConnectionsError``), although Redis itself may be idle. In front of the client, this
gate makes such a burst queue instead, as the single-Redis backend's blocking pool does; only a
queue already ``max_queued`` long refuses a call (:class:`Full`), and a refused call never ran.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import anyio


class Full(Exception):
    """The queue is full, or the call waited its whole budget: it did not run."""


class Gate:
    """At most ``capacity`` places taken (:meth:`acquire`, :meth:`release`), callers beyond
    waiting in turn; asyncio only (as redis.asyncio)."""

    def __init__(self, capacity: int, max_queued: int) -> None:
        self.capacity = capacity
        self.max_queued = max_queued
        self.busy = 0
        self._queue: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def acquire(self, timeout: float, *, first: bool = False) -> None:
        """Take a place, waiting at most ``timeout`` seconds (at the head of the queue if
        ``first``); raise :class:`Full` if the queue is full or the wait too long."""
        if self.busy < self.capacity and not self._queue:
            self.busy += 1
            return
        if len(self._queue) >= self.max_queued and not first:
            raise Full
        turn = asyncio.get_running_loop().create_future()
        if first:
            self._queue.appendleft(turn)
        else:
            self._queue.append(turn)
        try:
            with anyio.fail_after(max(timeout, 0.0)):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self.release()  # handed a place just as it gave up: hand it on
            else:
                turn.cancel()
                # Gone already if a release() passed over it (cancelled with its task).
                with contextlib.suppress(ValueError):
                    self._queue.remove(turn)
            if isinstance(exc, TimeoutError):
                raise Full from None
            raise

    def release(self) -> None:
        """Hand the place to the first caller still waiting, or free it."""
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.busy -= 1
