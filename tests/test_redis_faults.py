"""RedisBackend under faults an outside audit found: text the codec could not encode, and Redis
calls that timed out on the client but still ran on the server (a stalled Redis)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from _servers import RedisServer
from asgi_wechat_oauth import WeChatIdentity
from asgi_wechat_oauth.backends import register_result
from asgi_wechat_oauth.backends._codec import dump_outcome, load_outcome
from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.errors import ServiceUnavailable, UpstreamError
from asgi_wechat_oauth.testing import EmulatedUser, WeChatEmulator
from support import CALLBACK

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

LONE_SURROGATE = "Tom\ud83d"  # valid JSON ("Tom\\ud83d"), half an emoji, not UTF-8 encodable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
def prefix() -> str:
    return f"faults-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def make_backend(server: RedisServer, prefix: str) -> AsyncIterator[Any]:
    """``make_backend(**options)``: a RedisBackend (a "worker") on the test's server, closed at
    teardown."""
    made: list[RedisBackend] = []

    def make(**options: Any) -> RedisBackend:
        made.append(RedisBackend(server.url, prefix=prefix, **options))
        return made[-1]

    yield make
    for backend in made:
        await backend.aclose()


async def warm_workers(
    make_app, emulator, raw, prefix, *backends: RedisBackend
) -> list[httpx.AsyncClient]:
    """A client per backend, each worker warmed up by one login: connected and subscribed, so
    that a stall freezes a call, not a connection's setup. Returns once those logins are
    settled in Redis: the answer can reach the client before its leader's COMPLETE has run,
    and a COMPLETE caught by the stall would take that worker down with it."""
    clients = [(await make_app(backend=backend))[1] for backend in backends]
    for client in clients:
        assert (await client.get(f"{CALLBACK}?code={emulator.issue_code()}")).status_code == 200
    await no_leftover_keys(raw, prefix)
    assert all(backend.available for backend in backends)
    return clients


def key_for(emulator: WeChatEmulator, code: str) -> str:
    return hashlib.sha256(f"{emulator.appid}:{code}".encode()).hexdigest()


async def _ascii_identity(request: Request) -> Response:
    """The identity as ASCII JSON: the nickname may hold a lone surrogate."""
    me = request.scope["wechat"]
    nickname = me.userinfo.nickname if me.userinfo is not None else None
    return Response(json.dumps({"openid": me.openid, "nickname": nickname}), 200)


DOWNSTREAM = [Route(CALLBACK, _ascii_identity)]


async def leftover_keys(raw: aioredis.Redis, prefix: str) -> list[str]:
    """The lease and holders keys still in Redis (a settled code leaves only its result)."""
    keys = [k.decode() async for k in raw.scan_iter(f"{prefix}:*")]
    left = [k for k in keys if k.endswith(":lease")]
    left += [k for k in keys if k.endswith(":holders") and await raw.scard(k)]
    return left


async def no_leftover_keys(raw: aioredis.Redis, prefix: str) -> None:
    """Until no lease or holder is left (settling runs in the background), 5 s at most."""
    with anyio.fail_after(5):
        while await leftover_keys(raw, prefix):
            await anyio.sleep(0.01)


# --- defect 1: text the codec could not encode ---------------------------------------------------


def test_the_codec_round_trips_a_lone_surrogate_in_clear_and_sealed() -> None:
    from asgi_wechat_oauth.backends._codec import ResultCipher
    from asgi_wechat_oauth.web import UserInfo

    identity = WeChatIdentity(
        openid="o1",
        scope="snsapi_userinfo",
        access_token="ACCESS_x",
        refresh_token="REFRESH_x",
        userinfo=UserInfo(openid="o1", nickname=LONE_SURROGATE),
    )
    for cipher in (None, ResultCipher(bytes(32))):
        data = dump_outcome(identity, cipher=cipher, context=b"k")
        assert load_outcome(data, cipher=cipher, context=b"k") == identity


class _Unstorable:
    """A result whose ``to_dict`` is not JSON data (a product's bug), holding a token."""

    kind: ClassVar[str] = "test-unstorable"

    def to_dict(self) -> dict[str, Any]:
        return {"token": "ACCESS_unstorable_secret", "when": object()}


register_result(_Unstorable.kind, lambda data: _Unstorable())


def test_a_codec_error_holds_no_token_in_args_repr_or_context() -> None:
    with pytest.raises(ValueError) as caught:
        dump_outcome(_Unstorable())  # type: ignore[arg-type]
    exc = caught.value
    for text in (repr(exc), str(exc.args), repr(exc.__context__), repr(exc.__cause__)):
        assert "ACCESS_unstorable_secret" not in text
    with pytest.raises(ValueError) as unreadable:
        load_outcome(b'1{"kind": "wechat", "access_token": "ACCESS_y", ')
    for text in (repr(unreadable.value), repr(unreadable.value.__context__)):
        assert "ACCESS_y" not in text


async def test_a_lone_surrogate_logs_in_and_a_duplicate_elsewhere_gets_the_result(
    raw, prefix, make_backend, make_app, emulator
) -> None:
    user = EmulatedUser(openid="oSurrogate0000000000000001", nickname=LONE_SURROGATE)
    _, client = await make_app(backend=make_backend(), app=_starlette())
    _, client_other = await make_app(backend=make_backend(), app=_starlette())
    code = emulator.issue_code("snsapi_userinfo", user=user)
    with anyio.fail_after(10):
        response = await client.get(f"{CALLBACK}?code={code}")
        duplicate = await client_other.get(f"{CALLBACK}?code={code}")
    assert response.status_code == 200, response.text
    assert response.json() == {"openid": user.openid, "nickname": LONE_SURROGATE}
    assert await leftover_keys(raw, prefix) == []
    assert duplicate.status_code == 200
    assert duplicate.json() == response.json()
    assert emulator.exchange_count(code) == 1


async def test_an_unstorable_result_does_not_raise_nor_keep_the_lease(
    raw, prefix, make_backend, caplog
) -> None:
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    leader, other = make_backend(), make_backend()
    key = "a" * 64
    claim = await leader.claim(key)
    assert claim.lease is not None
    await leader.complete(key, claim.lease, _Unstorable(), ttl=60)  # type: ignore[arg-type]
    await no_leftover_keys(raw, prefix)
    # Released, nothing stored: a duplicate elsewhere may lead (and trade) at once.
    assert (await other.claim(key)).lease is not None
    assert all("ACCESS_unstorable_secret" not in r.getMessage() for r in caplog.records)


def _starlette() -> Any:
    from starlette.applications import Starlette

    return Starlette(routes=DOWNSTREAM)


# --- defect 2: a call that timed out may still have run ------------------------------------------


async def stall(server: RedisServer, seconds: float) -> None:
    """Freeze the redis-server process for ``seconds`` (SIGSTOP, then SIGCONT): commands sent
    meanwhile run when it resumes, after the client gave up on them."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        await anyio.sleep(seconds)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


async def test_a_claim_that_timed_out_but_ran_leaves_no_orphan_lease(
    server, raw, prefix, make_backend, make_app, emulator
) -> None:
    # failover_timeout=0: a call that timed out is an outage at once (by default it is sent
    # again, and the stall is waited out: test_cluster_burst.py), so worker A falls back.
    a = make_backend(redis_timeout=1.0, failover_timeout=0)
    b = make_backend(redis_timeout=1.0)
    worker_a, worker_b = await warm_workers(make_app, emulator, raw, prefix, a, b)
    code = emulator.issue_code()
    async with anyio.create_task_group() as tg:
        tg.start_soon(stall, server, 1.5)
        await anyio.sleep(0.05)
        with anyio.fail_after(5):
            first = await worker_a.get(f"{CALLBACK}?code={code}")  # falls back at 1 s
    assert first.status_code == 200
    assert not a.available
    # Redis answers again, and ran worker A's CLAIM: the lease it took under A's token is
    # settled with A's outcome, so the duplicate on worker B gets it, promptly.
    with anyio.fail_after(5):
        duplicate = await worker_b.get(f"{CALLBACK}?code={code}")
    assert duplicate.status_code == 200, duplicate.text
    assert duplicate.json()["openid"] == first.json()["openid"]
    assert emulator.exchange_count(code) == 1
    await no_leftover_keys(raw, prefix)


async def test_a_duplicate_during_the_stall_waits_for_the_fallback_outcome(
    server, raw, prefix, make_backend, make_app, emulator
) -> None:
    # Worker B's CLAIM queues behind A's in the frozen server: it finds A's lease and waits,
    # and A's settled outcome wakes it (not the lease's expiry 15 s later, nor a 502).
    a, b = make_backend(redis_timeout=1.0), make_backend(redis_timeout=3.0)
    worker_a, worker_b = await warm_workers(make_app, emulator, raw, prefix, a, b)
    code = emulator.issue_code()
    responses: dict[str, httpx.Response] = {}

    async def get(name: str, client: httpx.AsyncClient) -> None:
        responses[name] = await client.get(f"{CALLBACK}?code={code}")

    with anyio.fail_after(8):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stall, server, 1.5)
            await anyio.sleep(0.05)
            tg.start_soon(get, "a", worker_a)
            await anyio.sleep(0.2)
            tg.start_soon(get, "b", worker_b)
    assert responses["a"].status_code == 200
    assert responses["b"].status_code == 200, responses["b"].text
    assert emulator.exchange_count(code) == 1
    assert await leftover_keys(raw, prefix) == []


async def test_a_complete_that_timed_out_is_run_again(
    server, raw, prefix, make_backend, emulator
) -> None:
    leader, other = make_backend(redis_timeout=0.5), make_backend()
    identity = WeChatIdentity(openid="o3", scope="snsapi_base", access_token="A", refresh_token="R")
    key = key_for(emulator, emulator.issue_code())
    claim = await leader.claim(key)
    assert claim.lease is not None
    async with anyio.create_task_group() as tg:
        tg.start_soon(stall, server, 1.0)
        await anyio.sleep(0.05)
        with anyio.fail_after(5):
            await leader.complete(key, claim.lease, identity, ttl=60)  # times out, no raise
    with anyio.fail_after(5):
        # Stored by the COMPLETE that ran late or by its second run, whichever came first;
        # a duplicate racing the second run waits for it.
        claim = await other.claim(key)
        assert claim.lease is None
        assert (claim.outcome or await other.wait(key, timeout=5)) == identity
    await no_leftover_keys(raw, prefix)


async def warm_up(backend: RedisBackend) -> None:
    """A connection in the pool: a stall then freezes a call, not the connection's setup."""
    key = uuid.uuid4().hex
    claim = await backend.claim(key)
    assert claim.lease is not None
    await backend.complete(key, claim.lease, UpstreamError("upstream_error", "y"), ttl=0)


async def test_with_fail_a_timed_out_claim_is_released(server, raw, prefix, make_backend) -> None:
    # failover_timeout=0: the timed-out claim is an outage at once (by default it is sent again)
    backend = make_backend(redis_timeout=0.5, on_unavailable="fail", failover_timeout=0)
    await warm_up(backend)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stall, server, 1.0)
        await anyio.sleep(0.05)
        with pytest.raises(ServiceUnavailable) as caught:
            await backend.claim("c" * 64)
        assert caught.value.reason == "backend_unavailable"
    await no_leftover_keys(raw, prefix)


async def test_a_transient_error_under_a_timed_out_claim_is_released_not_stored(
    server, raw, prefix, make_backend, emulator
) -> None:
    backend = make_backend(redis_timeout=0.5, failover_timeout=0)  # a timeout: an outage at once
    key = key_for(emulator, emulator.issue_code())
    await warm_up(backend)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stall, server, 1.0)
        await anyio.sleep(0.05)
        claim = await backend.claim(key)  # times out: a local lease
    assert claim.lease is not None
    error = UpstreamError("upstream_unavailable", "WeChat answered HTTP 502.")
    await backend.complete(key, claim.lease, error, ttl=0)
    await no_leftover_keys(raw, prefix)
    assert await raw.get(backend._keys(key)[1]) is None


@pytest.mark.slow
async def test_a_stall_under_two_uvicorn_workers_costs_no_login(server) -> None:
    from _servers import emulator_process, emulator_stats, free_port, process, uvicorn_args
    from test_redis_processes import APP, app_env, authorize

    with emulator_process(latency=0.05) as emulator_url:
        port_a, port_b = free_port(), free_port()
        env = app_env(emulator_url, server.url, WECHAT_REDIS_TIMEOUT="1")
        with (
            process(uvicorn_args(APP, port_a), port_a, env) as worker_a,
            process(uvicorn_args(APP, port_b), port_b, env) as worker_b,
        ):
            async with httpx.AsyncClient(timeout=30) as browser:
                for url in (worker_a.url, worker_b.url):  # warm: connected and subscribed
                    callback = await authorize(browser, emulator_url, url)
                    assert (await browser.get(callback)).status_code == 200
                callback = await authorize(browser, emulator_url, worker_a.url)
                query = callback.split("?", 1)[1]
                async with anyio.create_task_group() as tg:
                    tg.start_soon(stall, server, 1.5)
                    await anyio.sleep(0.05)
                    first = await browser.get(f"{worker_a.url}{CALLBACK}?{query}")
                with anyio.fail_after(5):  # Redis answers again: not 25 s, not a 502
                    duplicate = await browser.get(f"{worker_b.url}{CALLBACK}?{query}")
            stats = emulator_stats(emulator_url)
    assert first.status_code == 200
    assert duplicate.status_code == 200, duplicate.text
    assert duplicate.json()["openid"] == first.json()["openid"]
    code = query.split("code=")[1].split("&")[0]
    assert stats["exchanges"][code] == 1  # type: ignore[index]


# --- a command sent twice: redis-py resends it when the connection drops before its answer ----


class AnswerEatingProxy:
    """A loopback TCP proxy in front of Redis. Once armed, it passes the next EVALSHA on to
    Redis, which runs it, and closes the connection when the answer comes back instead of
    passing it on: the client sees its connection drop, and redis-py sends the command again."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.armed = False
        self.eaten = 0
        self.port = 0

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            self.port = listener.extra(SocketAttribute.local_port)  # noqa: S610 - not Django
            task_status.started()
            await listener.serve(self._relay)

    async def _relay(self, client: SocketStream) -> None:
        eat = anyio.Event()
        upstream = await anyio.connect_tcp("127.0.0.1", self.redis_port)
        async with client, upstream, anyio.create_task_group() as tg:

            async def answers() -> None:
                async for data in upstream:
                    if eat.is_set():
                        self.eaten += 1
                        tg.cancel_scope.cancel()  # both sockets close, the answer unsent
                        return
                    await client.send(data)

            tg.start_soon(answers)
            async for data in client:
                if self.armed and b"EVALSHA" in data:
                    self.armed = False
                    eat.set()
                await upstream.send(data)
            tg.cancel_scope.cancel()


async def test_a_claim_sent_twice_by_the_client_keeps_its_lease(server, raw, prefix) -> None:
    # The first CLAIM runs and takes the lease, its answer is lost, redis-py sends it again:
    # the second run finds the lease under its own token and answers "taken", not "someone
    # else leads" (which left this worker waiting on itself for the lease's 15 s).
    proxy = AnswerEatingProxy(server.port)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        # A client the application passes in, with redis-py's default retries.
        client = aioredis.Redis(host="127.0.0.1", port=proxy.port)
        backend = RedisBackend(client, prefix=prefix)
        try:
            await warm_up(backend)
            key = hashlib.sha256(b"sent-twice").hexdigest()
            proxy.armed = True
            claim = await backend.claim(key)
            assert proxy.eaten == 1 and backend.available  # resent by redis-py, not an outage
            assert claim.lease is not None
            assert await raw.get(f"{prefix}:{{{key}}}:lease") == claim.lease.encode()
            identity = WeChatIdentity(
                openid="o1", scope="snsapi_base", access_token="A", refresh_token="R"
            )
            await backend.complete(key, claim.lease, identity, ttl=60)
            await no_leftover_keys(raw, prefix)
        finally:
            await backend.aclose()
            await client.aclose()
            tg.cancel_scope.cancel()
