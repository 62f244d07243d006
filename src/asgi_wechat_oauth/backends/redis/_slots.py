"""Calls that wait for a cluster slot without a master wait together.

While a master fails over, every call for its slots fails at once (connection refused,
``CLUSTERDOWN``), and hundreds of them may be waiting in one process. Each trying again on its
own would keep the process's connections busy with calls bound to fail, ahead of calls for
healthy slots, and burn the CPU a loaded host needs for those. Here one call per slot tries
again after each pause; the others wait until a call for that slot is answered, then all go
at once. A waiter also tries by itself after a while, so that no slot is left without one
trying when the call that did gives up.
"""

from __future__ import annotations

import anyio

#: A waiter tries by itself after this long without news of its slot.
ON_ITS_OWN = 2.5


class _Down:
    __slots__ = ("answered", "trying")

    def __init__(self) -> None:
        self.answered = anyio.Event()
        self.trying = False


class SlotWaits:
    """The slots calls of this process are waiting for (any int: a cluster's hash slot, or one
    for a whole Redis that does not answer)."""

    def __init__(self) -> None:
        self._down: dict[int, _Down] = {}

    def __len__(self) -> int:
        return len(self._down)

    async def wait(self, slot: int, pause: float, left: float) -> None:
        """Return when this call should try ``slot`` again: after ``pause`` if no other call is
        trying it, else once a call for it is answered (within ``left`` seconds, and at most
        :data:`ON_ITS_OWN`)."""
        down = self._down.get(slot)
        if down is None:
            down = self._down[slot] = _Down()
        if not down.trying:
            down.trying = True
            try:
                await anyio.sleep(min(pause, left))
            finally:
                down.trying = False
            return
        with anyio.move_on_after(min(left, ON_ITS_OWN)):
            await down.answered.wait()

    def answered(self, slot: int) -> None:
        """A call for ``slot`` was answered: everyone waiting for it goes."""
        down = self._down.pop(slot, None)
        if down is not None:
            down.answered.set()
