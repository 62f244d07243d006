"""Login throughput: many distinct codes at a fixed concurrency.

Every login is a fresh code, answered by the in-process WeChat emulator with no added latency,
so what is measured is CPU: the exchange itself (httpx to the emulator, the emulator's
Starlette routing and JSON) plus what the middleware adds around it. Variants, interleaved in
rounds on the same emulator:

- bare httpx exchange: ``GET sns/oauth2/access_token`` with an ``httpx.AsyncClient`` on the
  emulator, JSON decoded: the least any login costs;
- middleware, memory / redis: raw ASGI calls of the callback through ``WeChatOAuthMiddleware``
  (its own upstream client goes to the same emulator the same way) and a trivial app behind it.

The ratio is the middleware's cost per login against the bare exchange in the same run. Then,
from the client side (a counting ``redis.asyncio.Redis``), the Redis commands one login sends,
by role: leader, follower (a concurrent duplicate) in the leader's process and in another
(a second middleware on its own RedisBackend), late duplicate.
"""

from __future__ import annotations

import collections
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import httpx
from _common import (
    CALLBACK,
    WECHAT_URL,
    Gate,
    call,
    callback_query,
    counting_redis,
    emulated_middleware,
    http_scope,
    maybe_redis,
    median,
    parser,
    redis_wanted,
    rotate,
    run,
    table,
    tally_logs,
    title,
    verdict,
)

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.testing import WeChatEmulator

BARE = "bare httpx exchange"
#: The round trips the README documents per role.
DOCUMENTED = {
    "leader": 2,
    "follower, same process": 0,
    "follower, other process": 2,
    "late duplicate": 1,
}

_role: contextvars.ContextVar[str] = contextvars.ContextVar("role", default="other")


async def drive(login: Callable[[str], Awaitable[None]], codes: list[str], concurrency: int) -> int:
    """Run ``login`` once per code, ``concurrency`` at a time; return the elapsed ns."""
    remaining: Iterator[str] = iter(codes)

    async def worker() -> None:
        for code in remaining:  # the workers share one iterator: each code is taken once
            await login(code)

    start = time.perf_counter_ns()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return time.perf_counter_ns() - start


def bare_login(client: httpx.AsyncClient, emulator: WeChatEmulator) -> Any:
    async def login(code: str) -> None:
        response = await client.get(
            f"{WECHAT_URL}/sns/oauth2/access_token",
            params={
                "appid": emulator.appid,
                "secret": emulator.secret,
                "code": code,
                "grant_type": "authorization_code",
            },
        )
        if "openid" not in response.json():
            raise RuntimeError(f"bare exchange failed: {response.text}")

    return login


def middleware_login(app: WeChatOAuthMiddleware) -> Any:
    async def login(code: str) -> None:
        reply = await call(app, http_scope(CALLBACK, callback_query(code)))
        if reply.status != 200:
            raise RuntimeError(f"login failed: {reply.status} {reply.body!r}")

    return login


async def throughput(
    logins: int, concurrency: int, rounds: int, redis_url: str | None
) -> dict[str, list[float]]:
    emulator = WeChatEmulator()
    elapsed: dict[str, list[float]] = collections.defaultdict(list)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator)) as upstream:
        apps = {"middleware, memory": emulated_middleware(emulator, upstream, MemoryBackend())}
        clients = []
        if redis_url is not None:
            from asgi_wechat_oauth.backends.redis import RedisBackend

            clients.append(counting_redis(redis_url))
            backend = RedisBackend(clients[0], prefix="bench-throughput")
            apps["middleware, redis"] = emulated_middleware(emulator, upstream, backend)
        variants = {BARE: bare_login(upstream, emulator)}
        variants.update({name: middleware_login(app) for name, app in apps.items()})
        try:
            for r in range(rounds + 1):  # round 0 warms up
                for name in rotate(list(variants), r):
                    emulator.reset()  # the emulator's own tables stay small
                    codes = [emulator.issue_code() for _ in range(logins)]
                    ns = await drive(variants[name], codes, concurrency)
                    if emulator.total_exchanges != logins:
                        raise RuntimeError(f"{name}: {emulator.total_exchanges} exchanges")
                    if r > 0:
                        elapsed[name].append(ns / logins)
        finally:
            for app in apps.values():
                await app.aclose()
            for client in clients:
                await client.aclose()
    return elapsed


async def command_counts(redis_url: str, samples: int) -> dict[str, Any]:
    """Commands sent per role, counted by the client, and the backend's ``round_trips``."""
    from asgi_wechat_oauth.backends.redis import RedisBackend

    emulator = WeChatEmulator()
    gate = Gate(emulator)
    client = counting_redis(redis_url)
    backend = RedisBackend(client, prefix="bench-commands")
    other = RedisBackend(client, prefix="bench-commands")  # another worker, same counting client
    sent: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    trips: dict[str, int] = collections.Counter()
    original = client.execute_command

    async def execute_command(*args: Any, **options: Any) -> Any:
        before = sum(client.sent.values())
        labels = client.sent.copy()
        try:
            return await original(*args, **options)
        finally:
            if sum(client.sent.values()) > before:
                sent[_role.get()].update(client.sent - labels)

    client.execute_command = execute_command
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate)) as upstream:
        app = emulated_middleware(emulator, upstream, backend)
        other_app = emulated_middleware(emulator, upstream, other)

        async def request(role: str, code: str) -> None:
            _role.set(role)  # tasks started from here (the detached exchange) inherit it
            before = backend.round_trips + other.round_trips
            worker = other_app if role == "follower, other process" else app
            reply = await call(worker, http_scope(CALLBACK, callback_query(code)))
            trips[role] += backend.round_trips + other.round_trips - before
            if reply.status != 200:
                raise RuntimeError(f"{role}: {reply.status} {reply.body!r}")

        try:
            for i in range(samples + 1):  # the first pair warms up (connections, scripts)
                if i == 1:
                    sent.clear()
                    trips.clear()
                code = emulator.issue_code()
                gate.close()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(request, "leader", code)
                    with anyio.fail_after(10):
                        while gate.arrived < 1:
                            await anyio.sleep(0.0005)
                    tg.start_soon(request, "follower, same process", code)
                    await anyio.sleep(0.005)  # it joins the local flight at once
                    checks = client.answered["CHECK"]
                    tg.start_soon(request, "follower, other process", code)
                    with anyio.fail_after(10):
                        while client.answered["CHECK"] == checks:
                            await anyio.sleep(0.0005)
                    await anyio.sleep(0.002)
                    gate.open()
                await request("late duplicate", code)
        finally:
            await app.aclose()
            await other_app.aclose()
            await client.aclose()
    # The follower's round trips overlap the leader's: ``round_trips`` is shared, so only the
    # client-side tally (by the request's context) separates them.
    return {"sent": sent, "trips": trips, "samples": samples}


def main() -> int:
    p = parser(__doc__.split("\n\n")[0], backends=True)
    p.add_argument("--logins", type=int, default=2000, help="logins per batch (2000)")
    p.add_argument("--concurrency", type=int, default=50, help="logins at once (50)")
    p.add_argument("--rounds", type=int, default=7, help="rounds of all variants (7)")
    p.add_argument("--samples", type=int, default=20, help="logins counted per role (20)")
    args = p.parse_args()
    if args.quick:
        args.logins, args.concurrency, args.rounds, args.samples = 60, 10, 2, 3
    logs = tally_logs()
    use_redis = redis_wanted(args.backends)
    if "memory" not in args.backends:
        print("note: the memory row always runs (it is the reference for the Redis row)")

    with maybe_redis(use_redis) as url:
        per_login = run(lambda: throughput(args.logins, args.concurrency, args.rounds, url))
        counts = run(lambda: command_counts(url, args.samples)) if url else None

    title("Login throughput: distinct codes, in-process emulator, no upstream latency")
    print(
        f"{args.rounds} rounds (after one warm-up round) x {args.logins} logins per variant, "
        f"{args.concurrency} at a time, asyncio; medians of the rounds"
    )
    print()
    bare = median(per_login[BARE])
    rows = []
    for name in sorted(per_login, key=lambda n: n != BARE):
        values = per_login[name]
        value = median(values)
        rows.append(
            (
                name,
                f"{1e9 / value:.0f}",
                f"{1e9 / max(values):.0f}-{1e9 / min(values):.0f}",
                f"{value / 1e3:.1f}",
                f"{(value - bare) / 1e3:+.1f}",
                f"{value / bare:.2f}x",
            )
        )
    headers = ("variant", "logins/s", "min-max", "µs/login", "over bare", "vs bare exchange")
    print(table(headers, rows))
    print()
    print(
        "µs/login: wall time / logins at that concurrency (one event loop, one core).\n"
        "over bare: what the middleware adds to each login beyond the exchange itself."
    )
    ratios = {name: median(v) / bare for name, v in per_login.items() if name != BARE}
    summary = ", ".join(f"{name.split(', ')[1]} {r:.2f}x" for name, r in ratios.items())
    ok = True
    if counts is not None:
        print()
        print(f"Redis commands per login, counted by the client ({counts['samples']} logins each)")
        print()
        rows = []
        for role in DOCUMENTED:
            tally: collections.Counter[str] = counts["sent"][role]
            per = sum(tally.values()) / counts["samples"]
            breakdown = ", ".join(
                f"{name} {n / counts['samples']:g}" for name, n in sorted(tally.items())
            )
            ok = ok and per == DOCUMENTED[role]
            rows.append((role, f"{per:g}", DOCUMENTED[role], breakdown))
        print(table(("role", "commands", "documented", "breakdown (per login)"), rows))
        print()
        print(
            "CLAIM, CHECK, COMPLETE: the backend's Lua scripts (one EVALSHA each). A follower in\n"
            "the leader's process joins its flight; one elsewhere gets the outcome in the pub/sub\n"
            "message. The subscription is one per process, on its own connection, not counted."
        )
        summary += (
            "; Redis commands per login (leader/follower here/follower elsewhere/late): "
            + "/".join(
                f"{sum(counts['sent'][r].values()) / counts['samples']:g}" for r in DOCUMENTED
            )
        )
        summary += " (documented " + "/".join(str(n) for n in DOCUMENTED.values()) + ")"
    print(logs.summary())
    print(verdict(ok, f"cost per login vs a bare httpx exchange: {summary}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
