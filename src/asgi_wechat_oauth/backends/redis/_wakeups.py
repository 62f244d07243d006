"""Waking this process's waiters: one pub/sub subscription per process, nobody polls.

A COMPLETE publishes ``key\\noutcome`` on the backend's channel; the subscription wakes every
local waiter of that key at once, handing them the outcome. When the subscription is lost (or
renewed by the client on its own), every waiter is woken to look again rather than miss a
message. On a cluster ``PUBLISH`` reaches every node, so the subscription may be on any node,
and moves to the next one when its node fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from ..._core.contract import Outcome
from ._failures import REDIS_ERRORS

logger = logging.getLogger("asgi_wechat_oauth")


@dataclass
class Slot:
    """Local waiters of one key, woken together by one published message."""

    event: anyio.Event = field(default_factory=anyio.Event)
    payload: bytes | None = None
    outcome: Outcome | None = None
    refs: int = 0


class Wakeups:
    """The local waiters by key, and the subscription that wakes them. ``retry_interval()``
    caps the wait before subscribing again after a failure."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        channel: str,
        *,
        retry_interval: Callable[[], float],
    ) -> None:
        self._client = client
        self.channel = channel
        self._retry_interval = retry_interval
        self._waiting: dict[str, Slot] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed: anyio.Event | None = None
        #: Which cluster node the subscription tries next.
        self.node_index = 0

    def register(self, key: str) -> Slot:
        slot = self._waiting.get(key)
        if slot is None:
            slot = self._waiting[key] = Slot()
        slot.refs += 1
        return slot

    def unregister(self, key: str, slot: Slot) -> None:
        slot.refs -= 1
        if slot.refs <= 0 and self._waiting.get(key) is slot:
            del self._waiting[key]

    def deliver_outcome(self, key: str, outcome: Outcome) -> bool:
        """Wake this process's waiters for ``key`` with ``outcome``; whether there were any."""
        slot = self._waiting.pop(key, None)
        if slot is None:
            return False
        slot.outcome = outcome
        slot.payload = b"-"  # decoded already: the outcome is set
        slot.event.set()
        return True

    async def subscribe(self, timeout: float) -> None:
        """Return once the subscription is confirmed (starting it if need be); raise
        ``TimeoutError`` after ``timeout`` seconds without."""
        if self._listener is None or self._listener.done():
            self._subscribed = anyio.Event()
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        with anyio.fail_after(timeout):
            # _listen replaces the event (and sets the old one) when a subscription fails,
            # so wait on whichever is current until one is set for real.
            while self._subscribed is not None and not self._subscribed.is_set():
                await self._subscribed.wait()

    async def aclose(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    def _deliver(self, message: bytes) -> None:
        key, _, payload = message.partition(b"\n")
        slot = self._waiting.pop(key.decode(), None)
        if slot is not None:
            slot.payload = payload
            slot.event.set()

    def _wake_all(self) -> None:
        """After losing the subscription, every waiter re-checks instead of missing a message."""
        slots, self._waiting = self._waiting, {}
        for slot in slots.values():
            slot.event.set()

    async def _listen(self) -> None:
        """One subscription per process; it re-subscribes after errors, waking all waiters."""
        backoff = 0.05
        while True:
            pubsub: PubSub | None = None
            confirmed = False
            try:
                pubsub = await self._pubsub()
                await pubsub.subscribe(self.channel)
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
            except REDIS_ERRORS as exc:
                logger.debug("wechat_oauth.redis_subscription_lost error=%s", type(exc).__name__)
                self.node_index += 1  # on a cluster, try the next node
            finally:
                if pubsub is not None:
                    with anyio.CancelScope(shield=True):
                        # redis-py 8.2 types aclose(); earlier releases leave it untyped.
                        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
                        if isinstance(self._client, RedisCluster):
                            await pubsub.connection_pool.disconnect()
            lost, self._subscribed = self._subscribed, anyio.Event()
            if lost is not None:
                lost.set()  # wakes subscribe() callers, which then wait on the new event
            self._wake_all()
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, max(self._retry_interval(), 0.05))

    async def _pubsub(self) -> PubSub:
        if not isinstance(self._client, RedisCluster):
            return self._client.pubsub()
        # PUBLISH on a cluster reaches every node: listen on any one, with a connection of its
        # own (closed with the pubsub), and on the next one after a failure.
        await self._client.initialize()
        nodes = sorted(self._client.get_nodes(), key=lambda node: node.name)
        if not nodes:
            raise RedisClusterException("no cluster node is known")
        node = nodes[self.node_index % len(nodes)]
        pool = aioredis.ConnectionPool(
            connection_class=node.connection_class, **node.connection_kwargs
        )
        return aioredis.Redis(connection_pool=pool).pubsub()
