"""In-process single flight: a dict of in-flight codes and bounded TTL caches of outcomes.

Loop-agnostic (anyio primitives only), so it runs on asyncio and trio. It dedupes within one
process; several workers need :class:`~asgi_wechat_oauth.backends.redis.RedisBackend`.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

import anyio

from .._core.contract import Claim, Mark, Outcome
from ..errors import ErrorReason, ServiceUnavailable, WeChatOAuthError

#: What :meth:`MemoryBackend.peek` answers for a code whose flight runs in this process.
_WAIT = Claim()


class _Flight:
    __slots__ = ("done", "lease", "outcome")

    def __init__(self, lease: str) -> None:
        self.lease = lease
        self.done = anyio.Event()
        self.outcome: Outcome | None = None


class _Outcomes:
    """A bounded LRU map of outcomes that each expire at their own time.

    Lighter than a general TTL cache: one ``OrderedDict`` entry holding ``(outcome, expires)``
    per key. Expired entries are dropped when read, and from the cold end on every write."""

    __slots__ = ("_items", "bound")

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._items: OrderedDict[bytes | str, tuple[Outcome, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: bytes | str, now: float) -> Outcome | None:
        item = self.entry(key, now)
        return None if item is None else item[0]

    def entry(self, key: bytes | str, now: float) -> tuple[Outcome, float] | None:
        """The outcome and when it expires, or ``None``."""
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= now:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item

    def put(self, key: bytes | str, outcome: Outcome, expires: float, now: float) -> None:
        items = self._items
        items[key] = (outcome, expires)
        while items:  # the cold end: expired, or beyond the bound
            oldest = next(iter(items.values()))
            if oldest[1] > now and len(items) <= self.bound:
                break
            items.popitem(last=False)

    def drop(self, key: bytes | str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


def _compact(key: str) -> bytes | str:
    """A key as the maps hold it: a 64-character hex digest as its 32 raw bytes (65 bytes per
    entry instead of 113 for the string); any other key as it is."""
    if len(key) == 64:
        try:
            return bytes.fromhex(key)
        except ValueError:
            pass
    return key


class MemoryBackend:
    """The default backend.

    ``max_entries`` bounds both the cache of results (least recently used results are dropped
    first, and each expires after the middleware's ``result_ttl``) and the in-flight map (a new
    code beyond it is answered 503 ``overloaded``; in-flight entries are never evicted, so a
    flood of codes cannot break dedupe for the logins already running). Errors kept for late
    duplicates (a code WeChat called invalid, used or expired) have a cache of their own,
    bounded by ``max_errors`` (default: a tenth of ``max_entries``), so that a flood of made-up
    codes neither fills memory nor pushes out the results of real logins; so have the records
    any request can make without a code (a ``Result`` whose class sets ``unbidden``: a desktop's
    handoff, a QR link's ``next``), bounded the same. The states whose
    codes are counted (``note_code``) are bounded by ``max_entries`` too, least recently used
    dropped first.
    """

    #: Leaders live in this process and are bounded by ``exchange_timeout``: no extra grace.
    lease_ttl = 0.0

    def __init__(self, max_entries: int = 100_000, *, max_errors: int | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if max_errors is None:
            max_errors = max(1, max_entries // 10)
        if max_errors < 1:
            raise ValueError("max_errors must be at least 1")
        self.max_entries = max_entries
        self.max_errors = max_errors
        self._flights: dict[bytes | str, _Flight] = {}
        self._results = _Outcomes(max_entries)
        self._errors = _Outcomes(max_errors)
        self._unbidden = _Outcomes(max_errors)
        #: state group -> (the code keys counted under it, when the count expires)
        self._noted: OrderedDict[str, tuple[set[bytes | str], float]] = OrderedDict()
        #: key -> when its mark (reject) expires; key -> until when a taken mark spaces the next
        self._marks: OrderedDict[bytes | str, float] = OrderedDict()
        self._spaced: OrderedDict[bytes | str, float] = OrderedDict()

    def __repr__(self) -> str:
        return f"MemoryBackend(max_entries={self.max_entries})"

    @property
    def in_flight(self) -> int:
        """Codes being traded right now."""
        return len(self._flights)

    @property
    def stored(self) -> int:
        """Outcomes held for late duplicates (expired ones may linger until the next write)."""
        return len(self._results) + len(self._errors) + len(self._unbidden)

    def is_empty(self) -> bool:
        """Whether nothing is in flight or stored: a test cheaper than any look-up (a Redis
        backend's local fallback is empty unless Redis was ever down)."""
        return not (
            self._flights or self._results._items or self._errors._items or self._unbidden._items
        )

    def has_flight(self, key: str) -> bool:
        """Whether ``key`` is being traded in this process right now."""
        return _compact(key) in self._flights

    def knows(self, key: str) -> bool:
        """Whether ``key`` is being traded here or has a stored outcome."""
        return self.peek(key) is not None

    def peek(self, key: str) -> Claim | None:
        """Answer without taking a lease: the stored outcome, ``Claim()`` when a flight for
        ``key`` runs in this process (:meth:`wait` for it), or ``None`` (:meth:`claim`)."""
        k = _compact(key)
        if k in self._flights:
            return _WAIT
        outcome = self._stored(k)
        return None if outcome is None else Claim(outcome=outcome)

    def _stored(self, k: bytes | str) -> Outcome | None:
        now = time.monotonic()
        for cache in (self._results, self._errors, self._unbidden):
            outcome = cache.get(k, now)
            if outcome is not None:
                return outcome
        return None

    async def claim(self, key: str) -> Claim:
        k = _compact(key)
        outcome = self._stored(k)
        if outcome is not None:
            return Claim(outcome=outcome)
        if k in self._flights:
            return _WAIT
        if len(self._flights) >= self.max_entries:
            raise ServiceUnavailable(
                ErrorReason.OVERLOADED, "Too many logins in progress; try again."
            )
        flight = _Flight(secrets.token_hex(8))
        self._flights[k] = flight
        return Claim(lease=flight.lease)

    async def complete(self, key: str, lease: str, outcome: Outcome, *, ttl: float) -> None:
        k = _compact(key)
        if ttl > 0 and self._stored(k) is None:
            now = time.monotonic()
            self._cache_for(outcome).put(k, outcome, now + ttl, now)
        flight = self._flights.get(k)
        if flight is not None and flight.lease == lease:
            # Remove only our own flight: a newer one under the same key is not ours to end.
            del self._flights[k]
            flight.outcome = outcome
            flight.done.set()

    def _cache_for(self, outcome: Outcome) -> _Outcomes:
        if isinstance(outcome, WeChatOAuthError):
            return self._errors
        return self._unbidden if getattr(outcome, "unbidden", False) else self._results

    async def wait(self, key: str, *, timeout: float) -> Outcome | None:
        k = _compact(key)
        flight = self._flights.get(k)
        if flight is None:
            return self._stored(k)
        with anyio.move_on_after(timeout):
            await flight.done.wait()
        return flight.outcome

    async def recover(self, key: str, *, timeout: float) -> Outcome | None:
        # In one process the lease holder is the only one trading the code, so there is nothing
        # in flight elsewhere to wait for; a stored result is all there can be.
        return self._stored(_compact(key))

    async def forget(self, key: str, *, only_if: Callable[[Outcome], bool] | None = None) -> bool:
        return self._forget(_compact(key), only_if)

    def _forget(self, k: bytes | str, only_if: Callable[[Outcome], bool] | None) -> bool:
        outcome = self._stored(k)
        if outcome is None or (only_if is not None and not only_if(outcome)):
            return False
        for cache in (self._results, self._errors, self._unbidden):
            cache.drop(k)
        return True

    # --- TokenStore: what an access-token keeper needs besides ------------------------------

    async def lookup(self, key: str) -> tuple[Outcome, float] | None:
        now = time.monotonic()
        k = _compact(key)
        entry = (
            self._results.entry(k, now)
            or self._errors.entry(k, now)
            or self._unbidden.entry(k, now)
        )
        return None if entry is None else (entry[0], entry[1] - now)

    async def reject(
        self, key: str, *, only_if: Callable[[Outcome], bool], mark_ttl: float
    ) -> bool:
        k = _compact(key)
        if not self._forget(k, only_if):  # no await in between: one step, as on Redis
            return False
        if mark_ttl > 0:
            _bounded_put(self._marks, k, time.monotonic() + mark_ttl, self.max_entries)
        return True

    async def take_mark(self, key: str, *, spacing: float) -> Mark:
        k, now = _compact(key), time.monotonic()
        expires = self._marks.pop(k, None)
        if expires is None or expires <= now:
            return "unmarked"
        if spacing <= 0:
            return "taken"
        if self._spaced.get(k, 0.0) > now:
            return "spaced"
        _bounded_put(self._spaced, k, now + spacing, self.max_entries)
        return "taken"

    async def note_code(self, group: str, key: str, *, limit: int, ttl: float) -> bool:
        now = time.monotonic()
        noted = self._noted.get(group)
        if noted is None or noted[1] <= now:
            noted = self._noted[group] = (set(), now + ttl)
            while len(self._noted) > self.max_entries:
                self._noted.popitem(last=False)
        self._noted.move_to_end(group)
        keys, compact = noted[0], _compact(key)
        if compact in keys:
            return True
        if len(keys) >= limit:
            return False
        keys.add(compact)
        return True

    async def aclose(self) -> None:
        # Flights still running finish on their own; stored results are no longer needed.
        self._results.clear()
        self._errors.clear()
        self._noted.clear()
        self._marks.clear()
        self._spaced.clear()


def _bounded_put(
    items: OrderedDict[bytes | str, float], key: bytes | str, value: float, bound: int
) -> None:
    items[key] = value
    items.move_to_end(key)
    while len(items) > bound:
        items.popitem(last=False)
