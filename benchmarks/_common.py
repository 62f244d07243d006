"""Shared by the benchmark scripts: tables, statistics, raw ASGI calls, servers.

Nothing here is imported from ``tests/``: the benchmarks run from a plain checkout with the
package installed (``pip install -e '.[test]'``). Redis scripts start their own
``redis-server --port <free> --save '' --appendonly no`` on loopback and stop it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import contextvars
import datetime
import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from typing import Any

import anyio
import httpx
import uvicorn

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import Backend, Claim, Outcome
from asgi_wechat_oauth.testing import WeChatEmulator

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

CALLBACK = "/wechat/callback"
WECHAT_URL = "http://wechat.test"
BACKENDS = ("memory", "redis")

#: Which request of a trial runs in the current context (TimingBackend records the leader's).
request_no: contextvars.ContextVar[int] = contextvars.ContextVar("request_no", default=-1)


# --- command line ------------------------------------------------------------------------------


def parser(description: str, *, backends: bool = False) -> argparse.ArgumentParser:
    """An argument parser with ``--quick`` (tiny sizes, for the smoke test) and, for scripts that
    run on Redis too, ``--backends memory,redis``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    if backends:
        p.add_argument(
            "--backends",
            default=",".join(BACKENDS),
            type=_backends,
            help="comma-separated, from: memory, redis (default: both)",
        )
    return p


def _backends(value: str) -> tuple[str, ...]:
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = set(chosen) - set(BACKENDS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"backends must be among {', '.join(BACKENDS)}")
    return chosen


def ints(value: str) -> list[int]:
    """``"2,10,100"`` → ``[2, 10, 100]``, for size lists on the command line."""
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {value!r}") from None


def floats(value: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {value!r}") from None


# --- output ------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first, *rest = row
        parts = [
            first.ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)),
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def verdict(ok: bool, text: str) -> str:
    """The one-line verdict every script ends with; run_all.py collects these lines."""
    return f"verdict: {'OK' if ok else 'MISSED'}: {text}"


def target_line(number: int, ok: bool, text: str) -> str:
    """A line about one of issue 13's targets; run_all.py lists them under "Targets"."""
    return f"target {number}: {'OK' if ok else 'MISSED'}: {text}"


def title(text: str) -> None:
    print(text)
    print("=" * len(text))


def fmt_ns(ns: float) -> str:
    """A duration in ns, µs or ms, three significant digits."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g} µs"
    return f"{ns / 1e6:.3g} ms"


def fmt_ms(ns: float) -> str:
    return f"{ns / 1e6:.3f}"


class LogTally(logging.Handler):
    """Counts the package's log records by event instead of printing them: a benchmark that
    provokes errors on purpose would otherwise spend its time writing to stderr."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        event = str(record.msg).split(" ", 1)[0]
        self.events[f"{record.levelname} {event}"] += 1

    def summary(self) -> str:
        if not self.events:
            return "package log: nothing at WARNING or above"
        return "package log: " + ", ".join(f"{n}x {e}" for e, n in sorted(self.events.items()))


def tally_logs() -> LogTally:
    """Route the package's WARNING+ records to a tally (the figures stay on stdout)."""
    tally = LogTally()
    tally.setLevel(logging.WARNING)
    log = logging.getLogger("asgi_wechat_oauth")
    log.addHandler(tally)
    log.propagate = False
    return tally


# --- statistics --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def paired_ratio(values: Sequence[float], baseline: Sequence[float]) -> float:
    """The median over rounds of ``values[r] / baseline[r]``, both measured in round ``r``.
    On a shared VM the speed drifts by more than the differences measured here; a ratio
    within one round cancels the drift, and the median drops the rounds a neighbour hit."""
    return median([v / b for v, b in zip(values, baseline, strict=True)])


def in_processes(script: str, worker_args: Sequence[str], processes: int) -> Any:
    """Run ``script --worker *worker_args`` in ``processes`` fresh processes, one after
    another, and pool what they print (JSON: dicts merged, lists of rounds joined). As pyperf
    does: a process's hash seed and memory layout move ratios of a few per cent by a per cent
    or two, the same way for all of that process's rounds."""
    pooled: Any = None
    for _ in range(max(processes, 1)):
        proc = subprocess.run(
            [sys.executable, script, "--worker", *worker_args],
            capture_output=True,
            text=True,
            check=True,
        )
        pooled = _pool(pooled, json.loads(proc.stdout))
    return pooled


def _pool(into: Any, more: Any) -> Any:
    if into is None:
        return more
    if isinstance(more, dict):
        for key, value in more.items():
            into[key] = _pool(into.get(key), value)
        return into
    return [*into, *more]


def rotate(items: Sequence[Any], round_no: int) -> list[Any]:
    """The variants in a different order each round, so no variant always runs first."""
    k = round_no % len(items)
    return [*items[k:], *items[:k]]


# --- the machine -------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )


def raise_fd_limit() -> None:
    """Fan-out at N=1000 on Redis opens about as many connections: lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def peak_rss_kib() -> int:
    """The process's peak resident set size (VmHWM), in KiB."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def current_rss_kib() -> int:
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- raw ASGI calls ----------------------------------------------------------------------------

_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


def http_scope(path: str, query: bytes = b"", method: str = "GET") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"app.test"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("app.test", 80),
    }


class Reply:
    """What a raw ASGI call answered, and when its last body byte was sent."""

    __slots__ = ("body", "done_ns", "status")

    def __init__(self) -> None:
        self.status = 0
        self.body = b""
        self.done_ns = 0


async def call(app: ASGIApp, scope: Scope) -> Reply:
    """Call an ASGI app as a server would, without sockets or an HTTP client: the middleware's
    own cost is what is left. ``receive`` answers the (empty) request body, then blocks as a
    server's does until the client goes away."""
    reply = Reply()
    sent_request = False

    async def receive() -> Message:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return _REQUEST
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            reply.status = message["status"]
        elif message["type"] == "http.response.body":
            reply.body += message.get("body", b"")
            if not message.get("more_body", False):
                reply.done_ns = time.perf_counter_ns()

    await app(scope, receive, send)
    return reply


class ResultClock:
    """When the leader's result was known: the exchange and the identity built from it, the
    moment the middleware's trade returns (or the baseline's, at the same point). The origin
    of every release time; the first one since :meth:`reset` counts."""

    def __init__(self) -> None:
        self.ns = 0

    def reset(self) -> None:
        self.ns = 0

    def mark(self) -> None:
        if not self.ns:
            self.ns = time.perf_counter_ns()


RESULT = ResultClock()

#: When each request reached the app behind the middleware (``perf_counter_ns``), by
#: ``request_no``: a follower's release, timed alike for the middleware (whatever path its
#: follower took: the leader's flight in its process, or the backend) and for the baseline.
REACHED: dict[int, int] = {}


async def openid_app(scope: Scope, receive: Any, send: Any) -> None:
    """The app behind the middleware: answers the identity's openid, as a real handler would
    after setting a session. Records when the request reached it (``REACHED``)."""
    REACHED[request_no.get()] = time.perf_counter_ns()
    body = scope["wechat"].openid.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def emulated_middleware(
    emulator: WeChatEmulator, upstream: httpx.AsyncClient, backend: Backend, **options: Any
) -> WeChatOAuthMiddleware:
    """The middleware in front of ``openid_app``, trading codes at the in-process emulator.
    Its trade is timed (``RESULT``): a wrapper on the instance, the package unchanged."""
    middleware = WeChatOAuthMiddleware(
        openid_app,
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=WECHAT_URL,
        http_client=upstream,
        backend=backend,
        **options,
    )
    trade = middleware._trade

    async def timed_trade(code: str, state: str | None, next_path: str | None) -> Any:
        result = await trade(code, state, next_path)
        RESULT.mark()
        return result

    middleware._trade = timed_trade  # type: ignore[method-assign]
    return middleware


def parked(app: Any) -> int:
    """Followers parked in one app now: the middleware's ``counters.waiting`` (on the leader's
    flight or in the backend), or the baseline's count of followers that started to wait."""
    counters = getattr(app, "counters", None)
    return int(counters.waiting if counters is not None else app.waiting)


class MinimalSingleFlight:
    """The baseline for duplicates: the textbook single flight as a pure ASGI middleware.

    A dict of results and a dict of ``anyio.Event``s; the same query parsing, key, client
    (``WeChatOAuthClient`` on the same upstream) and app as the middleware, and nothing else: no
    detached exchange, no timeouts, no expiry, no bound, no error sharing. What the middleware
    costs beyond it is the price of its guarantees. It records what the fan-out scripts read
    of the middleware (``waiting``: followers parked; ``leader``: the leader's ``request_no``);
    the leader's result (``RESULT``) and each release (``REACHED``: the request reaches the
    app) are timed at the same points for both.
    """

    def __init__(self, app: ASGIApp, emulator: WeChatEmulator, upstream: httpx.AsyncClient) -> None:
        from asgi_wechat_oauth import WeChatOAuthClient

        self.app = app
        self.client = WeChatOAuthClient(
            emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
        )
        self.prefix = f"{emulator.appid}:".encode()
        self.results: dict[str, Any] = {}
        self.flights: dict[str, anyio.Event] = {}
        self.inner = None
        self.reset()

    async def aclose(self) -> None:
        await self.client.aclose()

    def reset(self) -> None:
        self.waiting = self.empty_waits = 0
        self.leader = -1
        self.fell_back = False

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        from asgi_wechat_oauth import WeChatIdentity
        from asgi_wechat_oauth._core.callback import parse_callback_query

        if scope["type"] != "http" or scope["path"] != CALLBACK:
            await self.app(scope, receive, send)
            return
        params = parse_callback_query(scope["query_string"])
        key = hashlib.sha256(self.prefix + params.code.encode()).hexdigest()
        identity = self.results.get(key)
        if identity is None:
            event = self.flights.get(key)
            if event is not None:
                self.waiting += 1
                await event.wait()
                identity = self.results[key]
            else:
                self.leader = request_no.get()
                event = self.flights[key] = anyio.Event()
                try:
                    token = await self.client.exchange_code(params.code)
                    identity = self.results[key] = WeChatIdentity.from_token(
                        token, state=params.state
                    )
                    RESULT.mark()
                finally:
                    del self.flights[key]
                    event.set()
        scope["wechat"] = identity
        await self.app(scope, receive, send)


def callback_query(code: str, state: str = "bench") -> bytes:
    return f"code={code}&state={state}".encode()


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


REDIS_MISSING = (
    "redis-server not found on PATH: the Redis rows are skipped "
    "(install it, e.g. `apt-get install redis-server`, to measure them)"
)


def redis_binary() -> str | None:
    return shutil.which("redis-server")


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server on a free loopback port, no persistence; yields its URL."""
    binary = redis_binary()
    if binary is None:
        raise RuntimeError(REDIS_MISSING)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--protected-mode", "no", "--maxclients", "20000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_wanted(backends: Sequence[str]) -> bool:
    """Whether to run the Redis rows; prints why not when the binary is missing."""
    if "redis" not in backends:
        return False
    if redis_binary() is None:
        print(f"note: {REDIS_MISSING}")
        return False
    return True


@contextlib.contextmanager
def maybe_redis(wanted: bool) -> Generator[str | None, None, None]:
    if not wanted:
        yield None
        return
    with redis_server() as url:
        yield url


async def redis_rtt_ns(url: str, samples: int = 200) -> float:
    """The median round trip of a PING from this process, on one warm connection."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        for _ in range(20):
            await client.ping()
        times = []
        for _ in range(samples):
            start = time.perf_counter_ns()
            await client.ping()
            times.append(time.perf_counter_ns() - start)
    finally:
        await client.aclose()
    return median(times)


class _InProcessServer(uvicorn.Server):
    """uvicorn without signal handlers: several servers share one process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in this process; yield its URL.

    A client that closes its connection really closes a socket: uvicorn then tells the app
    (``http.disconnect``) but does not cancel the request's task, as in production."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = _InProcessServer(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        try:
            with anyio.fail_after(10):
                while not server.started:
                    await anyio.sleep(0.005)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(main, backend="asyncio")


def flush() -> None:
    sys.stdout.flush()


# --- instrumented collaborators ------------------------------------------------------------------


class Gate:
    """An ASGI app in front of the emulator that holds ``sns/oauth2/access_token`` calls until
    opened: it makes sure every duplicate is parked before the leader's exchange completes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.arrived = 0
        self._open = anyio.Event()
        self._open.set()

    def close(self) -> None:
        self.arrived = 0
        self._open = anyio.Event()

    def open(self) -> None:
        self._open.set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/sns/oauth2/access_token":
            self.arrived += 1
            with anyio.fail_after(60):
                await self._open.wait()
        await self.app(scope, receive, send)


class TimingBackend:
    """Delegates to a real backend and records which request led (``leader``: its
    ``request_no``), how many waits in the backend ended without an outcome, and whether a
    RedisBackend fell back to its local dedupe. Followers in the leader's own process wait on
    its flight, not in the backend: the middleware's ``counters.waiting`` counts them all."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.lease_ttl = inner.lease_ttl
        #: The backend's fast path, delegated as is.
        self.peek = getattr(inner, "peek", None)
        self.reset()

    def reset(self) -> None:
        self.empty_waits = 0  # waits that ended without an outcome (the request claims again)
        self.leader = -1
        self.fell_back = False  # a RedisBackend answered a claim from its local fallback

    async def claim(self, key: str) -> Claim:
        claim = await self.inner.claim(key)
        if not getattr(self.inner, "available", True):
            self.fell_back = True
        if claim.lease is not None:
            self.leader = request_no.get()
        return claim

    async def complete(
        self, key: str, lease: str, outcome: Outcome, *, ttl: float
    ) -> Outcome | None:
        return await self.inner.complete(key, lease, outcome, ttl=ttl)

    async def wait(self, key: str, *, timeout: float) -> Outcome | None:
        outcome = await self.inner.wait(key, timeout=timeout)
        if outcome is None:
            self.empty_waits += 1
        return outcome

    async def recover(self, key: str, *, timeout: float) -> Outcome | None:
        return await self.inner.recover(key, timeout=timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()


def script_label(source: str) -> str:
    """Names the RedisBackend's Lua scripts by what they do, from their source."""
    if "PUBLISH" in source:
        return "COMPLETE"
    if "'NX'" in source:
        return "CLAIM"
    if "PTTL" in source:
        return "CHECK"
    return "SCRIPT"


def counting_redis(url: str, *, blocking_pool: bool = True, max_connections: int = 100) -> Any:
    """A ``redis.asyncio.Redis`` that counts, from the client side, the commands it sends and
    the answers it gets, by name (Lua scripts by what they do: CLAIM, CHECK, COMPLETE). The
    one pub/sub subscription per process runs on its own connection and is not counted.

    ``blocking_pool``: a ``BlockingConnectionPool`` of ``max_connections``, where a command
    waits for a free connection. Otherwise the pool ``RedisBackend(url)`` builds for itself
    (``from_url``), which in redis-py 8 raises ``MaxConnectionsError`` beyond 100 commands in
    flight."""
    import collections

    import redis.asyncio as aioredis

    class CountingRedis(aioredis.Redis):  # type: ignore[misc]
        sent: collections.Counter[str]
        answered: collections.Counter[str]
        labels: dict[str, str]

        async def execute_command(self, *args: Any, **options: Any) -> Any:
            name = str(args[0]).upper()
            if name == "EVALSHA":
                name = self.labels.get(str(args[1]), "EVALSHA")
            self.sent[name] += 1
            result = await super().execute_command(*args, **options)
            self.answered[name] += 1
            return result

    timeouts = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}  # RedisBackend's own
    if blocking_pool:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=2.0, **timeouts
        )
        client = CountingRedis.from_pool(pool)
    else:
        client = CountingRedis.from_url(url, **timeouts)
    client.sent = collections.Counter()
    client.answered = collections.Counter()
    # RedisBackend runs its scripts by EVALSHA: their SHA1s name them.
    from asgi_wechat_oauth.backends.redis import _scripts

    client.labels = {
        _scripts.Script(None, source).sha: script_label(source)
        for source in (
            _scripts.CLAIM,
            _scripts.CHECK,
            _scripts.COMPLETE,
            _scripts.NOTE_CODE,
            _scripts.FORGET,
        )
    }
    return client


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server a benchmark started (killed if it does not stop in 15 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
