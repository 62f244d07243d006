"""Run a coroutine so that cancelling the request that started it cannot stop it.

anyio's shielded scopes stop anyio (and trio) cancellation, but not a native ``Task.cancel()``
that some asyncio servers and frameworks use when a client disconnects. On asyncio the work
therefore runs in a task of its own (awaited through ``asyncio.shield``); on trio a shielded
scope is enough, since all trio cancellation goes through scopes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


class DetachedRunner:
    """Keeps the tasks it starts referenced until done, and can wait for them at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    async def run(self, func: Callable[[], Awaitable[T]]) -> T:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): scope shielding is complete
            with anyio.CancelScope(shield=True):
                return await func()

        async def call() -> T:
            return await func()

        task = loop.create_task(call())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for running work, then cancel what is left."""
        pending = [t for t in self._tasks if not t.done()]
        if not pending:
            return
        _, still_running = await asyncio.wait(pending, timeout=timeout)
        for task in still_running:
            task.cancel()
        if still_running:
            await asyncio.wait(still_running)
