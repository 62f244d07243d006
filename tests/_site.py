"""The documentation site, built once per test session with ``mkdocs build --strict`` into a
temporary directory, for the tests that check the build and the browser test that looks at it."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Build:
    site: Path
    returncode: int
    output: str  # what mkdocs printed, stdout and stderr together


@functools.cache
def build() -> Build:
    """``mkdocs build --strict`` of the checkout, once; the folder goes when the session ends."""
    folder = Path(tempfile.mkdtemp(prefix="asgi-wechat-oauth-site-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    site = folder / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # material's notice, not the build's
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Build(site, proc.returncode, proc.stdout + proc.stderr)
