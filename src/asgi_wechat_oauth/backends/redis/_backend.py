"""The backend protocol on Redis: claim, complete, wait, recover, forget, note_code, with the
in-process fallback while Redis does not answer (``on_unavailable="local"``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import anyio
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ..._core.contract import Claim, Outcome
from ...errors import CodeRejected, ErrorReason, ExchangeLost, ServiceUnavailable, WeChatOAuthError
from ._calls import ms, require_asyncio
from ._failures import Busy, Unavailable, connect, overloaded
from ._ledger import LOCAL, Ledger
from ._tokens import RedisTokenStore
from ._wakeups import Slot, Wakeups

logger = logging.getLogger("asgi_wechat_oauth")

#: How long the holders set lives: longer than any code (QR login codes live 10 minutes).
_HOLDERS_TTL_MS = 15 * 60 * 1000
#: What peek() answers for a code this process leads: wait for that flight.
_WAIT = Claim()
#: How long a claim holds back from leading over a holder that stored nothing yet, after a
#: failover or a stall: that holder's worker settles what it owes within about a second of its
#: slot answering again (see _ledger), far within this.
SETTLE_GRACE = 5.0


class RedisBackend(RedisTokenStore):
    """Dedupe exchanges across processes with Redis (or Valkey).

    ``url_or_client``: a ``redis://``, ``rediss://`` or ``unix://`` URL, or a
    ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster`` client you own
    (Sentinel-managed clients included; the backend then neither configures nor closes it).
    ``cluster=True`` reads the URL as one node of a Redis Cluster (the others are discovered).
    ``lease_ttl``: how long a lease outlives a leader that
    died; waiters take over after it. ``on_unavailable``: ``"local"`` dedupes within the process
    while Redis is down (logged once as a warning) and returns to Redis by itself;
    ``"fail"`` answers 503 ``backend_unavailable``. ``redis_timeout`` bounds each Redis
    call. A call that timed out (it may have run) or whose cluster slot has no master (a
    failover) is not an outage: it is sent again until answered, for up to
    ``failover_timeout`` seconds (0: never, the first such failure is an outage); only an
    outage (refused connections, no node of the cluster answering, or no answer for
    ``failover_timeout``) falls back, and the backend comes back once every master answers a
    probe, tried every ``retry_interval`` seconds.

    A URL gets at most ``max_connections`` calls in flight per process (one Redis: a blocking
    pool of that size, one connection being the subscription's; a cluster: in all, across the
    nodes' pools of that size): a burst beyond waits its turn, and only one beyond
    ``max_queued`` waiting calls is answered 503 ``overloaded`` (``Retry-After``). A client you
    pass keeps its own pool: make it a ``BlockingConnectionPool``, or a burst beyond its size
    is answered 503 ``overloaded``.

    Results (tokens included) live under the result key for the middleware's ``result_ttl``;
    keys hold the code's hash, never the code. ``encryption_key`` (16, 24 or 32 bytes, the same
    on every worker; extra ``encryption``) seals them with AES-GCM bound to their key.
    """

    def __init__(
        self,
        url_or_client: str | aioredis.Redis | RedisCluster,
        *,
        cluster: bool = False,
        prefix: str = "wechat-oauth",
        lease_ttl: float = 15.0,
        on_unavailable: Literal["local", "fail"] = "local",
        redis_timeout: float = 2.0,
        retry_interval: float = 2.0,
        encryption_key: bytes | None = None,
        max_connections: int = 50,
        max_queued: int = 5000,
        failover_timeout: float = 30.0,
    ) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty")
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be positive")
        if on_unavailable not in ("local", "fail"):
            raise ValueError("on_unavailable must be 'local' or 'fail'")
        if max_connections < 2:
            raise ValueError("max_connections must be at least 2 (one is the subscription)")
        if redis_timeout <= 0 or retry_interval < 0:
            raise ValueError("redis_timeout must be positive, retry_interval not negative")
        if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 0:
            raise ValueError("max_queued must be a whole number of calls, 0 or more")
        if not 0 <= failover_timeout <= 120:
            raise ValueError(
                "failover_timeout must be between 0 and 120 seconds (a code lives 5 minutes)"
            )
        client, owns_client = connect(
            url_or_client,
            cluster=cluster,
            redis_timeout=redis_timeout,
            max_connections=max_connections,
        )
        super().__init__(
            client,
            owns_client=owns_client,
            prefix=prefix,
            on_unavailable=on_unavailable,
            redis_timeout=redis_timeout,
            retry_interval=retry_interval,
            failover_timeout=failover_timeout,
            encryption_key=encryption_key,
            max_connections=max_connections,
            max_queued=max_queued,
        )
        self.lease_ttl = lease_ttl
        self._wakeups = Wakeups(client, f"{prefix}:done", retry_interval=self._retry_interval)
        #: Keys this process leads under a Redis lease: a duplicate here waits for that flight
        #: with no round trip (and, while Redis is unreachable, does not trade the code again).
        #: (With each one's Redis keys, for its COMPLETE.)
        self._leading: dict[str, list[str]] = {}
        #: Keys whose state in Redis this process must still settle (see _ledger).
        self._unsettled = Ledger(
            complete=self._settle,
            dump=self._dump,
            retry_interval=self._retry_interval,
            down=lambda: self._down,
        )

    def __repr__(self) -> str:
        return f"RedisBackend(prefix={self.prefix!r}, lease_ttl={self.lease_ttl!r})"

    def peek(self, key: str) -> Claim | None:
        """A duplicate of a code this process leads joins that flight with no round trip
        (``Claim()``: wait for it); the local fallback's own flights and results likewise;
        anything else goes to Redis (``None``: claim)."""
        if key in self._leading:
            return _WAIT
        return None if self._local.is_empty() else self._local.peek(key)

    async def claim(self, key: str) -> Claim:
        require_asyncio()
        if not await self._use_redis() or (not self._local.is_empty() and self._local.knows(key)):
            # Down, or this process handled the code while Redis was down: stay local for it,
            # or a duplicate here would take a Redis lease and trade the code again.
            return await self._claim_locally(key)
        token = secrets.token_hex(16)
        keys = self._keys(key)
        try:
            answer = await self._claim(keys, token, hold_back=True)
            if answer[0] == 4:
                # No lease, but a holder that stored nothing: a leader that died, or, after a
                # failover or a stall (seen here lately, this claim's own included), one whose
                # lease expired while Redis did not answer it, and which has not stored its
                # outcome yet. That one is waited for; a dead one is taken over at once.
                if self._troubled_lately():
                    delivered = await self._held_back(key)
                    if delivered is not None:
                        return Claim(outcome=delivered)
                answer = await self._claim(keys, token, hold_back=False)
        except Unavailable:
            # The CLAIM may still run on the server and take the lease under this token:
            # remember it, to store this process's outcome under it (or release it) later.
            self._unsettled.remember(key).tokens.add(token)
            try:
                claim = await self._claim_locally(key)
            except ServiceUnavailable:
                # on_unavailable="fail": nobody here trades it
                self._unsettled.release_later(key, token)
                raise
            if claim.outcome is not None:
                self._unsettled.release_later(key, token)  # known here: settled, or released
            return claim
        except Busy:
            raise overloaded() from None
        if answer[0] == 1:
            return Claim(outcome=self._load(key, answer[1]))
        if answer[0] == 2:
            self._leading[key] = keys
            return Claim(lease=token)
        return Claim()

    def _troubled_lately(self) -> bool:
        """Whether a call of this process timed out or found its slot without a master (or
        Redis was down) recently enough that a lease may have expired meanwhile."""
        return time.monotonic() - self.trouble_at < self.failover_timeout + self.lease_ttl

    async def _claim(self, keys: list[str], token: str, hold_back: bool) -> Any:
        args = [token, ms(self.lease_ttl), _HOLDERS_TTL_MS, b"1" if hold_back else b"0"]
        return await self._call(self._scripts.claim, keys, args)

    async def _held_back(self, key: str) -> Outcome | None:
        """CLAIM held back (no lease, and a holder that stored nothing): wait up to
        :data:`SETTLE_GRACE` for that holder's outcome. ``None``: claim (and lead) all the
        same, as after a dead leader's lease expired."""
        started = time.monotonic()
        deadline = started + SETTLE_GRACE
        try:
            while (left := deadline - time.monotonic()) > 0:
                async with self._watch(key, left) as (slot, answer):
                    if answer[0] == 1:
                        return self._load(key, answer[1])
                    if answer[1] >= 0 or answer[2] == 0:
                        return None  # someone leads now, or the holder settled with nothing
                    with anyio.move_on_after(left):
                        await slot.event.wait()
                    outcome = self._read_delivery(key, slot)
                    if outcome is not None:
                        return outcome
        except Unavailable:
            pass  # no answer within the grace: not an outage (the claim that follows says)
        logger.warning(
            "wechat_oauth.redis_holder_gone code_hash=%s waited_ms=%d",
            key[:16],
            (time.monotonic() - started) * 1000,
        )
        return None

    async def complete(
        self, key: str, lease: str, outcome: Outcome, *, ttl: float
    ) -> Outcome | None:
        """Never raises: what cannot be done in Redis now is logged (without tokens) and
        settled later, and the waiters in this process get the outcome regardless."""
        try:
            return await self._complete_or_defer(key, lease, outcome, ttl)
        except Exception as exc:  # a bug must not turn a login into a 500 nor keep a lease
            logger.error("wechat_oauth.redis_complete_failed error=%s", type(exc).__name__)
            local = lease[len(LOCAL) :] if lease.startswith(LOCAL) else ""
            await self._local.complete(key, local, outcome, ttl=ttl)  # ends a local flight
            await self._finish_locally(key, outcome, ttl)
            try:
                # Stored later, so that a duplicate elsewhere gets it rather than trading the
                # code again; released only, if even that fails.
                token = None if lease.startswith(LOCAL) else lease
                self._unsettled.settle_later(key, outcome, ttl, token=token)
            except Exception:
                self._unsettled.release_later(key, lease)
            return None

    async def _complete_or_defer(
        self, key: str, lease: str, outcome: Outcome, ttl: float
    ) -> Outcome | None:
        if lease.startswith(LOCAL):
            await self._local.complete(key, lease[len(LOCAL) :], outcome, ttl=ttl)
            # Decided without Redis: store it there once Redis answers, so that a duplicate
            # on another worker gets it, and release what a timed-out CLAIM may have taken.
            self._unsettled.settle_later(key, outcome, ttl)
            return None
        keys = self._leading.pop(key, None)
        # A result is what Redis keeps (it replaces only a stored error), and an outcome not
        # stored is sent as it is: this process's own waiters get either at once. A stored
        # error may yield to a result stored first, so they get what the script answers.
        early = ttl <= 0 or not isinstance(outcome, WeChatOAuthError)
        if early and self._wakeups.deliver_outcome(key, outcome):
            await asyncio.sleep(0)  # they go first, not after the client's work for COMPLETE
        data = self._dump(key, outcome)
        if data is None:
            # Unstorable (a Result whose to_dict() is not JSON): this process's waiters get
            # it; elsewhere the lease is released and a duplicate trades again.
            await self._finish_locally(key, outcome, ttl)
            self._unsettled.release_later(key, lease)
            return None
        try:
            # The outcome travels in the message (sealed when results are), so a woken waiter
            # needs no further round trip. Sent again for a moment (it is idempotent), then
            # left to the ledger, which keeps trying in the background.
            published = await self._call(
                self._scripts.complete,
                *self._complete_args(key, lease, data, ttl, keys),
                budget=self.redis_timeout,
            )
        except (Unavailable, Busy):
            # Waiters in this process still get the outcome, now and (kept locally) later.
            # The COMPLETE may or may not have run: it runs again once Redis answers.
            await self._finish_locally(key, outcome, ttl)
            self._unsettled.settle_later(key, outcome, ttl, token=lease)
            return None
        except BaseException:
            # Cancelled (the flight's own bound, a shutdown): what Redis may not know yet is
            # settled later all the same, or a duplicate elsewhere would lead again.
            self._unsettled.settle_later(key, outcome, ttl, token=lease)
            raise
        if key in self._unsettled:  # a timed-out CLAIM of this key may hold a lease too
            self._unsettled.settle_later(key, outcome, ttl)
        if early:
            return None
        delivered = self._load(key, published)
        self._wakeups.deliver_outcome(key, delivered)
        return delivered

    async def _finish_locally(self, key: str, outcome: Outcome, ttl: float) -> None:
        await self._local.complete(key, "", outcome, ttl=ttl)
        self._wakeups.deliver_outcome(key, outcome)

    def _complete_args(
        self, key: str, token: str, data: bytes, ttl: float, keys: list[str] | None = None
    ) -> tuple[list[str], list[Any]]:
        store = b"1" if ttl > 0 and data else b"0"
        args = [token, store, max(ms(ttl), 1), self._wakeups.channel, key, data]
        return keys or self._keys(key), args

    async def _settle(self, key: str, token: str, data: bytes, ttl: float) -> None:
        """COMPLETE for the ledger, once: store ``data`` (``b""``: only release ``token``)."""
        args = self._complete_args(key, token, data, ttl)
        await self._call(self._scripts.complete, *args, budget=0, urgent=True)

    def _retry_interval(self) -> float:
        return self.retry_interval

    async def wait(self, key: str, *, timeout: float) -> Outcome | None:
        if self._local.has_flight(key):
            return await self._local.wait(key, timeout=timeout)
        if key in self._leading:
            return await self._wait_for_own_leader(key, timeout)
        if not await self._use_redis():
            return None  # claim again: the fallback takes over
        try:
            async with self._watch(key, timeout) as (slot, answer):
                if answer[0] == 1:
                    return self._load(key, answer[1])
                lease_left = answer[1] / 1000
                if lease_left < 0:
                    return None  # no lease and no result: claim again
                with anyio.move_on_after(min(timeout, lease_left + 0.05)):
                    await slot.event.wait()
                return self._read_delivery(key, slot)
        except (Unavailable, Busy):
            if key in self._leading:
                return await self._wait_for_own_leader(key, timeout)
            return None

    async def _wait_for_own_leader(self, key: str, timeout: float) -> Outcome | None:
        """This process leads ``key``: its complete() delivers here, with no round trip."""
        slot = self._wakeups.register(key)
        try:
            with anyio.move_on_after(timeout):
                await slot.event.wait()
            return self._read_delivery(key, slot)
        finally:
            self._wakeups.unregister(key, slot)

    async def recover(self, key: str, *, timeout: float) -> Outcome | None:
        local = await self._local.recover(key, timeout=timeout)
        if local is not None or not await self._use_redis():
            return local
        deadline = anyio.current_time() + timeout
        outcome: Outcome | None = None
        try:
            while outcome is None and anyio.current_time() < deadline:
                left = deadline - anyio.current_time()
                async with self._watch(key, left) as (slot, answer):
                    if answer[0] == 1:
                        return self._load(key, answer[1])
                    if answer[2] <= 1:
                        return None  # nobody else is trading it: really used or invalid
                    with anyio.move_on_after(deadline - anyio.current_time()):
                        await slot.event.wait()
                    outcome = self._read_delivery(key, slot)
                # Woken without an outcome (the subscription was renewed): look again.
        except (Unavailable, Busy):
            return None
        if outcome is not None and not isinstance(outcome, CodeRejected):
            return outcome
        # Another leader traded the code and never shared a result: it died mid-exchange.
        return ExchangeLost(
            ErrorReason.EXCHANGE_LOST,
            "The login was interrupted on the server; please log in again.",
        )

    async def forget(self, key: str, *, only_if: Callable[[Outcome], bool] | None = None) -> bool:
        dropped = await self._local.forget(key, only_if=only_if)
        return await self._drop(key, only_if, 0.0) or dropped

    async def note_code(self, group: str, key: str, *, limit: int, ttl: float) -> bool:
        require_asyncio()
        if await self._use_redis():
            try:
                answer = await self._call(
                    self._scripts.note_code,
                    [f"{self.prefix}:{{{group}}}:codes"],
                    [key, limit, max(ms(ttl), 1)],
                )
                return bool(answer)
            except Unavailable:
                pass  # counted in this process meanwhile, as claims are
            except Busy:
                raise overloaded() from None
        return await self._local.note_code(group, key, limit=limit, ttl=ttl)

    async def aclose(self) -> None:
        await self._unsettled.aclose(self.redis_timeout)
        await self._wakeups.aclose()
        if self._owns_client:
            await self._client.aclose()
        await self._local.aclose()

    @contextlib.asynccontextmanager
    async def _watch(self, key: str, budget: float) -> AsyncIterator[tuple[Slot, Any]]:
        """Listen for ``key``'s outcome, *then* read its state (CHECK): in this order an
        outcome published in between is not missed. Both are tried again for up to ``budget``
        seconds (the subscription moves off a failed node by itself)."""
        give_up = time.monotonic() + budget
        slot = self._wakeups.register(key)
        try:
            while True:
                try:
                    await self._wakeups.subscribe(min(self.redis_timeout, max(budget, 0.001)))
                    break
                except TimeoutError:
                    self.trouble_at = time.monotonic()
                    budget = give_up - time.monotonic()
                    if budget <= 0:
                        raise Unavailable from None
            left = give_up - time.monotonic()
            yield slot, await self._call(self._scripts.check, self._keys(key), [], budget=left)
        finally:
            self._wakeups.unregister(key, slot)

    def _read_delivery(self, key: str, slot: Slot) -> Outcome | None:
        if not slot.event.is_set():
            return None  # lease expired: claim again
        if slot.outcome is None and slot.payload:  # decoded once for all local waiters
            slot.outcome = self._load(key, slot.payload)
        return slot.outcome  # None: woken to re-check, claim again

    async def _claim_locally(self, key: str) -> Claim:
        if key in self._leading:
            return Claim()  # this process leads it under a Redis lease: wait for that flight
        if self.on_unavailable == "fail":
            raise ServiceUnavailable(
                ErrorReason.BACKEND_UNAVAILABLE, "The login service is unavailable; try again soon."
            )
        claim = await self._local.claim(key)
        return Claim(outcome=claim.outcome, lease=LOCAL + claim.lease) if claim.lease else claim
