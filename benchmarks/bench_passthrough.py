"""Pass-through cost: what the middleware adds to requests that are not the callback.

In-process ASGI calls (no sockets, no HTTP client) for ``/hello``, a path the middleware does
not intercept, through: nothing (the bare app); a no-op pure ASGI middleware (the floor for any
middleware); a pure ASGI middleware that only compares ``scope["path"]`` with one string (the
floor for any middleware that looks at the path); the same plus the ``root_path`` suffix
check an app served under a prefix needs; a set of both spellings (with and without a trailing
slash) plus that check, the least that matches paths as the middleware does;
``WeChatOAuthMiddleware``, and again with ``login_path`` set (every request is then told the
login path, for ``login_url()``); a no-op Starlette ``BaseHTTPMiddleware``. Two apps behind
them: a raw ASGI app that sends a 2-byte answer (the harshest denominator: the middleware's
dispatch is all there is to see) and a one-route Starlette app (what a trivial real app
costs). Each round times a batch of calls of every
variant, in a rotating order; the tables show the median over rounds of ns per request, and
the ratios are the median of each round's ratio (``_common.paired_ratio``: the VM's speed
drifts between rounds by more than the differences measured here), all in the same run.
The rounds are shared among five processes, run one after another, and pooled: as pyperf
does, since a process's hash seed and memory layout move ratios this small by a per cent or
two, the same way for all of that process's rounds.
The middleware remembers the app's first 512 paths, so that one of those costs one set
look-up. The first two tables reuse one scope, so a path's hash is computed once: that
flatters every variant that looks paths up in a set. Three more tables build each request's
scope as a server does: ``/hello`` in a new string every time, the same under a
``root_path`` (where the memory also skips the suffix test), and a path never seen before
every time (the memory cannot help there: one more set look-up).

Target (issue 13): at most 1.05x the path-compare floor, and several times faster than
BaseHTTPMiddleware.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import time
from typing import Any

from _common import (
    Scope,
    fmt_ns,
    http_scope,
    in_processes,
    median,
    paired_ratio,
    parser,
    rotate,
    run,
    table,
    target_line,
    title,
    verdict,
)
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_wechat_oauth import WeChatOAuthMiddleware

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
}
_BODY = {"type": "http.response.body", "body": b"ok"}
_REQUEST = {"type": "http.request", "body": b"", "more_body": False}

NOOP, FLOOR, ROOTED, SPELLED, MIDDLEWARE, MARKING, BASE_HTTP = (
    "no-op ASGI middleware",
    "path-compare floor",
    "floor + root_path",
    "spellings + root_path",
    "WeChatOAuthMiddleware",
    "  with login_path",
    "no-op BaseHTTPMiddleware",
)
#: How the scopes of a batch are made: one scope reused (the path's hash is then computed once,
#: which flatters set look-ups); ``/hello`` rebuilt for each request as a server builds it (a
#: new string each time); the same under ``root_path="/app"`` (``/app/hello``, as uvicorn
#: passes it); a path never seen before for each request.
REUSED, REBUILT, PREFIXED, NEW = "reused", "rebuilt", "prefixed", "new"
#: The variants measured in the tables of scopes built as a server builds them.
SERVER_VARIANTS = ("bare app", NOOP, FLOOR, SPELLED, MIDDLEWARE)


async def raw_app(scope: Scope, receive: Any, send: Any) -> None:
    await send(_START)
    await send(_BODY)


async def hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


def starlette_app() -> Any:
    return Starlette(routes=[Route("/hello", hello)])


class NoopASGIMiddleware:
    """The least a middleware can cost: one more coroutine frame."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class PathCompareMiddleware:
    """A no-op that first compares the path with one string: no middleware that intercepts a
    path can do less (it does not even check the scope type or ``root_path``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.path = "/wechat/callback"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == self.path:
            raise AssertionError("not reached in this benchmark")
        await self.app(scope, receive, send)


class RootPathCompareMiddleware(PathCompareMiddleware):
    """The floor, plus what an app served under a prefix needs: the path is also ours when it
    ends with ours behind ``root_path`` (the one check the middleware adds to the floor's,
    besides a set of spellings instead of one string)."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == self.path or (scope["root_path"] and path.endswith(self.path)):
            raise AssertionError("not reached in this benchmark")
        await self.app(scope, receive, send)


class SpelledRootPathMiddleware(PathCompareMiddleware):
    """The least a middleware can do that matches its path as the middleware does: spelled
    with or without a trailing slash (a set look-up), or behind ``root_path``. It still
    ignores lifespan scopes (no path) and a missing ``root_path``."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.spellings = (self.path, self.path + "/")
        self.exact = frozenset(self.spellings)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope["path"]
        if path in self.exact or (scope["root_path"] and path.endswith(self.spellings)):
            raise AssertionError("not reached in this benchmark")
        await self.app(scope, receive, send)


class NoopHTTPMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Any, call_next: Any) -> Any:
        return await call_next(request)


def variants(app: Any) -> dict[str, Any]:
    credentials = {"appid": "wxbench0000000001", "secret": "bench-secret-0123456789abcdef"}
    return {
        "bare app": app,
        NOOP: NoopASGIMiddleware(app),
        FLOOR: PathCompareMiddleware(app),
        ROOTED: RootPathCompareMiddleware(app),
        SPELLED: SpelledRootPathMiddleware(app),
        MIDDLEWARE: WeChatOAuthMiddleware(app, **credentials),
        # login_path set: every request is told it, for login_url() (no state check here).
        MARKING: WeChatOAuthMiddleware(
            app, login_path="/wechat/login", verify_state=False, **credentials
        ),
        BASE_HTTP: NoopHTTPMiddleware(app),
    }


async def receive() -> dict[str, Any]:
    return _REQUEST


async def send(message: dict[str, Any]) -> None:
    pass


def scopes(n: int, made: str) -> list[Scope]:
    """``n`` scopes, made as ``made`` says (REUSED: none of the variants changes a scope)."""
    base = http_scope("/hello")
    if made == REUSED:
        return [base] * n
    if made in (REBUILT, PREFIXED):
        root = "/app" if made == PREFIXED else ""
        parts = [root, "/hel", "lo"]
        return [{**base, "path": "".join(parts), "root_path": root} for _ in range(n)]
    stamp = time.perf_counter_ns()
    return [{**base, "path": f"/items/{stamp}/{i}"} for i in range(n)]


async def batch(app: Any, n: int, made: str = REUSED) -> float:
    """ns per call over ``n`` sequential calls. The loop's own cost is in every variant, the
    bare app's row included."""
    calls = scopes(n, made)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for scope in calls:
            await app(scope, receive, send)
        return (time.perf_counter_ns() - start) / n
    finally:
        gc.enable()


async def measure(
    app: Any, requests: int, rounds: int, only: tuple[str, ...] = (), made: str = REUSED
) -> dict[str, list[float]]:
    apps = {name: v for name, v in variants(app).items() if not only or name in only}
    # BaseHTTPMiddleware is ~100x slower: smaller batches keep its rounds as long as the others'.
    sizes = {name: max(requests // 20, 20) if name == BASE_HTTP else requests for name in apps}
    for name, variant in apps.items():  # warm-up: first-call costs, caches, the allocator
        await batch(variant, max(sizes[name] // 5, 10), made)
    per_request: dict[str, list[float]] = {name: [] for name in apps}
    for r in range(rounds):
        for name in rotate(list(apps), r):
            per_request[name].append(await batch(apps[name], sizes[name], made))
    return per_request


class Report:
    """One table's figures: medians of ns per request, and ratios of one variant to another
    as the median of their per-round ratios."""

    def __init__(self, per_request: dict[str, list[float]]) -> None:
        self.per_request = per_request
        self.median = {name: median(v) for name, v in per_request.items()}

    def ratio(self, name: str, to: str) -> float:
        return paired_ratio(self.per_request[name], self.per_request[to])

    def over(self, name: str, to: str) -> float:
        return self.median[name] - self.median[to]


def report(label: str, per_request: dict[str, list[float]]) -> Report:
    figures = Report(per_request)
    rows = [
        (
            name,
            f"{value:.0f}",
            f"{min(per_request[name]):.0f}-{max(per_request[name]):.0f}",
            f"{figures.over(name, 'bare app'):+.0f}",
            f"{figures.ratio(name, NOOP):.3f}x",
            f"{figures.ratio(name, FLOOR):.3f}x",
        )
        for name, value in figures.median.items()
    ]
    print(label)
    print()
    headers = ("variant", "ns/request", "min-max", "over bare", "vs no-op ASGI", "vs floor")
    print(table(headers, rows))
    print()
    return figures


#: The tables: (title, app behind, how scopes are made, variants (all when empty), share of
#: the rounds).
TABLES: dict[str, tuple[str, str, str, tuple[str, ...], int]] = {
    "raw": ("Behind: a raw ASGI app", "raw", REUSED, (), 1),
    "starlette": ("Behind: a one-route Starlette app", "starlette", REUSED, (), 1),
    "rebuilt": (
        "Behind: a raw ASGI app, /hello in a new string for every request (as from a server)",
        "raw",
        REBUILT,
        SERVER_VARIANTS,
        2,
    ),
    "prefixed": (
        "Behind: a raw ASGI app under root_path /app, /app/hello in a new string for every request",
        "raw",
        PREFIXED,
        SERVER_VARIANTS,
        2,
    ),
    "new": (
        "Behind: a raw ASGI app, a path never seen before for every request",
        "raw",
        NEW,
        SERVER_VARIANTS,
        2,
    ),
}


def measure_tables(requests: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Every table, in this process."""
    figures = {}
    for name, (_, behind, made, only, share) in TABLES.items():
        app = raw_app if behind == "raw" else starlette_app()
        figures[name] = run(
            functools.partial(measure, app, requests, max(rounds // share, 3), only, made)
        )
    return figures


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1_000, help="calls per batch (1000)")
    p.add_argument("--rounds", type=int, default=205, help="rounds of all variants (205)")
    p.add_argument("--processes", type=int, default=5, help="processes sharing the rounds (5)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(measure_tables(args.requests, args.rounds)))
        return 0
    if args.quick:
        args.requests, args.rounds, args.processes = 400, 3, 1
    processes = max(args.processes, 1)
    per_process = max(-(-args.rounds // processes), 3)

    title("Pass-through cost (a request that is not the callback)")
    print(
        f"{per_process * processes} rounds in {processes} processes, {args.requests} "
        f"in-process ASGI calls per variant and round ({max(args.requests // 20, 20)} for "
        "BaseHTTPMiddleware; the tables of scopes built for each request: half the rounds), "
        "asyncio; ns: medians of the rounds; ratios: medians of the rounds' ratios"
    )
    print()
    worker_args = [f"--requests={args.requests}", f"--rounds={per_process}"]
    figures = in_processes(__file__, worker_args, processes)
    raw, star, rebuilt, prefixed, new = (
        report(TABLES[name][0], figures[name])
        for name in ("raw", "starlette", "rebuilt", "prefixed", "new")
    )

    raw_ratio, star_ratio = raw.ratio(MIDDLEWARE, NOOP), star.ratio(MIDDLEWARE, NOOP)
    floor_ratio = raw.ratio(FLOOR, NOOP)
    speedup = min(raw.ratio(BASE_HTTP, MIDDLEWARE), star.ratio(BASE_HTTP, MIDDLEWARE))
    print(
        f"WeChatOAuthMiddleware adds {fmt_ns(raw.over(MIDDLEWARE, NOOP))} per request over a "
        f"no-op ASGI middleware; comparing the path with one string alone adds "
        f"{fmt_ns(raw.over(FLOOR, NOOP))} ({floor_ratio:.3f}x). BaseHTTPMiddleware adds "
        f"{fmt_ns(raw.over(BASE_HTTP, 'bare app'))}."
    )
    raw_floor, star_floor = raw.ratio(MIDDLEWARE, FLOOR), star.ratio(MIDDLEWARE, FLOOR)
    ok = max(raw_floor, star_floor) <= 1.05 and speedup >= 3
    rooted, spelled = raw.ratio(MIDDLEWARE, ROOTED), raw.ratio(MIDDLEWARE, SPELLED)
    least = raw.ratio(SPELLED, FLOOR)
    text = (
        f"{raw_floor:.3f}x the path-compare floor around a raw ASGI app, {star_floor:.3f}x "
        f"around a Starlette app (target <= 1.05x); {rooted:.3f}x "
        f"the floor with the root_path check a prefixed app needs, {spelled:.3f}x the least "
        f"that matches both spellings under a root_path (itself {least:.3f}x the floor); "
        "against the "
        f"no-op ASGI middleware {raw_ratio:.3f}x and {star_ratio:.3f}x (a lone path compare "
        f"is {floor_ratio:.3f}x); "
        f">= {speedup:.0f}x faster than BaseHTTPMiddleware; with login_path "
        f"{raw.ratio(MARKING, FLOOR):.3f}x the floor. As from a server (a new string for every "
        f"request, no hash computed before): {rebuilt.ratio(MIDDLEWARE, FLOOR):.3f}x the floor "
        f"for /hello (the least matcher {rebuilt.ratio(SPELLED, FLOOR):.3f}x), "
        f"{prefixed.ratio(MIDDLEWARE, FLOOR):.3f}x for /app/hello under a root_path (the least "
        f"matcher {prefixed.ratio(SPELLED, FLOOR):.3f}x), "
        f"{new.ratio(MIDDLEWARE, FLOOR):.3f}x for paths never seen before (the least matcher "
        f"{new.ratio(SPELLED, FLOOR):.3f}x)"
    )
    print(target_line(5, ok, text))
    print(verdict(ok, text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
