"""Duplicates: what a late duplicate and a parked follower cost, against a minimal single flight.

Two variants in one process, interleaved in rounds, on the same in-process emulator and
upstream client, as raw ASGI calls with the same trivial app behind them:

- minimal single flight: a dict of results and a dict of ``anyio.Event`` (``MinimalSingleFlight``
  in ``_common.py``: the same parsing, key and client, none of the guarantees);
- middleware: ``WeChatOAuthMiddleware`` with ``MemoryBackend``.

Measured:

- late duplicate: a callback whose code was traded already (a cache hit), in ns per request;
- parking a follower: N callbacks with one code; the leader is held at a gate until the others
  are parked, then let through. Per follower: (time to start and park the N-1 followers) +
  (time from the leader's result to the last follower's answer), over N-1; the exchange itself
  is not in it;
- the leader's own response at N=1000: from the leader's result (its exchange done and the
  identity built) to the leader's answer, on asyncio and on trio (the target is asyncio within
  2x of trio).

Targets (issue 13): late duplicate <= 2x the minimal single flight; parking a follower <= 1.5x;
the leader's response at N=1000 on asyncio <= 2x trio's.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
from _common import (
    CALLBACK,
    RESULT,
    Gate,
    MinimalSingleFlight,
    Reply,
    TimingBackend,
    call,
    callback_query,
    emulated_middleware,
    fmt_ms,
    http_scope,
    ints,
    median,
    openid_app,
    paired_ratio,
    parked,
    parser,
    rotate,
    table,
    tally_logs,
    target_line,
    title,
    verdict,
)

from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.testing import WeChatEmulator

MINIMAL, MIDDLEWARE = "minimal single flight", "middleware, memory"


class Variant:
    """One app under test, with what the harness needs to see inside it."""

    def __init__(self, name: str, emulator: WeChatEmulator, upstream: httpx.AsyncClient) -> None:
        self.name = name
        if name == MINIMAL:
            self.minimal: MinimalSingleFlight | None = MinimalSingleFlight(
                openid_app, emulator, upstream
            )
            self.app: Any = self.minimal
            self.timing: TimingBackend | None = None
        else:
            self.minimal = None
            self.timing = TimingBackend(MemoryBackend())
            self.app = emulated_middleware(emulator, upstream, self.timing)

    def reset(self) -> None:
        if self.minimal is not None:
            self.minimal.reset()
        else:
            assert self.timing is not None
            self.timing.reset()


async def late_duplicates(variant: Variant, emulator: WeChatEmulator, n: int) -> float:
    """ns per late duplicate: one code traded, then ``n`` sequential callbacks with it."""
    scope_query = callback_query(emulator.issue_code())
    first = await call(variant.app, http_scope(CALLBACK, scope_query))
    assert first.status == 200, first.body
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(n):
            await call(variant.app, http_scope(CALLBACK, scope_query))
        return (time.perf_counter_ns() - start) / n
    finally:
        gc.enable()


async def fan_out(
    variant: Variant, emulator: WeChatEmulator, gate: Gate, n: int
) -> tuple[float, float, bool]:
    """One fan-out of ``n``: (ns per follower, ns from the leader's result to the leader's
    answer, whether all ``n`` got the identity)."""
    query = callback_query(emulator.issue_code())
    gate.close()
    RESULT.reset()
    variant.reset()
    replies = [Reply() for _ in range(n)]

    async def one(i: int) -> None:
        replies[i] = await call(variant.app, http_scope(CALLBACK, query))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0)
        with anyio.fail_after(20):
            while gate.arrived < 1:  # the leader holds the flight, held at the gate
                await anyio.sleep(0.0005)
        started = time.perf_counter_ns()
        for i in range(1, n):
            tg.start_soon(one, i)
        with anyio.fail_after(20):
            while parked(variant.app) < n - 1:
                await anyio.lowlevel.checkpoint()
        parked_at = time.perf_counter_ns()
        gate.open()
    completed = RESULT.ns
    last = max(r.done_ns for r in replies[1:])
    per_follower = ((parked_at - started) + (last - completed)) / max(n - 1, 1)
    ok = all(r.status == 200 for r in replies) and emulator.total_exchanges == 1
    return per_follower, replies[0].done_ns - completed, ok


async def measure(
    backend: str, rounds: int, late_n: int, park_n: int, leader_n: int, leader_trials: int
) -> dict[str, Any]:
    emulator = WeChatEmulator()
    gate = Gate(emulator)
    late: dict[str, list[float]] = {MINIMAL: [], MIDDLEWARE: []}
    park: dict[str, list[float]] = {MINIMAL: [], MIDDLEWARE: []}
    leader: dict[str, list[float]] = {MINIMAL: [], MIDDLEWARE: []}
    all_ok = True
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate)) as upstream:
        variants = [Variant(MINIMAL, emulator, upstream), Variant(MIDDLEWARE, emulator, upstream)]

        async def each(step: Callable[[Variant], Awaitable[None]], r: int) -> None:
            for v in rotate(variants, r):
                await step(v)

        for r in range(rounds + 1):  # round 0 warms up

            async def step(v: Variant, r: int = r) -> None:
                nonlocal all_ok
                emulator.reset()
                ns = await late_duplicates(v, emulator, late_n)
                emulator.reset()
                per, _, ok = await fan_out(v, emulator, gate, park_n)
                all_ok = all_ok and ok
                if r > 0:
                    late[v.name].append(ns)
                    park[v.name].append(per)

            await each(step, r)
        for r in range(leader_trials + 1):

            async def lead(v: Variant, r: int = r) -> None:
                nonlocal all_ok
                emulator.reset()
                _, delay, ok = await fan_out(v, emulator, gate, leader_n)
                all_ok = all_ok and ok
                if r > 0:
                    leader[v.name].append(delay)

            await each(lead, r)
    return {"late": late, "park": park, "leader": leader, "ok": all_ok, "backend": backend}


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=41, help="interleaved rounds (41)")
    p.add_argument("--late", type=int, default=5000, help="late duplicates per round (5000)")
    p.add_argument("--park", type=int, default=100, help="N for the park cost (100)")
    p.add_argument("--leader", type=ints, default=[1000], help="N for the leader's answer (1000)")
    p.add_argument("--leader-trials", type=int, default=9, help="trials for it (9)")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.late, args.park, args.leader, args.leader_trials = 2, 200, 10, [50], 2
    logs = tally_logs()
    leader_n = args.leader[0]
    results = {
        name: anyio.run(
            measure,
            name,
            args.rounds,
            args.late,
            args.park,
            leader_n,
            args.leader_trials,
            backend=name,
        )
        for name in ("asyncio", "trio")
    }

    title("Duplicates: a late duplicate, a parked follower, the leader's own answer")
    print(
        f"{args.rounds} interleaved rounds (after one warm-up round); late duplicates: "
        f"{args.late} sequential calls per round; park: fan-out N={args.park}; leader: "
        f"fan-out N={leader_n}, {args.leader_trials} trials; MemoryBackend; medians, and "
        "ratios as the median of the rounds' own ratios"
    )
    print()
    rows = []
    ratios: dict[tuple[str, str], float] = {}
    for loop, res in results.items():
        for what, label, scale in (
            ("late", "late duplicate (µs/request)", 1e3),
            ("park", f"parking a follower, N={args.park} (µs/follower)", 1e3),
        ):
            base = median(res[what][MINIMAL])
            mine = median(res[what][MIDDLEWARE])
            ratio = ratios[(loop, what)] = paired_ratio(res[what][MIDDLEWARE], res[what][MINIMAL])
            rows.append(
                (label, loop, f"{base / scale:.2f}", f"{mine / scale:.2f}", f"{ratio:.2f}x")
            )
    print(table(("measure", "loop", MINIMAL, "middleware", "ratio"), rows))
    print()
    rows = []
    for loop, res in results.items():
        for name in (MINIMAL, MIDDLEWARE):
            rows.append((name, loop, fmt_ms(median(res["leader"][name]))))
    print(f"The leader's own answer at N={leader_n}, ms after its result (median of trials)")
    print()
    print(table(("variant", "loop", "ms"), rows))
    print()
    asyncio_leader = median(results["asyncio"]["leader"][MIDDLEWARE])
    trio_leader = median(results["trio"]["leader"][MIDDLEWARE])
    late_ratio = max(ratios[("asyncio", "late")], ratios[("trio", "late")])
    park_ratio = max(ratios[("asyncio", "park")], ratios[("trio", "park")])
    answered = all(res["ok"] for res in results.values())
    ok1 = late_ratio <= 2.0 and park_ratio <= 1.5 and answered
    ok2 = asyncio_leader <= 2 * trio_leader and answered
    line1 = (
        f"late duplicate {late_ratio:.2f}x the minimal single flight (target <= 2x), parking a "
        f"follower {park_ratio:.2f}x (target <= 1.5x), worse of asyncio and trio"
        + ("" if answered else "; NOT every request got the identity with 1 exchange")
    )
    line2 = (
        f"the leader's answer at N={leader_n}: asyncio {fmt_ms(asyncio_leader)} ms, trio "
        f"{fmt_ms(trio_leader)} ms after its result ({asyncio_leader / trio_leader:.2f}x, "
        "target <= 2x)"
    )
    print(target_line(1, ok1, line1))
    print(target_line(2, ok2, line2))
    print(logs.summary())
    print(verdict(ok1 and ok2, f"{line1}; {line2}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
