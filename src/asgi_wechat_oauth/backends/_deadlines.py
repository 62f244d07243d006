"""Many concurrent calls bounded by one timer, not one timer each.

``asyncio.timeout()`` arms a timer per call: a handle, a push onto the loop's heap (ordered by a
comparison written in Python) and a cancel. For a Redis leader that is twice per login, and it
was the largest cost the backend added to the bare Redis calls. Here every call in flight is a
dict entry holding its deadline, and one timer is armed for the earliest: when it fires it
cancels the calls past their deadline, as ``asyncio.timeout()`` would, and re-arms itself for
the next. Each call still ends with ``TimeoutError`` at its own deadline (to within a
millisecond); a cancellation from outside still propagates as ``CancelledError``. Blocks are
kept in deadline order (they are while the timeout stays the same), so a firing looks only at
the blocks that are due, however many are in flight.
"""

from __future__ import annotations

import asyncio
import sys
import time
from asyncio import current_task
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import anyio

_NEVER = float("inf")
#: A loop may run a timer up to its clock's resolution early (uvloop's clock counts
#: milliseconds): a deadline that close counts as passed, so a block may end that much early.
_EARLY = max(time.get_clock_info("monotonic").resolution, 0.001)


class Deadlines:
    """``with deadlines.bound():`` raises ``TimeoutError`` in the block once ``timeout``
    seconds have passed. One instance serves any number of tasks of one event loop at a time,
    one block per task (a task awaits one thing at a time; blocks do not nest). asyncio only."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        #: Blocks in flight: their task -> (deadline, the task's cancel requests on entry).
        self._calls: dict[asyncio.Task[Any], tuple[float, int]] = {}
        #: Tasks cancelled here for their deadline, whose block has not ended yet.
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        #: When the timer fires (the loop's clock), infinity when it is not armed.
        self._timer_at = _NEVER
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        #: Whether ``_calls`` is in deadline order (the latest deadline entered so far).
        self._in_order = True
        self._latest = -_NEVER

    if sys.version_info >= (3, 11):

        def bound(self) -> _Block:
            return _Block(self)

        def _enter(self, task: asyncio.Task[Any]) -> None:
            if task in self._calls:
                raise RuntimeError("Deadlines blocks do not nest")
            loop = task.get_loop()
            deadline = loop.time() + self.timeout
            self._calls[task] = (deadline, task.cancelling())
            if deadline >= self._latest:
                self._latest = deadline
            else:  # the timeout was lowered: put them back in order when the timer fires
                self._in_order = False
            # Only an earlier deadline moves the timer: one that is due stays due (replacing
            # it would hold the calls past their deadline for another timeout).
            if deadline < self._timer_at or loop is not self._timer_loop:
                self._arm(loop, deadline)

        def _exit(self, task: asyncio.Task[Any], cancelled: bool) -> bool:
            """End the block; whether it was cancelled for its deadline and nothing else."""
            entry = self._calls.pop(task, None)
            if entry is None or task not in self._expired:
                return False
            self._expired.discard(task)
            # Our cancel request is withdrawn either way; one made by someone else stays.
            return task.uncancel() <= entry[1] and cancelled

    else:  # pragma: no cover - Python 3.10 has no Task.uncancel(): anyio's cancel scope

        def bound(self) -> AbstractContextManager[object]:
            return anyio.fail_after(self.timeout)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._expire, loop)
        self._timer_at, self._timer_loop = when, loop

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at, self._timer_loop = None, _NEVER, None
        if not self._in_order:
            self._calls = dict(sorted(self._calls.items(), key=_deadline))
            self._in_order = True
        now = loop.time() + _EARLY
        gone = []
        for task, (deadline, _) in self._calls.items():
            if task.done() or task.get_loop() is not loop:
                gone.append(task)  # left by a loop that stopped: nothing can end that block
            elif task in self._expired:
                continue  # cancelled already: its block ends as the task runs again
            elif deadline <= now:
                self._expired.add(task)
                task.cancel()
            else:  # the first block not yet due: so are the ones after it
                self._arm(loop, deadline)
                break
        for task in gone:
            del self._calls[task]
            self._expired.discard(task)


def _deadline(entry: tuple[asyncio.Task[Any], tuple[float, int]]) -> float:
    return entry[1][0]


if sys.version_info >= (3, 11):

    class _Block:
        """One block under a :class:`Deadlines`: it keeps its own task, so that its end is
        booked to it even when the coroutine is closed from elsewhere."""

        __slots__ = ("_deadlines", "_task")

        def __init__(self, deadlines: Deadlines) -> None:
            task = current_task()
            if task is None:
                raise RuntimeError("Deadlines need to run in an asyncio task")
            self._deadlines, self._task = deadlines, task

        def __enter__(self) -> None:
            self._deadlines._enter(self._task)

        def __exit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:
            if self._deadlines._exit(self._task, exc_type is asyncio.CancelledError):
                raise TimeoutError from exc
