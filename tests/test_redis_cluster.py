"""RedisBackend on a real Redis Cluster (three masters, one replica each) that the tests start
themselves: one exchange per code across workers, codes on every master, the wake-up message
across nodes, and a master killed mid-run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from redis.asyncio.cluster import RedisCluster

from _servers import (
    RedisClusterServers,
    emulator_process,
    emulator_stats,
    free_port,
    process,
    uvicorn_args,
)
from asgi_wechat_oauth import WeChatIdentity
from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.errors import UpstreamError
from asgi_wechat_oauth.testing import WeChatEmulator
from support import CALLBACK, code_key

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.redis_cluster]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    return f"cluster-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def slow_wechat(emulator: WeChatEmulator) -> None:
    """WeChat answers in 50 ms, so that duplicates overlap the exchange in flight."""
    emulator.latency = 0.05


@pytest.fixture
async def make_backend(prefix: str) -> AsyncIterator[Any]:
    """``make_backend(url_or_client, **options)``: a RedisBackend (a "worker") on a cluster,
    closed at teardown."""
    made: list[RedisBackend] = []

    def make(url_or_client: str | RedisCluster, **options: Any) -> RedisBackend:
        cluster = isinstance(url_or_client, str)
        made.append(RedisBackend(url_or_client, prefix=prefix, cluster=cluster, **options))
        return made[-1]

    yield make
    for backend in made:
        await backend.aclose()


async def login_twice(
    clients: list[httpx.AsyncClient], codes: list[str], first: int = 0
) -> dict[str, list[httpx.Response]]:
    """Each code's callback sent twice at once, to two different workers (the WeChat
    browser's double callback split by a load balancer)."""
    responses: dict[str, list[httpx.Response]] = {code: [] for code in codes}

    async def get(code: str, client: httpx.AsyncClient) -> None:
        responses[code].append(await client.get(f"{CALLBACK}?code={code}"))

    async with anyio.create_task_group() as tg:
        for i, code in enumerate(codes, start=first):
            tg.start_soon(get, code, clients[i % len(clients)])
            tg.start_soon(get, code, clients[(i + 1) % len(clients)])
    return responses


async def masters_of(client: RedisCluster, keys: list[str]) -> set[str]:
    await client.initialize()
    return {client.get_node_from_key(f"x:{{{key}}}:lease").name for key in keys}


async def leftover_leases(client: RedisCluster, prefix: str) -> list[bytes]:
    """Lease keys left on any master (a settled code leaves only its result)."""
    left: list[bytes] = []
    for node in client.get_primaries():
        left += [k async for k in client.scan_iter(f"{prefix}:*:lease", target_nodes=node)]
    return left


async def describe_leases(
    client: RedisCluster, prefix: str, backends: list[RedisBackend]
) -> list[tuple[str, int, bool, bool]]:
    """For a failure's message: each lease left, its time to live (ms), and whether a worker
    still means to settle it, or leads it."""
    return [
        (
            key.decode(),
            await client.pttl(key),
            any(b._unsettled.get(key.decode().split("{")[1].split("}")[0]) for b in backends),
            any(key.decode().split("{")[1].split("}")[0] in b._leading for b in backends),
        )
        for key in await leftover_leases(client, prefix)
    ]


async def test_one_exchange_per_code_across_workers_on_every_master(
    redis_cluster: RedisClusterServers, make_backend, make_app, emulator, prefix
) -> None:
    own = RedisCluster.from_url(redis_cluster.url)
    try:
        # Two workers from the URL, one from a client the application owns.
        backends = [make_backend(redis_cluster.url), make_backend(redis_cluster.url)]
        backends.append(make_backend(own))
        pairs = [await make_app(backend=b) for b in backends]
        clients = [client for _, client in pairs]
        codes = [emulator.issue_code() for _ in range(60)]
        with anyio.fail_after(30):
            responses = await login_twice(clients, codes)
        assert {r.status_code for pair in responses.values() for r in pair} == {200}
        assert [emulator.exchange_count(code) for code in codes] == [1] * len(codes)
        keys = [code_key(emulator.appid, code) for code in codes]
        assert len(await masters_of(own, keys)) == 3  # the codes' keys live on every master
        assert await leftover_leases(own, prefix) == []
        assert sum(middleware.counters.exchanges for middleware, _ in pairs) == len(codes)
    finally:
        await own.aclose()


async def assert_woken_by_message(
    leader: RedisBackend, waiter: RedisBackend, emulator: WeChatEmulator
) -> None:
    """For codes on several masters, a waiter on another worker is woken by the leader's
    message, long before the 15 s lease would expire."""
    identity = WeChatIdentity(openid="oC", scope="snsapi_base", access_token="A", refresh_token="R")
    for _ in range(6):
        key = code_key(emulator.appid, emulator.issue_code())
        claim = await leader.claim(key)
        assert claim.lease is not None
        assert await waiter.claim(key) == type(claim)()
        results: list[object] = []

        async def wait(key: str = key, results: list[object] = results) -> None:
            results.append(await waiter.wait(key, timeout=10))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                trips = waiter.round_trips
                while waiter.round_trips < trips + 1:  # subscribed and checked: waiting
                    await anyio.sleep(0.001)
                await leader.complete(key, claim.lease, identity, ttl=60)
        assert results == [identity]


def subscription_port(backend: RedisBackend) -> int:
    """The node a backend's subscription listens on (the first it tries)."""
    nodes = sorted(backend._client.get_nodes(), key=lambda node: node.name)
    return int(nodes[backend._wakeups.node_index % len(nodes)].port)


async def test_the_wake_up_reaches_a_waiter_subscribed_on_another_node(
    redis_cluster: RedisClusterServers, make_backend, emulator
) -> None:
    leader, waiter = make_backend(redis_cluster.url), make_backend(redis_cluster.url)
    await assert_woken_by_message(leader, waiter, emulator)


async def test_a_transient_error_is_not_stored_on_a_cluster(
    redis_cluster: RedisClusterServers, make_backend, emulator
) -> None:
    a, b = make_backend(redis_cluster.url), make_backend(redis_cluster.url)
    key = code_key(emulator.appid, emulator.issue_code())
    claim = await a.claim(key)
    assert claim.lease is not None
    await a.complete(key, claim.lease, UpstreamError("upstream_unavailable", "x"), ttl=0)
    assert (await b.claim(key)).lease is not None


def test_cluster_needs_a_url_or_a_cluster_client() -> None:
    import redis.asyncio as aioredis

    with pytest.raises(ValueError, match="cluster"):
        RedisBackend(aioredis.from_url("redis://127.0.0.1:1/0"), cluster=True)


async def test_a_master_killed_mid_run_fails_over_and_loses_no_login(
    tmp_path: Path, make_backend, make_app, emulator, prefix
) -> None:
    cluster = RedisClusterServers(tmp_path)
    try:
        cluster.start()
        options = {"redis_timeout": 1.0, "retry_interval": 0.5}
        backends = [make_backend(cluster.url, **options) for _ in range(3)]
        clients = [(await make_app(backend=b))[1] for b in backends]
        outcomes: dict[str, list[httpx.Response]] = {}
        await assert_woken_by_message(backends[0], backends[1], emulator)  # subscribed
        victim = subscription_port(backends[1])  # the master the subscriptions listen on
        assert victim in cluster.masters()
        rounds, settled = 0, False
        # Failover takes ~2 s (cluster-node-timeout 1 s), a batch ~0.2 s; how many batches that
        # is depends on the machine's load, so only the deadline bounds it.
        with anyio.fail_after(60):
            while not settled:
                codes = [emulator.issue_code() for _ in range(30)]
                ready = all(b.available for b in backends) and cluster.failed_over()
                batch = await login_twice(clients, codes, first=rounds)
                outcomes.update(batch)
                rounds += 1
                if rounds == 2:
                    cluster.kill(victim)  # SIGKILL: its replica takes over
                # Settled: a batch sent once the cluster was whole again, with every worker
                # back on Redis, all served from one exchange per code, as before the failure.
                settled = (
                    ready
                    and rounds > 2
                    and {r.status_code for pair in batch.values() for r in pair} == {200}
                    and all(emulator.exchange_count(code) == 1 for code in codes)
                )
        # The subscriptions moved to another node: waiters are still woken by messages.
        await assert_woken_by_message(backends[2], backends[1], emulator)
        # Every callback of every login succeeded, each code traded once: while its slot had
        # no master, a callback waited for the promoted replica instead of falling back to
        # in-process dedupe (where a pair split over two workers traded the code twice).
        for code, pair in outcomes.items():
            assert [r.status_code for r in pair] == [200, 200], [r.text for r in pair]
            assert emulator.exchange_count(code) == 1, code
        assert all(b.available for b in backends)
        inspect = RedisCluster.from_url(cluster.url)  # a live node's
        try:
            keys = [code_key(emulator.appid, code) for code in codes]
            assert len(await masters_of(inspect, keys)) == 3  # the last batch: every master
            with anyio.move_on_after(10):  # and no lease is left behind by the failover
                while await leftover_leases(inspect, prefix):
                    await anyio.sleep(0.1)
            assert not await leftover_leases(inspect, prefix), await describe_leases(
                inspect, prefix, backends
            )
        finally:
            await inspect.aclose()
        with anyio.fail_after(10):  # what the workers could not tell Redis is settled
            while any(b._unsettled for b in backends):
                await anyio.sleep(0.1)
    finally:
        cluster.stop()


@pytest.mark.slow
async def test_two_uvicorn_workers_on_a_cluster_trade_each_code_once(
    redis_cluster: RedisClusterServers,
) -> None:
    from test_redis_processes import APP, app_env, run_logins

    logins = 60
    with emulator_process(latency=0.05) as emulator_url:
        port = free_port()
        env = app_env(emulator_url, redis_cluster.url, WECHAT_REDIS_CLUSTER="1")
        with process(uvicorn_args(APP, port, "--workers", "2"), port, env) as app:
            statuses, codes = await run_logins(emulator_url, app.url, logins)
            stats = emulator_stats(emulator_url)
    exchanges = stats["exchanges"]
    assert isinstance(exchanges, dict)
    assert statuses == [200] * logins
    assert [exchanges.get(code, 0) for code in codes] == [1] * logins


async def test_forget_and_one_shared_token_on_a_cluster(
    redis_cluster: RedisClusterServers, make_backend
) -> None:
    from asgi_wechat_oauth.testing import WeComEmulator
    from asgi_wechat_oauth.tokens import AccessTokenKeeper, TokenGrant, WeComTokenFetcher

    backend = make_backend(redis_cluster.url)
    claim = await backend.claim("k")
    await backend.complete("k", claim.lease, TokenGrant("a", 1e12), ttl=60)
    assert not await backend.forget("k", only_if=lambda o: o.access_token == "b")
    assert await backend.forget("k", only_if=lambda o: o.access_token == "a")
    assert (await backend.claim("k")).lease is not None

    wecom = WeComEmulator(latency=0.05)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wecom)) as http:
        keepers = [
            AccessTokenKeeper(
                WeComTokenFetcher(
                    wecom.corpid, wecom.secret, api_base_url="http://qyapi.test", http_client=http
                ),
                backend=make_backend(redis_cluster.url),
            )
            for _ in range(3)
        ]
        tokens: list[str] = []

        async def get(keeper: AccessTokenKeeper) -> None:
            tokens.append(await keeper.get())

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(get, keepers[i % 3])
        for keeper in keepers:
            await keeper.aclose()
    assert len(set(tokens)) == 1 and wecom.calls["gettoken"] == 1
