"""A third-party platform's login: its cost against an official account's, and one component
token for 1,000 logins at once on four workers.

(a) In one process, the variants alternating login by login, on the in-process emulator
(``httpx.ASGITransport``) with ``MemoryBackend``: a login's callback as the WeChat browser
sends it (two requests with one code, the second while the first's exchange is in flight)
through

- ``WeChatOAuthMiddleware`` for one official account (the baseline);
- ``WeChatOAuthMiddleware`` for two official accounts picked by host (``apps=``,
  ``resolve_app``);
- ``PlatformOAuthMiddleware`` on behalf of two authorizers picked by host, with a warm
  component token (``sns/oauth2/component/access_token``).

The login page and WeChat's consent page are walked before each round, untimed; the hosts
alternate. Per login: the whole double callback (raw ASGI calls, the same trivial app behind),
and the part of it spent inside the emulator, timed around its ASGI app; "middleware" is the
rest (the middleware, its httpx client, the app behind). Ratios are medians of the rounds'
ratios to the baseline. Target (issue 29): a component login <= 1.2x an official account's.

(b) ``examples/platform_app.py`` under ``uvicorn --workers 4`` sharing a redis-server, the
emulator in a process of its own (50 ms per answer) pushing the ticket
(``POST /_emulator/push_ticket``); 1,000 users, the hosts in turn, walk the login and consent
pages (100 at a time, untimed), then all send the double callback at once (#1 cut off after
5 ms, #2 19 ms after #1) and ask ``/me``: the burst in which every worker needs the token.
Counted at the emulator: ``cgi-bin/component/api_component_token`` calls (target 1) and
exchanges per code; each user's ``/me`` must name its host's authorizer.

    python benchmarks/bench_platform.py            # about a minute
    python benchmarks/bench_platform.py --quick    # tiny sizes (2 workers, 40 logins)
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
from _common import (
    free_port,
    machine,
    median,
    openid_app,
    paired_ratio,
    parser,
    percentile,
    raise_fd_limit,
    redis_server,
    rotate,
    stop_process,
    table,
    tally_logs,
    title,
    verdict,
    wait_for_port,
)

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.platform import PlatformOAuthMiddleware
from asgi_wechat_oauth.testing import WeChatEmulator

ROOT = Path(__file__).resolve().parent.parent
WECHAT_URL = "http://wechat.test"
USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
    "Safari/537.36 MicroMessenger/8.0.47.2560(0x28002F30) NetType/WIFI Language/zh_CN"
)
HOSTS = ("a.example", "b.example")
#: The package's log events, as the workers print them.
EVENT = re.compile(r"(wechat_(?:oauth|platform)\.[a-z_]+)")
OFFICIAL, OFFICIAL_APPS, PLATFORM = (
    "official account",
    "official accounts by host (apps=)",
    "platform, authorizers by host",
)
VARIANTS = (OFFICIAL, OFFICIAL_APPS, PLATFORM)
#: A second official account of the emulator's, for ``apps=``.
SECOND_APPID, SECOND_SECRET = "wxemulated0000002", "emulated-second-secret-0123456789"


# --- raw ASGI ------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]

    def header(self, name: bytes) -> str:
        return next((v.decode("latin-1") for k, v in self.headers if k == name), "")

    def cookies(self) -> list[str]:
        return [v.decode("latin-1").split(";", 1)[0] for k, v in self.headers if k == b"set-cookie"]


def scope_for(url: str, cookie: str = "", method: str = "GET") -> dict[str, Any]:
    parts = urlsplit(url)
    headers = [(b"host", parts.netloc.encode()), (b"user-agent", USER_AGENT.encode())]
    headers.append((b"accept", b"text/html"))
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "root_path": "",
        "query_string": parts.query.encode(),
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": (parts.hostname, 80),
    }


async def asgi_call(app: Any, scope: dict[str, Any]) -> Answer:
    """Call an ASGI app as a server would (the request has no body; ``receive`` then blocks
    until the client goes away, which it does not)."""
    answer = Answer(0, [])
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = list(message.get("headers", []))

    await app(scope, receive, send)
    return answer


class TimedEmulator:
    """The emulator behind a stopwatch: the time its ASGI calls take, summed (the middleware's
    upstream calls are sequential here: one exchange per login, its follower parked)."""

    def __init__(self, emulator: WeChatEmulator) -> None:
        self.emulator = emulator
        self.ns = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        start = time.perf_counter_ns()
        try:
            await self.emulator(scope, receive, send)
        finally:
            self.ns += time.perf_counter_ns() - start


# --- (a) a login's cost --------------------------------------------------------------------------


class Variant:
    def __init__(self, name: str) -> None:
        self.name = name
        self.emulator = WeChatEmulator(apps={SECOND_APPID: SECOND_SECRET})
        self.timed = TimedEmulator(self.emulator)
        self.upstream = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.timed), base_url=WECHAT_URL
        )
        common: dict[str, Any] = {
            "api_base_url": WECHAT_URL,
            "authorize_base_url": WECHAT_URL,
            "http_client": self.upstream,
            "backend": MemoryBackend(),
        }
        if name == PLATFORM:
            self.login, self.callback = "/wechat/platform/login", "/wechat/platform/callback"
            authorizers = dict(zip(HOSTS, self.emulator.authorizer_appids, strict=False))
            self.app: Any = PlatformOAuthMiddleware(
                openid_app,
                component_appid=self.emulator.component_appid,
                component_secret=self.emulator.component_secret,
                token=self.emulator.component_token,
                encoding_aes_key=self.emulator.component_encoding_aes_key,
                authorizer=by_host(authorizers),
                login_path=self.login,
                **common,
            )
        else:
            self.login, self.callback = "/wechat/login", "/wechat/callback"
            accounts: dict[str, Any]
            if name == OFFICIAL_APPS:
                apps = {self.emulator.appid: self.emulator.secret, SECOND_APPID: SECOND_SECRET}
                accounts = {
                    "apps": apps,
                    "resolve_app": by_host(dict(zip(HOSTS, apps, strict=True))),
                }
            else:
                accounts = {"appid": self.emulator.appid, "secret": self.emulator.secret}
            self.app = WeChatOAuthMiddleware(
                openid_app, login_path=self.login, **accounts, **common
            )

    async def warm(self) -> None:
        """The ticket pushed, then a login per host: the component token (and each account's
        client) warm before anything is timed."""
        if isinstance(self.app, PlatformOAuthMiddleware):
            push = self.emulator.ticket_push()
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://a.example") as c:
                answer = await push.send("/wechat/platform/ticket", client=c)
            assert answer.text == "success", answer.text
        for i in range(4):
            assert await self.double_callback(await self.prepare(i)) == (200, 200)

    async def prepare(self, i: int) -> dict[str, Any]:
        """Walk the login page and WeChat's consent page (untimed): the callback's scope."""
        host = HOSTS[i % len(HOSTS)]
        start = await asgi_call(self.app, scope_for(f"http://{host}{self.login}?next=/"))
        assert start.status in (302, 303), start.status
        cookie = "; ".join(start.cookies())
        authorize = start.header(b"location").split("#", 1)[0]
        consent = await asgi_call(self.emulator, scope_for(authorize))
        callback = consent.header(b"location")
        assert consent.status == 302 and urlsplit(callback).path == self.callback, callback
        return scope_for(callback, cookie)

    async def double_callback(self, scope: dict[str, Any]) -> tuple[int, int]:
        """Callback #1 and, as soon as #1 waits for WeChat, #2 with the same code."""
        answers: list[Answer] = []

        async def one(copy: dict[str, Any]) -> None:
            answers.append(await asgi_call(self.app, copy))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, {**scope, "headers": list(scope["headers"])})
            tg.start_soon(one, {**scope, "headers": list(scope["headers"])})
        return answers[0].status, answers[1].status

    async def aclose(self) -> None:
        await self.app.aclose()
        await self.upstream.aclose()


def by_host(table_: dict[str, str]) -> Any:
    def resolve(scope: dict[str, Any]) -> str | None:
        for name, value in scope["headers"]:
            if name == b"host":
                return table_.get(value.decode("latin-1"))
        return None

    return resolve


@dataclass
class Cost:
    total: list[float]
    emulator: list[float]
    failed: int = 0

    @property
    def own(self) -> list[float]:
        return [t - e for t, e in zip(self.total, self.emulator, strict=True)]


async def login_costs(rounds: int, logins: int) -> dict[str, Cost]:
    variants = [Variant(name) for name in VARIANTS]
    costs = {v.name: Cost([], []) for v in variants}
    try:
        for variant in variants:
            await variant.warm()
        for round_no in range(rounds):
            prepared = {v.name: [await v.prepare(i) for i in range(logins)] for v in variants}
            totals = dict.fromkeys(costs, 0)
            failed = Counter[str]()
            for variant in variants:
                variant.timed.ns = 0
            gc.collect()
            # The variants alternate login by login (in a new order each time): the machine's
            # drift hits them alike.
            for i in range(logins):
                for variant in rotate(variants, round_no + i):
                    scope = prepared[variant.name][i]
                    start = time.perf_counter_ns()
                    statuses = await variant.double_callback(scope)
                    totals[variant.name] += time.perf_counter_ns() - start
                    failed[variant.name] += statuses != (200, 200)
            for variant in variants:
                cost = costs[variant.name]
                cost.total.append(totals[variant.name] / logins)
                cost.emulator.append(variant.timed.ns / logins)
                cost.failed += failed[variant.name]
        for variant in variants:
            assert variant.emulator.calls["api_component_token"] <= 1
    finally:
        for variant in variants:
            await variant.aclose()
    return costs


# --- (b) four workers, one Redis, 1,000 logins ---------------------------------------------------


@dataclass
class Served:
    url: str
    #: The server's stderr (the package's warnings and errors), once the block has ended.
    log: str = ""


@contextlib.contextmanager
def uvicorn(app: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    port = free_port()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning", "--no-access-log", "--backlog", "4096",
             "--timeout-keep-alive", "75", *extra],
            cwd=ROOT, env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        served = Served(f"http://127.0.0.1:{port}")
        try:
            wait_for_port(port, proc, timeout=120)
            yield served
        finally:
            stop_process(proc)
            stderr.seek(0)
            served.log = stderr.read().decode(errors="replace")


@dataclass
class Burst:
    logins: int
    workers: int
    kept: int
    right_appid: int
    component_tokens: int
    exchanges: int
    traded_twice: int
    seconds: float
    p50: float
    p99: float
    statuses: Counter[str]
    #: The workers' log lines by event (``wechat_oauth.<event>``, ``wechat_platform.<event>``).
    events: Counter[str]


async def burst(logins: int, workers: int, latency: float) -> Burst:
    raise_fd_limit()
    with (
        redis_server() as redis_url,
        uvicorn("asgi_wechat_oauth.testing:WeChatEmulator", "--factory") as emulator_server,
    ):
        emulator_url = emulator_server.url
        emulator = WeChatEmulator()  # its defaults: what the served one has
        hosts = dict(zip(HOSTS, emulator.authorizer_appids, strict=False))
        env = {
            "WECHAT_PLATFORM_API_BASE_URL": emulator_url,
            "WECHAT_PLATFORM_AUTHORIZE_BASE_URL": emulator_url,
            "WECHAT_PLATFORM_HOSTS": ",".join(f"{h}={a}" for h, a in hosts.items()),
            "WECHAT_PLATFORM_REDIS_URL": redis_url,
            "WECHAT_PLATFORM_REDIS_PREFIX": f"bench-platform-{uuid.uuid4().hex[:8]}",
            "WECHAT_PLATFORM_SESSION_SECRET": "bench-session-secret-0123456789abcdef",
        }
        app = uvicorn("examples.platform_app:app", "--workers", str(workers), env=env)
        with app as served:
            app_url = served.url
            time.sleep(min(0.5 * workers, 3.0))  # every worker importing and listening
            pushed = httpx.post(
                f"{emulator_url}/_emulator/push_ticket",
                params={"url": f"{app_url}/wechat/platform/ticket"},
                timeout=60,
            )
            assert pushed.json() == {"status": 200, "body": "success"}, pushed.text
            # The login and consent pages first (100 users at a time, untimed), then every
            # user's double callback at once: the burst in which the workers need the token.
            consented: list[tuple[str, str, dict[str, str]] | str] = [""] * logins
            limiter = anyio.CapacityLimiter(100)

            async def walk(i: int) -> None:
                async with limiter:
                    consented[i] = await _consent(app_url, HOSTS[i % len(HOSTS)])

            async with anyio.create_task_group() as tg:
                for i in range(logins):
                    tg.start_soon(walk, i)
            settings = httpx.post(f"{emulator_url}/_emulator/settings", params={"latency": latency})
            settings.raise_for_status()
            results: list[tuple[str, float, str]] = []

            async def one(i: int) -> None:
                host = HOSTS[i % len(HOSTS)]
                started = time.monotonic()
                walked = consented[i]
                try:
                    if isinstance(walked, str):
                        outcome = walked
                    else:
                        outcome = await _callback(app_url, *walked, authorizer=hosts[host])
                except OSError as exc:
                    outcome = f"no answer ({type(exc).__name__})"
                results.append((host, time.monotonic() - started, outcome))

            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for i in range(logins):
                    tg.start_soon(one, i)
            seconds = time.monotonic() - started
            stats = httpx.get(f"{emulator_url}/_emulator/stats", timeout=60).json()
    exchanges: dict[str, int] = stats["exchanges"]
    times = [t for _, t, outcome in results if outcome == "ok"]
    return Burst(
        logins=logins,
        workers=workers,
        kept=sum(outcome in ("ok", "wrong appid") for _, _, outcome in results),
        right_appid=len(times),
        component_tokens=stats["calls"].get("api_component_token", 0),
        exchanges=sum(exchanges.values()),
        traded_twice=sum(n > 1 for n in exchanges.values()),
        seconds=seconds,
        p50=percentile(times, 50),
        p99=percentile(times, 99),
        statuses=Counter(outcome for _, _, outcome in results if outcome != "ok"),
        events=Counter(EVENT.findall(served.log)),
    )


async def _consent(app_url: str, host: str) -> tuple[str, str, dict[str, str]] | str:
    """The login page and WeChat's consent page: the host, the callback URL on the app and
    the cookies; or what went wrong."""
    cookies: dict[str, str] = {}
    try:
        start = await get(f"{app_url}/wechat/platform/login?next=/me", host=host, cookies=cookies)
        if start.status != 302:
            return start.failure("login")
        consent = await get(start.header(b"location").split("#", 1)[0])
    except OSError as exc:
        return f"no answer ({type(exc).__name__})"
    callback = urlsplit(consent.header(b"location"))
    return host, f"{app_url}{callback.path}?{callback.query}", cookies


async def _callback(
    app_url: str, host: str, url: str, cookies: dict[str, str], *, authorizer: str
) -> str:
    """The double callback, then ``/me``: ``ok`` when it names ``authorizer``."""

    async def first() -> None:  # cut off 5 ms after it was sent, as WeChat's browser does
        await get(url, host=host, cookies=dict(cookies), drop_after=0.005)

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await anyio.sleep(0.019)
        landed = await get(url, host=host, cookies=cookies)
    if landed.status != 303 or landed.header(b"location") != "/me":
        return landed.failure("callback")
    me = await get(f"{app_url}/me", host=host, cookies=cookies)
    if me.status != 200:
        return me.failure("/me")
    return "ok" if json.loads(me.body).get("appid") == authorizer else "wrong appid"


@dataclass
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> str:
        return next((v.decode("latin-1") for k, v in self.headers if k == name), "")

    def failure(self, step: str) -> str:
        """``step``, the status and the error's reason (from the page or JSON)."""
        found = re.search(rb"<small>\d+ ([a-z_]+)</small>", self.body)
        reason = found.group(1).decode() if found else "-"
        with contextlib.suppress(ValueError, AttributeError, KeyError, TypeError):
            reason = str(json.loads(self.body)["error"])
        return f"{step} {self.status} {reason}"


async def get(
    url: str,
    *,
    host: str | None = None,
    cookies: dict[str, str] | None = None,
    drop_after: float | None = None,
) -> Reply:
    """GET ``url`` on a connection of its own (``Host: host`` when given), as a browser would,
    keeping ``cookies``; with ``drop_after``, close the connection that long after sending.
    Raw sockets: an HTTP client in Python would make this process the bottleneck."""
    parts = urlsplit(url)
    lines = [
        f"GET {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1",
        f"Host: {host or parts.netloc}",
        f"User-Agent: {USER_AGENT}",
        "Accept: text/html",
        "Connection: close",
    ]
    if cookies:
        lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    async with await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80) as stream:
        await stream.send(request)
        if drop_after is not None:
            await anyio.sleep(drop_after)
            return Reply(0, [], b"")
        data = b""
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while True:
                data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    headers = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    if cookies is not None:
        for name, value in headers:
            if name == b"set-cookie":
                pair, _, attributes = value.decode("latin-1").partition(";")
                key, _, val = pair.strip().partition("=")
                if "max-age=0" in attributes.lower().replace(" ", ""):
                    cookies.pop(key, None)
                else:
                    cookies[key] = val
    return Reply(int(status_line.split(b" ", 2)[1]), headers, body)


# --- the command line ----------------------------------------------------------------------------


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=21, help="rounds of (a) (21)")
    p.add_argument("--logins", type=int, default=200, help="logins per variant and round (200)")
    p.add_argument("--burst", type=int, default=1000, help="users at once in (b) (1000)")
    p.add_argument("--workers", type=int, default=4, help="uvicorn workers in (b) (4)")
    p.add_argument("--latency", type=float, default=0.05, help="emulator latency in (b) (0.05)")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.logins, args.burst, args.workers = 3, 20, 40, 2
    tally = tally_logs()
    title("A third-party platform's login")
    print(f"machine: {machine()}", flush=True)
    print()
    print(
        f"(a) a login's double callback, in-process emulator, MemoryBackend, asyncio: "
        f"{args.rounds} rounds of {args.logins} logins per variant; µs per login: medians "
        "of the rounds; ratios: medians of the rounds' ratios to the official account's"
    )
    print()
    costs = anyio.run(login_costs, args.rounds, args.logins, backend="asyncio")
    base = costs[OFFICIAL]
    rows = []
    for name in VARIANTS:
        cost = costs[name]
        rows.append(
            [
                name,
                f"{median(cost.total) / 1e3:.0f}",
                f"{median(cost.emulator) / 1e3:.0f}",
                f"{median(cost.own) / 1e3:.0f}",
                f"{paired_ratio(cost.total, base.total):.3f}x",
                f"{paired_ratio(cost.own, base.own):.3f}x",
                cost.failed,
            ]
        )
    headers = ["variant", "µs/login", "in emulator", "middleware", "ratio", "ratio, own", "failed"]
    print(table(headers, rows))
    ratio = paired_ratio(costs[PLATFORM].total, base.total)
    own_ratio = paired_ratio(costs[PLATFORM].own, base.own)
    print()
    print(
        "in emulator: inside the emulator's ASGI app (WeChat's side); middleware: the rest "
        "(the\nmiddleware, its httpx client and the app behind it). ratio, own: the "
        "middleware's part only."
    )
    print(flush=True)
    ok_a = ratio <= 1.2 and all(costs[n].failed == 0 for n in VARIANTS)
    figures: Burst | None = None
    if shutil.which("redis-server") is None:
        print("note: redis-server not found: (b) not run (apt-get install redis-server)")
    else:
        print(
            f"(b) {args.burst} users at once on `uvicorn --workers {args.workers}` "
            "(examples/platform_app.py, two hosts on two authorizers) sharing a redis-server; "
            f"the emulator in its own process, {args.latency * 1000:.0f} ms per answer; each "
            "user walks the login and consent pages (100 at a time, untimed), then all at once: "
            "the double callback (#1 cut off after 5 ms, #2 19 ms after #1) and /me"
        )
        print()
        figures = anyio.run(burst, args.burst, args.workers, args.latency, backend="asyncio")
        lost = ", ".join(f"{n}x {s}" for s, n in figures.statuses.most_common()) or "-"
        print(
            table(
                ["run", "logged in", "right account", "component tokens", "exchanges",
                 "traded twice", "wall s", "p50 s", "p99 s", "not logged in"],
                [[f"{figures.workers} workers, one Redis", f"{figures.kept}/{figures.logins}",
                  figures.right_appid, figures.component_tokens, figures.exchanges,
                  figures.traded_twice, f"{figures.seconds:.1f}", f"{figures.p50:.2f}",
                  f"{figures.p99:.2f}", lost]],
            )
        )  # fmt: skip
        print()
        print(
            "component tokens: calls to cgi-bin/component/api_component_token at the emulator "
            "(target 1).\nwall s: from the burst's start to the last user's /me; p50/p99: one "
            "user's callbacks and /me."
        )
        print(f"worker log events: {dict(figures.events) or 'none'}")
    print()
    print(tally.summary())
    ok_b = figures is not None and (
        figures.component_tokens == 1
        and figures.right_appid == figures.logins
        and figures.traded_twice == 0
        and figures.exchanges == figures.logins
    )
    b_text = (
        "not run (no redis-server)"
        if figures is None
        else f"{figures.component_tokens} component-token fetch(es) for {figures.logins} "
        f"logins at once on {figures.workers} workers (target 1), {figures.right_appid}/"
        f"{figures.logins} logged in on their host's authorizer, {figures.traded_twice} codes "
        f"traded twice, {figures.seconds:.1f} s"
    )
    print(
        verdict(
            ok_a and ok_b,
            f"a component login {ratio:.2f}x an official account's (target <= 1.2x; the "
            f"middleware's own part {own_ratio:.2f}x); {b_text}",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
