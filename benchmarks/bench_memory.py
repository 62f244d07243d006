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
import hashlib
import json
import secrets
import subprocess
import sys
import time
import tracemalloc
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
    target_line,
    title,
    verdict,
)

from asgi_wechat_oauth import WeChatIdentity, WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import MemoryBackend
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


async def per_entry(variant: str, codes: int) -> dict[str, Any]:
    """Bytes per stored outcome, by tracemalloc: the growth of traced memory over ``codes``
    callbacks (collected, emulator tables cleared), over the outcomes stored. For identities,
    the strings they hold (openid, tokens, scope, state: the data itself) are counted apart,
    so that what is left is the cache's own overhead per entry."""
    tally_logs()
    emulator = WeChatEmulator()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator)) as upstream:
        backend = MemoryBackend(max_entries=codes, max_errors=codes)
        # Nothing expires during the measurement, however slow tracemalloc makes it.
        app = emulated_middleware(emulator, upstream, backend, result_ttl=86_400)
        warm = [emulator.issue_code() for _ in range(50)] + [secrets.token_hex(16)] * 50
        for code in warm:  # first-use costs: imports, the HTTP pool, caches
            await call(app, http_scope(CALLBACK, callback_query(code)))
        await backend.aclose()
        emulator.reset()
        batch: list[str] = []
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        while len(batch) < codes:  # the emulator's tables are cleared after every chunk
            if variant == "success":
                chunk = [emulator.issue_code() for _ in range(min(CHUNK, codes - len(batch)))]
            else:
                chunk = [secrets.token_hex(16) for _ in range(min(CHUNK, codes - len(batch)))]
            for code in chunk:
                await call(app, http_scope(CALLBACK, callback_query(code)))
            emulator.reset()
            batch += chunk
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        grown -= sys.getsizeof(batch) + sum(sys.getsizeof(code) for code in batch)  # ours
        strings = 0
        seen: set[int] = set()  # a string shared by entries (the scope) counts once
        prefix = f"{emulator.appid}:".encode()
        for code in batch:
            claim = backend.peek(hashlib.sha256(prefix + code.encode()).hexdigest())
            outcome = claim.outcome if claim is not None else None
            if isinstance(outcome, WeChatIdentity):
                fields = (outcome.openid, outcome.scope, outcome.access_token)
                fields += (outcome.refresh_token, outcome.unionid, outcome.state, outcome.next)
                for f in fields:
                    if isinstance(f, str) and id(f) not in seen:
                        seen.add(id(f))
                        strings += sys.getsizeof(f)
        stored = backend.stored
        await app.aclose()
    return {"variant": variant, "stored": stored, "bytes": grown, "strings": strings}


def child(args: Any) -> int:
    if args.child.startswith("entry-"):
        result = run(lambda: per_entry(args.child[6:], args.entry_codes))
    else:
        result = run(lambda: flood(args.child, args.codes, args.max_entries, args.concurrency))
    print(json.dumps(result))
    return 0


def in_child(args: Any, variant: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", variant]
        + ["--codes", str(args.codes), "--max-entries", str(args.max_entries)]
        + ["--concurrency", str(args.concurrency), "--entry-codes", str(args.entry_codes)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        raise SystemExit(f"the {variant} child failed with {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--codes", type=int, default=100_000, help="codes per flood (100000)")
    p.add_argument("--max-entries", type=int, default=50_000, help="MemoryBackend bound (50000)")
    p.add_argument("--concurrency", type=int, default=50, help="callbacks at once (50)")
    p.add_argument(
        "--entry-codes", type=int, default=10_000, help="codes for bytes per entry (10000)"
    )
    p.add_argument(
        "--child",
        choices=[*VARIANTS, "entry-success", "entry-invalid"],
        help=argparse.SUPPRESS,
    )
    args = p.parse_args()
    if args.child:
        return child(args)
    if args.quick:
        args.codes, args.max_entries, args.concurrency, args.entry_codes = 3000, 1500, 20, 1000

    results = [in_child(args, variant) for variant in VARIANTS]
    entries = {v: in_child(args, f"entry-{v}") for v in ("success", "invalid")}

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
    print()
    print(
        f"Bytes per stored outcome (tracemalloc, {args.entry_codes} callbacks each, a fresh "
        "process each; MemoryBackend defaults: max_entries=100000, max_errors=10000)"
    )
    print()
    success, invalid = entries["success"], entries["invalid"]
    result_total = success["bytes"] / max(success["stored"], 1)
    result_strings = success["strings"] / max(success["stored"], 1)
    result_overhead = result_total - result_strings
    error_total = invalid["bytes"] / max(invalid["stored"], 1)
    default_results = 100_000 * result_total / 2**20
    default_errors = 10_000 * error_total / 2**20
    print(
        table(
            ("outcome", "stored", "B/entry", "of which strings", "overhead", "at default bound"),
            [
                (
                    "identity (login)",
                    success["stored"],
                    f"{result_total:.0f}",
                    f"{result_strings:.0f}",
                    f"{result_overhead:.0f}",
                    f"{default_results:.1f} MiB (100000)",
                ),
                (
                    "40029 error",
                    invalid["stored"],
                    f"{error_total:.0f}",
                    "0",
                    f"{error_total:.0f}",
                    f"{default_errors:.1f} MiB (10000)",
                ),
            ],
        )
    )
    print()
    print(
        "strings: the identity's own str fields (openid, scope, access and refresh token,\n"
        "unionid, state), which any cache must hold. overhead: everything else per entry (the\n"
        "map's entry, the key, the expiry, the identity object). A flood of invalid codes fills\n"
        "only the errors' bound, which never pushes out results."
    )
    target_ok = result_overhead <= 450
    print(
        target_line(
            4,
            target_ok,
            f"{result_overhead:.0f} bytes per cached result beyond its strings (target <= 450); "
            f"at the default bound: {default_results:.1f} MiB of results (100000), "
            f"{default_errors:.1f} MiB under a flood of invalid codes (10000 errors)",
        )
    )
    growth = max(r["peak_over"] for r in results) / 1024
    print(
        verdict(
            ok and target_ok,
            f"{result_overhead:.0f} B per cached result beyond its strings (target <= 450); "
            f"stored results stayed <= max_entries ({args.max_entries}) with nothing left in "
            f"flight: {'yes' if ok else 'NO'}; largest growth over start: {growth:.1f} MiB "
            f"for {args.codes} codes",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
