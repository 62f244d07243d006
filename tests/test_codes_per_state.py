"""One signed state (and its nonce cookie) trades at most ``max_codes_per_state`` distinct codes:
the audit replayed one valid state with 2,000 made-up codes, each a call to WeChat. Beyond the
bound: 403 ``too_many_codes`` before any call; a duplicate of a counted code is not counted
again. On the memory backend (asyncio and trio) and on a real Redis (asyncio)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlsplit

import anyio
import pytest
from starlette.applications import Starlette

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import MemoryBackend
from support import CALLBACK, WECHAT_URL, wait_until

pytestmark = pytest.mark.anyio

LOGIN = "/wechat/login"


async def _login_and_flood(make_app, browser_factory, consent, emulator, backend, **options):
    """A browser logs in; then the same browser (state and cookie) sends made-up codes."""
    middleware, _ = await make_app(
        login_path=LOGIN, authorize_base_url=WECHAT_URL, backend=backend, **options
    )
    browser = browser_factory(middleware)
    params = dict(parse_qsl(urlsplit(await consent(browser)).query))
    code, state = params["code"], params["state"]
    assert (await browser.get(CALLBACK, params={"code": code, "state": state})).status_code == 200
    answers = []
    for i in range(10):
        response = await browser.get(CALLBACK, params={"code": f"madeup{i:04d}", "state": state})
        answers.append((response.status_code, _reason(response)))
    again = await browser.get(CALLBACK, params={"code": code, "state": state})
    return answers, again


def _reason(response) -> str:
    if response.status_code == 302:
        return "reauthorize"
    return str(response.json()["error"])


async def test_a_state_trades_three_codes_then_gets_403(
    make_app, browser_factory, consent, emulator
):
    answers, again = await _login_and_flood(
        make_app, browser_factory, consent, emulator, MemoryBackend()
    )
    # The real code and two made-up ones reach WeChat; the other eight never do.
    assert answers[:2] == [(302, "reauthorize")] * 2
    assert answers[2:] == [(403, "too_many_codes")] * 8
    assert emulator.calls["access_token"] == 3
    # The real code again (a refresh, the WeChat browser's duplicate): counted once, served
    # (from the stored result: it is not counted again, and would have room anyway).
    assert again.status_code == 200
    assert again.json()["openid"] == emulator.user.openid
    assert emulator.calls["access_token"] == 3


async def test_max_codes_per_state_is_an_option(make_app, browser_factory, consent, emulator):
    answers, again = await _login_and_flood(
        make_app, browser_factory, consent, emulator, MemoryBackend(), max_codes_per_state=1
    )
    assert answers == [(403, "too_many_codes")] * 10
    assert again.status_code == 200
    assert emulator.calls["access_token"] == 1


@pytest.mark.parametrize("value", [0, -1])
def test_max_codes_per_state_below_one_is_refused(value):
    with pytest.raises(ValueError, match="max_codes_per_state"):
        WeChatOAuthMiddleware(Starlette(), appid="wx", secret="s", max_codes_per_state=value)


async def test_memory_note_code_counts_distinct_keys_per_group_with_a_ttl():
    backend = MemoryBackend()
    assert [await backend.note_code("g", k, limit=2, ttl=60) for k in "aab"] == [True] * 3
    assert await backend.note_code("g", "c", limit=2, ttl=60) is False
    assert await backend.note_code("g", "a", limit=2, ttl=60) is True  # already counted
    assert await backend.note_code("other", "c", limit=2, ttl=60) is True
    assert await backend.note_code("short", "a", limit=1, ttl=0.05) is True
    assert await backend.note_code("short", "b", limit=1, ttl=0.05) is False
    await anyio.sleep(0.1)
    assert await backend.note_code("short", "b", limit=1, ttl=0.05) is True  # expired


async def test_memory_note_code_is_bounded():
    backend = MemoryBackend(max_entries=5)
    for group in range(50):
        assert await backend.note_code(f"g{group}", "a", limit=3, ttl=60)
    assert len(backend._noted) <= 5


# --- on Redis -----------------------------------------------------------------------------------


@pytest.fixture
async def redis_backends(redis_server) -> AsyncIterator[list]:
    from asgi_wechat_oauth.backends.redis import RedisBackend

    prefix = f"test-{uuid.uuid4().hex[:12]}"
    made = [RedisBackend(redis_server.url, prefix=prefix) for _ in range(2)]
    yield made
    for backend in made:
        await backend.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_redis_note_code_is_shared_by_workers(redis_backends, redis_server):
    import redis.asyncio as aioredis

    one, two = redis_backends
    assert await one.note_code("g1", "a", limit=2, ttl=30)
    assert await two.note_code("g1", "a", limit=2, ttl=30)  # the same code elsewhere
    assert await two.note_code("g1", "b", limit=2, ttl=30)
    assert await one.note_code("g1", "c", limit=2, ttl=30) is False
    assert await two.note_code("g1", "c", limit=2, ttl=30) is False
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        key = f"{one.prefix}:{{g1}}:codes"  # under the prefix, with its own hash tag
        assert await client.smembers(key) == {b"a", b"b"}
        assert 0 < await client.pttl(key) <= 30_000
    finally:
        await client.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_duplicate_of_a_code_in_flight_here_makes_no_round_trip(
    make_app, browser_factory, consent, redis_backends, gate, gated_upstream
):
    # The WeChat browser's second callback lands on the worker trading its code: it is not
    # counted again (the first one was), so it costs Redis nothing.
    here = redis_backends[0]
    middleware, _ = await make_app(
        login_path=LOGIN, authorize_base_url=WECHAT_URL, backend=here, http_client=gated_upstream
    )
    browser = browser_factory(middleware)
    params = dict(parse_qsl(urlsplit(await consent(browser)).query))
    statuses: list[int] = []

    async def callback() -> None:
        statuses.append((await browser.get(CALLBACK, params=params)).status_code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(callback)
        await wait_until(lambda: gate.arrived == 1)
        trips = here.round_trips  # the leader's NOTE_CODE and CLAIM
        tg.start_soon(callback)
        await wait_until(lambda: middleware.counters.waiting == 1)
        assert here.round_trips == trips
        gate.open()
    assert statuses == [200, 200]


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_redis_note_code_falls_back_to_the_process_when_redis_is_down():
    from _servers import free_port
    from asgi_wechat_oauth.backends.redis import RedisBackend

    backend = RedisBackend(
        f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.5, retry_interval=30
    )
    try:
        assert await backend.note_code("g", "a", limit=1, ttl=30)
        assert not backend.available
        assert await backend.note_code("g", "a", limit=1, ttl=30)
        assert await backend.note_code("g", "b", limit=1, ttl=30) is False
    finally:
        await backend.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_state_trades_three_codes_on_redis(
    make_app, browser_factory, consent, emulator, redis_backends
):
    answers, again = await _login_and_flood(
        make_app, browser_factory, consent, emulator, redis_backends[0]
    )
    assert answers[:2] == [(302, "reauthorize")] * 2
    assert answers[2:] == [(403, "too_many_codes")] * 8
    assert again.status_code == 200
    assert emulator.calls["access_token"] == 3


@pytest.mark.redis
@pytest.mark.redis_cluster
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_redis_note_code_on_a_real_cluster(redis_cluster):
    """Each state's set has its own hash tag: one slot, whichever master holds it."""
    from asgi_wechat_oauth.backends.redis import RedisBackend

    prefix = f"cluster-{uuid.uuid4().hex[:12]}"
    one, two = (RedisBackend(redis_cluster.url, prefix=prefix, cluster=True) for _ in range(2))
    try:
        for group in [f"g{i:04d}" for i in range(40)]:  # groups over every master
            assert await one.note_code(group, "a", limit=2, ttl=30)
            assert await two.note_code(group, "b", limit=2, ttl=30)
            assert await two.note_code(group, "a", limit=2, ttl=30)
            assert await one.note_code(group, "c", limit=2, ttl=30) is False
        assert one.available and two.available
    finally:
        await one.aclose()
        await two.aclose()
