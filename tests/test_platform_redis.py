"""The platform on a real Redis (asyncio only): a ticket pushed to one worker serves every
worker and outlives a restart, one component token for all of them, and the WeChat browser's
double callback split across two workers still trades its code once."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest

from _servers import RedisServer
from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.errors import ServiceUnavailable
from asgi_wechat_oauth.testing import WeChatEmulator
from support import browser_at
from test_platform import CALLBACK, LOGIN, WECHAT_UA, login, platform, push_ticket

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def workers(redis_server: Any, emulator: WeChatEmulator, upstream: httpx.AsyncClient) -> Any:
    """Four platform middlewares, each with its own RedisBackend on one Redis: four workers."""
    prefix = f"platform-{uuid.uuid4().hex[:12]}"
    made = [
        platform(emulator, upstream, backend=RedisBackend(redis_server.url, prefix=prefix))
        for _ in range(4)
    ]
    yield made
    for middleware in made:
        await middleware.aclose()


async def test_a_ticket_pushed_to_one_worker_serves_them_all(
    workers: list[Any], emulator: WeChatEmulator
) -> None:
    await push_ticket(workers[0], emulator)
    emulator.latency = 0.05  # the component token's fetch overlaps the other workers' logins
    responses: list[Any] = []

    async def one(i: int) -> None:
        host = "a.example" if i % 2 else "b.example"
        responses.append(await login(workers[i % 4], emulator, host))

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(one, i)
    assert [r.status_code for r in responses] == [200] * 12
    assert emulator.calls["api_component_token"] == 1
    assert emulator.calls["component_access_token"] == 12
    assert set(emulator.exchanges.values()) == {1}


async def test_the_double_callback_across_two_workers_trades_once(
    workers: list[Any], emulator: WeChatEmulator
) -> None:
    await push_ticket(workers[1], emulator)
    emulator.latency = 0.05
    async with browser_at(workers[0], emulator, "a.example") as client:
        to_wechat = await client.get(LOGIN, headers=WECHAT_UA)
        to_callback = await client.get(to_wechat.headers["location"].split("#")[0])
        query = urlsplit(to_callback.headers["location"]).query
        cookies = dict(client.cookies)
    answers: list[httpx.Response] = []

    async def at(worker: Any) -> None:
        async with browser_at(worker, emulator, "a.example") as client:
            client.cookies.update(cookies)
            answers.append(await client.get(f"{CALLBACK}?{query}"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(at, workers[2])
        tg.start_soon(at, workers[3])
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert list(emulator.exchanges.values()) == [1]


async def test_the_ticket_outlives_a_restart(
    redis_server: Any, emulator: WeChatEmulator, upstream: httpx.AsyncClient
) -> None:
    prefix = f"platform-{uuid.uuid4().hex[:12]}"
    before = platform(emulator, upstream, backend=RedisBackend(redis_server.url, prefix=prefix))
    await push_ticket(before, emulator)
    await before.aclose()
    after = platform(emulator, upstream, backend=RedisBackend(redis_server.url, prefix=prefix))
    try:
        response = await login(after, emulator, "b.example")
        assert response.status_code == 200, response.text
        assert emulator.calls["ticket_push"] == 1
    finally:
        await after.aclose()


async def test_a_redis_that_does_not_answer_is_not_taken_for_no_ticket(
    emulator: WeChatEmulator, upstream: httpx.AsyncClient
) -> None:
    """A worker that has not seen the ticket yet, asking a Redis that does not answer, lets the
    login go on (its callback answers for the backend) instead of telling the user the
    platform waits for WeChat's ticket: the ticket is there, Redis just did not say so."""
    server = RedisServer()
    server.start()
    prefix = f"platform-{uuid.uuid4().hex[:12]}"
    first = platform(emulator, upstream, backend=RedisBackend(server.url, prefix=prefix))
    cold = platform(emulator, upstream, backend=RedisBackend(server.url, prefix=prefix))
    try:
        await push_ticket(first, emulator)
        server.stop()
        with pytest.raises(ServiceUnavailable):
            await cold.tickets.current()
        async with browser_at(cold, emulator, "a.example") as client:
            answer = await client.get(LOGIN, headers={**WECHAT_UA, "accept": "application/json"})
        assert answer.status_code == 302, answer.text  # on to the consent page, not a 503
    finally:
        server.stop()
        await first.aclose()
        await cold.aclose()
