"""What Redis may not know: calls that timed out but may have run there, settled later.

A CLAIM that timed out may still take a lease this process never hears of; a COMPLETE that
timed out may or may not have stored the outcome. The ledger remembers both, per key, and once
Redis answers again runs COMPLETE for them: with the outcome (so that a duplicate on another
worker gets it) under every token this process may hold, or with nothing, which only releases.
COMPLETE is idempotent for that reason.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from ..._core.contract import Outcome
from ._failures import Busy, Unavailable

logger = logging.getLogger("asgi_wechat_oauth")

#: The prefix of a lease the in-process fallback granted: Redis never held it.
LOCAL = "local:"
#: At most this many unsettled keys are remembered (a long outage drops the oldest).
MAX_UNSETTLED = 10_000
#: The longest pause between two rounds of settling.
_LONGEST_PAUSE = 0.5


@dataclass
class Unsettled:
    """What Redis may not know about one key: leases this process may hold there without
    knowing it (a CLAIM that timed out may still have run), and the outcome to store once it
    answers. ``data`` is ``None`` while the outcome is not known yet, ``b""`` to only release."""

    tokens: set[str] = field(default_factory=set)
    data: bytes | None = None
    ttl: float = 0.0
    since: float = field(default_factory=time.monotonic)


class Ledger:
    """The unsettled keys, and the task that settles them.

    ``complete(key, token, data, ttl)`` runs COMPLETE in Redis (raising ``Unavailable`` or
    ``Busy`` when it cannot), ``dump`` encodes an outcome for ``key`` (``None``: it cannot be
    stored), ``retry_interval()`` is the longest wait between two tries (half a second at
    most: after a failover, a duplicate on another worker may be waiting for what is settled
    here), ``down()`` whether Redis is down (then a round stops at the first failure; else a
    key whose slot has no master does not hold up the others)."""

    def __init__(
        self,
        *,
        complete: Callable[[str, str, bytes, float], Awaitable[object]],
        dump: Callable[[str, Outcome], bytes | None],
        retry_interval: Callable[[], float],
        down: Callable[[], bool] = lambda: False,
    ) -> None:
        self._complete = complete
        self._dump = dump
        self._retry_interval = retry_interval
        self._down = down
        self._entries: dict[str, Unsettled] = {}
        self._settler: asyncio.Task[None] | None = None

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Unsettled | None:
        return self._entries.get(key)

    def remember(self, key: str) -> Unsettled:
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= MAX_UNSETTLED:
                oldest = next(iter(self._entries))
                del self._entries[oldest]
                logger.debug("wechat_oauth.redis_unsettled_dropped code_hash=%s", oldest[:16])
            entry = self._entries[key] = Unsettled()
        return entry

    def settle_later(
        self, key: str, outcome: Outcome, ttl: float, *, token: str | None = None
    ) -> None:
        """Store ``outcome`` in Redis once it answers, under every token this process may hold
        for ``key`` (releasing those leases)."""
        entry = self.remember(key)
        if token is not None:
            entry.tokens.add(token)
        data = self._dump(key, outcome)
        entry.data, entry.ttl, entry.since = data or b"", ttl, time.monotonic()
        self._start()

    def release_later(self, key: str, lease: str) -> None:
        if lease.startswith(LOCAL):
            return
        entry = self.remember(key)
        entry.tokens.add(lease)
        if entry.data is None:
            entry.data = b""
        self._start()

    def pending(self) -> int:
        """How many keys wait only for Redis (their outcome, or a release, is known)."""
        return sum(entry.data is not None for entry in self._entries.values())

    async def aclose(self, timeout: float) -> None:
        """Stop the settler, try once more for up to ``timeout`` seconds, and log what is
        left."""
        settler, self._settler = self._settler, None
        if settler is not None:
            settler.cancel()
            await asyncio.gather(settler, return_exceptions=True)
        if any(entry.data is not None for entry in self._entries.values()):
            # A last try, bounded: a worker stopping right after a stall leaves no lease.
            with anyio.move_on_after(timeout):
                await self._settle_ready()
        left = self.pending()
        if left:
            logger.warning("wechat_oauth.redis_unsettled_at_close keys=%d", left)

    def _start(self) -> None:
        if self._settler is None or self._settler.done():
            self._settler = asyncio.get_running_loop().create_task(self._settle_until_done())

    async def _settle_until_done(self) -> None:
        """Retries (every ``retry_interval`` or half a second, whichever is shorter; sooner at
        first) until everything known is settled, including what arrived while it ran."""
        delay = 0.05
        while any(entry.data is not None for entry in self._entries.values()):
            if await self._settle_ready():
                await anyio.sleep(delay)
                delay = min(delay * 2, max(min(self._retry_interval(), _LONGEST_PAUSE), 0.05))

    async def _settle_ready(self) -> bool:
        """Run COMPLETE for every key whose outcome is known; True if Redis failed."""
        failed = False
        for key, entry in list(self._entries.items()):
            if entry.data is None:
                continue  # its flight is still running here; its complete() will settle it
            left = entry.since + entry.ttl - time.monotonic()
            data = entry.data if left > 0 else b""  # past result_ttl: only release
            if not data and not entry.tokens:
                self._entries.pop(key, None)
                continue
            if not await self._settle_key(entry, key, data, max(left, 0)):
                if self._down():
                    return True
                failed = True  # its slot may have no master: the other keys go on
            elif self._entries.get(key) is entry and not entry.tokens:
                del self._entries[key]
        return failed

    async def _settle_key(self, entry: Unsettled, key: str, data: bytes, ttl: float) -> bool:
        """COMPLETE under each of the key's tokens, or any token (storing needs no lease);
        whether Redis answered."""
        for token in sorted(entry.tokens) or [secrets.token_hex(16)]:
            try:
                await self._complete(key, token, data, ttl)
            except (Unavailable, Busy):
                return False
            entry.tokens.discard(token)
        return True
