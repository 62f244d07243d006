"""Several real worker processes behind one port, sharing a real Redis: the deployment the
Redis backend exists for. Slow-ish (each test starts servers), so marked ``slow`` as well."""

from __future__ import annotations

import os
import signal
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from _servers import (
    emulator_process,
    emulator_stats,
    free_port,
    process,
    uvicorn_args,
)
from asgi_wechat_oauth.testing import WeChatEmulator, consent, double_callback

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow]

APP = "examples.starlette_app:app"
DEFAULTS = WeChatEmulator()  # the emulator process runs with the default appid and secret


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def app_env(emulator_url: str, redis_url: str | None, **extra: str) -> dict[str, str]:
    env = {
        "WECHAT_APPID": DEFAULTS.appid,
        "WECHAT_SECRET": DEFAULTS.secret,
        "WECHAT_API_BASE_URL": emulator_url,
        "WECHAT_REDIS_PREFIX": f"proc-{uuid.uuid4().hex[:10]}",
        **extra,
    }
    if redis_url:
        env["WECHAT_REDIS_URL"] = redis_url
    return env


async def authorize(browser: httpx.AsyncClient, emulator_url: str, app_url: str) -> str:
    """Consent at the emulator; return the callback URL it redirects to (not followed)."""
    redirect_uri = f"{app_url}/wechat/callback"
    return await consent(browser, emulator_url, appid=DEFAULTS.appid, redirect_uri=redirect_uri)


async def run_logins(emulator_url: str, app_url: str, logins: int) -> tuple[list[int], list[str]]:
    """Log in ``logins`` times with the WeChat browser's double callback, 20 at a time; return
    the status of each page the user saw and the codes used."""
    statuses: list[int] = []
    codes: list[str] = []
    limiter = anyio.Semaphore(20)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30) as browser:

        async def login() -> None:
            async with limiter:
                url = await authorize(browser, emulator_url, app_url)
                codes.append(parse_qs(urlsplit(url).query)["code"][0])
                # No keep-alive: each callback is its own connection, so the kernel spreads the
                # pair over the workers as a load balancer would.
                response = await double_callback(browser, url, abort_after=0.005, gap=0.019)
                statuses.append(response.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(logins):
                tg.start_soon(login)
    return statuses, codes


async def test_four_workers_double_callback(redis_server) -> None:
    logins = 200
    with emulator_process(latency=0.08) as emulator_url:
        port = free_port()
        args = uvicorn_args(APP, port, "--workers", "4")
        with process(args, port, app_env(emulator_url, redis_server.url)) as app:
            statuses, codes = await run_logins(emulator_url, app.url, logins)
            stats = emulator_stats(emulator_url)
    exchanges = stats["exchanges"]
    assert isinstance(exchanges, dict)
    assert sum(status != 200 for status in statuses) == 0
    assert [exchanges.get(code, 0) for code in codes] == [1] * logins


async def test_without_a_shared_backend_a_split_pair_trades_its_code_twice() -> None:
    """The failure the Redis backend fixes, made certain: two workers with the memory backend
    and a balancer that sends each pair's second callback to the other worker (how a
    ``uvicorn --workers 4`` kernel spreads connections is left to chance: a loaded machine
    may split no pair). Neither callback is aborted, so both reach a worker."""
    logins = 20
    with emulator_process(latency=0.08) as emulator_url:
        port_a, port_b = free_port(), free_port()
        env = app_env(emulator_url, None)
        with (
            process(uvicorn_args(APP, port_a), port_a, env) as worker_a,
            process(uvicorn_args(APP, port_b), port_b, env) as worker_b,
        ):
            pairs: list[tuple[int, int]] = []
            codes: list[str] = []
            async with httpx.AsyncClient(timeout=30) as browser:

                async def login() -> None:
                    url = await authorize(browser, emulator_url, worker_a.url)
                    codes.append(parse_qs(urlsplit(url).query)["code"][0])
                    statuses: dict[str, int] = {}

                    async def get(name: str, target: str) -> None:
                        statuses[name] = (await browser.get(target)).status_code

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(get, "a", url)
                        await anyio.sleep(0.019)
                        tg.start_soon(get, "b", url.replace(worker_a.url, worker_b.url, 1))
                    pairs.append((statuses["a"], statuses["b"]))

                async with anyio.create_task_group() as tg:
                    for _ in range(logins):
                        tg.start_soon(login)
            stats = emulator_stats(emulator_url)
    exchanges = stats["exchanges"]
    assert isinstance(exchanges, dict)
    assert [exchanges.get(code, 0) for code in codes] == [2] * logins
    # WeChat answers one exchange of each code and refuses the other (40163): one of the two
    # pages is a login error, and in WeChat's browser it is the one the user sees.
    assert sorted(sorted(pair) for pair in pairs) == [[200, 400]] * logins


async def test_leader_killed_mid_exchange_releases_the_waiter_within_the_bound(
    redis_server,
) -> None:
    # A lease outlasts the exchange it guards (check_lease): worker A is killed well within
    # its exchange_timeout, while WeChat (30 s latency) has not answered it.
    lease_ttl, exchange_timeout = 6.0, 5.0
    with emulator_process(latency=30.0) as emulator_url:
        port_a, port_b = free_port(), free_port()
        env = app_env(
            emulator_url,
            redis_server.url,
            WECHAT_LEASE_TTL=str(lease_ttl),
            WECHAT_EXCHANGE_TIMEOUT=str(exchange_timeout),
        )
        env_b = env
        with (
            process(uvicorn_args(APP, port_a), port_a, env) as worker_a,
            process(uvicorn_args(APP, port_b), port_b, env_b) as worker_b,
        ):
            url_a, url_b = worker_a.url, worker_b.url
            async with httpx.AsyncClient(timeout=60) as browser:
                callback = await authorize(browser, emulator_url, url_a)
                code = parse_qs(urlsplit(callback).query)["code"][0]
                query = urlsplit(callback).query
                results: dict[str, object] = {}

                async def leader() -> None:
                    try:
                        await browser.get(f"{url_a}/wechat/callback?{query}")
                    except httpx.HTTPError as exc:  # the worker dies under it
                        results["leader"] = type(exc).__name__

                async def waiter() -> None:
                    response = await browser.get(f"{url_b}/wechat/callback?{query}")
                    results["waiter"] = response
                    results["waited"] = time.monotonic() - results["killed_at"]  # type: ignore[operator]

                async with anyio.create_task_group() as tg:
                    tg.start_soon(leader)
                    with anyio.fail_after(10):  # worker A's exchange has reached WeChat
                        while emulator_stats(emulator_url)["exchanges"].get(code, 0) < 1:  # type: ignore[union-attr]
                            await anyio.sleep(0.02)
                    tg.start_soon(waiter)
                    await anyio.sleep(0.3)  # worker B is now waiting on A's flight
                    results["killed_at"] = time.monotonic()
                    os.kill(worker_a.proc.pid, signal.SIGKILL)
                    httpx.post(f"{emulator_url}/_emulator/settings", params={"latency": 0})
                    with anyio.fail_after(lease_ttl + exchange_timeout + 10):
                        while "waiter" not in results:
                            await anyio.sleep(0.02)
    response = results["waiter"]
    assert isinstance(response, httpx.Response)
    print(
        f"\nwaiter answered {response.status_code} {response.text} after {results['waited']:.2f}s"
    )
    # Worker A spent the code and died: the waiter cannot get an identity, but it gets a clear
    # answer, not a hang, and within lease_ttl + exchange_timeout (plus scheduling slack).
    assert response.status_code in (502, 504)
    assert response.json()["error"] in ("exchange_lost", "upstream_timeout")
    assert results["waited"] < lease_ttl + exchange_timeout + 3  # type: ignore[operator]
