"""Single flight across workers and hosts, on ``redis.asyncio`` (asyncio only).

Each code has three keys sharing a hash tag, so the scripts also run on Redis Cluster (a
script there may only touch keys of one slot): ``{prefix}:{hash}:lease`` (who trades it),
``{prefix}:{hash}:result`` (the outcome, for ``result_ttl``) and ``{prefix}:{hash}:holders``
(the tokens of leases granted that may still produce a result); an access token's key also
``:mark`` (a rejection's mark for the next fetch) and ``:spaced`` (while no mark may be taken
again). One pub/sub subscription per process wakes local waiters; nobody polls. On a cluster,
``PUBLISH`` reaches every node, so that subscription may be on any node, and moves to another
when its node fails.

A call that timed out may still run on the server ("maybe happened"), and a call whose cluster
slot has no master waits for a replica to take over: neither is an outage. Both are sent again
(every script is idempotent, a CLAIM keeps its token) for up to ``failover_timeout``; only an
outage (refused connections, no node of the cluster answering, or no answer for that long)
falls back to in-process dedupe, and the backend comes back once every master answers a probe.
What a process could not tell Redis (a COMPLETE that got no answer, a CLAIM that may have taken
a lease) is remembered and settled once Redis answers again; after a failover, a claim holds
back from leading over a leader that has not settled yet. A burst waits its turn in a bounded
queue of the process (``max_connections`` calls in flight, ``max_queued`` waiting).

Round trips: a leader makes 2 (CLAIM, COMPLETE), a waiter in another process 2 (CLAIM, CHECK
after subscribing; the outcome then arrives in the message that wakes it), a waiter in the
leader's own process none (it joins the local flight), a late duplicate 1 (CLAIM).

One concern per module: ``_scripts`` (the Lua scripts), ``_gate`` (the queue of a burst),
``_calls`` (the client, every call and what its failure means, up or down), ``_wakeups`` (the
subscription, local waiters, cluster node rotation), ``_ledger`` (what Redis may not know yet,
settled later), ``_tokens`` (the token-store operations) and ``_backend`` (the protocol
operations, with the local fallback).
"""

try:
    import redis.asyncio as _redis  # noqa: F401 - to say what is missing, before the modules
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "RedisBackend needs redis-py: pip install 'asgi-wechat-oauth[redis]'"
    ) from exc

from ._backend import RedisBackend

__all__ = ["RedisBackend"]
