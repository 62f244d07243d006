"""Client aborts on real servers: callback #1 dropped at a random moment, #2 must get the login.

The example app (``examples/starlette_app.py``, memory backend) runs under uvicorn, hypercorn
and hypercorn on trio, each in a process of its own; the WeChat emulator in another; all on
loopback. Each login: consent at the emulator, then callback #1 on a raw socket, dropped at a
random moment (halfway through the request; after the request, while the exchange is in flight;
after the first bytes of the response; after the whole response) with a FIN or a RST, then
callback #2 with the same code 0-50 ms later over httpx. hypercorn cancels the request's task
when its client goes away, uvicorn does not.

Target: every #2 gets the identity, and the emulator sees exactly one exchange per code.

The same logic, at small sizes, is ``tests/test_real_servers.py::test_real_client_aborts``
(this is a standalone copy: the benchmarks do not import the tests).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import httpx
from _common import free_port, machine, parser, run, table, title, verdict, wait_for_port

from asgi_wechat_oauth.testing import WeChatEmulator

ROOT = Path(__file__).resolve().parent.parent
APP = "examples.starlette_app:app"
SERVERS = ("uvicorn", "hypercorn", "hypercorn-trio")
PHASES = ("request", "in_flight", "response", "after")
DEFAULTS = WeChatEmulator()
BAD_OUTPUT = ("Task was destroyed", "Unclosed", "exchange_crashed", "Traceback")


# --- servers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def server_process(args: list[str], port: int, env: dict[str, str]) -> Iterator[list[str]]:
    """Run a server until the block ends; yields a list that holds its stderr afterwards."""
    output: list[str] = []
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            wait_for_port(port, proc)
            yield output
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stderr.seek(0)
            output.append(stderr.read().decode(errors="replace"))


def server_args(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "hypercorn", APP, "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning",
        "--worker-class", "trio" if server == "hypercorn-trio" else "asyncio",
    ]  # fmt: skip


def emulator_args(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "asgi_wechat_oauth.testing:WeChatEmulator", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip


# --- one login with an aborted first callback ----------------------------------------------------


async def issue_code(browser: httpx.AsyncClient, emulator_url: str, app_url: str) -> str:
    response = await browser.get(
        f"{emulator_url}/connect/oauth2/authorize",
        params={
            "appid": DEFAULTS.appid,
            "redirect_uri": f"{app_url}/wechat/callback",
            "response_type": "code",
            "scope": "snsapi_base",
            "state": "real",
        },
    )
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


async def aborted_callback(
    app_url: str, code: str, rng: random.Random, latency: float
) -> tuple[str, str, int | None]:
    host, port = urlsplit(app_url).netloc.split(":")
    request = (
        f"GET /wechat/callback?code={code}&state=real HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nUser-Agent: aborting-browser\r\nConnection: close\r\n\r\n"
    ).encode()
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


@dataclass
class Figures:
    iterations: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    second: Counter[str] = field(default_factory=Counter)
    first_statuses: Counter[int] = field(default_factory=Counter)
    codes: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    per_code: Counter[int] = field(default_factory=Counter)
    bad_output: list[str] = field(default_factory=list)


async def run_aborts(
    emulator_url: str, app_url: str, iterations: int, concurrency: int, seed: int, latency: float
) -> Figures:
    figures = Figures()
    limiter = anyio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=4 * concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30) as browser:

        async def one(index: int) -> None:
            rng = random.Random(seed * 1_000_003 + index)
            async with limiter:
                code = await issue_code(browser, emulator_url, app_url)
                figures.codes.append(code)
                phase, _, status = await aborted_callback(app_url, code, rng, latency)
                await anyio.sleep(rng.uniform(0, 0.050))
                second = await browser.get(f"{app_url}/wechat/callback?code={code}&state=real")
            figures.iterations += 1
            figures.phases[phase] += 1
            if status is not None:
                figures.first_statuses[status] += 1
            ok = second.status_code == 200 and second.json().get("openid") == DEFAULTS.user.openid
            figures.second["identity" if ok else str(second.status_code)] += 1

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for index in range(iterations):
                tg.start_soon(one, index)
        figures.elapsed = time.monotonic() - started
    return figures


def measure(server: str, iterations: int, concurrency: int, seed: int, latency: float) -> Figures:
    emulator_port, app_port = free_port(), free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    app_url = f"http://127.0.0.1:{app_port}"
    env = {
        "WECHAT_APPID": DEFAULTS.appid,
        "WECHAT_SECRET": DEFAULTS.secret,
        "WECHAT_API_BASE_URL": emulator_url,
        "PYTHONWARNINGS": "default::ResourceWarning",
    }
    with server_process(emulator_args(emulator_port), emulator_port, {}):
        httpx.post(f"{emulator_url}/_emulator/settings", params={"latency": latency})
        with server_process(server_args(server, app_port), app_port, env) as output:
            figures = run(
                lambda: run_aborts(emulator_url, app_url, iterations, concurrency, seed, latency)
            )
        exchanges = httpx.get(f"{emulator_url}/_emulator/stats").json()["exchanges"]
    figures.per_code = Counter(exchanges.get(code, 0) for code in figures.codes)
    figures.bad_output = [bad for bad in BAD_OUTPUT if bad in "".join(output)]
    return figures


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=2000, help="logins per server (2000)")
    p.add_argument("--concurrency", type=int, default=20, help="logins at a time (20)")
    p.add_argument("--latency", type=float, default=0.05, help="emulator latency, s (0.05)")
    p.add_argument("--seed", type=int, default=None, help="random seed (random)")
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated, from: {', '.join(SERVERS)} (default: all)",
    )
    args = p.parse_args()
    if args.quick:
        args.iterations, args.concurrency = 20, 5
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not set(servers) <= set(SERVERS):
        p.error(f"servers must be among {', '.join(SERVERS)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)

    title("Client aborts on real servers")
    print(
        f"{machine()}\n{args.iterations} logins per server, {args.concurrency} at a time, "
        f"emulator latency {args.latency * 1000:.0f} ms, seed {seed}\n"
    )
    rows, misses = [], []
    for server in servers:
        figures = measure(server, args.iterations, args.concurrency, seed, args.latency)
        lost = args.iterations - figures.second["identity"]
        ok = (
            lost == 0
            and figures.per_code == {1: args.iterations}
            and not figures.bad_output
            and set(figures.first_statuses) <= {200}
        )
        if not ok:
            misses.append(server)
        rows.append(
            (
                server,
                figures.iterations,
                " ".join(f"{p}={figures.phases[p]}" for p in PHASES),
                f"{figures.second['identity']}/{figures.iterations}",
                " ".join(f"{n}x{c}" for c, n in sorted(figures.per_code.items())),
                ",".join(figures.bad_output) or "-",
                f"{figures.elapsed:.1f}",
                "ok" if ok else "MISSED",
            )
        )
    headers = ("server", "logins", "#1 dropped", "#2 identity", "exch/code", "stderr", "s", "")
    print(table(headers, rows))
    print()
    print(
        "#1 dropped: how many first callbacks were cut in each phase (request: halfway through\n"
        "sending it; in_flight: after sending it; response: after its first bytes; after: once\n"
        "read whole). #2 identity: second callbacks answered with the login. exch/code: codes\n"
        "by exchanges the emulator saw (Nx1 = N codes traded once). stderr: what the server\n"
        "printed that it never should."
    )
    text = (
        "every #2 got the identity, one exchange per code"
        if not misses
        else "lost logins or extra exchanges on " + ", ".join(misses)
    )
    print(verdict(not misses, text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
