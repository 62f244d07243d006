"""Mini-program login on a real Redis (asyncio only): one exchange per code across workers, a
``RedisBackend`` shared with the web flow without mixing their results, and the session key
sealed by the backend's ``encryption_key``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from functools import partial

import anyio
import httpx
import pytest
import redis.asyncio as aioredis

from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.miniprogram import MiniProgramMiddleware
from test_miniprogram import LOGIN, check_products_kept_apart, mp_app

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    return f"mp-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def workers(redis_server, prefix, emulator, make_app) -> AsyncIterator[list]:
    """Four mini-program middlewares, each with its own RedisBackend on one Redis: four
    workers. WeChat answers in 50 ms, so that duplicates overlap the exchange in flight."""
    emulator.latency = 0.05
    backends = [RedisBackend(redis_server.url, prefix=prefix) for _ in range(4)]
    make = partial(make_app, middleware=MiniProgramMiddleware, app=mp_app())
    yield [await make(backend=backend) for backend in backends]


async def _post_all(clients: list[httpx.AsyncClient], code: str, n: int) -> list[httpx.Response]:
    responses: list[httpx.Response] = []

    async def one(i: int) -> None:
        responses.append(await clients[i % len(clients)].post(LOGIN, json={"code": code}))

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return responses


async def test_forty_requests_over_four_workers_share_one_exchange(workers, emulator) -> None:
    code = emulator.issue_miniprogram_code()
    responses = await _post_all([client for _, client in workers], code, 40)
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["openid"] for r in responses} == {emulator.user.openid}
    assert emulator.exchange_count(code) == 1
    assert sum(m.counters.exchanges for m, _ in workers) == 1


async def test_late_duplicate_on_another_worker_gets_the_stored_session(workers, emulator) -> None:
    (a, client_a), (b, client_b) = workers[:2]
    code = emulator.issue_miniprogram_code()
    assert (await client_a.post(LOGIN, json={"code": code})).status_code == 200
    late = await client_b.post(LOGIN, data={"code": code})
    assert late.status_code == 200
    assert late.json()["openid"] == emulator.user.openid
    assert emulator.exchange_count(code) == 1
    assert b.counters.cache_hits == 1


async def test_one_backend_for_web_and_miniprogram_keeps_them_apart(
    redis_server, prefix, emulator, upstream
) -> None:
    """One RedisBackend instance behind both middlewares (see check_products_kept_apart)."""
    backend = RedisBackend(redis_server.url, prefix=prefix)
    raw = aioredis.from_url(redis_server.url)
    try:
        keys = await check_products_kept_apart(emulator, upstream, backend)
        stored = {k.decode() async for k in raw.scan_iter(f"{prefix}:*:result")}
    finally:
        await raw.aclose()
        await backend.aclose()
    assert stored == {f"{prefix}:{{{key}}}:result" for key in keys}


async def test_session_key_is_sealed_with_the_encryption_key(
    redis_server, prefix, emulator, make_app
) -> None:
    key = bytes(range(32))
    make = partial(make_app, middleware=MiniProgramMiddleware, app=mp_app())
    _, client_a = await make(
        backend=RedisBackend(redis_server.url, prefix=prefix, encryption_key=key)
    )
    _, client_b = await make(
        backend=RedisBackend(redis_server.url, prefix=prefix, encryption_key=key)
    )
    raw = aioredis.from_url(redis_server.url)
    try:
        code = emulator.issue_miniprogram_code()
        assert (await client_a.post(LOGIN, json={"code": code})).status_code == 200
        late = await client_b.post(LOGIN, json={"code": code})  # another worker, same key
        assert late.status_code == 200 and late.json()["openid"] == emulator.user.openid
        assert emulator.exchange_count(code) == 1
        (session_key,) = emulator._session_keys
        keys = [k.decode() async for k in raw.scan_iter(f"{prefix}:*")]
        assert keys and all(code not in k for k in keys)
        for k in keys:
            value = await raw.get(k)
            for secret in (session_key, emulator.user.openid, code, emulator.secret):
                assert secret.encode() not in value
    finally:
        await raw.aclose()


# --- duplicates="reject": one hand-out per code across workers ---------------------------------

IDEMPOTENCY_KEY = "5f0c1b1e-8c9a-4a52-9d0e-0b7f3c2a1d44"


@pytest.fixture
async def rejecting_workers(redis_server, prefix, emulator, make_app) -> AsyncIterator[list]:
    """As ``workers``, with ``duplicates="reject"``."""
    emulator.latency = 0.05
    backends = [RedisBackend(redis_server.url, prefix=prefix) for _ in range(4)]
    make = partial(make_app, middleware=MiniProgramMiddleware, app=mp_app())
    yield [await make(backend=backend, duplicates="reject") for backend in backends]


async def test_reject_hands_one_session_to_one_of_forty_requests_over_four_workers(
    rejecting_workers, emulator
) -> None:
    code = emulator.issue_miniprogram_code()
    responses = await _post_all([client for _, client in rejecting_workers], code, 40)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 39
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"code_used"}
    assert emulator.user.openid not in "".join(r.text for r in responses if r.status_code != 200)
    assert emulator.exchange_count(code) == 1


async def test_reject_shares_the_session_among_requests_with_the_first_ones_key(
    rejecting_workers, redis_server, prefix, emulator
) -> None:
    """Forty requests that carry one Idempotency-Key (retries of one request, spread over the
    workers) all get the session; the same code without the key, on any worker, later, gets
    ``code_used``. Redis holds neither the code nor the key, only hashes."""
    clients = [client for _, client in rejecting_workers]
    code = emulator.issue_miniprogram_code()
    headers = {"idempotency-key": IDEMPOTENCY_KEY}
    responses: list[httpx.Response] = []

    async def one(i: int) -> None:
        client = clients[i % len(clients)]
        responses.append(await client.post(LOGIN, json={"code": code}, headers=headers))

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(one, i)
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["openid"] for r in responses} == {emulator.user.openid}
    for client in clients:
        late = await client.post(LOGIN, data={"code": code})
        assert (late.status_code, late.json()["error"]) == (400, "code_used")
    assert emulator.exchange_count(code) == 1
    raw = aioredis.from_url(redis_server.url)
    try:
        keys = [k async for k in raw.scan_iter(f"{prefix}:*")]
        members = [m for k in keys if k.endswith(b":codes") for m in await raw.smembers(k)]
    finally:
        await raw.aclose()
    assert len(members) == 1  # one holder: the key's hash
    assert not any(code.encode() in k or IDEMPOTENCY_KEY.encode() in k for k in keys)
    assert IDEMPOTENCY_KEY.encode() not in members[0]
