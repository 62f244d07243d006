"""Run every benchmark and write ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py            # full sizes (about 5 minutes on 2 cores)
    python benchmarks/run_all.py --quick    # tiny sizes: checks that everything runs

Each script runs in a process of its own and prints its own tables and a one-line verdict;
this collects them, with the machine they ran on, into one Markdown file. Scripts that use Redis
start their own ``redis-server`` (skipped with a note if the binary is missing).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import machine  # noqa: E402 - the scripts' directory is put on the path first

#: (script, section title, what it measures and how).
SCRIPTS = (
    (
        "bench_passthrough.py",
        "1. Pass-through cost",
        "In-process ASGI calls of `/hello` (not the callback), no server or client: the bare "
        "app, a no-op pure ASGI middleware, a middleware that only compares the path with one "
        "string (the least any path-matching middleware can do), `WeChatOAuthMiddleware` "
        "(also with `login_path`), and a no-op `BaseHTTPMiddleware`; behind a raw ASGI app and "
        "behind a one-route Starlette app, one scope reused. Then scopes built for each request "
        "as a server builds them (a new path string each time): `/hello`, `/app/hello` under a "
        "`root_path`, and a path never seen before. Rounds interleave the variants; medians of "
        "the rounds, ratios as medians of the rounds' ratios.",
    ),
    (
        "bench_fanout.py",
        "2. Fan-out",
        "N concurrent callbacks with one code. A gate in front of the emulator holds the one "
        "exchange until every other request is parked, then lets it through. **Method:** a "
        "delegating backend records when `Backend.complete` is called (the leader's result) "
        "and when each follower's `Backend.wait` returns (its release); the last answer's "
        "time is recorded too. Redis: two middleware instances (workers), each with its own "
        "RedisBackend and connections, requests alternating between them; no polling "
        "anywhere (pub/sub). The first table's workers get a counting client (so the trial "
        "sees every CHECK answered before it opens the gate); the second table is "
        "`RedisBackend(url)` as documented, with the client it builds itself.",
    ),
    (
        "bench_duplicates.py",
        "2a. Duplicates against a minimal single flight",
        "A late duplicate (cache hit) and a parked follower (fan-out N=100, per follower, the "
        "exchange left out), the middleware against the minimal single flight (a dict of "
        "results and a dict of `anyio.Event`, the same parsing, key, client and app), on "
        "asyncio and trio; then the leader's own answer at N=1000, after its result. Rounds "
        "interleave the variants; medians.",
    ),
    (
        "bench_redis_local.py",
        "2b. Redis: followers in the leader's process, the leader's client CPU",
        "Fan-out through one worker: when each follower is released after the leader's "
        "result, and its Redis round trips (`RedisBackend.round_trips`), against "
        "`MemoryBackend`, the minimal single flight, and followers in a second worker. Then "
        "the CPU time (`time.process_time`) of sequential leaders through "
        "`RedisBackend.claim`/`complete` against the same two Lua scripts called directly "
        "through redis-py on the same client (the identity encoded once, outside the loop; a "
        "third row encodes it for each leader with `json.dumps`); ratios are medians of the "
        "rounds' ratios.",
    ),
    (
        "bench_throughput.py",
        "3. Login throughput",
        "Distinct codes at a fixed concurrency against the in-process emulator with no "
        "latency: logins/s, and the cost per login against a bare httpx exchange with the "
        "same emulator in the same run. Redis commands per login counted by a counting "
        "`redis.asyncio.Redis` client, by role.",
    ),
    (
        "bench_alternatives.py",
        "4. Against the alternatives",
        "Real double callbacks over loopback sockets: the apps run under uvicorn in the "
        "benchmark's process, the phones in a child process; callback #1 is aborted (the "
        "socket closes; uvicorn lets the handler run on), #2 follows 19 ms after #1. The "
        "emulator adds the given latency to every exchange. Redis: two uvicorn workers, #1 to "
        "one and #2 to the other. The lock+dict port re-reads its dictionary on 40029 only, as "
        "the copied snippet does; WeChat (and the emulator) answer a code's second exchange "
        "with 40163. A version that also re-read on 40163 would rescue #2 whenever #1's "
        "exchange happens to finish before #2's own answer comes back (here both take the "
        "same emulated latency), and still lose it otherwise: it never waits for #1.",
    ),
    (
        "bench_memory.py",
        "5. Memory under flood",
        "A fresh process per row; unique codes as raw ASGI calls; peak RSS from VmHWM "
        "(reset after the warm-up); entry counts sampled every 1,000 codes. Then bytes per "
        "stored outcome by tracemalloc, the identity's own strings counted apart.",
    ),
    (
        "bench_cluster_burst.py",
        "6. A burst of logins on real workers: one Redis, a Redis Cluster failing over",
        "1,000 users log in at once through the example app (login flow) under `uvicorn "
        "--workers 8`, as WeChat's browser does it: callback #1 dropped at a random moment, #2 "
        "19 ms later on its own connection, one user in five also dropping #2 and reloading; a "
        "silent re-authorization is followed and counts as kept. The WeChat emulator (its own "
        "process, 50 ms per exchange) counts each code's exchanges. One redis-server: steady, "
        "SIGKILLed 3 s into the burst and started again (empty) 5 s later, and with one worker "
        "SIGKILLed instead; a Redis Cluster of 3 masters and 3 replicas on loopback: steady, "
        "and with a master SIGKILLed 3 s into the burst at `cluster-node-timeout` 15000 (the "
        "default) and 5000. Each row starts its own servers.",
    ),
    (
        "bench_jssdk.py",
        "7. JS-SDK signatures (issue 30)",
        "`jssdk_config` from a warm ticket against a bare `hashlib.sha1(...).hexdigest()` of "
        "the same string (target: within 3x), also with the ticket read from its keeper and "
        "as the whole endpoint (in-process ASGI calls; rounds interleaved, medians of paired "
        "ratios). Then 1,000 concurrent cold-start requests against the emulator (over "
        "ASGITransport, 50 ms per answer): getticket and access token calls, on the memory "
        "backend and with four middlewares sharing one redis-server (target: one each).",
    ),
    (
        "bench_platform.py",
        "8. A third-party platform's login",
        "(a) In one process, on the in-process emulator with `MemoryBackend`: a login's double "
        "callback (two requests with one code, the second while the first's exchange is in "
        "flight) through `WeChatOAuthMiddleware` for one official account (the baseline), for "
        "two accounts picked by host (`apps=`), and `PlatformOAuthMiddleware` on behalf of two "
        "authorizers picked by host with a warm component token; the login and consent pages "
        "walked untimed before each round, the variants alternating login by login; the time "
        "inside the emulator's ASGI app measured apart. Ratios are medians of the rounds' "
        "ratios (issue 29's target: <= 1.2x). (b) `examples/platform_app.py` under `uvicorn "
        "--workers 4` sharing a redis-server, the emulator in its own process (50 ms per "
        "answer) pushing the ticket, then 1,000 users at once, the two hosts in turn, each with "
        "the double callback and `/me`; the emulator counts `api_component_token` calls "
        "(target 1) and each code's exchanges.",
    ),
    (
        "bench_handoff.py",
        "9. A desktop login's poll",
        "In-process ASGI calls through one `WeChatOAuthMiddleware` with a login endpoint, in "
        "front of a raw ASGI app: `/hello` passed through (the baseline), a poll while the "
        "handoff waits (202: two backend look-ups) and a poll once confirmed (200 with the "
        "redirect: one look-up); the handoff made for real first (the desktop's page, the "
        "phone's login through the in-process emulator, its confirmation). Memory and a local "
        "redis-server.",
    ),
    (
        "profile_callback.py",
        "Profile",
        "cProfile over successful logins with MemoryBackend, then the pieces it points at, "
        "timed without the profiler.",
    ),
)

#: The scripts that take ``--backends``.
BACKEND_SCRIPTS = (
    "bench_fanout.py",
    "bench_throughput.py",
    "bench_alternatives.py",
    "bench_jssdk.py",
    "bench_handoff.py",
)

PROFILE_NOTES = """\
What the profile and the tables showed, and what was changed in `src/` because of it (the
figures above are measured after the changes; "before" figures come from the run that found
them, on this machine).

1. **Stored errors kept their traceback** (fixed in 594c5a9). A `code_invalid` result stored
   for late duplicates was the exception the exchange raised, and its `__traceback__` and
   `__context__` kept the exchange's frames (the httpx response, the request parameters) alive
   for `result_ttl`: 6.3 KB per stored 40029 against 0.8 KB without, so a flood of made-up
   codes, which anyone can send, cost several times the memory of as many logins (about 0.7 GB
   at the default `max_entries`). `SingleFlight` now drops both before storing.
2. **Redis followers made a GET after the wake-up** (fixed in f4b0b2d). The COMPLETE script
   published only the key, so every woken waiter read the result again: one more round trip per
   follower and, at fan-out N, a burst of N GETs through the pool. The message now carries the
   outcome (sealed with `encryption_key`), decoded once per key: a follower makes 2 round trips
   (CLAIM, CHECK). Before: the last follower's release took 1.65 ms at N=10, 14 ms at N=100 and
   225 ms at N=1000.
3. **A burst beyond the Redis pool was taken for an outage** (fixed in 3cb7a9d and f4b0b2d).
   redis-py 8's default pool raises `MaxConnectionsError` beyond 100 connections; the backend
   fell back to local dedupe and, at N=1000 over two workers, made 3 exchanges with about half
   the users answered `code_used`. `RedisBackend(url)` now builds a `BlockingConnectionPool`,
   and an exhausted pool of a client passed in answers 503 `overloaded` instead of switching
   to local dedupe. The second table of section 2 checks `RedisBackend(url)` at N=1000.
4. **The HTTP call to WeChat** (fixed in 594c5a9). httpx re-parses and re-quotes the URL when
   given `params=` (its `_urlparse` topped the profile); the client now encodes the query
   itself: 176 to 139 µs per WeChat call.
5. **Pass-through** (fixed in 594c5a9). `__call__` checked the scope type up to three times
   and called `_matches` before passing a request on; one suffix test on the path now lets
   everything else through. Even a lone path comparison costs about the 1.05x budget against
   a raw ASGI app (the "path-compare floor" row), so that target cannot be met there by any
   middleware that looks at the path; against a Starlette app it is met.
6. **Fan-out at large N** (not a defect). On one event loop the followers resume one after
   another, each running on to its answer before the next resumes: the last release at N=1000
   is N times the cost of answering one follower (the µs/follower column), not a wake-up
   delay. Releasing 1,000 requests within 1 ms is out of reach for any Python event loop.
   Dropping the per-waiter cancel scope in `MemoryBackend.wait` took about 25% off in a scratch
   prototype; not done: it is the waiter's safety net.
7. Left as is: the leader enters three cancel scopes (5 to 10 µs each) where two bounds cover
   the same work.
8. **Every duplicate paid for a detached task** (issue 13). Each callback, late duplicates and
   followers included, ran its claim in a new asyncio task awaited through `asyncio.shield`
   (`DetachedRunner.run (task + shield)` above, plus a loop iteration per request): 3.2x the
   minimal single flight for a late duplicate, 1.8x for a parked follower. Now a backend's
   synchronous `peek` serves a stored outcome, or a flight of this process, in the request's
   own task; only a claim that may grant a lease is detached, with its exchange. Section 2a.
9. **The leader was answered after its followers on asyncio** (issue 13): its request awaited
   the detached task through `asyncio.shield`, two loop hops after `complete` had queued every
   follower (23 ms at N=1000, 1.2 ms on trio). The leader is now handed its outcome, through a
   plain future, just before `complete`. Section 2a.
10. **Redis followers in the leader's process went through Redis** (issue 13): CLAIM, CHECK,
   then the pub/sub message, though the process knew it led the code (`_leading`). They now
   join the local flight (0 round trips) and are woken as the leader completes. The leader's
   client CPU: `dataclasses.asdict` in `WeChatIdentity.to_dict` (about 18 µs per COMPLETE) is
   gone; each Redis call's bound was an `asyncio.timeout` (a timer handle, a heap push ordered
   by `TimerHandle.__lt__` in Python, a cancel: about 10 µs a call, twice per leader, the
   largest line of the difference in the profile), and is now one timer for all the calls in
   flight (`backends/_deadlines.py`, about 1.5 µs a call). Each script also went through
   redis-py's `Script.__call__` (an import statement and two tuple copies per call); the
   backend now sends `EVALSHA` itself and loads a script the server lost (a restart,
   `SCRIPT FLUSH`) once. What is left over the bare scripts is mostly encoding the identity
   (JSON, which the bare scripts get pre-encoded): the row with the identity's bytes made
   beforehand, as the bare scripts have them, shows the rest. Section 2b.
11. **About 1 KB per cached result** (issue 13): cachetools' `TLRUCache` bookkeeping, identity
   objects without `__slots__`, 64-character keys, a wrapper per entry. Now an `OrderedDict` of
   `(outcome, expiry)`, 32-byte keys, slotted identities; errors have their own smaller bound.
   Section 5, bytes per stored outcome.
12. **Pass-through** (issue 13): the scope's type was read twice and the suffix test ran for
   every request. Then one set look-up of the path and a `root_path` look-up: "spellings +
   root_path", the least a middleware can do that matches its paths under a prefix, is about
   1.06x the floor by itself (the floor compares with one string and ignores `root_path`,
   the second spelling and lifespan scopes), and the middleware measured 1.06x-1.10x. Now the
   middleware remembers the app's first 512 paths (never one that ends with one of its own):
   one of them is passed on after one set look-up, with no `root_path` look-up and, under a
   `root_path`, no suffix test. Where a scope is built for each request, as servers do, the
   path's hash is computed for every request, by any set look-up: there the middleware is
   level with "spellings + root_path" for a path seen before, clearly cheaper under a
   `root_path` (no suffix test), and about 8% dearer for a path never seen before (one more
   look-up). `login_path` makes every request carry the login path for `login_url()`: a
   plain function sets it and returns the app's awaitable, about 12% of the floor.
"""


def run_script(script: str, extra: list[str], timeout: float) -> tuple[int, str, str, float]:
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / script), *extra],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=HERE,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        return -1, out, f"timed out after {timeout:.0f} s", time.perf_counter() - start
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start


#: Issue 13's targets, for the lines of the scripts that measure them.
TARGETS = {
    1: "Late duplicate <= 2x the minimal single flight, parking a follower <= 1.5x",
    2: "On asyncio, the leader's answer at N=1000 within 2x trio's",
    3: "Redis: same-process followers 0 round trips, released within 1.5x memory; "
    "other-process followers 2; leader client CPU <= 1.1x the bare scripts",
    4: "<= 450 bytes per cached result beyond its strings; memory at the default bound and "
    "under a flood of invalid codes",
    5: "Pass-through <= 1.05x the path-compare floor",
    6: "The minimal single flight as a baseline row; a verdict for every target",
}


def target_verdicts(found: dict[int, str], *, quick: bool, partial: bool) -> list[str]:
    """One line per target of issue 13: what the script that measures it printed."""
    lines = []
    for number, goal in TARGETS.items():
        if number == 6:
            complete = all(n in found for n in range(1, 6))
            text = (
                "OK: baseline rows in bench_duplicates, bench_fanout and bench_redis_local; "
                "targets 1-5 each have a verdict above"
                if complete
                else "MISSED: targets without a verdict: "
                + ", ".join(str(n) for n in range(1, 6) if n not in found)
                + (" (only some scripts were run)" if partial else "")
            )
        else:
            text = found.get(number, "MISSED: no verdict printed (script not run or failed)")
        lines.append(f"- **{number}. {goal}**: {text}" + (" [quick sizes]" if quick else ""))
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks everything runs")
    p.add_argument(
        "--output", type=Path, default=HERE / "RESULTS.md", help="where to write (RESULTS.md)"
    )
    p.add_argument("--backends", help="passed on to the scripts that take it (memory,redis)")
    p.add_argument("--only", help="comma-separated script names to run (default: all)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds per script (1200)")
    args = p.parse_args()

    extra = ["--quick"] if args.quick else []
    chosen = set(args.only.split(",")) if args.only else None
    where = machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    sections, verdicts, failed = [], [], []
    targets: dict[int, str] = {}
    total = time.perf_counter()
    for script, heading, method in SCRIPTS:
        if chosen is not None and script not in chosen and script.removesuffix(".py") not in chosen:
            continue
        options = list(extra)
        if args.backends and script in BACKEND_SCRIPTS:
            options += ["--backends", args.backends]
        print(f"running {script} {' '.join(options)}".rstrip(), flush=True)
        code, out, err, seconds = run_script(script, options, args.timeout)
        print(out, end="", flush=True)
        lines = [line for line in out.splitlines() if line.startswith("verdict:")]
        for line in out.splitlines():
            if line.startswith("target ") and ": " in line:
                number, _, text = line.removeprefix("target ").partition(": ")
                targets[int(number)] = f"{text} (`{script}`)"
        if heading != "Profile":
            verdicts.append(
                f"- **{heading.partition(' ')[2]}** (`{script}`): "
                + (lines[-1].removeprefix("verdict: ") if lines else "no verdict printed")
            )
        if code != 0:
            failed.append(script)
            print(err, file=sys.stderr)
        body = [f"## {heading}", "", f"`{script}`, {seconds:.0f} s. {method}", ""]
        if heading == "Profile":
            body += [PROFILE_NOTES]
        body += ["```text", out.rstrip(), "```", ""]
        if code != 0:
            body += [f"**The script failed (exit {code}):**", "", "```text", err[-3000:], "```", ""]
        sections.append("\n".join(body))
    elapsed = time.perf_counter() - total
    target_lines = target_verdicts(targets, quick=args.quick, partial=chosen is not None)
    print("\n".join(["Targets (issue 13):", *target_lines]))

    header = [
        "# Benchmark results",
        "",
        f"Written by `python benchmarks/run_all.py{' --quick' if args.quick else ''}` "
        f"in {elapsed / 60:.1f} minutes.",
        "",
        f"- Machine: {where}; load average at start {load:.2f}.",
        "- Sizes: "
        + (
            "**quick (tiny), not meaningful**"
            if args.quick
            else "the defaults (the sizes the issue asks for); each script's `--help` lists them."
        ),
        "- Every ratio is against a baseline measured in the same run (absolute times drift "
        "on a shared machine); variants are interleaved in rounds and medians reported. Where "
        "a script says so, a ratio is the median of the rounds' own ratios.",
        "- Re-run: `python benchmarks/run_all.py`, or one script, e.g. "
        "`python benchmarks/bench_fanout.py --sizes 2,10 --rounds 5`.",
        "",
        "## Targets (issue 13)",
        "",
        *target_lines,
        "",
        "## Verdicts",
        "",
        *verdicts,
        "",
    ]
    args.output.write_text("\n".join(header) + "\n" + "\n".join(sections))
    print(f"wrote {args.output}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
