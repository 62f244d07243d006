"""What a failed Redis call means, and the client a backend makes for a URL.

A call's failure is one of three things, and only one of them is an outage (see
:mod:`._calls` for what the backend does with each): **busy** (no connection free, or this
process's queue full: it did not run), **wait** (it timed out and may have run, or its cluster
slot has no master: send it again) and **down** (an outage).
"""

from __future__ import annotations

from typing import Literal

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    ClusterError,
    MaxConnectionsError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import ErrorReason, ServiceUnavailable

#: Redis errors that mean "did not answer" (a cluster without a node for a slot included).
REDIS_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)
#: What a failed call means (see the module's docstring).
Failure = Literal["busy", "wait", "down"]
#: Retry-After of a 503 ``overloaded``: about how long a full queue takes to drain.
OVERLOADED_RETRY_AFTER = 5


class Unavailable(Exception):
    """Redis did not answer this call; the caller falls back or fails as configured."""


class Busy(Exception):
    """No connection free, or this process's queue of calls is full: the call did not run."""


class Overloaded(ServiceUnavailable):
    """503 ``overloaded`` with ``Retry-After``: more Redis calls waiting in this process than
    ``max_queued``."""

    retry_after = OVERLOADED_RETRY_AFTER


def overloaded() -> Overloaded:
    return Overloaded(
        ErrorReason.OVERLOADED,
        f"Too many logins at once; please try again in {OVERLOADED_RETRY_AFTER} seconds.",
    )


def classify(exc: BaseException, *, cluster: bool) -> Failure:
    """What a call's exception means: ``busy``, ``wait`` (may have run, or a failover) or
    ``down`` (an outage)."""
    if isinstance(exc, MaxConnectionsError):
        return "busy"  # a pool passed in that does not wait: Redis is up
    if isinstance(exc, (TimeoutError, RedisTimeoutError)):
        return "wait"  # it may have run: send it again, never split the code
    if isinstance(exc, AuthenticationError):
        return "down"  # the credentials: waiting will not fix them
    if isinstance(exc, (BusyLoadingError, ReadOnlyError, TryAgainError, ClusterError)):
        return "wait"  # a node loading, a replica promoted elsewhere, CLUSTERDOWN, TRYAGAIN
    if isinstance(exc, (AskError, SlotNotCoveredError, NoScriptError)):
        return "wait"  # a slot moving or without a master, a promoted replica without scripts
    if isinstance(exc, RedisClusterException):
        return "wait" if cluster else "down"  # no node of the cluster answered the refresh
    if isinstance(exc, ResponseError):
        return "down"  # Redis refused the command itself
    if isinstance(exc, (RedisConnectionError, OSError)):
        # On a cluster: one master is gone (its slots wait for a replica to take over); the
        # whole cluster gone is RedisClusterException above. One Redis gone is an outage.
        return "wait" if cluster else "down"
    return "wait"  # the client failed in a way it does not document: it may have run


def connect(
    url_or_client: str | aioredis.Redis | RedisCluster,
    *,
    cluster: bool,
    redis_timeout: float,
    max_connections: int,
) -> tuple[aioredis.Redis | RedisCluster, bool]:
    """The client for a URL (and True: the backend owns it), or the one passed in (False)."""
    if isinstance(url_or_client, str) and cluster:
        # A pool per node; the backend's gate keeps calls within it (redis-py's cluster pools
        # do not wait). No retries of the client's own (it would hold a connection place
        # through its backoff): the backend sends a call again itself, within
        # failover_timeout, one call per slot at a time while that slot fails over.
        client = RedisCluster.from_url(
            url_or_client,
            max_connections=max_connections,
            socket_timeout=redis_timeout,
            socket_connect_timeout=redis_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return client, True
    if isinstance(url_or_client, str):
        # A blocking pool (the gate keeps calls within it, one connection being the
        # subscription's): a burst waits for a connection instead of being taken for an outage.
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
