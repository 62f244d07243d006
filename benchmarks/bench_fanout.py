"""Fan-out: N concurrent callbacks carrying one code.

Every trial issues a fresh code and starts N raw ASGI calls of the callback with it at once.
A gate in front of the in-process WeChat emulator holds the one ``sns/oauth2/access_token``
call until every other request is parked waiting for it (in the leader's process: on its
flight; in another worker: subscribed, and its CHECK answered), then lets it through. Redis
runs two middleware instances ("workers") on separate RedisBackends and connections, the
requests alternating between them, so half the followers are woken across workers by pub/sub.

Measured with no change to the package: the leader's result is the moment its trade returned
(exchange done, identity built; a wrapper on the instance); a follower is released when its
request reaches the app behind the middleware with the identity. "last response" is when the
last follower's answer (status and body) has been sent, from the same origin. Both are timed
alike for the baseline.
Upstream exchanges are counted by the emulator.

Targets: exactly 1 exchange per code; last follower released <= 1 ms after the leader's
result with MemoryBackend, <= one Redis round trip + 1 ms with RedisBackend (pub/sub, no
polling).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from _common import (
    CALLBACK,
    REACHED,
    RESULT,
    Gate,
    MinimalSingleFlight,
    Reply,
    TimingBackend,
    call,
    callback_query,
    counting_redis,
    emulated_middleware,
    fmt_ms,
    http_scope,
    ints,
    maybe_redis,
    median,
    openid_app,
    parked,
    parser,
    percentile,
    raise_fd_limit,
    redis_rtt_ns,
    redis_wanted,
    request_no,
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

MINIMAL = "minimal"


@dataclass
class Rig:
    """One backend kind: its middleware instances, their timing wrappers, their clients."""

    name: str
    apps: list[WeChatOAuthMiddleware]
    timings: list[Any]  # TimingBackend, or the MinimalSingleFlight that records the same
    redis_clients: list[Any] = field(default_factory=list)
    #: Seconds from "parked" to opening the gate. Without a counting client the CHECKs cannot
    #: be seen, so the rig waits longer for them.
    settle: float = 0.002


@dataclass
class Trial:
    exchanges: int
    followers: int
    woken: list[float]  # ns from the leader's result to each follower reaching the app
    responses: list[float]  # ns from the leader's result to each follower's answer
    empty_waits: int
    statuses: set[int]
    ok_answers: int
    fell_back: bool


async def trial(
    rig: Rig, emulator: WeChatEmulator, gate: Gate, n: int, parked_timeout: float = 20.0
) -> Trial:
    code = emulator.issue_code()
    query = callback_query(code)
    gate.close()
    RESULT.reset()
    for timing in rig.timings:
        timing.reset()
    checks_before = sum(c.answered["CHECK"] for c in rig.redis_clients)
    replies: list[Reply] = [Reply() for _ in range(n)]
    REACHED.clear()

    async def one(i: int) -> None:
        request_no.set(i)
        replies[i] = await call(rig.apps[i % len(rig.apps)], http_scope(CALLBACK, query))

    def all_parked() -> bool:
        if gate.arrived < 1 or sum(parked(app) for app in rig.apps) < n - 1:
            return False
        checks = sum(c.answered["CHECK"] for c in rig.redis_clients) - checks_before
        # A follower in the leader's own process joins its flight with no round trip: only
        # the followers in the other workers CHECK.
        remote = sum(parked(a) for a, t in zip(rig.apps, rig.timings, strict=True) if t.leader < 0)
        return not rig.redis_clients or checks >= remote

    def degraded() -> bool:  # a RedisBackend fell back to local dedupe: nobody will park
        return any(not getattr(t.inner, "available", True) for t in rig.timings)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
        with anyio.move_on_after(parked_timeout):
            while not all_parked() and not (gate.arrived and degraded()):
                await anyio.sleep(0.0005)
        await anyio.sleep(rig.settle if all_parked() else 0.1)  # "answered" to "awaiting"
        gate.open()

    done = RESULT.ns
    leader = next(t.leader for t in rig.timings if t.leader >= 0)
    return Trial(
        exchanges=emulator.exchange_count(code),
        followers=n - 1,
        woken=[at - done for i, at in REACHED.items() if i != leader],
        responses=[r.done_ns - done for i, r in enumerate(replies) if i != leader],
        empty_waits=sum(t.empty_waits for t in rig.timings),
        statuses={r.status for r in replies},
        ok_answers=sum(r.status == 200 for r in replies),
        fell_back=any(t.fell_back for t in rig.timings),
    )


def redis_rig(
    name: str, url: str, upstream: httpx.AsyncClient, emulator: WeChatEmulator, *, own: bool
) -> Rig:
    """Two workers: two middleware instances, each on its own RedisBackend and connections.

    ``own``: ``RedisBackend(url)`` with the client and pool it builds itself; otherwise a
    counting client on a ``BlockingConnectionPool(max_connections=50)`` (the backend's own
    default size), which lets the trial see when every follower's CHECK has been answered."""
    from asgi_wechat_oauth.backends.redis import RedisBackend

    prefix = f"bench-{name}"
    if own:
        timings = [TimingBackend(RedisBackend(url, prefix=prefix)) for _ in range(2)]
        return Rig(
            name, [emulated_middleware(emulator, upstream, t) for t in timings], timings, [], 0.1
        )
    clients = [counting_redis(url, max_connections=50) for _ in range(2)]
    timings = [TimingBackend(RedisBackend(c, prefix=prefix)) for c in clients]
    return Rig(
        name, [emulated_middleware(emulator, upstream, t) for t in timings], timings, clients
    )


async def close_rig(rig: Rig) -> None:
    for app in rig.apps:
        await app.aclose()
    for client in rig.redis_clients:
        await client.aclose()


async def measure(
    sizes: list[int],
    rounds: int,
    redis_url: str | None,
    own_client_trials: int,
    with_memory: bool = True,
) -> dict[str, Any]:
    raise_fd_limit()
    emulator = WeChatEmulator()
    gate = Gate(emulator)
    results: dict[tuple[str, int], list[Trial]] = {}
    own_client: list[Trial] = []
    rtt = await redis_rtt_ns(redis_url) if redis_url else None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate)) as upstream:
        memory = TimingBackend(MemoryBackend())
        minimal = MinimalSingleFlight(openid_app, emulator, upstream)
        rigs = [
            Rig("memory", [emulated_middleware(emulator, upstream, memory)], [memory]),
            Rig(MINIMAL, [minimal], [minimal]),  # the baseline: a dict and an Event
        ]
        if not with_memory:
            rigs.clear()
        if redis_url is not None:
            rigs.append(redis_rig("redis", redis_url, upstream, emulator, own=False))
        try:
            cells = [(rig, n) for n in sizes for rig in rigs]
            for r in range(rounds + 1):  # round 0 warms up (connections, scripts, caches)
                for rig, n in rotate(cells, r):
                    result = await trial(rig, emulator, gate, n)
                    if r > 0:
                        results.setdefault((rig.name, n), []).append(result)
        finally:
            for rig in rigs:
                await close_rig(rig)
        # RedisBackend(url) with the client it builds itself, at the largest N: each worker
        # has more commands in flight than its pool has connections (a burst that must wait
        # for a connection, not be taken for an outage). Fresh workers each trial, so that
        # one trial's fallback, if any, does not leak into the next.
        for _ in range(own_client_trials if redis_url is not None else 0):
            assert redis_url is not None
            rig = redis_rig("own", redis_url, upstream, emulator, own=True)
            try:
                own_client.append(await trial(rig, emulator, gate, max(sizes), 5.0))
            finally:
                await close_rig(rig)
    return {"results": results, "rtt": rtt, "own_client": own_client}


def main() -> int:
    p = parser(__doc__.split("\n\n")[0], backends=True)
    p.add_argument("--sizes", type=ints, default=[2, 10, 100, 1000], help="N (2,10,100,1000)")
    p.add_argument("--rounds", type=int, default=15, help="trials per N and backend (15)")
    p.add_argument(
        "--own-client-trials",
        type=int,
        default=3,
        help="trials at the largest N with RedisBackend(url) and its own client (3)",
    )
    args = p.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.own_client_trials = [2, 10], 2, 1
    logs = tally_logs()
    use_redis = redis_wanted(args.backends)
    backends = [b for b in args.backends if b != "redis" or use_redis]

    with maybe_redis(use_redis) as url:
        measured = run(
            lambda: measure(
                args.sizes, args.rounds, url, args.own_client_trials, "memory" in backends
            )
        )
    results: dict[tuple[str, int], list[Trial]] = {
        k: v for k, v in measured["results"].items() if k[0] in (*backends, MINIMAL)
    }
    rtt: float | None = measured["rtt"]
    own_client: list[Trial] = measured["own_client"]

    title("Fan-out: N concurrent callbacks with one code")
    print(
        f"{args.rounds} trials per row (after one warm-up round), rows interleaved; "
        "times in ms from the leader's result (its trade returned)"
    )
    if rtt is not None:
        print(f"Redis round trip (PING from this process, median, same run): {fmt_ms(rtt)} ms")
    print()
    rows, misses = [], []
    baseline = {
        n: median([max(t.woken) for t in trials if t.woken])
        for (name, n), trials in results.items()
        if name == MINIMAL
    }
    for (name, n), trials in sorted(results.items()):
        exchanges = sorted({t.exchanges for t in trials})
        woken = [w for t in trials for w in t.woken]
        last_wake = median([max(t.woken) for t in trials if t.woken])
        last_response = median([max(t.responses) for t in trials if t.responses])
        followers = sum(t.followers for t in trials)
        target = 1e6 if name == "memory" else (rtt or 0) + 1e6
        answered = sum(t.ok_answers for t in trials)
        row_ok = exchanges == [1] and answered == n * len(trials) and len(woken) == followers
        if name == MINIMAL:  # the baseline: no target of its own
            mark = "baseline" if row_ok else "FAILED"
        else:
            mark = "ok" if row_ok and last_wake <= target else "MISSED"
        if mark not in ("ok", "baseline"):
            misses.append(f"{name} N={n}")
        rows.append(
            (
                name,
                n,
                len(trials),
                "/".join(map(str, exchanges)),
                f"{answered}/{n * len(trials)}",
                f"{len(woken)}/{followers}",
                fmt_ms(percentile(woken, 50)),
                fmt_ms(percentile(woken, 99)),
                fmt_ms(max(woken)),
                fmt_ms(last_wake),
                f"{last_wake / max(n - 1, 1) / 1e3:.1f}",
                fmt_ms(last_response),
                f"{last_wake / baseline[n]:.2f}x" if baseline.get(n) else "-",
                "-" if name == MINIMAL else fmt_ms(target),
                mark,
            )
        )
    headers = (
        "backend",
        "N",
        "trials",
        "exchanges",
        "200s",
        "woken",
        "p50",
        "p99",
        "max",
        "last (med)",
        "µs/follower",
        "last resp",
        "vs minimal",
        "target",
        "",
    )
    print(table(headers, rows))
    print()
    print(
        "exchanges: upstream exchanges per code, every trial. 200s: answers with the identity.\n"
        "woken: followers that reached the app with the identity / followers (all parked on\n"
        "the flight before it was let through). p50, p99, max: each follower's release (it\n"
        "reached the app), pooled over the trials. last (med): the median over trials of the\n"
        "last follower's release: the figure the target is about. µs/follower: last (med) /\n"
        "(N-1). last resp: the same for the last follower's answer. vs minimal: last (med)\n"
        "against the minimal single flight's (a dict and an Event, same client and app; the\n"
        "baseline, one process). target: 1 ms (memory), one\n"
        "Redis round trip + 1 ms (redis). redis: two workers (middleware instances), each a\n"
        "RedisBackend given a counting client on a BlockingConnectionPool(max_connections=50)."
    )
    own_ok = True
    if own_client:
        n = max(args.sizes)
        print()
        print(
            f"RedisBackend(url), with the client and pool it builds itself: N={n}, two "
            "workers (fresh each trial)"
        )
        print()
        rows = [
            (
                i + 1,
                t.exchanges,
                f"{t.ok_answers}/{n}",
                "yes" if t.fell_back else "no",
            )
            for i, t in enumerate(own_client)
        ]
        print(table(("trial", "exchanges", "200s", "fell back to local"), rows))
        own_ok = all(t.exchanges == 1 and t.ok_answers == n and not t.fell_back for t in own_client)
        if not own_ok:
            misses.append(f"RedisBackend(url) N={n}")
    one_exchange = all(t.exchanges == 1 for ts in results.values() for t in ts)
    ok = not misses
    text = (
        f"1 exchange per code in every trial: {'yes' if one_exchange else 'NO'}"
        + (f" (RedisBackend(url) at N={max(args.sizes)}: NO)" if not own_ok else "")
        + "; within target: "
        + ("every row" if ok else "not " + ", ".join(misses))
    )
    print(logs.summary())
    print(verdict(ok, text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
