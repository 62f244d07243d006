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

One concern per module: ``_scripts`` (the Lua scripts), ``_calls`` (the client, every call
and its failures, up or down), ``_wakeups`` (the subscription, local waiters, cluster node
rotation), ``_ledger`` (what Redis may not know yet, settled later), ``_tokens`` (the
token-store operations) and ``_backend`` (the protocol operations, with the local fallback).
"""

try:
    import redis.asyncio as _redis  # noqa: F401 - to say what is missing, before the modules
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "RedisBackend needs redis-py: pip install 'asgi-wechat-oauth[redis]'"
    ) from exc

from ._backend import RedisBackend

__all__ = ["RedisBackend"]
