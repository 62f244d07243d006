"""The benchmark scripts run: each with ``--quick`` (tiny sizes) as a subprocess, exits 0 and
prints its table and verdict. No figure is asserted: timings are information, not tests.

The Redis parts start their own ``redis-server`` on a free port; they are skipped when the
binary is missing (and fail when the ``CI`` environment variable is set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_script(script: str, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=BENCHMARKS,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def assert_table_and_verdict(stdout: str) -> None:
    lines = stdout.splitlines()
    rules = [line for line in lines if line and set(line) <= {"-", " "} and "--" in line]
    assert rules, f"no table in:\n{stdout}"
    verdicts = [line for line in lines if line.startswith("verdict: ")]
    assert len(verdicts) == 1, stdout
    assert verdicts[0].startswith(("verdict: OK: ", "verdict: MISSED: ")), verdicts[0]


def require_redis_server() -> None:
    if shutil.which("redis-server") is None:
        message = (
            "redis-server not found: install it (e.g. `apt-get install redis-server`) "
            "to smoke-test the benchmarks' Redis parts"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_passthrough() -> None:
    out = run_script("bench_passthrough.py")
    assert_table_and_verdict(out)
    assert "WeChatOAuthMiddleware" in out and "no-op BaseHTTPMiddleware" in out


def test_handoff() -> None:
    out = run_script("bench_handoff.py", "--backends", "memory")
    assert_table_and_verdict(out)
    assert "poll, waiting (202)" in out and "WeChat calls during the polls: 0" in out


@pytest.mark.parametrize(
    ("script", "row"),
    [
        ("bench_fanout.py", "memory"),
        ("bench_throughput.py", "middleware, memory"),
        ("bench_alternatives.py", "middleware, memory"),
    ],
)
def test_memory_parts(script: str, row: str) -> None:
    out = run_script(script, "--backends", "memory")
    assert_table_and_verdict(out)
    assert any(line.startswith(row) for line in out.splitlines()), out


@pytest.mark.redis
@pytest.mark.parametrize(
    ("script", "row"),
    [
        ("bench_fanout.py", "redis"),
        ("bench_throughput.py", "middleware, redis"),
        ("bench_alternatives.py", "middleware, redis"),
    ],
)
def test_redis_parts(script: str, row: str) -> None:
    require_redis_server()
    out = run_script(script, "--backends", "redis")
    assert_table_and_verdict(out)
    assert any(line.startswith(row) for line in out.splitlines()), out


def test_duplicates_against_the_minimal_single_flight() -> None:
    out = run_script("bench_duplicates.py")
    assert_table_and_verdict(out)
    assert "minimal single flight" in out
    assert any(line.startswith("target 1: ") for line in out.splitlines())
    assert any(line.startswith("target 2: ") for line in out.splitlines())


@pytest.mark.redis
def test_redis_local_followers() -> None:
    require_redis_server()
    out = run_script("bench_redis_local.py")
    assert_table_and_verdict(out)
    assert "redis, same process" in out and "bare scripts" in out
    assert any(line.startswith("target 3: ") for line in out.splitlines())


def test_jssdk_memory() -> None:
    out = run_script("bench_jssdk.py", "--backends", "memory")
    assert_table_and_verdict(out)
    assert "jssdk_config, ticket in hand" in out and "memory, 1 middleware" in out
    assert "redis, 4 middlewares" not in out


@pytest.mark.redis
def test_jssdk_redis() -> None:
    require_redis_server()
    out = run_script("bench_jssdk.py", "--backends", "redis")
    assert_table_and_verdict(out)
    assert any(line.startswith("redis, 4 middlewares") for line in out.splitlines()), out


@pytest.mark.slow
def test_memory_flood() -> None:
    out = run_script("bench_memory.py", "--codes", "1500", "--max-entries", "500")
    assert_table_and_verdict(out)
    assert "40029 flood" in out and "successful logins" in out
    assert any(line.startswith("target 4: ") for line in out.splitlines())


@pytest.mark.redis
def test_platform_login_and_one_component_token() -> None:
    require_redis_server()
    out = run_script("bench_platform.py")
    assert_table_and_verdict(out)
    assert "platform, authorizers by host" in out and "component tokens" in out


def test_profile() -> None:
    out = run_script("profile_callback.py", "--logins", "100")
    assert "component (own time)" in out and "finding:" in out


def test_run_all_writes_results(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_all.py"), "--quick", "--output", str(output)]
        + ["--only", "bench_passthrough.py,bench_throughput.py", "--backends", "memory"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCHMARKS,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = output.read_text()
    assert text.startswith("# Benchmark results")
    assert "## Verdicts" in text and "## 1. Pass-through cost" in text
    assert "## 3. Login throughput" in text and "verdict: " in text
    assert "## Targets (issue 13)" in text and "**5. Pass-through" in text
