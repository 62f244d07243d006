"""Running the ```python blocks of a markdown file (README.md, README.zh-CN.md, the pages under
docs/), so that a snippet that stops working fails a test.

Each block runs alone in a fresh interpreter (top-level ``await`` allowed), with
``WECHAT_APPID`` and ``WECHAT_SECRET`` set as a user would have them. A fragment that uses
``app`` without making one (``app.add_middleware(...)``) runs against a bare Starlette ``app``.
Afterwards, any ``app`` the block leaves runs its lifespan (startup then shutdown: Starlette
builds ``add_middleware``'s middleware there) and answers ``GET /`` without a 5xx.

A comment on the line before a block changes that: ``<!-- readme-test: continues -->`` runs the
block after the one before it (in the same file), as one program;
``<!-- readme-test: skip (why) -->`` skips it, for the few that cannot run alone (a Django
project, calls to the real WeChat).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from asgi_wechat_oauth.testing import WeChatEmulator

FENCE = re.compile(r"^( *)```python\s*$")
MARKER = re.compile(r"^\s*<!-- readme-test: (skip|continues)\b.*-->\s*$")

#: The program each block runs in: the block's source on stdin, its file's name as argv[1]
#: (for tracebacks; README.md when not given).
RUNNER = """
import ast, inspect, sys, types

import anyio
import httpx
from starlette.applications import Starlette

from asgi_wechat_oauth import WeChatOAuthMiddleware


async def lifespan(app):
    to_app, app_receives = anyio.create_memory_object_stream(4)
    app_sends, from_app = anyio.create_memory_object_stream(4)
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    async with anyio.create_task_group() as tg:
        tg.start_soon(app, scope, app_receives.receive, app_sends.send)
        await to_app.send({"type": "lifespan.startup"})
        started = await from_app.receive()
        assert started["type"] == "lifespan.startup.complete", started
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            response = await client.get("/")
            assert response.status_code < 500, (response.status_code, response.text)
        await to_app.send({"type": "lifespan.shutdown"})
        stopped = await from_app.receive()
        assert stopped["type"] == "lifespan.shutdown.complete", stopped


async def main():
    filename = sys.argv[1] if len(sys.argv) > 1 else "README.md"
    code = compile(sys.stdin.read(), filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    module = sys.modules["readme"] = types.ModuleType("readme")  # frameworks look it up
    namespace = module.__dict__
    namespace.update(app=Starlette(), WeChatOAuthMiddleware=WeChatOAuthMiddleware)
    result = eval(code, namespace)
    if inspect.isawaitable(result):
        await result
    if callable(namespace.get("app")):
        await lifespan(namespace["app"])


anyio.run(main)
"""


@dataclass
class Block:
    line: int
    source: str
    skip: str | None = None


def markdown_blocks(path: Path) -> list[Block]:
    """The ```python blocks of ``path``, those marked ``continues`` joined to the one before."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        indent = fence.group(1)
        end = lines.index(f"{indent}```", index + 1)
        body = "\n".join(line[len(indent) :] for line in lines[index + 1 : end]) + "\n"
        marker = MARKER.match(lines[index - 1]) if index else None
        kind = marker.group(1) if marker else None
        if kind == "continues":
            if not blocks:
                raise ValueError(f"{path}:{index + 1}: `continues` with no block before it")
            blocks[-1].source += "\n" + body
        else:
            skip = lines[index - 1].strip() if kind == "skip" else None
            blocks.append(Block(index + 1, body, skip))
        index = end + 1
    return blocks


def run_block(block: Block, name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``block`` (from the file called ``name``) as the RUNNER does, in ``cwd``."""
    emulator = WeChatEmulator()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WECHAT_")}
    env.update(WECHAT_APPID=emulator.appid, WECHAT_SECRET=emulator.secret)
    return subprocess.run(
        [sys.executable, "-c", RUNNER, name],
        input=block.source,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
