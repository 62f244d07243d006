"""Single flight across workers and hosts, on ``redis.asyncio`` (asyncio only).

Each code has three keys sharing a hash tag, so the scripts also run on Redis Cluster (a
script there may only touch keys of one slot): ``{prefix}:{hash}:lease`` (who trades it),
``{prefix}:{hash}:result`` (the outcome, for ``result_ttl``) and ``{prefix}:{hash}:holders``
(the tokens of leases granted that may still produce a result); an access token's key also
``:mark`` (a rejection's mark for the next fetch) and ``:spaced`` (while no mark may be taken
again). One pub/sub subscription per process wakes local waiters; nobody polls. On a cluster,
``PUBLISH`` reaches every node, so that subscription may be on any node, and moves to another
when its node fails.

A call that timed out may still run on the server: a CLAIM may take a lease this process never
hears of, a COMPLETE may or may not have stored the outcome. Such calls are remembered and
settled (COMPLETE with the outcome, or a token-checked release) once Redis answers again;
COMPLETE is idempotent for that reason.

Round trips: a leader makes 2 (CLAIM, COMPLETE), a waiter in another process 2 (CLAIM, CHECK
after subscribing; the outcome then arrives in the message that wakes it), a waiter in the
leader's own process none (it joins the local flight), a late duplicate 1 (CLAIM).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

try:
    import redis.asyncio as aioredis
    from redis.asyncio.client import PubSub
    from redis.asyncio.cluster import RedisCluster
    from redis.exceptions import (
        MaxConnectionsError,
        NoScriptError,
        RedisClusterException,
        RedisError,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "RedisBackend needs redis-py: pip install 'asgi-wechat-oauth[redis]'"
    ) from exc

from .._core.contract import Claim, Mark, Outcome
from ..errors import CodeRejected, ErrorReason, ExchangeLost, ServiceUnavailable, WeChatOAuthError
from ._codec import ResultCipher, dump_outcome, load_outcome
from ._deadlines import Deadlines
from .memory import MemoryBackend

logger = logging.getLogger("asgi_wechat_oauth")

# KEYS: lease, result, holders. ARGV: token, lease ms, holders ms.
# -> {1, stored outcome} | {2} lease taken | {3} someone else leads
# A lease held under this very token is this CLAIM run twice: redis-py sends a command again
# when the connection drops before its answer (and the cluster client after a failover).
_CLAIM = """
local stored = redis.call('GET', KEYS[2])
if stored then return {1, stored} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  return {2}
end
if redis.call('GET', KEYS[1]) == ARGV[1] then return {2} end
return {3}
"""

# KEYS: lease, result, holders. -> {1, stored outcome} | {0, lease pttl, holders}
_CHECK = """
local stored = redis.call('GET', KEYS[2])
if stored then return {1, stored} end
return {0, redis.call('PTTL', KEYS[1]), redis.call('SCARD', KEYS[3])}
"""

# KEYS: lease, result, holders. ARGV: token, '1' to store, result ms, channel, key, outcome.
# A success replaces a stored error (a leader that lost its lease may finish after another one
# stored 40163); otherwise the first stored outcome stays, and it is what the waiters are sent.
# The lease is released only by its owner. A finished attempt can produce nothing more, so its
# token leaves the holders that recover() may wait for. Running it twice changes nothing more
# (a timed-out COMPLETE is run again): it is idempotent. An empty outcome only releases.
_COMPLETE = """
local outcome = ARGV[6]
if ARGV[2] == '1' and outcome ~= '' then
  local current = redis.call('GET', KEYS[2])
  if (not current) or (string.sub(outcome, 1, 1) == '1' and string.sub(current, 1, 1) ~= '1') then
    redis.call('SET', KEYS[2], outcome, 'PX', ARGV[3])
  else
    outcome = current
  end
end
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[4], ARGV[5] .. '\\n' .. outcome)
return outcome
"""

# KEYS: result, mark. ARGV: the stored bytes the caller checked, mark ms (0: no mark).
# -> 1 dropped (and marked) | 0 changed or gone. Dropping and marking in one step: no worker
# can lead a fetch in between and miss the mark.
_FORGET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '0' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return 1
"""

# KEYS: result. -> {1, stored outcome, ms left} | {0}
_LOOKUP = """
local stored = redis.call('GET', KEYS[1])
if not stored then return {0} end
return {1, stored, redis.call('PTTL', KEYS[1])}
"""

# KEYS: mark, spaced. ARGV: spacing ms (0: none). -> 0 unmarked | 1 taken | 2 spaced
_TAKE_MARK = """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '0' then return 1 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 2
"""

# KEYS: the state's set of codes. ARGV: code key, limit, ms. -> 1 counted (or already), 0 full
_NOTE_CODE = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""

_LOCAL = "local:"
#: How long the holders set lives: longer than any code (QR login codes live 10 minutes).
_HOLDERS_TTL_MS = 15 * 60 * 1000
#: At most this many unsettled keys are remembered (a long outage drops the oldest).
_MAX_UNSETTLED = 10_000
#: Redis errors that mean "did not answer" (a cluster without a node for a slot included).
_REDIS_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)
#: What peek() answers for a code this process leads: wait for that flight.
_WAIT = Claim()
#: TAKE_MARK's answers.
_MARKS: tuple[Mark, Mark, Mark] = ("unmarked", "taken", "spaced")


class _Unavailable(Exception):
    """Redis did not answer; the caller falls back or fails as configured."""


class _Busy(Exception):
    """Redis is up but the client's pool is exhausted: not an outage."""


@dataclass
class _Slot:
    """Local waiters of one key, woken together by one published message."""

    event: anyio.Event = field(default_factory=anyio.Event)
    payload: bytes | None = None
    outcome: Outcome | None = None
    refs: int = 0


@dataclass
class _Unsettled:
    """What Redis may not know about one key: leases this process may hold there without
    knowing it (a CLAIM that timed out may still have run), and the outcome to store once it
    answers. ``data`` is ``None`` while the outcome is not known yet, ``b""`` to only release."""

    tokens: set[str] = field(default_factory=set)
    data: bytes | None = None
    ttl: float = 0.0
    since: float = field(default_factory=time.monotonic)


class RedisBackend:
    """Dedupe exchanges across processes with Redis (or Valkey).

    ``url_or_client``: a ``redis://``, ``rediss://`` or ``unix://`` URL, or a
    ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster`` client you own
    (Sentinel-managed clients included; the backend then neither configures nor closes it).
    ``cluster=True`` reads the URL as one node of a Redis Cluster (the others are discovered).
    ``lease_ttl``: how long a lease outlives a leader that
    died; waiters take over after it. ``on_unavailable``: ``"local"`` dedupes within the process
    while Redis is down (logged once as a warning) and returns to Redis by itself;
    ``"fail"`` answers 503 ``backend_unavailable``. ``redis_timeout`` bounds every Redis
    call; after a failure Redis is retried every ``retry_interval`` seconds. A URL gets a
    blocking pool of ``max_connections`` (a client you pass keeps its own pool: make it a
    ``BlockingConnectionPool`` too, or bursts beyond its size look like an outage).

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
        self._client: aioredis.Redis | RedisCluster
        if isinstance(url_or_client, str) and cluster:
            # One pool per node, of max_connections each (redis-py's cluster client has no
            # blocking pool: a burst beyond it is answered 503 "overloaded").
            self._client = RedisCluster.from_url(
                url_or_client,
                max_connections=max_connections,
                socket_timeout=redis_timeout,
                socket_connect_timeout=redis_timeout,
            )
            self._owns_client = True
        elif isinstance(url_or_client, str):
            # A blocking pool: a burst beyond max_connections waits (bounded by
            # redis_timeout) for a connection, instead of failing at once and being taken
            # for an outage, which would drop those claims to in-process dedupe.
            pool = aioredis.BlockingConnectionPool.from_url(
                url_or_client,
                max_connections=max_connections,
                timeout=redis_timeout,
                socket_timeout=redis_timeout,
                socket_connect_timeout=redis_timeout,
            )
            self._client = aioredis.Redis.from_pool(pool)
            self._owns_client = True
        else:
            if cluster and not isinstance(url_or_client, RedisCluster):
                raise ValueError("cluster=True needs a URL or a RedisCluster client")
            self._client = url_or_client
            self._owns_client = False
        if self._client.get_encoder().decode_responses:
            raise ValueError("the Redis client must not use decode_responses=True")
        self.prefix = prefix
        self.lease_ttl = lease_ttl
        self.on_unavailable = on_unavailable
        #: One timer bounds every Redis call in flight (see _deadlines).
        self._deadlines = Deadlines(redis_timeout)
        self.retry_interval = retry_interval
        #: Redis calls answered (scripts and GETs), for round-trip accounting.
        self.round_trips = 0
        self._channel = f"{prefix}:done"
        self._claim = _Script(self._client, _CLAIM)
        self._check = _Script(self._client, _CHECK)
        self._complete = _Script(self._client, _COMPLETE)
        self._note_code = _Script(self._client, _NOTE_CODE)
        self._forget = _Script(self._client, _FORGET)
        self._lookup = _Script(self._client, _LOOKUP)
        self._take_mark = _Script(self._client, _TAKE_MARK)
        self._cipher = ResultCipher(encryption_key) if encryption_key is not None else None
        self._local = MemoryBackend()
        self._waiting: dict[str, _Slot] = {}
        #: Keys this process leads under a Redis lease: a duplicate here waits for that flight
        #: with no round trip (and, while Redis is unreachable, does not trade the code again).
        #: (With each one's Redis keys, for its COMPLETE.)
        self._leading: dict[str, list[str]] = {}
        #: Keys whose state in Redis this process must still settle (see _Unsettled).
        self._unsettled: dict[str, _Unsettled] = {}
        self._settler: asyncio.Task[None] | None = None
        self._node_index = 0  # which cluster node the subscription tries next
        self._discovered = not isinstance(self._client, RedisCluster)
        self._discovery = anyio.Lock()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed: anyio.Event | None = None
        self._down_until = 0.0
        self._down = False

    def __repr__(self) -> str:
        return f"RedisBackend(prefix={self.prefix!r}, lease_ttl={self.lease_ttl!r})"

    @property
    def redis_timeout(self) -> float:
        """Seconds any one Redis call may take."""
        return self._deadlines.timeout

    @redis_timeout.setter
    def redis_timeout(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ValueError("redis_timeout must be a positive number of seconds")
        self._deadlines.timeout = seconds

    @property
    def available(self) -> bool:
        """False while Redis is considered down (the fallback, or 503s, are in use)."""
        return not self._down

    async def ping(self) -> None:
        """Raise unless Redis answers PING within ``redis_timeout`` (for
        ``python -m asgi_wechat_oauth check --online``)."""
        with anyio.fail_after(self.redis_timeout):
            await self._client.ping()

    # --- the backend protocol -----------------------------------------------------------------

    def peek(self, key: str) -> Claim | None:
        """A duplicate of a code this process leads joins that flight with no round trip
        (``Claim()``: wait for it); the local fallback's own flights and results likewise;
        anything else goes to Redis (``None``: claim)."""
        if key in self._leading:
            return _WAIT
        return None if self._local.is_empty() else self._local.peek(key)

    async def claim(self, key: str) -> Claim:
        _require_asyncio()
        if (self._down and self._skip_redis()) or (
            not self._local.is_empty() and self._local.knows(key)
        ):
            # Down, or this process handled the code while Redis was down: stay local for it,
            # or a duplicate here would take a Redis lease and trade the code again.
            return await self._claim_locally(key)
        token = secrets.token_hex(16)
        keys = self._keys(key)
        try:
            answer = await self._call(
                self._claim, keys, [token, _ms(self.lease_ttl), _HOLDERS_TTL_MS]
            )
        except _Unavailable:
            # The CLAIM may still run on the server and take the lease under this token:
            # remember it, to store this process's outcome under it (or release it) later.
            self._remember(key).tokens.add(token)
            try:
                claim = await self._claim_locally(key)
            except ServiceUnavailable:
                self._release_later(key, token)  # on_unavailable="fail": nobody here trades it
                raise
            if claim.outcome is not None:
                self._release_later(key, token)  # known here: settled with it, or released
            return claim
        except _Busy:
            raise ServiceUnavailable(
                ErrorReason.OVERLOADED, "Too many logins in progress; try again."
            ) from None
        if answer[0] == 1:
            return Claim(outcome=self._load(key, answer[1]))
        if answer[0] == 2:
            self._leading[key] = keys
            return Claim(lease=token)
        return Claim()

    async def complete(
        self, key: str, lease: str, outcome: Outcome, *, ttl: float
    ) -> Outcome | None:
        """Never raises: what cannot be done in Redis now is logged (without tokens) and
        settled later, and the waiters in this process get the outcome regardless."""
        try:
            return await self._complete_or_defer(key, lease, outcome, ttl)
        except Exception as exc:  # a bug must not turn a login into a 500 nor keep a lease
            logger.error("wechat_oauth.redis_complete_failed error=%s", type(exc).__name__)
            local = lease[len(_LOCAL) :] if lease.startswith(_LOCAL) else ""
            await self._local.complete(key, local, outcome, ttl=ttl)  # ends a local flight
            await self._finish_locally(key, outcome, ttl)
            self._release_later(key, lease)
            return None

    async def _complete_or_defer(
        self, key: str, lease: str, outcome: Outcome, ttl: float
    ) -> Outcome | None:
        if lease.startswith(_LOCAL):
            await self._local.complete(key, lease[len(_LOCAL) :], outcome, ttl=ttl)
            # Decided without Redis: store it there once Redis answers, so that a duplicate
            # on another worker gets it, and release what a timed-out CLAIM may have taken.
            self._settle_later(key, outcome, ttl)
            return None
        keys = self._leading.pop(key, None)
        # A result is what Redis keeps (it replaces only a stored error), and an outcome not
        # stored is sent as it is: this process's own waiters get either at once. A stored
        # error may yield to a result stored first, so they get what the script answers.
        early = ttl <= 0 or not isinstance(outcome, WeChatOAuthError)
        if early and self._deliver_outcome(key, outcome):
            await asyncio.sleep(0)  # they go first, not after the client's work for COMPLETE
        data = self._dump(key, outcome)
        if data is None:
            # Unstorable (a Result whose to_dict() is not JSON): this process's waiters get
            # it; elsewhere the lease is released and a duplicate trades again.
            await self._finish_locally(key, outcome, ttl)
            self._release_later(key, lease)
            return None
        try:
            # The outcome travels in the message (sealed when results are), so a woken waiter
            # needs no further round trip.
            published = await self._call(
                self._complete, *self._complete_args(key, lease, data, ttl, keys)
            )
        except (_Unavailable, _Busy):
            # Waiters in this process still get the outcome, now and (kept locally) later.
            # The COMPLETE may or may not have run: it runs again once Redis answers.
            await self._finish_locally(key, outcome, ttl)
            self._settle_later(key, outcome, ttl, token=lease)
            return None
        if key in self._unsettled:  # a timed-out CLAIM of this key may hold a lease too
            self._settle_later(key, outcome, ttl)
        if early:
            return None
        delivered = self._load(key, published)
        self._deliver_outcome(key, delivered)
        return delivered

    async def _finish_locally(self, key: str, outcome: Outcome, ttl: float) -> None:
        await self._local.complete(key, "", outcome, ttl=ttl)
        self._deliver_outcome(key, outcome)

    def _complete_args(
        self, key: str, token: str, data: bytes, ttl: float, keys: list[str] | None = None
    ) -> tuple[list[str], list[Any]]:
        store = b"1" if ttl > 0 and data else b"0"
        args = [token, store, max(_ms(ttl), 1), self._channel, key, data]
        return keys or self._keys(key), args

    def _dump(self, key: str, outcome: Outcome) -> bytes | None:
        try:
            return dump_outcome(outcome, cipher=self._cipher, context=key.encode())
        except ValueError as exc:
            logger.error("wechat_oauth.redis_result_unstorable error=%s", exc)
            return None

    async def wait(self, key: str, *, timeout: float) -> Outcome | None:
        if self._local.has_flight(key):
            return await self._local.wait(key, timeout=timeout)
        if key in self._leading:
            return await self._wait_for_own_leader(key, timeout)
        if self._skip_redis():
            return None  # claim again: the fallback takes over
        try:
            async with self._watch(key) as (slot, answer):
                if answer[0] == 1:
                    return self._load(key, answer[1])
                lease_left = answer[1] / 1000
                if lease_left < 0:
                    return None  # no lease and no result: claim again
                with anyio.move_on_after(min(timeout, lease_left + 0.05)):
                    await slot.event.wait()
                return self._read_delivery(key, slot)
        except (_Unavailable, _Busy):
            if key in self._leading:
                return await self._wait_for_own_leader(key, timeout)
            return None

    async def _wait_for_own_leader(self, key: str, timeout: float) -> Outcome | None:
        """This process leads ``key``: its complete() delivers here, with no round trip."""
        slot = self._register(key)
        try:
            with anyio.move_on_after(timeout):
                await slot.event.wait()
            return self._read_delivery(key, slot)
        finally:
            self._unregister(key, slot)

    async def recover(self, key: str, *, timeout: float) -> Outcome | None:
        local = await self._local.recover(key, timeout=timeout)
        if local is not None or self._skip_redis():
            return local
        deadline = anyio.current_time() + timeout
        outcome: Outcome | None = None
        try:
            while outcome is None and anyio.current_time() < deadline:
                async with self._watch(key) as (slot, answer):
                    if answer[0] == 1:
                        return self._load(key, answer[1])
                    if answer[2] <= 1:
                        return None  # nobody else is trading it: really used or invalid
                    with anyio.move_on_after(deadline - anyio.current_time()):
                        await slot.event.wait()
                    outcome = self._read_delivery(key, slot)
                # Woken without an outcome (the subscription was renewed): look again.
        except (_Unavailable, _Busy):
            return None
        if outcome is not None and not _is_code_error(outcome):
            return outcome
        # Another leader traded the code and never shared a result: it died mid-exchange.
        return ExchangeLost(
            ErrorReason.EXCHANGE_LOST,
            "The login was interrupted on the server; please log in again.",
        )

    async def forget(self, key: str, *, only_if: Callable[[Outcome], bool] | None = None) -> bool:
        dropped = await self._local.forget(key, only_if=only_if)
        return await self._drop(key, only_if, 0.0) or dropped

    async def _drop(
        self, key: str, only_if: Callable[[Outcome], bool] | None, mark_ttl: float
    ) -> bool:
        # Read and check in Python (a sealed value is opaque to Lua), then delete only if the
        # stored bytes are still the ones checked: a newer result stored meanwhile stays.
        result_key, mark_key = self._keys(key)[1], self._mark_keys(key)[0]
        try:
            if self._skip_redis():
                return False
            data = await self._call(self._client.get, result_key)
            if data is None or (only_if is not None and not only_if(self._load(key, data))):
                return False
            mark_ms = max(_ms(mark_ttl), 1) if mark_ttl > 0 else 0
            return bool(await self._call(self._forget, [result_key, mark_key], [data, mark_ms]))
        except (_Unavailable, _Busy, ServiceUnavailable):
            return False

    # --- TokenStore: what an access-token keeper needs besides ------------------------------

    async def lookup(self, key: str) -> tuple[Outcome, float] | None:
        """One round trip (the result and its ``PTTL``, read together)."""
        _require_asyncio()
        local = await self._local.lookup(key)  # what this process kept while Redis was down
        if local is not None:
            return local
        try:
            if self._skip_redis():
                return None
            answer = await self._call(self._lookup, self._keys(key)[1:2], [])
        except (_Unavailable, _Busy, ServiceUnavailable):
            return None
        if answer[0] != 1:
            return None
        return self._load(key, answer[1]), max(int(answer[2]), 0) / 1000

    async def reject(
        self, key: str, *, only_if: Callable[[Outcome], bool], mark_ttl: float
    ) -> bool:
        dropped = await self._local.reject(key, only_if=only_if, mark_ttl=mark_ttl)
        return await self._drop(key, only_if, mark_ttl) or dropped

    async def take_mark(self, key: str, *, spacing: float) -> Mark:
        """The mark in Redis; while Redis does not answer, the one this process may hold."""
        _require_asyncio()
        local = await self._local.take_mark(key, spacing=spacing)
        spacing_ms = max(_ms(spacing), 1) if spacing > 0 else 0
        try:
            if self._skip_redis():
                return local
            answer = await self._call(self._take_mark, self._mark_keys(key), [spacing_ms])
        except (_Unavailable, _Busy, ServiceUnavailable):
            return local
        return _MARKS[int(answer)] if answer else local

    async def note_code(self, group: str, key: str, *, limit: int, ttl: float) -> bool:
        _require_asyncio()
        if not self._skip_redis():
            try:
                answer = await self._call(
                    self._note_code,
                    [f"{self.prefix}:{{{group}}}:codes"],
                    [key, limit, max(_ms(ttl), 1)],
                )
                return bool(answer)
            except _Unavailable:
                pass  # counted in this process meanwhile, as claims are
            except _Busy:
                raise ServiceUnavailable(
                    ErrorReason.OVERLOADED, "Too many logins in progress; try again."
                ) from None
        return await self._local.note_code(group, key, limit=limit, ttl=ttl)

    @contextlib.asynccontextmanager
    async def _watch(self, key: str) -> AsyncIterator[tuple[_Slot, Any]]:
        """Listen for ``key``'s outcome, *then* read its state (CHECK): in this order an
        outcome published in between is not missed."""
        slot = self._register(key)
        try:
            await self._subscribe()
            yield slot, await self._call(self._check, self._keys(key), [])
        finally:
            self._unregister(key, slot)

    async def aclose(self) -> None:
        settler, self._settler = self._settler, None
        if settler is not None:
            settler.cancel()
            await asyncio.gather(settler, return_exceptions=True)
        if any(entry.data is not None for entry in self._unsettled.values()):
            # A last try, bounded: a worker stopping right after a stall leaves no lease.
            with anyio.move_on_after(self.redis_timeout):
                await self._settle_ready()
        left = sum(entry.data is not None for entry in self._unsettled.values())
        if left:
            logger.warning("wechat_oauth.redis_unsettled_at_close keys=%d", left)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        if self._owns_client:
            await self._client.aclose()
        await self._local.aclose()

    # --- Redis calls and the fallback ---------------------------------------------------------

    def _load(self, key: str, data: bytes) -> Outcome:
        try:
            return load_outcome(data, cipher=self._cipher, context=key.encode())
        except ValueError:
            pass  # raised below, so that no exception context holds the stored data
        # Another key (a rotation), a foreign writer, a newer version's fields: unusable, and
        # loud, but a clear 503 rather than a 500.
        logger.error("wechat_oauth.redis_result_unreadable")
        raise ServiceUnavailable(
            ErrorReason.BACKEND_UNAVAILABLE, "The login service is unavailable; try again soon."
        )

    def _keys(self, key: str) -> list[str]:
        base = f"{self.prefix}:{{{key}}}"
        return [f"{base}:lease", f"{base}:result", f"{base}:holders"]

    def _mark_keys(self, key: str) -> list[str]:
        """A rejection's mark and the spacing of taken marks, in the same hash tag."""
        base = f"{self.prefix}:{{{key}}}"
        return [f"{base}:mark", f"{base}:spaced"]

    async def _call(self, command: Callable[..., Any], *args: Any) -> Any:
        """``await command(*args)`` within ``redis_timeout``, Redis's failures mapped to
        ``_Unavailable`` (did not answer) or ``_Busy`` (no connection free)."""
        failure: type[Exception] | None = None
        try:
            with self._deadlines.bound():
                if not self._discovered:
                    await self._discover()
                try:
                    answer = await command(*args)
                except NoScriptError:
                    if not isinstance(command, _Script):
                        raise
                    await command.load()  # the server lost it (a restart, SCRIPT FLUSH)
                    answer = await command(*args)
        except MaxConnectionsError:
            # The pool is exhausted (a client passed in without a blocking pool): Redis is up
            # and busy. Not an outage: falling back would break other workers' dedupe.
            failure = _Busy
        except _REDIS_ERRORS as exc:
            self._mark_down(exc)
            failure = _Unavailable
        except Exception as exc:
            # The client library failed in a way it does not document (redis-py's cluster
            # client has raced on its own connections during a topology change): as if Redis
            # had not answered, since the call may or may not have run.
            logger.error("wechat_oauth.redis_client_error error=%s", type(exc).__name__)
            self._mark_down(exc)
            failure = _Unavailable
        if failure is not None:
            raise failure  # outside the handler: no context holding the command's arguments
        self.round_trips += 1
        if self._down:
            self._mark_up()
        return answer

    async def _discover(self) -> None:
        """A cluster client learns the topology once, alone, before the first commands:
        redis-py's cluster client races on its connections when they run concurrently with
        its first discovery (seen with redis-py 8.1)."""
        if self._discovered:
            return
        async with self._discovery:
            if not self._discovered:
                assert isinstance(self._client, RedisCluster)
                await self._client.initialize()
                self._discovered = True

    # --- settling what Redis may not know -----------------------------------------------------

    def _remember(self, key: str) -> _Unsettled:
        entry = self._unsettled.get(key)
        if entry is None:
            if len(self._unsettled) >= _MAX_UNSETTLED:
                oldest = next(iter(self._unsettled))
                del self._unsettled[oldest]
                logger.debug("wechat_oauth.redis_unsettled_dropped code_hash=%s", oldest[:16])
            entry = self._unsettled[key] = _Unsettled()
        return entry

    def _settle_later(
        self, key: str, outcome: Outcome, ttl: float, *, token: str | None = None
    ) -> None:
        """Store ``outcome`` in Redis once it answers, under every token this process may hold
        for ``key`` (releasing those leases)."""
        entry = self._remember(key)
        if token is not None:
            entry.tokens.add(token)
        data = self._dump(key, outcome)
        entry.data, entry.ttl, entry.since = data or b"", ttl, time.monotonic()
        self._start_settler()

    def _release_later(self, key: str, lease: str) -> None:
        if lease.startswith(_LOCAL):
            return
        entry = self._remember(key)
        entry.tokens.add(lease)
        if entry.data is None:
            entry.data = b""
        self._start_settler()

    def _start_settler(self) -> None:
        if self._settler is None or self._settler.done():
            self._settler = asyncio.get_running_loop().create_task(self._settle_until_done())

    async def _settle_until_done(self) -> None:
        """Retries (every ``retry_interval``, sooner at first) until everything known is
        settled, including what arrived while it ran."""
        delay = 0.05
        while any(entry.data is not None for entry in self._unsettled.values()):
            if await self._settle_ready():
                await anyio.sleep(delay)
                delay = min(delay * 2, max(self.retry_interval, 0.05))

    async def _settle_ready(self) -> bool:
        """Run COMPLETE for every key whose outcome is known; True if Redis failed."""
        for key, entry in list(self._unsettled.items()):
            if entry.data is None:
                continue  # its flight is still running here; its complete() will settle it
            left = entry.since + entry.ttl - time.monotonic()
            data = entry.data if left > 0 else b""  # past result_ttl: only release
            if not data and not entry.tokens:
                self._unsettled.pop(key, None)
                continue
            # A key's own tokens, or any token: storing needs no lease.
            for token in sorted(entry.tokens) or [secrets.token_hex(16)]:
                try:
                    await self._call(
                        self._complete, *self._complete_args(key, token, data, max(left, 0))
                    )
                except (_Unavailable, _Busy):
                    return True
                entry.tokens.discard(token)
            if self._unsettled.get(key) is entry and not entry.tokens:
                del self._unsettled[key]
        return False

    def _skip_redis(self) -> bool:
        if self._down and time.monotonic() < self._down_until:
            if self.on_unavailable == "fail":
                raise ServiceUnavailable(
                    ErrorReason.BACKEND_UNAVAILABLE,
                    "The login service is unavailable; try again soon.",
                )
            return True
        return False

    async def _claim_locally(self, key: str) -> Claim:
        if key in self._leading:
            return Claim()  # this process leads it under a Redis lease: wait for that flight
        if self.on_unavailable == "fail":
            raise ServiceUnavailable(
                ErrorReason.BACKEND_UNAVAILABLE, "The login service is unavailable; try again soon."
            )
        claim = await self._local.claim(key)
        return Claim(outcome=claim.outcome, lease=_LOCAL + claim.lease) if claim.lease else claim

    def _mark_down(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self.retry_interval
        if not self._down:
            self._down = True
            logger.warning(
                "wechat_oauth.redis_unavailable error=%s fallback=%s",
                type(exc).__name__,
                self.on_unavailable,
            )

    def _mark_up(self) -> None:
        if self._down:
            self._down = False
            logger.warning("wechat_oauth.redis_recovered")

    # --- waking local waiters -----------------------------------------------------------------

    def _register(self, key: str) -> _Slot:
        slot = self._waiting.get(key)
        if slot is None:
            slot = self._waiting[key] = _Slot()
        slot.refs += 1
        return slot

    def _unregister(self, key: str, slot: _Slot) -> None:
        slot.refs -= 1
        if slot.refs <= 0 and self._waiting.get(key) is slot:
            del self._waiting[key]

    def _deliver(self, message: bytes) -> None:
        key, _, payload = message.partition(b"\n")
        slot = self._waiting.pop(key.decode(), None)
        if slot is not None:
            slot.payload = payload
            slot.event.set()

    def _deliver_outcome(self, key: str, outcome: Outcome) -> bool:
        """Wake this process's waiters for ``key`` with ``outcome``; whether there were any."""
        slot = self._waiting.pop(key, None)
        if slot is None:
            return False
        slot.outcome = outcome
        slot.payload = b"-"  # decoded already: the outcome is set
        slot.event.set()
        return True

    def _wake_all(self) -> None:
        """After losing the subscription, every waiter re-checks instead of missing a message."""
        slots, self._waiting = self._waiting, {}
        for slot in slots.values():
            slot.event.set()

    def _read_delivery(self, key: str, slot: _Slot) -> Outcome | None:
        if not slot.event.is_set():
            return None  # lease expired: claim again
        if slot.outcome is None and slot.payload:  # decoded once for all local waiters
            slot.outcome = self._load(key, slot.payload)
        return slot.outcome  # None: woken to re-check, claim again

    async def _subscribe(self) -> None:
        if self._listener is None or self._listener.done():
            self._subscribed = anyio.Event()
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        try:
            with anyio.fail_after(self.redis_timeout):
                # _listen replaces the event (and sets the old one) when a subscription fails,
                # so wait on whichever is current until one is set for real.
                while self._subscribed is not None and not self._subscribed.is_set():
                    await self._subscribed.wait()
        except TimeoutError as exc:
            self._mark_down(exc)
            raise _Unavailable from None

    async def _listen(self) -> None:
        """One subscription per process; it re-subscribes after errors, waking all waiters."""
        backoff = 0.05
        while True:
            pubsub: PubSub | None = None
            confirmed = False
            try:
                pubsub = await self._pubsub()
                await pubsub.subscribe(self._channel)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        backoff = 0.05
                        if confirmed:
                            # A client with retries reconnected and resubscribed by itself:
                            # a message may have been lost in between, so everyone re-checks.
                            self._wake_all()
                        confirmed = True
                        assert self._subscribed is not None
                        self._subscribed.set()
                    elif message["type"] == "message":
                        self._deliver(message["data"])
            except _REDIS_ERRORS as exc:
                logger.debug("wechat_oauth.redis_subscription_lost error=%s", type(exc).__name__)
                self._node_index += 1  # on a cluster, try the next node
            finally:
                if pubsub is not None:
                    with anyio.CancelScope(shield=True):
                        # redis-py 8.2 types aclose(); earlier releases leave it untyped.
                        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
                        if isinstance(self._client, RedisCluster):
                            await pubsub.connection_pool.disconnect()
            lost, self._subscribed = self._subscribed, anyio.Event()
            if lost is not None:
                lost.set()  # wakes _subscribe() callers, which then wait on the new event
            self._wake_all()
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, max(self.retry_interval, 0.05))

    async def _pubsub(self) -> PubSub:
        if not isinstance(self._client, RedisCluster):
            return self._client.pubsub()
        # PUBLISH on a cluster reaches every node: listen on any one, with a connection of its
        # own (closed with the pubsub), and on the next one after a failure.
        await self._client.initialize()
        nodes = sorted(self._client.get_nodes(), key=lambda node: node.name)
        if not nodes:
            raise RedisClusterException("no cluster node is known")
        node = nodes[self._node_index % len(nodes)]
        pool = aioredis.ConnectionPool(
            connection_class=node.connection_class, **node.connection_kwargs
        )
        return aioredis.Redis(connection_pool=pool).pubsub()


class _Script:
    """A Lua script run by ``EVALSHA``, loaded again when the server does not know it. What
    redis-py's ``register_script`` gives, without the import and the copies its wrapper makes
    on every call: a leader runs two scripts for every login."""

    __slots__ = ("_client", "sha", "text")

    def __init__(self, client: Any, text: str) -> None:
        self._client = client
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        return self._client.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[no-any-return]

    async def load(self) -> None:
        self.sha = await self._client.script_load(self.text)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _is_code_error(outcome: Outcome) -> bool:
    return isinstance(outcome, CodeRejected)


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "RedisBackend runs on asyncio only (redis.asyncio); use MemoryBackend under trio"
        ) from None
