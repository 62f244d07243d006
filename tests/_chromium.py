"""Headless Chromium for the real-browser tests: Debian's ``chromium`` (or ``$CHROMIUM``)
driven by Playwright's sync API with ``executable_path`` (no browser download)."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

#: What every real-browser test launches Chromium with.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def playwright_and_chromium() -> tuple[Any, str]:
    """Playwright's sync API and the Chromium binary: skip when either is missing, before any
    server starts; in CI (``$CI`` set) a missing Chromium fails instead."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed (extra: test)"
    )
    configured = os.environ.get("CHROMIUM")
    candidates = [configured] if configured else ["chromium", "chromium-browser"]
    found = next((path for path in map(shutil.which, candidates) if path), None)
    if found is None:
        message = (
            f"Chromium not found ({' or '.join(candidates)}): install it "
            "(`apt-get install chromium`, as .ci/run does) or set CHROMIUM to a Chromium or "
            "Chrome binary to run the real-browser tests"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return sync_api, found
