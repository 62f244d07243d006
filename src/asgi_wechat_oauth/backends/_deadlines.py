"""Many concurrent calls bounded by one timer, not one timer each.

``asyncio.timeout()`` arms a timer per call: a handle, a push onto the loop's heap (ordered by a
comparison written in Python) and a cancel. For a Redis leader that is twice per login, and it
was the largest cost the backend added to the bare Redis calls. Here every call in flight is a
dict entry holding its deadline, and one timer is armed for the earliest: when it fires it
cancels the calls past their deadline, as ``asyncio.timeout()`` would, and re-arms itself for
the next. Each call still ends with ``TimeoutError`` at its own deadline (give or take the
loop's clock resolution); a cancellation from outside still propagates as ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import sys
from asyncio import current_task
from time import monotonic
from types import TracebackType
from typing import Any

import anyio

_NEVER = float("inf")


class Deadlines:
    """``with deadlines:`` raises ``TimeoutError`` in the block once ``timeout`` seconds have
    passed. One instance serves any number of tasks at once, one block per task at a time (a
    task awaits one thing at a time). asyncio only."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        #: Blocks in flight: their task -> (deadline, the task's cancel requests on entry).
        self._calls: dict[asyncio.Task[Any], tuple[float, int]] = {}
        #: Tasks cancelled here for their deadline, whose block has not ended yet.
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        #: When the timer fires (``time.monotonic()``), infinity when it is not armed.
        self._timer_at = _NEVER
        #: Python 3.10 (no ``Task.uncancel()``): an anyio cancel scope per block instead.
        self._scopes: dict[asyncio.Task[Any], Any] = {}

    if sys.version_info >= (3, 11):

        def __enter__(self) -> None:
            task = current_task()
            if task is None:
                raise RuntimeError("Deadlines need to run in an asyncio task")
            now = monotonic()
            deadline = now + self.timeout
            self._calls[task] = (deadline, task.cancelling())
            # Armed for later than this deadline, or not at all; or overdue (its loop stopped
            # before it fired, or this loop is that far behind): arm it here for this one.
            if deadline < self._timer_at or self._timer_at < now:
                self._arm(deadline)

        def __exit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:
            task: asyncio.Task[Any] = current_task()  # type: ignore[assignment]
            entry = self._calls.pop(task, None)
            if entry is None or task not in self._expired:
                return
            self._expired.discard(task)
            # Our cancel request is withdrawn either way; one made by someone else stays.
            if task.uncancel() <= entry[1] and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    else:  # pragma: no cover - Python 3.10

        def __enter__(self) -> None:
            scope = anyio.fail_after(self.timeout)
            scope.__enter__()
            self._scopes[asyncio.current_task()] = scope  # type: ignore[index]

        def __exit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> bool | None:
            scope = self._scopes.pop(asyncio.current_task())  # type: ignore[arg-type]
            return scope.__exit__(exc_type, exc, tb)  # type: ignore[no-any-return]

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        # call_later: the loop's clock need not be time.monotonic() (uvloop's is not).
        self._timer = loop.call_later(max(when - monotonic(), 0), self._expire, loop)
        self._timer_at = when

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, _NEVER
        # A timer may fire up to one clock tick early: a deadline within it has passed.
        now = monotonic() + 0.001
        earliest: float | None = None
        for task, (deadline, _) in list(self._calls.items()):
            if task in self._expired:
                continue
            if task.get_loop() is not loop or task.done():
                del self._calls[task]  # left behind by a loop that is gone
            elif deadline <= now:
                self._expired.add(task)
                task.cancel()
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._arm(earliest)
