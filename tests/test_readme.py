"""The README's Python code blocks, extracted from README.md and run, so that a snippet that
stops working fails here.

Each ```python block runs alone in a fresh interpreter (top-level ``await`` allowed), with
``WECHAT_APPID`` and ``WECHAT_SECRET`` set as a user would have them. A fragment that uses
``app`` without making one (``app.add_middleware(...)``) runs against a bare Starlette ``app``.
Afterwards, any ``app`` the block leaves runs its lifespan (startup then shutdown: Starlette
builds ``add_middleware``'s middleware there) and answers ``GET /`` without a 5xx.

A comment on the line before a block changes that: ``<!-- readme-test: continues -->`` runs the
block after the one before it, as one program; ``<!-- readme-test: skip (why) -->`` skips it,
for the few that cannot run alone (a Django project, calls to the real WeChat).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _blocks import RUNNER, Block, markdown_blocks
from asgi_wechat_oauth.testing import WeChatEmulator

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_blocks() -> list[Block]:
    return markdown_blocks(README)


BLOCKS = readme_blocks()


def test_the_readme_has_blocks_and_skips_few():
    assert len(BLOCKS) >= 10
    assert sum(block.skip is not None for block in BLOCKS) <= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_block_runs(block, tmp_path):
    if block.skip:
        pytest.skip(block.skip)
    emulator = WeChatEmulator()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WECHAT_")}
    env.update(WECHAT_APPID=emulator.appid, WECHAT_SECRET=emulator.secret)
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=block.source,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"README.md:{block.line} failed:\n{block.source}\n{proc.stderr}"
