"""RedisBackend against a real redis-server, and a real valkey-server (asyncio only:
redis.asyncio does not run on trio, and the backend says so)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
import redis.asyncio as aioredis

from _servers import RedisServer, free_port
from asgi_wechat_oauth import WeChatIdentity, WeChatOAuthClient
from asgi_wechat_oauth.backends import Claim
from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.errors import CodeRejected, ServiceUnavailable, UpstreamError
from asgi_wechat_oauth.testing import WeChatEmulator
from support import CountingBackend, call_asgi, http_scope, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

API = "http://wechat.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=["redis", "valkey"])
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """Every test here runs against Redis and against Valkey, which the backend supports."""
    server = RedisServer(request.param)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def backends(redis_server: RedisServer, prefix: str) -> AsyncIterator[list[RedisBackend]]:
    """Four backends on separate connections: four 'workers' sharing one Redis."""
    made = [RedisBackend(redis_server.url, prefix=prefix) for _ in range(4)]
    yield made
    for backend in made:
        await backend.aclose()


@pytest.fixture(autouse=True)
def slow_wechat(emulator: WeChatEmulator) -> None:
    """WeChat answers in 50 ms, so that duplicates overlap the exchange in flight."""
    emulator.latency = 0.05


def key_for(emulator: WeChatEmulator, code: str) -> str:
    return hashlib.sha256(f"{emulator.appid}:{code}".encode()).hexdigest()


async def _get_all(clients: list[httpx.AsyncClient], url: str, n: int) -> list[httpx.Response]:
    responses: list[httpx.Response] = []

    async def one(i: int) -> None:
        responses.append(await clients[i % len(clients)].get(url))

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return responses


# --- one exchange per code across "workers" -----------------------------------------------------


async def test_two_workers_racing_share_one_exchange(backends, make_app, emulator) -> None:
    clients = [(await make_app(backend=b))[1] for b in backends[:2]]
    code = emulator.issue_code()
    responses = await _get_all(clients, f"/wechat/callback?code={code}", 2)
    assert [r.status_code for r in responses] == [200, 200]
    assert emulator.exchange_count(code) == 1


async def test_hundred_callers_over_four_workers_share_one_exchange(
    backends, make_app, emulator
) -> None:
    pairs = [await make_app(backend=b) for b in backends]
    code = emulator.issue_code("snsapi_userinfo")
    responses = await _get_all([c for _, c in pairs], f"/wechat/callback?code={code}", 100)
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["openid"] for r in responses} == {emulator.user.openid}
    assert emulator.exchange_count(code) == 1
    assert emulator.calls["userinfo"] == 1
    assert sum(m.counters.exchanges for m, _ in pairs) == 1
    # Leader 2 round trips, each waiter 2, each late duplicate 1.
    assert sum(b.round_trips for b in backends) <= 2 + 99 * 2


async def test_round_trips_per_role(backends, emulator) -> None:
    leader, waiter, late = backends[:3]
    identity = WeChatIdentity(openid="o1", scope="snsapi_base", access_token="A", refresh_token="R")
    key = key_for(emulator, emulator.issue_code())
    claim = await leader.claim(key)
    assert claim.lease is not None
    assert (await waiter.claim(key)).lease is None

    async with anyio.create_task_group() as tg:
        results: list[object] = []

        async def wait() -> None:
            results.append(await waiter.wait(key, timeout=5))

        tg.start_soon(wait)
        with anyio.fail_after(5):
            while waiter.round_trips < 2:  # claimed, subscribed and checked: now waiting
                await anyio.sleep(0.001)
        await leader.complete(key, claim.lease, identity, ttl=60)
    assert results == [identity]
    assert (await late.claim(key)).outcome == identity
    assert (leader.round_trips, waiter.round_trips, late.round_trips) == (2, 2, 1)


async def test_result_published_before_the_waiter_subscribed_is_not_missed(
    backends, emulator
) -> None:
    leader, waiter = backends[:2]
    identity = WeChatIdentity(openid="o2", scope="snsapi_base", access_token="A", refresh_token="R")
    key = key_for(emulator, emulator.issue_code())
    claim = await leader.claim(key)
    assert claim.lease is not None
    assert (await waiter.claim(key)) == type(claim)()  # someone else leads
    await leader.complete(key, claim.lease, identity, ttl=60)  # published to nobody
    with anyio.fail_after(5):
        assert await waiter.wait(key, timeout=30) == identity


async def test_transient_error_reaches_waiters_and_is_not_stored(backends, emulator) -> None:
    leader, waiter = backends[:2]
    error = UpstreamError("upstream_unavailable", "WeChat answered HTTP 502.")
    key = key_for(emulator, emulator.issue_code())
    claim = await leader.claim(key)
    assert claim.lease is not None
    assert (await waiter.claim(key)).lease is None
    results: list[object] = []
    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            results.append(await waiter.wait(key, timeout=5))

        tg.start_soon(wait)
        with anyio.fail_after(5):
            while waiter.round_trips < 2:  # claimed and checked: now waiting
                await anyio.sleep(0.001)
        await leader.complete(key, claim.lease, error, ttl=0)
    [got] = results
    assert isinstance(got, UpstreamError) and got.reason == "upstream_unavailable"
    assert (await waiter.claim(key)).lease is not None  # nothing stored: the next one retries


async def test_a_stored_error_yields_to_a_result_stored_first(backends, emulator) -> None:
    # A leader whose lease expired mid-exchange gets 40163 after another worker stored the
    # identity: Redis keeps the identity, and complete() says so, so that the followers in
    # the leader's process are handed the identity rather than the error.
    slow, other = backends[:2]
    identity = WeChatIdentity(openid="o1", scope="snsapi_base", access_token="A", refresh_token="R")
    key = key_for(emulator, emulator.issue_code())
    claim = await slow.claim(key)
    assert claim.lease is not None
    assert await other.complete(key, "another-lease", identity, ttl=60) is None
    used = CodeRejected("code_used", "The code was already used.", errcode=40163)
    assert await slow.complete(key, claim.lease, used, ttl=60) == identity
    assert (await other.claim(key)).outcome == identity


async def test_lease_is_released_only_by_its_owner(backends, emulator) -> None:
    a, b = backends[:2]
    key = key_for(emulator, emulator.issue_code())
    claim = await a.claim(key)
    assert claim.lease is not None
    error = UpstreamError("upstream_unavailable", "x")
    await b.complete(key, "not-the-lease", error, ttl=0)
    assert (await b.claim(key)).lease is None  # still held by a
    await a.complete(key, claim.lease, error, ttl=0)
    assert (await b.claim(key)).lease is not None


# --- leases that expire ---


async def test_waiter_stops_waiting_when_a_dead_leaders_lease_expires(
    redis_server, prefix, emulator, upstream, make_app
) -> None:
    dead = RedisBackend(redis_server.url, prefix=prefix, lease_ttl=0.3)
    # The live worker's own lease must outlast its exchange (check_lease); the dead one's
    # lease, taken by a process that then died, is what expires.
    alive = RedisBackend(redis_server.url, prefix=prefix, lease_ttl=3.0)
    try:
        code = emulator.issue_code()
        assert (await dead.claim(key_for(emulator, code))).lease is not None  # then it "dies"
        _, client = await make_app(backend=alive, exchange_timeout=2.0)
        with anyio.fail_after(0.3 + 2.0 + 5):
            response = await client.get(f"/wechat/callback?code={code}")
        # The dead leader never reached WeChat: the waiter takes over and trades the code.
        assert response.status_code == 200
        assert emulator.exchange_count(code) == 1
    finally:
        await dead.aclose()
        await alive.aclose()


async def test_dead_leader_that_spent_the_code_gives_a_clear_502_within_the_bound(
    redis_server, prefix, emulator, upstream, make_app
) -> None:
    lease_ttl, exchange_timeout = 0.3, 0.5
    dead = RedisBackend(redis_server.url, prefix=prefix, lease_ttl=lease_ttl)
    alive = RedisBackend(redis_server.url, prefix=prefix, lease_ttl=exchange_timeout + 1)
    try:
        code = emulator.issue_code()
        assert (await dead.claim(key_for(emulator, code))).lease is not None
        # The dead leader's exchange reached WeChat before it died: the code is spent.
        async with WeChatOAuthClient(emulator.appid, emulator.secret, api_base_url=API,
                                     http_client=upstream) as client:  # fmt: skip
            await client.exchange_code(code)
        _, app = await make_app(backend=alive, exchange_timeout=exchange_timeout)
        with anyio.fail_after(lease_ttl + exchange_timeout + 5):
            response = await app.get(f"/wechat/callback?code={code}")
        assert response.status_code == 502
        assert response.json()["error"] == "exchange_lost"
        # Stored: a retry of the same code gets the answer without calling WeChat again.
        before = emulator.exchange_count(code)
        again = await app.get(f"/wechat/callback?code={code}")
        assert again.json()["error"] == "exchange_lost"
        assert emulator.exchange_count(code) == before
    finally:
        await dead.aclose()
        await alive.aclose()


async def test_40163_from_a_takeover_recovers_the_slow_leaders_result(
    redis_server, prefix, emulator, make_app
) -> None:
    # Worker A's lease is lost while its exchange is still running (slow WeChat; a lease can
    # no longer be shorter than the exchange, but a Redis failover can drop it); worker B
    # takes over, gets 40163, and must wait for A's identity instead of failing.
    emulator.latency = 0.6
    a = RedisBackend(redis_server.url, prefix=prefix, lease_ttl=4.0)
    b = RedisBackend(redis_server.url, prefix=prefix, lease_ttl=4.0)
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        _, client_a = await make_app(backend=a, exchange_timeout=3.0)
        middleware_b, client_b = await make_app(backend=b, exchange_timeout=3.0)
        code = emulator.issue_code()
        results: dict[str, httpx.Response] = {}
        async with anyio.create_task_group() as tg:

            async def get(name: str, client: httpx.AsyncClient) -> None:
                results[name] = await client.get(f"/wechat/callback?code={code}")

            tg.start_soon(get, "a", client_a)
            with anyio.fail_after(5):
                while emulator.exchange_count(code) < 1:
                    await anyio.sleep(0.005)
            assert await admin.delete(f"{prefix}:{{{key_for(emulator, code)}}}:lease") == 1
            tg.start_soon(get, "b", client_b)
        assert results["a"].status_code == 200
        assert results["b"].status_code == 200
        assert results["b"].json()["openid"] == emulator.user.openid
        assert middleware_b.counters.recovered == 1
    finally:
        await admin.aclose()
        await a.aclose()
        await b.aclose()


# --- Redis unavailable ---------------------------------------------------------------------------


async def test_unreachable_redis_falls_back_to_local_dedupe(make_app, emulator, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="asgi_wechat_oauth")
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.5)
    middleware, client = await make_app(backend=backend)
    code = emulator.issue_code()
    with anyio.fail_after(10):
        responses = await _get_all([client], f"/wechat/callback?code={code}", 10)
    assert {r.status_code for r in responses} == {200}
    assert emulator.exchange_count(code) == 1
    assert not backend.available
    warnings = [r for r in caplog.records if "redis_unavailable" in r.getMessage()]
    assert len(warnings) == 1


async def test_unreachable_redis_with_fail_answers_503(make_app, emulator) -> None:
    backend = RedisBackend(
        f"redis://127.0.0.1:{free_port()}/0", on_unavailable="fail", redis_timeout=0.5
    )
    _, client = await make_app(backend=backend)
    code = emulator.issue_code()
    with anyio.fail_after(10):
        first = await client.get(f"/wechat/callback?code={code}")
        second = await client.get(f"/wechat/callback?code={code}")
    for response in (first, second):
        assert response.status_code == 503
        assert response.json()["error"] == "backend_unavailable"
    assert emulator.total_exchanges == 0


async def test_redis_stopped_and_restarted_mid_run(make_app, emulator, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="asgi_wechat_oauth")
    server = RedisServer()
    server.start()
    backend = RedisBackend(server.url, redis_timeout=0.5, retry_interval=0.2)
    _, client = await make_app(backend=backend)
    try:
        assert (
            await client.get(f"/wechat/callback?code={emulator.issue_code()}")
        ).status_code == 200
        # The leader is answered first; its COMPLETE follows in the flight's own task.
        await wait_until(lambda: backend.round_trips >= 2)
        assert backend.available

        server.stop()
        with anyio.fail_after(10):
            code = emulator.issue_code()
            responses = await _get_all([client], f"/wechat/callback?code={code}", 5)
        assert {r.status_code for r in responses} == {200}  # local dedupe
        assert emulator.exchange_count(code) == 1
        assert not backend.available

        server.start()  # same port
        await anyio.sleep(0.3)  # past retry_interval
        trips = backend.round_trips
        with anyio.fail_after(10):
            code = emulator.issue_code()
            responses = await _get_all([client], f"/wechat/callback?code={code}", 5)
        assert {r.status_code for r in responses} == {200}
        assert emulator.exchange_count(code) == 1
        assert backend.available and backend.round_trips > trips
        messages = [r.getMessage() for r in caplog.records]
        assert any("redis_unavailable" in m for m in messages)
        assert any("redis_recovered" in m for m in messages)
    finally:
        server.stop()


# --- what Redis holds ---


async def test_keys_hold_hashes_and_values_hold_tokens_only_for_result_ttl(
    redis_server, prefix, backends, make_app, emulator
) -> None:
    _, client = await make_app(backend=backends[0], result_ttl=30)
    code = emulator.issue_code("snsapi_userinfo")
    response = await client.get(f"/wechat/callback?code={code}")
    assert response.status_code == 200
    raw = aioredis.from_url(redis_server.url)
    try:
        keys = [k.decode() async for k in raw.scan_iter(f"{prefix}:*")]
        assert keys and all(code not in k for k in keys)
        assert all(key_for(emulator, code) in k for k in keys)
        [result_key] = [k for k in keys if k.endswith(":result")]
        assert 0 < await raw.pttl(result_key) <= 30_000
        for k in keys:
            value = await raw.get(k)
            assert code.encode() not in value and emulator.secret.encode() not in value
            if not k.endswith(":result"):
                assert b"ACCESS_" not in value and b"REFRESH_" not in value
    finally:
        await raw.aclose()


async def test_scripts_the_server_lost_are_loaded_again(backends, redis_server, caplog) -> None:
    # A Redis restart or SCRIPT FLUSH forgets the scripts: EVALSHA answers NOSCRIPT, and the
    # backend loads the script and runs it again, without taking Redis for down.
    leader, other = backends[:2]
    identity = WeChatIdentity(openid="o1", scope="snsapi_base", access_token="A", refresh_token="R")
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        for n in range(2):
            await admin.script_flush()
            key = hashlib.sha256(f"flushed-{n}".encode()).hexdigest()
            claim = await leader.claim(key)
            assert claim.lease is not None
            assert (await other.claim(key)).lease is None  # the lease is in Redis
            await leader.complete(key, claim.lease, identity, ttl=60)
            assert (await other.claim(key)).outcome == identity
    finally:
        await admin.aclose()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_accepts_a_client_and_leaves_it_open(redis_server, prefix) -> None:
    client = aioredis.from_url(redis_server.url)
    backend = RedisBackend(client, prefix=prefix)
    await backend.claim("k" * 64)
    await backend.aclose()
    assert await client.ping()  # still usable: the caller owns it
    await client.aclose()


def test_constructor_rejects_bad_options() -> None:
    for kwargs in ({"prefix": ""}, {"lease_ttl": 0}, {"on_unavailable": "ignore"}):
        with pytest.raises(ValueError):
            RedisBackend("redis://127.0.0.1:1/0", **kwargs)  # type: ignore[arg-type]


def test_redis_timeout_is_the_bound_of_every_call_and_stays_valid() -> None:
    backend = RedisBackend("redis://127.0.0.1:1/0", redis_timeout=0.5)
    assert backend.redis_timeout == 0.5 == backend._deadlines.timeout
    backend.redis_timeout = 1.5
    assert backend._deadlines.timeout == 1.5
    for bad in (None, 0, -1, float("nan"), "2", True):
        with pytest.raises(ValueError, match="redis_timeout"):
            backend.redis_timeout = bad  # type: ignore[assignment]
    assert backend.redis_timeout == 1.5


def test_says_clearly_that_it_needs_asyncio() -> None:
    backend = RedisBackend("redis://127.0.0.1:1/0")

    async def main() -> None:
        with pytest.raises(RuntimeError, match="asyncio only"):
            await backend.claim("k")

    anyio.run(main, backend="trio")


async def test_encrypted_results_hold_no_token_in_clear_and_are_shared(
    redis_server, prefix, make_app, emulator
) -> None:
    key = bytes(range(32))
    a = RedisBackend(redis_server.url, prefix=prefix, encryption_key=key)
    b = RedisBackend(redis_server.url, prefix=prefix, encryption_key=key)
    stranger = RedisBackend(redis_server.url, prefix=prefix, encryption_key=b"k" * 32)
    raw = aioredis.from_url(redis_server.url)
    try:
        _, client_a = await make_app(backend=a)
        _, client_b = await make_app(backend=b)
        _, client_stranger = await make_app(backend=stranger)
        code = emulator.issue_code("snsapi_userinfo")
        first = await client_a.get(f"/wechat/callback?code={code}")
        late = await client_b.get(f"/wechat/callback?code={code}")  # another worker, same key
        assert first.status_code == late.status_code == 200
        assert late.json() == first.json()
        assert emulator.exchange_count(code) == 1
        [result_key] = [k async for k in raw.scan_iter(f"{prefix}:*:result")]
        value = await raw.get(result_key)
        for secret in (b"ACCESS_", b"REFRESH_", emulator.user.openid.encode(), b"nickname"):
            assert secret not in value
        # A worker with another key cannot read it: a clear 503, not someone's identity.
        wrong = await client_stranger.get(f"/wechat/callback?code={code}")
        assert wrong.status_code == 503
        assert wrong.json()["error"] == "backend_unavailable"
    finally:
        await raw.aclose()
        for backend in (a, b, stranger):
            await backend.aclose()


def test_encryption_key_must_be_an_aes_key() -> None:
    with pytest.raises(ValueError):
        RedisBackend("redis://127.0.0.1:1/0", encryption_key=b"short")


async def test_an_exhausted_client_pool_is_overload_not_an_outage(redis_server, prefix) -> None:
    # A client passed in with a small, non-blocking pool: a burst beyond it must not switch
    # the backend to in-process dedupe (which would break dedupe across workers).
    pool = aioredis.ConnectionPool.from_url(redis_server.url, max_connections=2)
    client = aioredis.Redis(connection_pool=pool)
    backend = RedisBackend(client, prefix=prefix)
    try:
        claims = [backend.claim(f"{i:064x}") for i in range(20)]
        results = await asyncio.gather(*claims, return_exceptions=True)
        refused = [r.reason for r in results if isinstance(r, ServiceUnavailable)]
        leases = [r.lease for r in results if isinstance(r, Claim)]
        assert refused
        assert set(refused) == {"overloaded"}
        assert len(refused) + len(leases) == 20
        assert None not in leases
        assert backend.available
    finally:
        await backend.aclose()
        await client.aclose()
        await pool.disconnect()  # a pool passed in is not closed with its client


async def test_replay_after_result_ttl_is_code_used_at_once_not_a_lost_exchange(
    backends, make_app, emulator
) -> None:
    # The leader finished long ago: nobody else is trading the code, so there is nothing to
    # wait for (and the login endpoint's re-authorization applies to code_used).
    _, client = await make_app(backend=backends[0], result_ttl=0.05, exchange_timeout=5.0)
    code = emulator.issue_code()
    assert (await client.get(f"/wechat/callback?code={code}")).status_code == 200
    await anyio.sleep(0.2)
    with anyio.fail_after(2):
        replay = await client.get(f"/wechat/callback?code={code}")
    assert replay.status_code == 400
    assert replay.json()["error"] in ("code_used", "code_invalid")


async def test_with_a_key_a_result_planted_in_clear_is_refused(
    redis_server, prefix, make_app, emulator
) -> None:
    backend = RedisBackend(redis_server.url, prefix=prefix, encryption_key=bytes(32))
    _, client = await make_app(backend=backend)
    code = emulator.issue_code()
    planted = WeChatIdentity(
        openid="oVictim", scope="snsapi_base", access_token="A", refresh_token="R"
    )
    raw = aioredis.from_url(redis_server.url)
    try:
        result_key = backend._keys(key_for(emulator, code))[1]
        await raw.set(result_key, b"1" + json.dumps(planted.to_dict()).encode(), px=60_000)
        response = await client.get(f"/wechat/callback?code={code}")
    finally:
        await raw.aclose()
    assert response.status_code == 503
    assert "oVictim" not in response.text


def test_a_client_that_decodes_responses_is_refused() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        RedisBackend(aioredis.from_url("redis://127.0.0.1:1/0", decode_responses=True))


async def test_redis_lost_mid_exchange_keeps_dedupe_within_the_process(
    make_app, emulator, gate, gated_upstream
) -> None:
    server = RedisServer()
    server.start()
    backend = RedisBackend(server.url, redis_timeout=0.5, retry_interval=5.0)
    _, client = await make_app(backend=backend, http_client=gated_upstream)
    code = emulator.issue_code()
    responses: list[httpx.Response] = []
    try:
        async with anyio.create_task_group() as tg:

            async def get() -> None:
                responses.append(await client.get(f"/wechat/callback?code={code}"))

            tg.start_soon(get)  # the leader: lease taken in Redis, exchange held at the gate
            with anyio.fail_after(5):
                while gate.arrived < 1:
                    await anyio.sleep(0.005)
            server.stop()  # Redis goes away mid-exchange
            tg.start_soon(get)  # the duplicate, in the same process
            await anyio.sleep(0.3)
            gate.open()
        assert [r.status_code for r in responses] == [200, 200]
        assert emulator.exchange_count(code) == 1
        late = await client.get(f"/wechat/callback?code={code}")  # still Redis-less
        assert late.status_code == 200
        assert emulator.exchange_count(code) == 1
    finally:
        server.stop()


async def test_followers_in_the_leaders_process_make_no_round_trip(
    redis_server, prefix, make_app, emulator, gate, gated_upstream
) -> None:
    # A duplicate arriving at the worker that leads the code joins the local flight: Redis
    # sees only the leader's CLAIM and COMPLETE. Another worker's duplicate still makes 2.
    here, there = (RedisBackend(redis_server.url, prefix=prefix) for _ in range(2))
    counted = CountingBackend(here)
    leader_app, _ = await make_app(backend=counted, http_client=gated_upstream)
    other_app, _ = await make_app(backend=there, http_client=gated_upstream)
    code = emulator.issue_code()
    query = f"code={code}&state=s".encode()
    n = 5
    responses: list[int] = []

    async def one(app: object) -> None:
        responses.append((await call_asgi(app, http_scope(query_string=query))).status)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, leader_app)
        await wait_until(lambda: gate.arrived == 1)
        assert here.round_trips == 1  # CLAIM
        assert here.peek(key_for(emulator, code)) == Claim()  # a duplicate here: wait locally
        for _ in range(n):
            tg.start_soon(one, leader_app)
        tg.start_soon(one, other_app)
        await wait_until(lambda: leader_app.counters.waiting == n and there.round_trips == 2)
        assert here.round_trips == 1
        gate.open()
    assert responses == [200] * (n + 2)
    assert emulator.total_exchanges == 1
    await wait_until(lambda: here.round_trips >= 2)  # the leader is answered before COMPLETE
    assert (here.round_trips, there.round_trips) == (2, 2)
