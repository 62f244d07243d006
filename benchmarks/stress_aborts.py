"""Client aborts and load on real servers, at full size.

The scenarios are the test suite's own (``tests/test_real_servers.py``), so the stress run and
the tests cannot drift apart: this script runs them with large sizes and prints their figures.

- ``test_real_client_aborts``: under uvicorn, hypercorn and hypercorn on trio, callback #1 is
  dropped at a random moment (mid-request, during the exchange, mid-response, after it; FIN or
  RST) and #2 follows 0-50 ms later. Target: every #2 gets the identity, one exchange per code.
- ``test_load_with_duplicates_*``: logins with the double callback at a fixed concurrency,
  memory (one worker) and Redis (two workers). Target: zero lost identities, zero 5xx.

    python benchmarks/stress_aborts.py                 # 2,000 aborts per server, 2,000 logins
    python benchmarks/stress_aborts.py --quick         # the test suite's sizes
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aborts", type=int, default=2000, help="aborts per server (2000)")
    parser.add_argument("--logins", type=int, default=2000, help="logins per backend (2000)")
    parser.add_argument("--concurrency", type=int, default=200, help="logins at once (200)")
    parser.add_argument("--quick", action="store_true", help="the test suite's sizes")
    args = parser.parse_args()
    sizes = {"STRESS_ABORTS": "200", "STRESS_LOGINS": "400", "STRESS_CONCURRENCY": "200"}
    if not args.quick:
        sizes = {
            "STRESS_ABORTS": str(args.aborts),
            "STRESS_LOGINS": str(args.logins),
            "STRESS_CONCURRENCY": str(args.concurrency),
        }
    print(", ".join(f"{k}={v}" for k, v in sizes.items()), flush=True)
    command = [
        sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
        "tests/test_real_servers.py", "-k", "aborts or load",
    ]  # fmt: skip
    return subprocess.call(command, cwd=ROOT, env={**os.environ, **sizes})


if __name__ == "__main__":
    sys.exit(main())
