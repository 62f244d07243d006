"""The client and every call made with it: one timer bounds them all, Redis's failures become
:class:`Unavailable` (did not answer) or :class:`Busy` (no connection free), and whether Redis
is up follows from their answers. Also how a code's keys are named and its outcome stored."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import anyio
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    MaxConnectionsError,
    NoScriptError,
    RedisClusterException,
    RedisError,
)

from ..._core.contract import Outcome
from ...errors import ErrorReason, ServiceUnavailable
from .._codec import ResultCipher, dump_outcome, load_outcome
from .._deadlines import Deadlines
from ..memory import MemoryBackend
from ._scripts import Script, Scripts

logger = logging.getLogger("asgi_wechat_oauth")

#: Redis errors that mean "did not answer" (a cluster without a node for a slot included).
REDIS_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)


class Unavailable(Exception):
    """Redis did not answer; the caller falls back or fails as configured."""


class Busy(Exception):
    """Redis is up but the client's pool is exhausted: not an outage."""


def connect(
    url_or_client: str | aioredis.Redis | RedisCluster,
    *,
    cluster: bool,
    redis_timeout: float,
    max_connections: int,
) -> tuple[aioredis.Redis | RedisCluster, bool]:
    """The client for a URL (and True: the backend owns it), or the one passed in (False)."""
    if isinstance(url_or_client, str) and cluster:
        # One pool per node, of max_connections each (redis-py's cluster client has no
        # blocking pool: a burst beyond it is answered 503 "overloaded").
        client = RedisCluster.from_url(
            url_or_client,
            max_connections=max_connections,
            socket_timeout=redis_timeout,
            socket_connect_timeout=redis_timeout,
        )
        return client, True
    if isinstance(url_or_client, str):
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
        return aioredis.Redis.from_pool(pool), True
    if cluster and not isinstance(url_or_client, RedisCluster):
        raise ValueError("cluster=True needs a URL or a RedisCluster client")
    return url_or_client, False


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
        encryption_key: bytes | None,
    ) -> None:
        if client.get_encoder().decode_responses:
            raise ValueError("the Redis client must not use decode_responses=True")
        self._client = client
        self._owns_client = owns_client
        self.prefix = prefix
        self.on_unavailable = on_unavailable
        #: One timer bounds every Redis call in flight (see _deadlines).
        self._deadlines = Deadlines(redis_timeout)
        self.retry_interval = retry_interval
        #: Redis calls answered (scripts and GETs), for round-trip accounting.
        self.round_trips = 0
        self._scripts = Scripts(client)
        self._cipher = ResultCipher(encryption_key) if encryption_key is not None else None
        #: The fallback: flights and outcomes of this process while Redis does not answer.
        self._local = MemoryBackend()
        self._discovered = not isinstance(client, RedisCluster)
        self._discovery = anyio.Lock()
        self._down_until = 0.0
        self._down = False

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

    async def _call(self, command: Callable[..., Any], *args: Any) -> Any:
        """``await command(*args)`` within ``redis_timeout``, Redis's failures mapped to
        ``Unavailable`` (did not answer) or ``Busy`` (no connection free)."""
        failure: type[Exception] | None = None
        try:
            with self._deadlines.bound():
                if not self._discovered:
                    await self._discover()
                try:
                    answer = await command(*args)
                except NoScriptError:
                    if not isinstance(command, Script):
                        raise
                    await command.load()  # the server lost it (a restart, SCRIPT FLUSH)
                    answer = await command(*args)
        except MaxConnectionsError:
            # The pool is exhausted (a client passed in without a blocking pool): Redis is up
            # and busy. Not an outage: falling back would break other workers' dedupe.
            failure = Busy
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
            failure = Unavailable
        except Exception as exc:
            # The client library failed in a way it does not document (redis-py's cluster
            # client has raced on its own connections during a topology change): as if Redis
            # had not answered, since the call may or may not have run.
            logger.error("wechat_oauth.redis_client_error error=%s", type(exc).__name__)
            self._mark_down(exc)
            failure = Unavailable
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

    def _skip_redis(self) -> bool:
        if self._down and time.monotonic() < self._down_until:
            if self.on_unavailable == "fail":
                raise ServiceUnavailable(
                    ErrorReason.BACKEND_UNAVAILABLE,
                    "The login service is unavailable; try again soon.",
                )
            return True
        return False

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
