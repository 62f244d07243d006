"""Memory under flood: many unique codes, each kept as a result for late duplicates.

Each variant runs in a fresh child process: the middleware with ``MemoryBackend(max_entries=
--max-entries)`` in front of a trivial app, the WeChat emulator in-process (no latency), and
``--codes`` callbacks with unique codes, ``--concurrency`` at a time, as raw ASGI calls:

- baseline: the same set-up and warm-up, no flood (what the process costs anyway);
- 40029 flood: codes WeChat never issued; the emulator answers 40029 and the middleware
  stores the definitive ``code_invalid`` for ``result_ttl``, as it must for late duplicates;
- successful logins: codes the emulator issued; the identities are stored.

The emulator forgets its own codes, tokens and counters every 1,000 logins, so that the
process's growth is the middleware's. Peak RSS is VmHWM, reset after the warm-up (so "peak
over start" is the flood's own), or getrusage where that is unavailable; entry counts are
sampled every 1,000 logins. The default bound is half the flood, so that eviction has to work.

Target: the stored results never exceed ``max_entries``, nothing stays in flight, and memory
levels off at the bound.
"""

from __future__ import annotations

import argparse
import gc
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from _common import (
    CALLBACK,
    call,
    callback_query,
    current_rss_kib,
    emulated_middleware,
    http_scope,
    parser,
    peak_rss_kib,
    run,
    table,
    tally_logs,
    title,
    verdict,
)

from asgi_wechat_oauth import MemoryBackend, WeChatOAuthMiddleware
from asgi_wechat_oauth.testing import WeChatEmulator

VARIANTS = {
    "baseline": "no flood",
    "invalid": "40029 flood",
    "success": "successful logins",
}
CHUNK = 1000


def reset_peak() -> bool:
    """Make VmHWM the current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


async def flood(variant: str, codes: int, max_entries: int, concurrency: int) -> dict[str, Any]:
    logs = tally_logs()
    emulator = WeChatEmulator()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator)) as upstream:
        statuses: dict[int, int] = {}
        peak_stored = peak_in_flight = 0

        async def run_chunk(app: WeChatOAuthMiddleware, chunk: list[str]) -> None:
            nonlocal peak_in_flight
            remaining = iter(chunk)

            async def worker() -> None:
                nonlocal peak_in_flight
                for code in remaining:
                    reply = await call(app, http_scope(CALLBACK, callback_query(code)))
                    statuses[reply.status] = statuses.get(reply.status, 0) + 1
                    peak_in_flight = max(peak_in_flight, backend.in_flight)

            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(worker)

        # Warm-up on an instance of its own: first-use costs (imports, the HTTP pool).
        backend = MemoryBackend(max_entries=max_entries)
        warm = emulated_middleware(emulator, upstream, backend)
        await run_chunk(warm, [emulator.issue_code() for _ in range(200)])
        await run_chunk(warm, [secrets.token_hex(16) for _ in range(200)])
        await warm.aclose()
        emulator.reset()
        statuses.clear()
        logs.events.clear()
        backend = MemoryBackend(max_entries=max_entries)
        app = emulated_middleware(emulator, upstream, backend)
        peak_in_flight = 0
        gc.collect()
        start_rss = current_rss_kib()
        exact_peak = reset_peak()
        start_peak = peak_rss_kib()
        started = time.perf_counter()
        done = 0
        if variant != "baseline":
            while done < codes:
                n = min(CHUNK, codes - done)
                if variant == "success":
                    chunk = [emulator.issue_code() for _ in range(n)]
                else:
                    chunk = [secrets.token_hex(16) for _ in range(n)]  # never issued: 40029
                await run_chunk(app, chunk)
                emulator.reset()  # the emulator's own tables stay small
                done += n
                peak_stored = max(peak_stored, backend.stored)
        elapsed = time.perf_counter() - started
        await app.aclose()
    gc.collect()
    return {
        "variant": variant,
        "codes": done,
        "seconds": elapsed,
        "statuses": statuses,
        "start_rss": start_rss,
        "peak_rss": peak_rss_kib(),
        "peak_over": peak_rss_kib() - (start_rss if exact_peak else start_peak),
        "exact_peak": exact_peak,
        "stored": backend.stored,
        "peak_stored": peak_stored,
        "in_flight": backend.in_flight,
        "peak_in_flight": peak_in_flight,
        "max_entries": max_entries,
        "log": logs.summary(),
    }


def child(args: Any) -> int:
    result = run(lambda: flood(args.child, args.codes, args.max_entries, args.concurrency))
    print(json.dumps(result))
    return 0


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--codes", type=int, default=100_000, help="codes per flood (100000)")
    p.add_argument("--max-entries", type=int, default=50_000, help="MemoryBackend bound (50000)")
    p.add_argument("--concurrency", type=int, default=50, help="callbacks at once (50)")
    p.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if args.quick:
        args.codes, args.max_entries, args.concurrency = 3000, 1500, 20

    results = []
    for variant in VARIANTS:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", variant]
            + ["--codes", str(args.codes), "--max-entries", str(args.max_entries)]
            + ["--concurrency", str(args.concurrency)],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr, file=sys.stderr)
            raise SystemExit(f"the {variant} child failed with {proc.returncode}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    title("Memory under flood")
    print(
        f"{args.codes} unique codes per flood, {args.concurrency} at a time, "
        f"MemoryBackend(max_entries={args.max_entries}), result_ttl 120 s; a fresh process "
        "per row"
    )
    print()
    rows = []
    ok = True
    baseline = results[0]
    for r in results:
        answers = ", ".join(f"{n}x {status}" for status, n in sorted(r["statuses"].items()))
        per_entry = (
            f"{1024 * (r['peak_over'] - baseline['peak_over']) / r['peak_stored']:.0f}"
            if r["peak_stored"]
            else "-"
        )
        bounded = r["peak_stored"] <= r["max_entries"] and r["in_flight"] == 0
        ok = ok and bounded
        rows.append(
            (
                VARIANTS[r["variant"]],
                r["codes"],
                f"{r['codes'] / r['seconds']:.0f}" if r["codes"] else "-",
                answers or "-",
                f"{r['start_rss'] / 1024:.1f}",
                f"{r['peak_rss'] / 1024:.1f}",
                f"{r['peak_over'] / 1024:+.1f}",
                f"{r['peak_stored']}/{r['max_entries']}",
                r["peak_in_flight"],
                r["in_flight"],
                per_entry,
            )
        )
    headers = (
        "variant",
        "codes",
        "codes/s",
        "answers",
        "start MiB",
        "peak MiB",
        "peak over start",
        "stored (max)/bound",
        "in flight (max)",
        "in flight (end)",
        "B/entry",
    )
    print(table(headers, rows))
    print()
    print(
        "start: RSS after set-up and warm-up. peak: VmHWM during the flood. stored (max): the\n"
        "most results held at a 1,000-code sample point. B/entry: peak over start, less the\n"
        "baseline's, per stored entry (the process's whole growth, not just the entries)."
    )
    if not all(r["exact_peak"] for r in results):
        print("note: VmHWM could not be reset here: 'peak over start' is over the pre-flood peak")
    for r in results:
        print(f"{VARIANTS[r['variant']]}: {r['log']}")
    growth = max(r["peak_over"] for r in results) / 1024
    print(
        verdict(
            ok,
            f"stored results stayed <= max_entries ({args.max_entries}) with nothing left in "
            f"flight: {'yes' if ok else 'NO'}; largest growth over start: {growth:.1f} MiB "
            f"for {args.codes} codes",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
