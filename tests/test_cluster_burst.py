"""RedisBackend at burst scale (issue 31), on a real redis-server and a real Redis Cluster: a
burst waits its turn instead of being refused, a call that timed out is not an outage, and a
master killed mid-burst trades no code twice. The last test is the small version of
``benchmarks/bench_cluster_burst.py``: 300 logins at once on 4 uvicorn workers, a master
SIGKILLed mid-burst. Bounds here only turn a hang into a failure: the assertions are outcomes
(logins kept, codes traded once, no 5xx), never durations."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from redis.asyncio.cluster import RedisCluster

from _servers import ROOT, RedisClusterServers, RedisServer
from asgi_wechat_oauth import WeChatIdentity
from asgi_wechat_oauth.backends import Claim
from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.backends.redis import _backend as redis_backend_module
from asgi_wechat_oauth.testing import WeChatEmulator
from support import CALLBACK, code_key, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

IDENTITY = WeChatIdentity(openid="oB", scope="snsapi_base", access_token="A", refresh_token="R")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    return f"burst-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def slow_wechat(emulator: WeChatEmulator) -> None:
    """WeChat answers in 50 ms, so that duplicates overlap the exchange in flight."""
    emulator.latency = 0.05


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of this test's own: the stall tests freeze it."""
    server = RedisServer()
    server.start()
    yield server
    if server.proc is not None:
        os.kill(server.proc.pid, signal.SIGCONT)  # never leave it frozen
    server.stop()


@pytest.fixture
async def made(prefix: str) -> AsyncIterator[list[RedisBackend]]:
    """Backends a test makes (its "workers"), closed at teardown."""
    backends: list[RedisBackend] = []
    yield backends
    for backend in backends:
        await backend.aclose()


def worker(made: list[RedisBackend], url: str, prefix: str, **options: Any) -> RedisBackend:
    made.append(RedisBackend(url, prefix=prefix, **options))
    return made[-1]


async def stall(server: RedisServer, seconds: float) -> None:
    """Freeze the redis-server process for ``seconds`` (SIGSTOP, then SIGCONT): commands sent
    meanwhile run when it resumes, after the client's timeout."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        await anyio.sleep(seconds)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def unavailable_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "redis_unavailable" in r.getMessage()]


# --- 1. a burst is queued, not refused ----------------------------------------------------------


@pytest.mark.redis_cluster
async def test_a_burst_beyond_the_cluster_pools_waits_its_turn(
    redis_cluster: RedisClusterServers, made, prefix, caplog
) -> None:
    # redis-py's cluster pools do not wait: 200 claims at once on pools of 4 per node were
    # refused (503 overloaded) although the cluster was idle. Now they queue in the process.
    caplog.set_level(logging.WARNING, logger="asgi_wechat_oauth")
    backend = worker(made, redis_cluster.url, prefix, cluster=True, max_connections=4)
    keys = [hashlib.sha256(f"burst-{i}".encode()).hexdigest() for i in range(200)]
    claims: list[Claim] = []

    async def claim(key: str) -> None:
        claims.append(await backend.claim(key))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(claim, key)
    assert len(claims) == len(keys)
    assert all(c.lease is not None for c in claims)  # every one led: none refused
    assert backend.available and not unavailable_warnings(caplog)
    assert backend.queued == 0


async def test_past_max_queued_a_burst_is_answered_503_overloaded_with_retry_after(
    redis_server, made, prefix, make_app, emulator
) -> None:
    # One call in flight (two connections, one being the subscription's), one waiting: the
    # other callbacks of a burst are refused before anything runs, and say when to retry.
    backend = worker(made, redis_server.url, prefix, max_connections=2, max_queued=1)
    _, client = await make_app(backend=backend)
    codes = [emulator.issue_code() for _ in range(20)]
    responses: dict[str, httpx.Response] = {}

    async def login(code: str) -> None:
        responses[code] = await client.get(f"{CALLBACK}?code={code}")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for code in codes:
                tg.start_soon(login, code)
    refused = [code for code, r in responses.items() if r.status_code == 503]
    assert refused, {r.status_code for r in responses.values()}
    for code, response in responses.items():
        if code in refused:
            assert response.json()["error"] == "overloaded"
            assert response.headers["retry-after"] == "5"
            assert emulator.exchange_count(code) == 0  # refused before anything ran
        else:
            assert response.status_code == 200, response.text
            assert emulator.exchange_count(code) == 1
    assert backend.available  # overloaded is not an outage


async def test_calls_waiting_for_one_slot_try_it_one_at_a_time(monkeypatch) -> None:
    # While a master fails over, hundreds of calls of one worker may wait for its slots: one
    # per slot tries again after each pause, the others go once a call for it is answered.
    from asgi_wechat_oauth.backends.redis import _slots

    monkeypatch.setattr(_slots, "ON_ITS_OWN", 60.0)  # nobody tries on its own in this test
    waits = _slots.SlotWaits()
    gone: list[int] = []

    async def call(i: int) -> None:
        await waits.wait(7, pause=0.01, left=30)
        gone.append(i)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(call, i)
            await wait_until(lambda: len(gone) == 1)  # the one trying, after its pause
            await anyio.sleep(0.1)  # ten pauses: the others still wait for news of the slot
            assert len(gone) == 1
            waits.answered(7)  # its call was answered
    assert sorted(gone) == list(range(20))
    assert not waits


async def test_a_waiter_cancelled_as_the_queue_passes_it_leaves_the_gate_whole() -> None:
    # Seen under a failover's load: a call cancelled while queued (its flight's bound) was
    # passed over by a release() before it ran again, then removed from the queue a second
    # time: ValueError, which turned a leader's COMPLETE into a release without its outcome.
    import asyncio

    from asgi_wechat_oauth.backends.redis._gate import Gate

    gate = Gate(capacity=1, max_queued=10)
    await gate.acquire(1)
    waiter = asyncio.ensure_future(gate.acquire(5))
    await wait_until(lambda: gate.queued == 1)
    waiter.cancel()  # its turn is cancelled at once, the task runs later
    gate.release()  # passes over the cancelled turn: the place is free
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (gate.busy, gate.queued) == (0, 0)
    await gate.acquire(0)  # free indeed
    assert gate.busy == 1


def test_only_an_outage_is_taken_for_one() -> None:
    # What a failed call means decides whether a worker falls back to dedupe on its own (and
    # may split a code with another worker): only refused connections of one Redis do at once.
    from redis.exceptions import (
        ClusterDownError,
        MaxConnectionsError,
        NoScriptError,
        RedisClusterUnreachableError,
        TryAgainError,
    )
    from redis.exceptions import ConnectionError as Refused
    from redis.exceptions import TimeoutError as RedisTimeout

    from asgi_wechat_oauth.backends.redis._failures import classify

    for cluster in (False, True):
        assert classify(MaxConnectionsError(), cluster=cluster) == "busy"
        for maybe_ran in (TimeoutError(), RedisTimeout()):
            assert classify(maybe_ran, cluster=cluster) == "wait"
    assert classify(Refused("refused"), cluster=False) == "down"
    for failing_over in (
        Refused("refused by the failed master"),
        ClusterDownError("CLUSTERDOWN"),
        TryAgainError("TRYAGAIN"),
        NoScriptError("a promoted replica without the script"),
        RedisClusterUnreachableError("a refresh that reached no node of a busy cluster"),
    ):
        assert classify(failing_over, cluster=True) == "wait", failing_over


def test_new_options_are_checked() -> None:
    for options in ({"failover_timeout": -1}, {"failover_timeout": 121}, {"max_queued": -1}):
        with pytest.raises(ValueError, match=next(iter(options))):
            RedisBackend("redis://127.0.0.1:1/0", **options)  # type: ignore[arg-type]
    backend = RedisBackend("redis://127.0.0.1:1/0", failover_timeout=0, max_queued=0)
    assert backend.failover_timeout == 0


# --- 2. a call that timed out is not an outage ---------------------------------------------------


async def warm(clients: list[httpx.AsyncClient], emulator: WeChatEmulator) -> None:
    """One login per worker: connected and subscribed, so that a stall freezes a call."""
    for client in clients:
        assert (await client.get(f"{CALLBACK}?code={emulator.issue_code()}")).status_code == 200


async def test_a_stall_longer_than_the_timeout_splits_no_code_between_workers(
    server, made, prefix, make_app, emulator, caplog
) -> None:
    # Redis freezes for three times redis_timeout (a saturated host, a fork, a slow command)
    # while a code's double callback reaches two workers. Both claims time out; each may have
    # run. Falling back to local dedupe made each worker trade the code; now both are sent
    # again, Redis runs them in order once it resumes, and one worker leads.
    caplog.set_level(logging.WARNING, logger="asgi_wechat_oauth")
    a, b = (worker(made, server.url, prefix, redis_timeout=0.5) for _ in range(2))
    clients = [(await make_app(backend=backend))[1] for backend in (a, b)]
    await warm(clients, emulator)
    code = emulator.issue_code()
    responses: list[httpx.Response] = []

    async def get(client: httpx.AsyncClient) -> None:
        responses.append(await client.get(f"{CALLBACK}?code={code}"))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stall, server, 1.5)
            await anyio.sleep(0.05)
            tg.start_soon(get, clients[0])
            await anyio.sleep(0.019)
            tg.start_soon(get, clients[1])
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert responses[0].json()["openid"] == responses[1].json()["openid"]
    assert emulator.exchange_count(code) == 1
    assert a.available and b.available
    assert not unavailable_warnings(caplog)


async def test_after_a_stall_a_claim_holds_back_for_a_leader_that_stored_nothing_yet(
    server, made, prefix, emulator
) -> None:
    # A failover (or a stall) can outlast a lease: the leader's lease expires while its
    # COMPLETE cannot reach Redis, and a duplicate that claims once Redis answers would find
    # no lease and trade the code again. A claim after such trouble holds back for the
    # holder's outcome (the holder's worker settles it within moments of Redis answering).
    leader = worker(made, server.url, prefix, lease_ttl=0.5)
    duplicate = worker(made, server.url, prefix, redis_timeout=0.3)
    key = code_key(emulator.appid, emulator.issue_code())
    claim = await leader.claim(key)
    assert claim.lease is not None
    assert await duplicate.note_code("warm", "up", limit=5, ttl=30)  # connected
    async with anyio.create_task_group() as tg:
        tg.start_soon(stall, server, 0.9)  # longer than the lease and the timeout
        await anyio.sleep(0.05)
        with anyio.fail_after(10):  # sent again until Redis answers: the trouble is seen
            assert await duplicate.note_code("g", key, limit=5, ttl=30)
    result: dict[str, Claim] = {}

    async def claim_duplicate() -> None:
        result["claim"] = await duplicate.claim(key)

    trips = duplicate.round_trips
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(claim_duplicate)
            # CLAIM (held back) and CHECK answered: the duplicate waits for the holder.
            await wait_until(lambda: "claim" in result or duplicate.round_trips >= trips + 2)
            assert "claim" not in result, result  # it did not take the expired lease over
            await leader.complete(key, claim.lease, IDENTITY, ttl=60)
    assert result["claim"] == Claim(outcome=IDENTITY)


async def test_a_claim_held_back_leads_after_the_grace_when_the_holder_never_settles(
    server, made, prefix, emulator, monkeypatch
) -> None:
    # The holder died with its lease (a worker killed during the failover): the duplicate
    # does not wait for ever, it leads, as after any dead leader's lease.
    monkeypatch.setattr(redis_backend_module, "SETTLE_GRACE", 0.3)
    leader = worker(made, server.url, prefix, lease_ttl=0.2)
    duplicate = worker(made, server.url, prefix, redis_timeout=0.3)
    key = code_key(emulator.appid, emulator.issue_code())
    assert (await leader.claim(key)).lease is not None
    assert await duplicate.note_code("warm", "up", limit=5, ttl=30)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stall, server, 0.7)
        await anyio.sleep(0.05)
        with anyio.fail_after(10):
            assert await duplicate.note_code("g", key, limit=5, ttl=30)
    with anyio.fail_after(10):
        claim = await duplicate.claim(key)
    assert claim.lease is not None


async def test_a_complete_that_fails_on_a_bug_still_stores_the_outcome(
    redis_server, made, prefix, emulator, monkeypatch, caplog
) -> None:
    # complete() never raises; when it failed on a bug (as the gate's ValueError did, under a
    # failover's load) it only released the lease, and a duplicate on another worker led and
    # traded the code again. Now the outcome is stored later all the same. The bug is
    # simulated: encoding the outcome for the COMPLETE raises (the ledger has its own).
    leader = worker(made, redis_server.url, prefix)
    duplicate = worker(made, redis_server.url, prefix)
    key = code_key(emulator.appid, emulator.issue_code())
    claim = await leader.claim(key)
    assert claim.lease is not None

    def broken(*args: object) -> bytes:
        raise RuntimeError("a bug")

    monkeypatch.setattr(leader, "_dump", broken)
    with caplog.at_level(logging.ERROR, logger="asgi_wechat_oauth"):
        assert await leader.complete(key, claim.lease, IDENTITY, ttl=60) is None
    assert any("redis_complete_failed" in r.getMessage() for r in caplog.records)
    with anyio.fail_after(10):
        got = await duplicate.claim(key)
        assert got.lease is None  # never a second lease for the code
        assert (got.outcome or await duplicate.wait(key, timeout=5)) == IDENTITY


# --- 3. a failover trades no code twice ----------------------------------------------------------


@contextlib.contextmanager
def own_cluster(directory: Path, node_timeout_ms: int = 1000) -> Iterator[RedisClusterServers]:
    """A cluster of this test's own: it kills one of its masters."""
    cluster = RedisClusterServers(directory, node_timeout_ms=node_timeout_ms)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def failed_over(cluster: RedisClusterServers) -> None:
    """Until every slot has a live master again, as every live node sees it."""
    while not await anyio.to_thread.run_sync(cluster.failed_over):
        await anyio.sleep(0.05)


@pytest.mark.redis_cluster
async def test_a_duplicate_during_a_failover_waits_for_the_promoted_replica(
    tmp_path, made, prefix, emulator, caplog
) -> None:
    # The leader takes the lease on a master, which is killed before the leader's COMPLETE.
    # A duplicate on another worker arrives while the slot has no master: it used to fall
    # back to local dedupe and trade the code again. Now it waits for the promoted replica
    # and gets the leader's outcome, which the leader's worker stores once the slot answers.
    caplog.set_level(logging.WARNING, logger="asgi_wechat_oauth")
    with own_cluster(tmp_path) as cluster:
        leader, duplicate = (worker(made, cluster.url, prefix, cluster=True) for _ in range(2))
        inspect = RedisCluster.from_url(cluster.url)
        try:
            await inspect.initialize()
            # A code whose keys live on the master that is killed (the first by port).
            victim = sorted(cluster.masters())[0]
            while True:
                key = code_key(emulator.appid, emulator.issue_code())
                if inspect.get_node_from_key(f"x:{{{key}}}:lease").port == victim:
                    break
            claim = await leader.claim(key)
            assert claim.lease is not None
            # The duplicate's worker is running too: it knows the cluster's nodes (a client
            # whose only known node is the one killed could not reach the cluster at all).
            assert await duplicate.note_code("warm", "up", limit=5, ttl=30)
            cluster.kill(victim)
            await leader.complete(key, claim.lease, IDENTITY, ttl=60)  # cannot reach it
            with anyio.fail_after(60):
                got = await duplicate.claim(key)
                assert got.lease is None  # never a second lease for the code
                outcome = got.outcome or await duplicate.wait(key, timeout=30)
            assert outcome == IDENTITY
            assert leader.available and duplicate.available
            assert not unavailable_warnings(caplog)  # waited for the failover, no fallback
            with anyio.fail_after(30):  # what the leader's worker owed Redis is settled
                while leader._unsettled:
                    await anyio.sleep(0.05)
        finally:
            await inspect.aclose()


# --- 4. the burst, small: benchmarks/bench_cluster_burst.py --------------------------------------


def burst_module() -> Any:
    benchmarks = str(ROOT / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    import bench_cluster_burst

    return bench_cluster_burst


@pytest.mark.slow
@pytest.mark.redis_cluster
async def test_300_logins_on_4_workers_with_a_master_killed_keep_every_login(tmp_path) -> None:
    # The issue's audit, small: every user logs in at once with WeChat's double callback
    # (#1 dropped at a random moment, #2 19 ms later, one in five also dropping #2 and
    # reloading), and a master is SIGKILLed one second into the burst. Every login ends at
    # `next` (a silent re-authorization counts), no 5xx, no code traded twice, and no worker
    # falls back to local dedupe (they wait for the failover instead of flapping).
    burst = burst_module()
    with own_cluster(tmp_path) as cluster:

        async def kill() -> float:
            killed = time.monotonic()
            cluster.kill(sorted(cluster.masters())[0])
            await failed_over(cluster)
            return time.monotonic() - killed

        figures = await burst.run_burst(
            redis_url=cluster.url,
            cluster=True,
            logins=300,
            workers_count=4,
            kill=kill,
            kill_at=1.0,
            timeout=110,
        )
    print(
        f"\n300 logins, 4 workers, failover {figures.failover_seconds:.1f}s: "
        f"{figures.kept} kept ({figures.reauthorized} re-authorized), "
        f"{figures.server_errors} 5xx, {figures.traded_twice} traded twice, "
        f"p50 {figures.p50:.2f}s p99 {figures.p99:.2f}s max {figures.slowest:.1f}s, "
        f"not kept {dict(figures.failures)}, worker log events {dict(figures.events)}"
    )
    # What the workers logged beyond the waits, for a failure's message.
    logged = [
        line
        for line in figures.log.splitlines()
        if "wechat_oauth." in line and "redis_waiting" not in line and "answering" not in line
    ][:20]
    assert figures.failover_seconds is not None
    assert figures.traded_twice == 0, logged
    assert figures.server_errors == 0, logged
    assert figures.kept == 300, (dict(figures.failures), logged)
    assert figures.events["redis_unavailable"] == 0, logged
