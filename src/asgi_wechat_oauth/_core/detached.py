"""Run a coroutine so that cancelling the request that started it cannot stop it.

anyio's shielded scopes stop anyio (and trio) cancellation, but not a native ``Task.cancel()``
that some asyncio servers and frameworks use when a client disconnects. On asyncio the work
therefore runs in a task of its own, and the caller awaits a future of its own that the task
fulfils (cancelling the caller cancels only that future); on trio a shielded scope is enough,
since all trio cancellation goes through scopes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")

#: What the work is given to hand its caller the answer before it returns.
Answer = Callable[[T], None]


class DetachedRunner:
    """Keeps the work it starts referenced until done, and can wait for it at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self._running = 0
        self._idle: anyio.Event | None = None

    async def run(self, func: Callable[[Answer[T]], Awaitable[T]]) -> T:
        """Return what ``func(answer)`` returns, or what it passes to ``answer`` first.

        Answering early lets the caller resume before the work's own cleanup: on asyncio the
        caller is then scheduled ahead of anything that cleanup wakes (the leader's response
        is not queued behind a thousand followers)."""
        self._running += 1
        try:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not asyncio (trio): scope shielding is complete
                with anyio.CancelScope(shield=True):
                    return await func(_ignore)

            answered: asyncio.Future[T] = loop.create_future()

            def answer(value: T) -> None:
                if not answered.done():  # the caller may have been cancelled and gone
                    answered.set_result(value)

            async def call() -> None:
                try:
                    answer(await func(answer))
                except BaseException as exc:
                    if not answered.done():
                        if isinstance(exc, asyncio.CancelledError):
                            answered.cancel()
                        else:
                            answered.set_exception(exc)
                    raise

            task = loop.create_task(call())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(_retrieve)
            return await answered
        finally:
            self._running -= 1
            if self._running == 0 and self._idle is not None:
                self._idle.set()

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for running work to finish. On asyncio, what is
        left is then cancelled (the work completes its flight with an error on the way out);
        on trio it cannot be cancelled from here, and it fails fast once its client closes."""
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            # The tasks, not the callers: the request that started one may be long gone.
            _, leftover = await asyncio.wait(pending, timeout=timeout)
            for task in leftover:
                task.cancel()
            if leftover:
                await asyncio.wait(leftover)
        elif self._running:
            self._idle = anyio.Event()
            with anyio.move_on_after(timeout):
                await self._idle.wait()


def answers_early(answer: Answer[T]) -> bool:
    """Whether ``answer`` resumes the caller before the work returns (asyncio), rather than
    being ignored (trio: the caller is the work's own task)."""
    return answer is not _ignore


def _ignore(value: object) -> None:
    """On trio the caller resumes when the work returns: nothing to hand over early."""


def _retrieve(task: asyncio.Task[object]) -> None:
    """Mark a detached task's exception as seen: its caller may have been cancelled and gone."""
    if not task.cancelled():
        task.exception()
