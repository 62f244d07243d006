"""Against the alternatives: logins that survive the WeChat browser's double callback.

Every login is a fresh code and two callbacks carrying it, as the WeChat in-app browser sends
them: #1, aborted by the client after ``--abort-after`` (its socket is closed), and #2, sent
``--gap`` after #1; #2's answer is the page the user sees. The apps are served by uvicorn in
this process, over loopback sockets, so the abort is a real disconnect (uvicorn does not cancel
the handler, exactly as in production). WeChat is the emulator, in-process, with the given
latency on each ``sns/oauth2/access_token`` answer; a code is used when the exchange arrives.

Variants:

- naive: a handler that trades the code itself, on every callback;
- lock+dict: a faithful port of the widely copied workaround: the first request marks the
  code in a dictionary under a lock; a later request finds the mark, and if no result is stored
  yet it calls WeChat itself, and on errcode 40029 re-reads the dictionary once; it does not
  wait;
- middleware, memory: ``WeChatOAuthMiddleware`` with ``MemoryBackend`` (one worker);
- middleware, redis: two workers (two uvicorn servers, each a middleware with its own
  ``RedisBackend(url)``); #1 goes to one, #2 to the other.

Expected: the alternatives lose logins whenever the gap is shorter than the upstream latency;
the middleware loses none.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from _common import (
    WECHAT_URL,
    Scope,
    floats,
    maybe_redis,
    median,
    parser,
    percentile,
    redis_wanted,
    run,
    serving,
    table,
    tally_logs,
    title,
    verdict,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.testing import WeChatEmulator

NAIVE, LOCKDICT, MW_MEMORY, MW_REDIS = (
    "naive",
    "lock+dict",
    "middleware, memory",
    "middleware, redis",
)


# --- the alternatives ------------------------------------------------------------------------


async def exchange(upstream: httpx.AsyncClient, emulator: WeChatEmulator, code: str) -> Any:
    answer = await upstream.get(
        f"{WECHAT_URL}/sns/oauth2/access_token",
        params={
            "appid": emulator.appid,
            "secret": emulator.secret,
            "code": code,
            "grant_type": "authorization_code",
        },
    )
    return answer.json()  # WeChat labels its JSON text/plain


def alternatives_app(upstream: httpx.AsyncClient, emulator: WeChatEmulator) -> Starlette:
    async def naive(request: Request) -> Response:
        data = await exchange(upstream, emulator, request.query_params["code"])
        if data.get("errcode"):
            return JSONResponse(data, status_code=400)
        return JSONResponse({"openid": data["openid"]})

    # The workaround as it is usually written (a threading.Lock and a module-level dict in the
    # Flask original; an asyncio.Lock here): mark, trade, on 40029 look once more, never wait.
    lock = asyncio.Lock()
    results: dict[str, dict[str, Any] | None] = {}

    async def lock_and_dict(request: Request) -> Response:
        code = request.query_params["code"]
        async with lock:
            if code in results:
                stored = results[code]
                if stored is not None:
                    return JSONResponse({"openid": stored["openid"]})
            else:
                results[code] = None  # "I am trading this one"
        data = await exchange(upstream, emulator, code)
        if data.get("errcode") == 40029:
            stored = results.get(code)  # maybe the other request has it by now
            if stored is not None:
                return JSONResponse({"openid": stored["openid"]})
        if data.get("errcode"):
            return JSONResponse(data, status_code=400)
        results[code] = data
        return JSONResponse({"openid": data["openid"]})

    async def middleware(request: Request) -> Response:
        return JSONResponse({"openid": request.scope["wechat"].openid})

    return Starlette(
        routes=[
            Route("/naive", naive),
            Route("/lockdict", lock_and_dict),
            Route("/wechat/callback", middleware),
        ]
    )


class Tracker:
    """Counts the callbacks that reach a server (an aborted #1 may never be sent)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received = 0
        self.active = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.received += 1
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


# --- the phones, in a process of their own ----------------------------------------------------
#
# The phones run in a child process (``--phone``), so that the client side of 20 logins at once
# (httpx, a new connection per callback) does not share an event loop with the servers: on one
# loop, its lag would delay callback #1 past its abort and stretch the 19 ms gap.


async def double_callback(
    client: httpx.AsyncClient, first: str, second: str, abort_after: float, gap: float
) -> tuple[httpx.Response, float, bool]:
    """#1 to ``first``, aborted after ``abort_after``; #2 to ``second``, ``gap`` after #1.
    Returns #2's response, the realized gap, and whether #1 completed before its abort."""
    completed = False

    async def one() -> None:
        nonlocal completed
        with anyio.move_on_after(abort_after):
            await client.get(first)
            completed = True

    async with anyio.create_task_group() as tg:
        start = time.perf_counter_ns()
        tg.start_soon(one)
        await anyio.sleep(max(0.0, gap - (time.perf_counter_ns() - start) / 1e9))
        sent = time.perf_counter_ns()
        response = await client.get(second)
    return response, sent - start, completed


def failure_of(page: httpx.Response) -> str | None:
    try:
        data = page.json()
    except ValueError:
        return f"HTTP {page.status_code}"
    if page.status_code == 200 and isinstance(data, dict) and data.get("openid"):
        return None
    if isinstance(data, dict) and data.get("errcode"):
        return f"errcode {data['errcode']}"
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {page.status_code}"


async def phones(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job's logins, ``concurrency`` phones at once; tally what #2 answered."""
    result: dict[str, Any] = {"identities": 0, "errors": {}, "gaps": [], "first_completed": 0}
    errors: collections.Counter[str] = collections.Counter()
    remaining = iter(job["logins"])
    concurrency = job["concurrency"]
    # Unused over http, but each httpx client would build one (~20 ms of CPU, a stall that
    # delays the callbacks in flight): share it.
    tls = ssl.create_default_context()

    async def phone(delay: float) -> None:
        await anyio.sleep(delay)  # phones start spread over one login's time, as users do
        async with httpx.AsyncClient(verify=tls) as client:  # a client (and pool) per phone
            for first, second in remaining:  # the phones share one iterator
                try:
                    page, realized, completed = await double_callback(
                        client, first, second, job["abort_after"], job["gap"]
                    )
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                result["gaps"].append(realized)
                result["first_completed"] += completed
                failure = failure_of(page)
                if failure is None:
                    result["identities"] += 1
                else:
                    errors[failure] += 1

    async with anyio.create_task_group() as tg:
        for i in range(min(concurrency, len(job["logins"]))):
            tg.start_soon(phone, i * job["stagger"])
    result["errors"] = dict(errors)
    return result


def phone_main() -> int:
    """``--phone``: read one JSON job per line on stdin, answer one JSON result per line."""
    for line in sys.stdin:
        job = json.loads(line)
        print(json.dumps(anyio.run(phones, job, backend="asyncio")), flush=True)
    return 0


class PhoneProcess:
    """The parent's handle on the phone process."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.buffer = b""

    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        await self.process.stdin.send(json.dumps(job).encode() + b"\n")
        while b"\n" not in self.buffer:
            chunk = await self.process.stdout.receive()
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        result: dict[str, Any] = json.loads(line)
        return result


@contextlib.asynccontextmanager
async def phone_process() -> AsyncIterator[PhoneProcess]:
    process = await anyio.open_process(
        [sys.executable, str(Path(__file__).resolve()), "--phone"], stderr=None
    )
    async with process:
        try:
            yield PhoneProcess(process)
        finally:
            await process.stdin.aclose()
            with anyio.fail_after(10):
                await process.wait()


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Row:
    variant: str
    latency: float
    logins: int
    result: dict[str, Any]
    reached: int
    exchanges: int


async def measure(
    latencies: list[float],
    logins: int,
    concurrency: int,
    abort_after: float,
    gap: float,
    redis_url: str | None,
) -> list[Row]:
    emulator = WeChatEmulator()
    rows: list[Row] = []
    async with contextlib.AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator))
        )

        def worker(backend: Any) -> Tracker:
            return Tracker(
                WeChatOAuthMiddleware(
                    alternatives_app(upstream, emulator),
                    appid=emulator.appid,
                    secret=emulator.secret,
                    api_base_url=WECHAT_URL,
                    http_client=upstream,
                    backend=backend,
                )
            )

        one = worker(MemoryBackend())
        servers = {"one": (one, await stack.enter_async_context(serving(one)))}
        if redis_url is not None:
            from asgi_wechat_oauth.backends.redis import RedisBackend

            for name in ("a", "b"):
                backend = RedisBackend(redis_url, prefix="bench-alternatives")
                stack.push_async_callback(backend.aclose)
                app = worker(backend)
                servers[name] = (app, await stack.enter_async_context(serving(app)))
        targets = {
            NAIVE: (("one", "/naive"), ("one", "/naive")),
            LOCKDICT: (("one", "/lockdict"), ("one", "/lockdict")),
            MW_MEMORY: (("one", "/wechat/callback"), ("one", "/wechat/callback")),
        }
        if redis_url is not None:
            targets[MW_REDIS] = (("a", "/wechat/callback"), ("b", "/wechat/callback"))
        phone = await stack.enter_async_context(phone_process())

        def job(variant: str, n: int, conc: int) -> dict[str, Any]:
            (first, path1), (second, path2) = targets[variant]
            pairs = []
            for _ in range(n):
                query = f"?code={emulator.issue_code()}&state=bench"
                pairs.append(
                    (servers[first][1] + path1 + query, servers[second][1] + path2 + query)
                )
            return {
                "logins": pairs,
                "concurrency": conc,
                "abort_after": abort_after,
                "gap": gap,
                "stagger": (gap + emulator.latency) / conc,
            }

        async def settle() -> None:
            with anyio.fail_after(60):
                while any(app.active for app, _ in servers.values()):
                    await anyio.sleep(0.01)

        # A few uncounted logins per variant first: lazy imports, first connections.
        for variant in targets:
            await phone.run(job(variant, 4, 2))
        await settle()
        for latency in latencies:
            emulator.latency = latency
            for variant in targets:
                emulator.reset()
                received = sum(app.received for app, _ in servers.values())
                result = await phone.run(job(variant, logins, concurrency))
                await settle()  # aborted #1s finish their work before anything is counted
                reached = sum(app.received for app, _ in servers.values()) - received
                rows.append(
                    Row(variant, latency, logins, result, reached, emulator.total_exchanges)
                )
    return rows


def main() -> int:
    p = parser(__doc__.split("\n\n")[0], backends=True)
    p.add_argument("--latencies", type=floats, default=[0.02, 0.08, 0.2], help="s (0.02,0.08,0.2)")
    p.add_argument("--logins", type=int, default=500, help="logins per variant and latency")
    p.add_argument("--concurrency", type=int, default=20, help="logins at once (20)")
    p.add_argument("--gap", type=float, default=0.019, help="s from #1 to #2 (0.019)")
    p.add_argument("--abort-after", type=float, default=0.01, help="s until #1 is aborted")
    p.add_argument("--phone", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phone:
        return phone_main()
    if args.quick:
        args.latencies, args.logins, args.concurrency = [0.03], 12, 4
    logs = tally_logs()
    use_redis = redis_wanted(args.backends)

    with maybe_redis(use_redis) as url:
        rows = run(
            lambda: measure(
                args.latencies, args.logins, args.concurrency, args.abort_after, args.gap, url
            )
        )

    title("Against the alternatives: the double callback")
    print(
        f"{args.logins} logins per row, {args.concurrency} at a time; callback #1 aborted after "
        f"{args.abort_after * 1e3:g} ms, #2 sent {args.gap * 1e3:g} ms after #1; apps under "
        "uvicorn (loopback), phones in a child process"
    )
    print()
    table_rows = []
    for row in rows:
        r = row.result
        errors = collections.Counter(r["errors"])
        table_rows.append(
            (
                row.variant,
                f"{row.latency * 1e3:g}",
                row.logins,
                f"{row.reached}/{2 * row.logins}",
                f"{row.exchanges / row.logins:.2f}",
                r["identities"],
                f"{100 * r['identities'] / row.logins:.1f}%",
                f"{median(r['gaps']) / 1e6:.1f}",
                f"{percentile(r['gaps'], 99) / 1e6:.1f}",
                ", ".join(f"{reason} ({n})" for reason, n in errors.most_common()) or "-",
            )
        )
    headers = (
        "variant",
        "latency ms",
        "logins",
        "callbacks in",
        "exch/login",
        "identities",
        "share",
        "gap p50",
        "gap p99",
        "what the others saw",
    )
    print(table(headers, table_rows))
    print()
    print(
        "callbacks in: requests that reached the app (2 per login when every #1 was sent).\n"
        "exch/login: calls to sns/oauth2/access_token per login. share: logins that ended with\n"
        "an identity (#2 answered 200 with the openid). gap: realized ms between sending #1\n"
        "and #2 (event-loop lag shows here). errcode 40163: 'code been used', the answer WeChat\n"
        "gives the second exchange of a code; the lock+dict port re-reads only on 40029."
    )
    early = sum(r.result["first_completed"] for r in rows)
    if early:
        print(f"note: callback #1 was answered before its abort in {early} of the logins")
    print(logs.summary())
    middleware = [r for r in rows if r.variant.startswith("middleware")]
    others = [r for r in rows if not r.variant.startswith("middleware")]
    lossless = all(r.result["identities"] == r.logins for r in middleware)
    one_exchange = all(r.exchanges == r.logins for r in middleware)
    lossy = [r for r in others if r.latency > args.gap and r.result["identities"] < r.logins]
    expected_losses = [r for r in others if r.latency > args.gap]
    ok = lossless and one_exchange and len(lossy) == len(expected_losses)
    worst = min((100 * r.result["identities"] / r.logins for r in others), default=100.0)
    print(
        verdict(
            ok,
            f"middleware: {'no login lost' if lossless else 'LOGINS LOST'}, "
            f"{'1 exchange per login' if one_exchange else 'MORE THAN 1 EXCHANGE PER LOGIN'}; "
            f"alternatives lost logins in {len(lossy)} of {len(expected_losses)} rows where the "
            f"latency exceeds the gap (worst: {worst:.1f}% of logins kept)",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
