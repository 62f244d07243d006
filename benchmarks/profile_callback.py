"""Profile of the callback hot path, and the cost of its pieces.

1. cProfile over ``--logins`` successful logins (distinct codes, ``MemoryBackend``, the
   emulator in-process with no latency, 20 at a time, raw ASGI calls): where the time goes, by
   component and by function. cProfile's own overhead inflates small functions; the shares, not
   the absolute times, are the point.
2. The pieces the profile points at, timed without a profiler (median of repeats), in the same
   run: the middleware's own steps, the HTTP call to WeChat as the client makes it and with a
   pre-encoded URL, and the memory a stored 40029 result holds with and without the traceback
   of the exception it was raised as.
"""

from __future__ import annotations

import cProfile
import gc
import hashlib
import pstats
import secrets
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
from _common import (
    CALLBACK,
    WECHAT_URL,
    call,
    callback_query,
    emulated_middleware,
    http_scope,
    median,
    parser,
    run,
    table,
    tally_logs,
    title,
)

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import Backend, Claim, MemoryBackend, Outcome
from asgi_wechat_oauth.testing import WeChatEmulator

COMPONENTS = (
    ("WeChat emulator (testing/, starlette)", ("/asgi_wechat_oauth/testing/", "/starlette/")),
    ("asgi_wechat_oauth", ("/asgi_wechat_oauth/",)),
    ("httpx, httpcore", ("/httpx/", "/httpcore/")),
    ("anyio", ("/anyio/",)),
    ("asyncio", ("/asyncio/",)),
    ("stdlib (urllib, json, re, ...)", ("/lib/python3",)),
    ("builtins", ("~",)),
)


def component(filename: str) -> str:
    for name, markers in COMPONENTS:
        if any(marker in filename for marker in markers):
            return name
    return "other"


async def logins(app: WeChatOAuthMiddleware, codes: list[str], concurrency: int) -> None:
    remaining = iter(codes)

    async def worker() -> None:
        for code in remaining:
            reply = await call(app, http_scope(CALLBACK, callback_query(code)))
            if reply.status not in (200, 400):
                raise RuntimeError(f"unexpected answer {reply.status}: {reply.body!r}")

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)


async def profile(n: int) -> pstats.Stats:
    emulator = WeChatEmulator()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator)) as upstream:
        app = emulated_middleware(emulator, upstream, MemoryBackend())
        await logins(app, [emulator.issue_code() for _ in range(300)], 20)  # warm-up
        codes = [emulator.issue_code() for _ in range(n)]
        profiler = cProfile.Profile()
        profiler.enable()
        await logins(app, codes, 20)
        profiler.disable()
        await app.aclose()
    return pstats.Stats(profiler)


def report_profile(stats: pstats.Stats, n: int) -> None:
    raw: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    by_component: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in raw.items():
        name = component(filename)
        by_component[name] = by_component.get(name, 0.0) + tottime
    print(f"cProfile, {n} logins: {total:.2f} s of own time in all (profiler overhead included)")
    print()
    rows = [
        (name, f"{100 * t / total:.1f}%", f"{1e6 * t / n:.0f}")
        for name, t in sorted(by_component.items(), key=lambda kv: -kv[1])
    ]
    print(table(("component (own time)", "share", "µs/login"), rows))
    print()

    def label(key: tuple[str, int, str]) -> str:
        filename, line, func = key
        if filename == "~":
            return func
        short = filename.split("site-packages/")[-1].split("/src/")[-1].split("/lib/")[-1]
        return f"{short}:{line}({func})"

    top = sorted(raw.items(), key=lambda kv: -kv[1][2])[:15]
    rows = [
        (label(key), f"{v[1] / n:.1f}", f"{100 * v[2] / total:.1f}%", component(key[0]))
        for key, v in top
    ]
    print(table(("function (top 15 by own time)", "calls/login", "own", "component"), rows))
    print()
    ours = [
        (key, v)
        for key, v in raw.items()
        if "/asgi_wechat_oauth/" in key[0] and "/testing/" not in key[0]
    ]
    ours.sort(key=lambda kv: -kv[1][3])
    rows = [(label(key), f"{1e6 * v[3] / n:.0f}", f"{1e6 * v[2] / n:.1f}") for key, v in ours[:12]]
    print(table(("the package's functions (top 12 by cumulative)", "cum µs/login", "own µs"), rows))
    print()


# --- the pieces, without a profiler ------------------------------------------------------------


async def per_call(fn: Callable[[], Awaitable[Any]], n: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean ns per call over ``n`` calls."""
    samples = []
    for _ in range(repeats + 1):
        gc.collect()
        start = time.perf_counter_ns()
        for _ in range(n):
            await fn()
        samples.append((time.perf_counter_ns() - start) / n)
    return median(samples[1:])


class TracebackFree:
    """A delegating backend that stores errors without the traceback they were raised with
    (what the "stored error" row would cost if the package dropped it)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.lease_ttl = inner.lease_ttl

    async def claim(self, key: str) -> Claim:
        return await self.inner.claim(key)

    async def complete(
        self, key: str, lease: str, outcome: Outcome, *, ttl: float
    ) -> Outcome | None:
        if isinstance(outcome, BaseException):
            outcome = outcome.with_traceback(None)
        return await self.inner.complete(key, lease, outcome, ttl=ttl)

    async def wait(self, key: str, *, timeout: float) -> Outcome | None:
        return await self.inner.wait(key, timeout=timeout)

    async def recover(self, key: str, *, timeout: float) -> Outcome | None:
        return await self.inner.recover(key, timeout=timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def stored_bytes(
    emulator: WeChatEmulator, upstream: httpx.AsyncClient, backend: Backend, n: int
) -> float:
    """Bytes still allocated per 40029 result stored, after ``n`` callbacks with codes WeChat
    never issued (tracemalloc; the emulator's own tables are cleared first)."""
    app = emulated_middleware(emulator, upstream, backend)
    await logins(app, [secrets.token_hex(16) for _ in range(50)], 10)
    emulator.reset()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    await logins(app, [secrets.token_hex(16) for _ in range(n)], 10)
    emulator.reset()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    await app.aclose()
    return (after - before) / n


async def pieces(scale: float) -> list[tuple[str, float, str]]:
    """The pieces' costs; ``scale`` shrinks the loop counts (``--quick``)."""

    def k(n: int) -> int:
        return max(int(n * scale), 20)

    rows: list[tuple[str, float, str]] = []
    query = callback_query("0123456789abcdef0123456789abcdef")

    try:
        from asgi_wechat_oauth._core.callback import parse_callback_query
    except ImportError:  # a private module: renamed since this script was written
        pass
    else:

        async def parse() -> None:
            parse_callback_query(query)

        rows.append(("parse_callback_query", await per_call(parse, k(20_000)), "each callback"))

    async def digest() -> None:
        hashlib.sha256(b"wxemulated0000001:0123456789abcdef0123456789abcdef").hexdigest()

    rows.append(("sha256 of appid:code", await per_call(digest, k(20_000)), "each callback"))

    async def scope() -> None:
        with anyio.move_on_after(10):
            pass

    scoped = await per_call(scope, k(20_000))
    rows.append(("anyio.move_on_after enter+exit", scoped, "2 per leader"))
    try:
        from asgi_wechat_oauth._core.detached import DetachedRunner
    except ImportError:
        pass
    else:
        runner = DetachedRunner()

        async def nothing(answer: Any) -> None:
            pass

        async def detached() -> None:
            await runner.run(nothing)

        rows.append(
            ("DetachedRunner.run (task + shield)", await per_call(detached, k(20_000)), "1/leader")
        )

    emulator = WeChatEmulator()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator)) as upstream:
        params = {
            "appid": emulator.appid,
            "secret": emulator.secret,
            "code": "0123456789abcdef0123456789abcdef",  # never issued: a 40029 answer
            "grant_type": "authorization_code",
        }
        url = f"{WECHAT_URL}/sns/oauth2/access_token"
        encoded = f"{url}?{urlencode(params)}"

        async def with_params() -> None:
            await upstream.get(url, params=params)

        async def pre_encoded() -> None:
            await upstream.get(encoded)

        a = b = 0.0
        for _ in range(3):  # interleaved: the two figures are compared
            a += await per_call(with_params, k(1000), repeats=1)
            b += await per_call(pre_encoded, k(1000), repeats=1)
        emulator.reset()
        rows.append(("httpx GET to the emulator, params=dict", a / 3, "each WeChat call"))
        rows.append(("httpx GET to the emulator, pre-encoded URL", b / 3, "each WeChat call"))

        with_tb = await stored_bytes(emulator, upstream, MemoryBackend(), k(2000))
        without = await stored_bytes(emulator, upstream, TracebackFree(MemoryBackend()), k(2000))
        rows.append(("stored 40029 result, as stored now (bytes)", with_tb, "each entry"))
        rows.append(("stored 40029 result, traceback dropped (bytes)", without, "each entry"))
    return rows


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--logins", type=int, default=5000, help="logins profiled (5000)")
    args = p.parse_args()
    if args.quick:
        args.logins = 300
    tally_logs()

    title("Profile: the callback hot path (MemoryBackend, successful logins)")
    report_profile(run(lambda: profile(args.logins)), args.logins)
    rows = run(lambda: pieces(0.05 if args.quick else 1.0))
    print("The pieces, without the profiler (median of repeats, same run)")
    print()
    shown = [
        (name, f"{value:.0f}" if "bytes" in name else f"{value / 1e3:.2f}", per)
        for name, value, per in rows
    ]
    print(table(("piece", "µs (or bytes)", "how often"), shown))
    values = {name: value for name, value, _ in rows}
    params = values["httpx GET to the emulator, params=dict"]
    encoded = values["httpx GET to the emulator, pre-encoded URL"]
    with_tb = values["stored 40029 result, as stored now (bytes)"]
    without = values["stored 40029 result, traceback dropped (bytes)"]
    print()
    print(
        f"finding: passing params= to httpx costs {(params - encoded) / 1e3:.0f} µs more per "
        f"WeChat call than a pre-encoded URL ({100 * (params - encoded) / params:.0f}% of "
        "the call)."
    )
    print(
        f"finding: a stored 40029 result holds {with_tb:.0f} bytes, {without:.0f} without the "
        f"traceback ({with_tb / max(without, 1):.1f}x): the traceback keeps the frames of the "
        "exchange (the httpx response, the request parameters) alive for result_ttl."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
