"""The client and every call made with it, and whether Redis is up.

A call's failure is one of three things, and only one of them is an outage:

- **busy**: no connection free (a client passed in whose pool does not wait), or this
  process's queue of calls is full (:mod:`._gate`). The call did not run: 503 ``overloaded``.
- **wait**: the call timed out (it may have run: "maybe happened"), or its cluster slot has no
  master (a failover: connection refused by that master, ``CLUSTERDOWN``, ``TRYAGAIN``). Redis
  is not down: the call is sent again (every script is idempotent) until it is answered or
  ``failover_timeout`` has passed; only a wait that long is taken for an outage. Calls waiting
  for one slot wait together (:mod:`._slots`).
- **down**: one Redis refused the connection (twice in a row), or a wait lasted
  ``failover_timeout`` (on a cluster, no node answering at all is waited out too: a refresh of
  the topology can miss every node of a cluster that is only busy). The backend falls back (or
  fails) as configured, logs it once, and comes back only once a probe finds every master
  answering again (no sooner than ``retry_interval``): it does not flap with each call.

Also how a code's keys are named and its outcome stored.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Literal

import anyio
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    NoScriptError,
)

from ..._core.contract import Outcome
from ...errors import ErrorReason, ServiceUnavailable
from .._codec import ResultCipher, dump_outcome, load_outcome
from .._deadlines import Deadlines
from .._memory import MemoryBackend
from ._failures import REDIS_ERRORS, Busy, Failure, Unavailable, classify
from ._gate import Full, Gate
from ._scripts import Script, Scripts
from ._slots import SlotWaits

logger = logging.getLogger("asgi_wechat_oauth")

#: The first pause before a call is sent again, and the longest.
_FIRST_PAUSE, _LONGEST_PAUSE = 0.05, 0.5


class RedisCalls:
    """What every operation of the backend stands on: the client, its scripts, the calls, the
    up/down state, and the in-process backend that stands in while Redis is down."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        owns_client: bool,
        prefix: str,
        on_unavailable: Literal["local", "fail"],
        redis_timeout: float,
        retry_interval: float,
        failover_timeout: float,
        encryption_key: bytes | None,
        max_connections: int,
        max_queued: int,
    ) -> None:
        if client.get_encoder().decode_responses:
            raise ValueError("the Redis client must not use decode_responses=True")
        self._client = client
        self._owns_client = owns_client
        self._cluster = isinstance(client, RedisCluster)
        self.prefix = prefix
        self.on_unavailable = on_unavailable
        #: One timer bounds every Redis call in flight (see _deadlines).
        self._deadlines = Deadlines(redis_timeout)
        self.retry_interval = retry_interval
        self.failover_timeout = failover_timeout
        #: Redis calls answered (scripts and GETs), for round-trip accounting.
        self.round_trips = 0
        self._scripts = Scripts(client)
        self._cipher = ResultCipher(encryption_key) if encryption_key is not None else None
        #: The fallback: flights and outcomes of this process while Redis does not answer.
        self._local = MemoryBackend()
        self._discovered = not self._cluster
        self._discovery = anyio.Lock()
        #: The queue in front of a client the backend built (one it was given keeps its own
        #: pool's behaviour); on one Redis, a connection of the pool is the subscription's.
        self._gate: Gate | None = None
        if owns_client:
            self._gate = Gate(max_connections - (0 if self._cluster else 1), max_queued)
        self._down = False
        self._down_since = 0.0
        self._down_until = 0.0
        self._probing: anyio.Event | None = None
        #: Calls waiting to be sent again, by slot.
        self._slot_waits = SlotWaits()
        #: Calls being sent again now, and since when.
        self._retrying = 0
        self._retrying_since = 0.0
        #: When a call last timed out or found its slot without a master (or Redis went down
        #: or came back): a lease may have expired meanwhile (see RedisBackend.claim).
        self.trouble_at = -float("inf")

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

    @property
    def queued(self) -> int:
        """Redis calls of this process waiting for a connection now."""
        return self._gate.queued if self._gate is not None else 0

    async def ping(self) -> None:
        """Raise unless Redis answers PING within ``redis_timeout`` (for
        ``python -m asgi_wechat_oauth check --online``)."""
        with anyio.fail_after(self.redis_timeout):
            await self._client.ping()

    async def _call(
        self,
        command: Callable[..., Any],
        *args: Any,
        retry: bool = True,
        budget: float | None = None,
        urgent: bool = False,
    ) -> Any:
        """``await command(*args)``, each attempt within ``redis_timeout``. An attempt that
        timed out or found its slot without a master is sent again (``retry``) for up to
        ``budget`` seconds (``failover_timeout``), then raises ``Unavailable``; an outage
        raises ``Unavailable`` at once, no connection free ``Busy``. ``urgent`` calls go to
        the head of the queue (settling what others may be waiting for)."""
        started = time.monotonic()
        give_up = started + (self.failover_timeout if budget is None else budget)
        pause, retrying, fresh = _FIRST_PAUSE, False, False
        try:
            while True:
                failure, error, answer = await self._attempt(command, args, give_up, urgent)
                if failure is None:
                    if self._slot_waits:
                        self._slot_waits.answered(self._slot_of(args))
                    return answer
                if failure == "busy":
                    raise Busy
                if failure == "down":
                    if not fresh:
                        # Once more at once, on a new connection: the pool's may be older
                        # than a Redis restarted meanwhile (the failed one was dropped).
                        fresh = True
                        continue
                    self._mark_down(error)
                    raise Unavailable
                now = time.monotonic()
                self.trouble_at = now
                if not retry or now >= give_up:
                    if now - started >= self.failover_timeout:
                        self._mark_down(error)  # no answer for that long: an outage
                    raise Unavailable
                if not retrying:
                    retrying = True
                    self._start_retrying(error)
                await self._slot_waits.wait(
                    self._slot_of(args), pause * random.uniform(0.5, 1.0), give_up - now
                )
                pause = min(pause * 2, _LONGEST_PAUSE)
        finally:
            if retrying:
                self._stop_retrying()

    def _slot_of(self, args: tuple[Any, ...]) -> int:
        """The cluster slot of a call's first key (a script's keys, or a GET's key); one Redis
        is one slot."""
        if not self._cluster or not args:
            return 0
        first = args[0]
        key = first[0] if isinstance(first, list) and first else first
        if not isinstance(key, (str, bytes)):
            return 0
        assert isinstance(self._client, RedisCluster)
        return int(self._client.keyslot(key))

    async def _attempt(
        self, command: Callable[..., Any], args: tuple[Any, ...], give_up: float, urgent: bool
    ) -> tuple[Failure | None, str, Any]:
        """One attempt: ``(None, "", answer)``, or what failed and the exception's name. The
        exception is not raised, so that no traceback or context holds the arguments."""
        gate = self._gate
        if gate is not None:
            try:
                # Even a call sent once waits its turn behind a burst (for redis_timeout).
                timeout = max(give_up - time.monotonic(), self.redis_timeout)
                await gate.acquire(timeout, first=urgent)
            except Full:
                return "busy", "Full", None
        failure: Failure | None = None
        try:
            with self._deadlines.bound():
                if not self._discovered:
                    await self._discover()
                try:
                    answer = await command(*args)
                except NoScriptError:
                    if not isinstance(command, Script):
                        raise
                    await command.load()  # the server lost it (a restart, a promoted replica)
                    answer = await command(*args)
        except Exception as exc:
            failure, error = classify(exc, cluster=self._cluster), type(exc).__name__
            if not isinstance(exc, REDIS_ERRORS):
                # redis-py's cluster client has raced on its own connections during a
                # topology change: as if Redis had not answered (the call may have run).
                logger.error("wechat_oauth.redis_client_error error=%s", error)
        finally:
            if gate is not None:
                gate.release()
        if failure is not None:
            return failure, error, None
        self.round_trips += 1
        return None, "", answer

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

    async def _use_redis(self) -> bool:
        """Whether to send calls to Redis: True unless it is down. While down, the first
        caller past ``retry_interval`` probes it, and the callers meanwhile wait for the
        probe; ``on_unavailable="fail"`` raises 503 ``backend_unavailable`` instead of False."""
        if not self._down:
            return True
        if self._probing is not None:
            await self._probing.wait()
        elif time.monotonic() >= self._down_until:
            await self._probe()
        if not self._down:
            return True
        if self.on_unavailable == "fail":
            raise ServiceUnavailable(
                ErrorReason.BACKEND_UNAVAILABLE,
                "The login service is unavailable; try again soon.",
            )
        return False

    async def _probe(self) -> None:
        """Back to Redis once every master answers (one Redis: it answers), else stay down
        for another ``retry_interval``."""
        self._probing = probing = anyio.Event()
        try:
            with anyio.fail_after(self.redis_timeout):
                if not self._discovered:
                    await self._discover()
                if isinstance(self._client, RedisCluster):
                    await self._client.ping(target_nodes=RedisCluster.PRIMARIES)
                else:
                    await self._client.ping()
        except Exception:
            self._down_until = time.monotonic() + self.retry_interval
        else:
            self._mark_up()
        finally:
            self._probing = None
            probing.set()

    def _mark_down(self, error: str) -> None:
        now = time.monotonic()
        self._down_until = now + self.retry_interval
        self.trouble_at = now
        if not self._down:
            self._down, self._down_since = True, now
            logger.warning(
                "wechat_oauth.redis_unavailable error=%s fallback=%s", error, self.on_unavailable
            )

    def _mark_up(self) -> None:
        if self._down:
            self._down = False
            self.trouble_at = time.monotonic()
            logger.warning(
                "wechat_oauth.redis_recovered down_ms=%d",
                (time.monotonic() - self._down_since) * 1000,
            )

    def _start_retrying(self, error: str) -> None:
        """Log the first call of this process sent again (once until none is)."""
        self._retrying += 1
        if self._retrying == 1:
            self._retrying_since = time.monotonic()
            logger.warning("wechat_oauth.redis_waiting error=%s", error)

    def _stop_retrying(self) -> None:
        self._retrying -= 1
        if self._retrying == 0:
            logger.warning(
                "wechat_oauth.redis_answering waited_ms=%d",
                (time.monotonic() - self._retrying_since) * 1000,
            )

    def _keys(self, key: str) -> list[str]:
        base = f"{self.prefix}:{{{key}}}"
        return [f"{base}:lease", f"{base}:result", f"{base}:holders"]

    def _mark_keys(self, key: str) -> list[str]:
        """A rejection's mark and the spacing of taken marks, in the same hash tag."""
        base = f"{self.prefix}:{{{key}}}"
        return [f"{base}:mark", f"{base}:spaced"]

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

    def _dump(self, key: str, outcome: Outcome) -> bytes | None:
        try:
            return dump_outcome(outcome, cipher=self._cipher, context=key.encode())
        except ValueError as exc:
            logger.error("wechat_oauth.redis_result_unstorable error=%s", exc)
            return None


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "RedisBackend runs on asyncio only (redis.asyncio); use MemoryBackend under trio"
        ) from None
