"""Real servers, real sockets: the example app under uvicorn and hypercorn (asyncio and trio) in
their own processes, the WeChat emulator in another, everything on loopback.

- Client aborts: callback #1 is sent on a raw socket and dropped at a random moment (halfway
  through the request, after the request while the exchange is in flight, halfway through the
  response, after it), with a FIN or a RST; callback #2 with the same code follows 0-50 ms
  later. hypercorn cancels the request's task when the client goes away, uvicorn does not:
  both must give #2 the identity, and the emulator must see one exchange per code.
- Load: many logins at once, each with the WeChat browser's double callback, on one worker
  (memory backend) and on two workers sharing Redis: no lost identity, no 5xx.
- A burst beyond the Redis client's connection pool on one worker, then each code's duplicate
  on another worker (two middlewares in this process, each with its own RedisBackend): Redis
  is up throughout, so no duplicate may lose its login.

hypercorn on trio is item 7's real-server run: the memory backend serving on trio.

Sizes come from the environment so that the same tests run large by hand:
``STRESS_ABORTS`` (iterations per server, 200) and ``STRESS_LOGINS`` / ``STRESS_CONCURRENCY``
(400 / 200; the full-size run is 2000 / 200).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import httpx
import pytest

from _servers import (
    ROOT,
    dropped_request,
    emulator_process,
    emulator_stats,
    free_port,
    uvicorn_args,
    wait_for_port,
)
from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.testing import WeChatEmulator, consent, double_callback

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

APP = "examples.starlette_app:app"
DEFAULTS = WeChatEmulator()  # the emulator process runs with the default appid, secret, user
OPENID = DEFAULTS.user.openid
SERVERS = ["uvicorn", "hypercorn", "hypercorn-trio"]
#: What a server process must never print, whatever its clients do.
BAD_OUTPUT = ("Task was destroyed", "Unclosed", "ResourceWarning", "exchange_crashed")

ABORTS = int(os.environ.get("STRESS_ABORTS", "200"))
ABORT_CONCURRENCY = int(os.environ.get("STRESS_ABORT_CONCURRENCY", "10"))
LOGINS = int(os.environ.get("STRESS_LOGINS", "400"))
CONCURRENCY = int(os.environ.get("STRESS_CONCURRENCY", "200"))
SEED = int(os.environ.get("STRESS_SEED", str(random.SystemRandom().randrange(1 << 30))))


@pytest.fixture
def anyio_backend() -> str:
    # The servers under test run in their own processes (on asyncio or trio); this process
    # only plays the browsers.
    return "asyncio"


# --- servers -------------------------------------------------------------------------------------


def server_args(server: str, port: int, workers: int = 1, app: str = APP) -> list[str]:
    if server == "uvicorn":
        extra = ["--workers", str(workers)] if workers > 1 else []
        return uvicorn_args(app, port, *extra)
    worker_class = "trio" if server == "hypercorn-trio" else "asyncio"
    return [
        sys.executable, "-m", "hypercorn", app,
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
        "--worker-class", worker_class, "--workers", str(workers),
    ]  # fmt: skip


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    output: list[str] = field(default_factory=list)  # stderr, once the process has ended


@contextlib.contextmanager
def serving(server: str, env: dict[str, str], workers: int = 1, app: str = APP) -> Iterator[Served]:
    """The example ``app`` under ``server`` until the block ends. Its stderr goes to a file (a pipe
    nobody reads could fill up and block the server), read back into ``output`` at the end."""
    port = free_port()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            server_args(server, port, workers, app),
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        served = Served(f"http://127.0.0.1:{port}", proc)
        try:
            wait_for_port(port, proc)
            yield served
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            stderr.seek(0)
            served.output.append(stderr.read().decode(errors="replace"))


def app_env(emulator_url: str, redis_url: str | None = None) -> dict[str, str]:
    env = {
        "WECHAT_APPID": DEFAULTS.appid,
        "WECHAT_SECRET": DEFAULTS.secret,
        "WECHAT_API_BASE_URL": emulator_url,
        "WECHAT_AUTHORIZE_BASE_URL": emulator_url,
        "WECHAT_REDIS_PREFIX": f"real-{uuid.uuid4().hex[:10]}",
        "PYTHONWARNINGS": "default::ResourceWarning",
    }
    if redis_url:
        env["WECHAT_REDIS_URL"] = redis_url
    return env


TRACEMALLOC_HINT = "ResourceWarning: Enable tracemalloc to get the object allocation traceback"


def assert_clean(served: Served, *also_bad: str) -> None:
    """Nothing in ``BAD_OUTPUT`` (nor ``also_bad``) in the server's stderr.

    One warning is uvicorn's own and allowed: with ``--workers`` its supervisor exits without
    closing the listening socket (``unclosed <socket.socket ... laddr=<the app's address>>``,
    no peer); the middleware never holds a listening socket."""
    port = urlsplit(served.url).port
    listening = f"laddr=('127.0.0.1', {port})>"
    lines = [
        line
        for line in "".join(served.output).splitlines()
        if not (
            (
                line.startswith("sys:1: ResourceWarning: unclosed <socket.socket")
                and listening in line
            )
            or line == "ResourceWarning: Enable tracemalloc to get the object allocation traceback"
        )
    ]
    output = "\n".join(lines)
    for bad in (*BAD_OUTPUT, *also_bad):
        assert bad not in output, output[-4000:]


async def issue_code(browser: httpx.AsyncClient, emulator_url: str, app_url: str) -> str:
    """Consent at the emulator; return the code of the callback it redirects to."""
    redirect_uri = f"{app_url}/wechat/callback"
    callback = await consent(browser, emulator_url, appid=DEFAULTS.appid, redirect_uri=redirect_uri)
    return parse_qs(urlsplit(callback).query)["code"][0]


async def metrics(browser: httpx.AsyncClient, app_url: str) -> dict[str, float]:
    """The worker's counters from ``/metrics`` (empty without prometheus_client)."""
    response = await browser.get(f"{app_url}/metrics")
    if response.status_code != 200:
        return {}
    values: dict[str, float] = {}
    for line in response.text.splitlines():
        if line.startswith("wechat_oauth_") and "_total" in line and "{" not in line:
            name, value = line.split()
            values[name.removeprefix("wechat_oauth_").removesuffix("_total")] = float(value)
    return values


# --- 1. real client aborts ---------------------------------------------------------------------


#: When callback #1 is dropped: halfway through sending the request; after sending it (the
#: exchange is in flight); after the first bytes of the response; after the whole response.
async def aborted_callback(
    app_url: str, code: str, rng: random.Random, latency: float
) -> tuple[str, str, int | None]:
    """Send callback #1 on a raw socket and drop the connection at a random moment."""
    request = (
        f"GET /wechat/callback?code={code}&state=real HTTP/1.1\r\n"
        f"Host: {urlsplit(app_url).netloc}\r\nUser-Agent: aborting-browser\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return await dropped_request(app_url, request, rng, latency)


@dataclass
class AbortFigures:
    iterations: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    second: Counter[str] = field(default_factory=Counter)  # what callback #2 got
    first_statuses: Counter[int] = field(default_factory=Counter)  # #1 read to the end
    codes: list[str] = field(default_factory=list)


async def run_aborts(
    emulator_url: str,
    app_url: str,
    iterations: int,
    *,
    concurrency: int,
    seed: int,
    latency: float,
) -> AbortFigures:
    """``iterations`` logins whose callback #1 is dropped at a random moment and whose
    callback #2 follows 0-50 ms later; ``concurrency`` of them at a time."""
    figures = AbortFigures()
    limiter = anyio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=4 * concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30) as browser:

        async def one(index: int) -> None:
            rng = random.Random(seed * 1_000_003 + index)
            async with limiter:
                code = await issue_code(browser, emulator_url, app_url)
                figures.codes.append(code)
                phase, close, status = await aborted_callback(app_url, code, rng, latency)
                await anyio.sleep(rng.uniform(0, 0.050))
                second = await browser.get(f"{app_url}/wechat/callback?code={code}&state=real")
            figures.iterations += 1
            figures.phases[phase] += 1
            figures.closes[close] += 1
            if status is not None:
                figures.first_statuses[status] += 1
            ok = second.status_code == 200 and second.json().get("openid") == OPENID
            figures.second["identity" if ok else f"{second.status_code} {second.text}"] += 1

        async with anyio.create_task_group() as tg:
            for index in range(iterations):
                tg.start_soon(one, index)
    return figures


@pytest.mark.parametrize("server", SERVERS)
async def test_real_client_aborts(server) -> None:
    latency = 0.05
    with (
        emulator_process(latency=latency) as emulator_url,
        serving(server, app_env(emulator_url)) as app,
    ):
        with anyio.fail_after(30 + ABORTS):  # no hang; the figures say how long it took
            started = time.monotonic()
            figures = await run_aborts(
                emulator_url,
                app.url,
                ABORTS,
                concurrency=ABORT_CONCURRENCY,
                seed=SEED,
                latency=latency,
            )
            elapsed = time.monotonic() - started
        async with httpx.AsyncClient() as browser:
            counters = await metrics(browser, app.url)
        stats = emulator_stats(emulator_url)
    exchanges = stats["exchanges"]
    assert isinstance(exchanges, dict)
    per_code = Counter(exchanges.get(code, 0) for code in figures.codes)
    print(
        f"\n{server}: {figures.iterations} aborted logins in {elapsed:.1f}s (seed {SEED}); "
        f"#1 dropped {dict(figures.phases)}, {dict(figures.closes)}; "
        f"#1 read to the end: {dict(figures.first_statuses)}; #2 got {dict(figures.second)}; "
        f"exchanges per code {dict(per_code)}; worker counters {counters}"
    )
    assert figures.iterations == ABORTS
    assert figures.second == {"identity": ABORTS}
    assert per_code == {1: ABORTS}
    assert set(figures.first_statuses) <= {200}
    assert_clean(app)


# --- 2. load with duplicates -------------------------------------------------------------------


@dataclass
class LoadFigures:
    statuses: Counter[int] = field(default_factory=Counter)
    lost: int = 0
    codes: list[str] = field(default_factory=list)
    pids: Counter[int] = field(default_factory=Counter)


async def run_load(emulator_url: str, app_url: str, logins: int, concurrency: int) -> LoadFigures:
    """``logins`` logins, ``concurrency`` at a time, each with the WeChat browser's double
    callback (#1 aborted after 5 ms, #2 19 ms after #1), every callback on its own connection."""
    figures = LoadFigures()
    limiter = anyio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=4 * concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as browser:

        async def login() -> None:
            async with limiter:
                code = await issue_code(browser, emulator_url, app_url)
                figures.codes.append(code)
                url = f"{app_url}/wechat/callback?code={code}&state=load"
                response = await double_callback(browser, url, abort_after=0.005, gap=0.019)
            figures.statuses[response.status_code] += 1
            if response.status_code == 200 and response.json().get("openid") == OPENID:
                figures.pids[response.json()["pid"]] += 1
            else:
                figures.lost += 1

        async with anyio.create_task_group() as tg:
            for _ in range(logins):
                tg.start_soon(login)
    return figures


@dataclass
class LoadResult:
    lost: int
    server_errors: int
    per_code: Counter[int]


async def load(backend: str, emulator_url: str, app: Served) -> LoadResult:
    with anyio.fail_after(60 + LOGINS):
        started = time.monotonic()
        figures = await run_load(emulator_url, app.url, LOGINS, CONCURRENCY)
        elapsed = time.monotonic() - started
    exchanges = emulator_stats(emulator_url)["exchanges"]
    assert isinstance(exchanges, dict)
    per_code = Counter(exchanges.get(code, 0) for code in figures.codes)
    server_errors = sum(n for status, n in figures.statuses.items() if status >= 500)
    print(
        f"\n{backend}: {LOGINS} logins at concurrency {CONCURRENCY} in {elapsed:.1f}s "
        f"({LOGINS / elapsed:.0f}/s): {figures.lost} lost, {server_errors} 5xx, "
        f"statuses {dict(figures.statuses)}, exchanges per code {dict(per_code)}, "
        f"identities per worker {sorted(figures.pids.values())}"
    )
    return LoadResult(figures.lost, server_errors, per_code)


def assert_no_loss(result: LoadResult) -> None:
    assert result.lost == 0
    assert result.server_errors == 0
    assert result.per_code == {1: LOGINS}


async def test_load_with_duplicates_memory() -> None:
    with (
        emulator_process(latency=0.05) as emulator_url,
        serving("uvicorn", app_env(emulator_url)) as app,
    ):
        result = await load("memory, 1 uvicorn worker", emulator_url, app)
    assert_no_loss(result)
    assert_clean(app)


@pytest.mark.redis
async def test_load_with_duplicates_redis_two_workers(redis_server) -> None:
    with emulator_process(latency=0.05) as emulator_url:
        env = app_env(emulator_url, redis_server.url)
        with serving("uvicorn", env, workers=2) as app:
            result = await load("redis, 2 uvicorn workers", emulator_url, app)
    # Redis stays up. A worker that reports it unavailable all the same (a full connection
    # pool: see test_burst_beyond_the_redis_pool_keeps_dedupe_across_workers, which shows it
    # deterministically) dedupes only locally meanwhile, and a pair split over the workers
    # then loses its login.
    unavailable = "".join(app.output).count("wechat_oauth.redis_unavailable")
    print(f"workers' Redis-unavailable warnings: {unavailable}")
    assert_no_loss(result)
    assert_clean(app)


# --- a burst beyond the Redis connection pool ----------------------------------------------------


@pytest.mark.redis
async def test_burst_beyond_the_redis_pool_keeps_dedupe_across_workers(redis_server) -> None:
    """Two workers (two middlewares, each with its own RedisBackend from the URL, as two
    processes have) on one Redis. A burst of callbacks on worker A, more at once than
    redis-py's default pool holds (100 connections in redis-py 8), then each code's late
    duplicate on worker B (a refresh, or the pair split by the load balancer). Redis is up the
    whole time: every duplicate must get the identity, every code be traded once."""
    burst = 150
    emulator = WeChatEmulator(latency=0.05)
    prefix = f"burst-{uuid.uuid4().hex[:10]}"

    async def identity(scope, receive, send) -> None:
        body = scope["wechat"].openid.encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator), base_url="http://wechat.test"
    ) as upstream:
        workers = [
            WeChatOAuthMiddleware(
                identity,
                appid=emulator.appid,
                secret=emulator.secret,
                api_base_url="http://wechat.test",
                http_client=upstream,
                backend=RedisBackend(redis_server.url, prefix=prefix),
            )
            for _ in range(2)
        ]
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=w), base_url="http://app.test")
            for w in workers
        ]
        try:
            codes = [emulator.issue_code() for _ in range(burst)]
            first: Counter[int] = Counter()
            second: Counter[str] = Counter()

            async def callback(worker: int, code: str) -> httpx.Response:
                return await clients[worker].get(f"/wechat/callback?code={code}&state=b")

            async def on_a(code: str) -> None:
                first[(await callback(0, code)).status_code] += 1

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for code in codes:
                        tg.start_soon(on_a, code)
                for code in codes:
                    response = await callback(1, code)
                    ok = response.status_code == 200 and response.text == OPENID
                    second["identity" if ok else response.json()["error"]] += 1
        finally:
            for client in clients:
                await client.aclose()
            for worker in workers:
                await worker.aclose()
    per_code = Counter(emulator.exchange_count(code) for code in codes)
    print(
        f"\nburst of {burst} on worker A: {dict(first)}; late duplicates on worker B: "
        f"{dict(second)}; exchanges per code {dict(per_code)}"
    )
    assert first == {200: burst}
    assert second == {"identity": burst}
    assert per_code == {1: burst}
