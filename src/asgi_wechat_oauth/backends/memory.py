"""In-process single flight: a dict of in-flight codes and a bounded TTL cache of results.

Loop-agnostic (anyio primitives only), so it runs on asyncio and trio. It dedupes within one
process; several workers need :class:`~asgi_wechat_oauth.backends.redis.RedisBackend`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from cachetools import TLRUCache

from .._core.errors import ServiceUnavailable
from ._base import Claim, Outcome


@dataclass
class _Flight:
    lease: str
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: Outcome | None = None


@dataclass(frozen=True)
class _Stored:
    outcome: Outcome
    ttl: float


@dataclass(frozen=True)
class _Noted:
    keys: set[str]
    ttl: float


def _expires_at(_key: str, stored: _Stored | _Noted, now: float) -> float:
    return now + stored.ttl


class MemoryBackend:
    """The default backend.

    ``max_entries`` bounds both the result cache (least recently used results are dropped first,
    and each expires after the middleware's ``result_ttl``) and the in-flight map (a new code
    beyond it is answered 503 ``overloaded``; in-flight entries are never evicted, so a flood of
    codes cannot break dedupe for the logins already running), and the states whose codes are
    counted (least recently used dropped first).
    """

    #: Leaders live in this process and are bounded by ``exchange_timeout``: no extra grace.
    lease_ttl = 0.0

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._flights: dict[str, _Flight] = {}
        self._results: TLRUCache[str, _Stored] = TLRUCache(maxsize=max_entries, ttu=_expires_at)
        self._noted: TLRUCache[str, _Noted] = TLRUCache(maxsize=max_entries, ttu=_expires_at)

    def __repr__(self) -> str:
        return f"MemoryBackend(max_entries={self.max_entries})"

    @property
    def in_flight(self) -> int:
        """Codes being traded right now."""
        return len(self._flights)

    @property
    def stored(self) -> int:
        """Results held for late duplicates (expired ones may linger until the next write)."""
        return len(self._results)

    def has_flight(self, key: str) -> bool:
        """Whether ``key`` is being traded in this process right now."""
        return key in self._flights

    def knows(self, key: str) -> bool:
        """Whether ``key`` is being traded here or has a stored outcome."""
        return key in self._flights or self._results.get(key) is not None

    async def claim(self, key: str) -> Claim:
        stored = self._results.get(key)
        if stored is not None:
            return Claim(outcome=stored.outcome)
        if key in self._flights:
            return Claim()
        if len(self._flights) >= self.max_entries:
            raise ServiceUnavailable("overloaded", "Too many logins in progress; try again.")
        flight = _Flight(lease=secrets.token_hex(8))
        self._flights[key] = flight
        return Claim(lease=flight.lease)

    async def complete(self, key: str, lease: str, outcome: Outcome, *, ttl: float) -> None:
        if ttl > 0 and key not in self._results:
            self._results[key] = _Stored(outcome, ttl)
        flight = self._flights.get(key)
        if flight is not None and flight.lease == lease:
            # Remove only our own flight: a newer one under the same key is not ours to end.
            del self._flights[key]
            flight.outcome = outcome
            flight.done.set()

    async def wait(self, key: str, *, timeout: float) -> Outcome | None:
        flight = self._flights.get(key)
        if flight is None:
            stored = self._results.get(key)
            return stored.outcome if stored is not None else None
        with anyio.move_on_after(timeout):
            await flight.done.wait()
        return flight.outcome

    async def recover(self, key: str, *, timeout: float) -> Outcome | None:
        # In one process the lease holder is the only one trading the code, so there is nothing
        # in flight elsewhere to wait for; a stored result is all there can be.
        stored = self._results.get(key)
        return stored.outcome if stored is not None else None

    async def forget(self, key: str, *, only_if: Callable[[Outcome], bool] | None = None) -> bool:
        stored = self._results.get(key)
        if stored is None or (only_if is not None and not only_if(stored.outcome)):
            return False
        del self._results[key]
        return True

    async def note_code(self, group: str, key: str, *, limit: int, ttl: float) -> bool:
        noted = self._noted.get(group)
        if noted is None:
            noted = self._noted[group] = _Noted(set(), ttl)
        if key in noted.keys:
            return True
        if len(noted.keys) >= limit:
            return False
        noted.keys.add(key)
        return True

    async def aclose(self) -> None:
        # Flights still running finish on their own; stored results are no longer needed.
        self._results.clear()
