"""A desktop login handed over from a phone, across workers: two middlewares, each with a
RedisBackend of its own on one real redis-server, behind a round-robin balancer, so that the
desktop's page, the phone's login, its duplicate callback, its confirmation, the polls and the
redemption land on alternate workers (asyncio: the Redis client is asyncio-only)."""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Any

import anyio
import httpx
import pytest

from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.testing import handoff_login
from support import APP_URL

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

LOGIN = "/wechat/login"


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, text[:300]
    return match.group(1).replace("&amp;", "&")


class RoundRobin:
    """An ASGI app that hands each request to the next worker in turn, and counts them."""

    def __init__(self, *workers: Any) -> None:
        self.workers = workers
        self.served = [0] * len(workers)
        self._next = itertools.cycle(range(len(workers)))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        index = next(self._next)
        if scope["type"] == "http":
            self.served[index] += 1
        await self.workers[index](scope, receive, send)


@pytest.mark.parametrize("sealed", [False, True], ids=["clear", "encrypted"])
async def test_two_workers_share_the_handoff_through_redis(
    make_app, emulator, redis_server, sealed
):
    import redis.asyncio as aioredis

    prefix = f"handoff-{uuid.uuid4().hex}"
    options = {"encryption_key": b"k" * 32} if sealed else {}
    workers = []
    for _ in range(2):
        backend = RedisBackend(redis_server.url, prefix=prefix, **options)
        middleware, _ = await make_app(
            login_path=LOGIN, authorize_base_url="http://wechat.test", backend=backend
        )
        workers.append(middleware)
    balancer = RoundRobin(*workers)
    desktop = httpx.AsyncClient(transport=httpx.ASGITransport(app=balancer), base_url=APP_URL)
    phone = httpx.AsyncClient(transport=httpx.ASGITransport(app=balancer), base_url=APP_URL)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        answer = await handoff_login(desktop, phone, emulator, next="/dashboard")
        assert answer.status_code == 200, answer.text
        assert answer.json()["openid"] == emulator.user.openid
        assert answer.json()["next"] == "/dashboard"
        assert emulator.total_exchanges == 1  # the duplicate callback on the other worker
        assert min(balancer.served) >= 3

        # In Redis under hashes for no longer than the handoff, the desktop's cookie never.
        keys = await client.keys(f"{prefix}:{{handoff:*")
        assert keys and all(b":result" in key or b":holders" in key for key in keys)
        cookie = next(v for k, v in desktop.cookies.items() if k == "wechat_oauth_handoff")
        for key in keys:
            if key.endswith(b":result"):
                assert 0 < await client.pttl(key) <= (120 + 30 + 1) * 1000
                assert cookie.encode() not in await client.get(key)

        # Once: the redemption again, on either worker.
        again = await desktop.get(answer.request.url, headers={"accept": "application/json"})
        assert again.status_code == 410 and again.json()["error"] == "handoff_used"
        again = await desktop.get(answer.request.url, headers={"accept": "application/json"})
        assert again.status_code == 410
    finally:
        await client.aclose()
        await desktop.aclose()
        await phone.aclose()


async def test_a_cancel_on_one_worker_ends_the_poll_on_the_other(make_app, emulator, redis_server):
    prefix = f"handoff-{uuid.uuid4().hex}"
    workers = []
    for _ in range(2):
        middleware, _ = await make_app(
            login_path=LOGIN,
            authorize_base_url="http://wechat.test",
            backend=RedisBackend(redis_server.url, prefix=prefix),
        )
        workers.append(middleware)
    balancer = RoundRobin(*workers)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=balancer), base_url=APP_URL) as desk,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=balancer), base_url=APP_URL) as phone,
    ):
        answer = await handoff_login(desk, phone, emulator, confirm=False)
    assert answer.status_code == 410 and answer.json()["error"] == "handoff_expired"


async def test_two_redemptions_at_once_on_two_workers_hand_over_one_login(
    make_app, emulator, redis_server
):
    """The same confirmed handoff redeemed by the desktop on both workers at the same moment
    (a double click, a retried navigation): one login reaches the app, the other is 410."""
    prefix = f"handoff-{uuid.uuid4().hex}"
    workers = []
    for _ in range(2):
        middleware, _ = await make_app(
            login_path=LOGIN,
            authorize_base_url="http://wechat.test",
            backend=RedisBackend(redis_server.url, prefix=prefix),
        )
        workers.append(middleware)
    first, second = (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=worker), base_url=APP_URL)
        for worker in workers
    )
    html = {"accept": "text/html", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126"}
    async with first, second:
        page = await first.get(LOGIN, headers=html)
        poll = found(r'data-poll-url="([^"]+)"', page.text)
        second.cookies = first.cookies  # one desktop browser, two workers
        # The phone, on the second worker, through the helper's steps.
        phone = httpx.AsyncClient(transport=httpx.ASGITransport(app=workers[1]), base_url=APP_URL)
        async with phone:
            link = found(r'id="wechat-login-link" href="([^"]+)"', page.text)
            wechat = {"user-agent": "Mozilla/5.0 Mobile MicroMessenger/8.0", "accept": "text/html"}
            to_wechat = await phone.get(link, headers=wechat)
            async with emulator.http_client() as provider:
                consent = await provider.get(to_wechat.headers["location"].split("#")[0])
            asked = await phone.get(consent.headers["location"], headers=wechat)
            action = found(r'action="([^"]+)"', asked.text)
            csrf = found(r'name="csrf" value="([^"]+)"', asked.text)
            await phone.post(action, data={"csrf": csrf, "answer": "confirm"}, headers=wechat)
        redirect = (await second.get(poll, headers={"accept": "application/json"})).json()
        answers: list[httpx.Response] = []

        async def redeem(client: httpx.AsyncClient) -> None:
            answers.append(await client.get(redirect["redirect"], headers=html))

        async with anyio.create_task_group() as tg:
            tg.start_soon(redeem, first)
            tg.start_soon(redeem, second)
    assert sorted(answer.status_code for answer in answers) == [200, 410]
    winner = next(answer for answer in answers if answer.status_code == 200)
    assert winner.json()["openid"] == emulator.user.openid
