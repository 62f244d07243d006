"""Shutting down while logins are in flight.

- The ASGI lifespan driven by hand around a middleware that owns its HTTP client (real network:
  the emulator runs in its own process): ``lifespan.shutdown`` arrives while exchanges are in
  flight. Exchanges that WeChat answers within the bound finish and their users get the
  identity; slower ones end with ``upstream_timeout`` within ``exchange_timeout``; shutdown
  completes within that bound too, and the owned client is closed.
- A real server process (uvicorn, hypercorn, hypercorn on trio) given SIGTERM while a login is in
  flight: the login is answered, the process exits within a bound, and its stderr has no
  "Task was destroyed", no unclosed resources, no ResourceWarning.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from _servers import ROOT, emulator_process, emulator_stats, free_port, wait_for_port
from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.testing import WeChatEmulator, consent
from support import APP_URL, CALLBACK, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DEFAULTS = WeChatEmulator()  # the emulator process runs with the default appid, secret, user
EXCHANGE_TIMEOUT = 2.0
#: The middleware's backstops beyond exchange_timeout, and room for a loaded machine.
SLACK = 2 * 1.0 + 8.0
BAD_OUTPUT = ("Task was destroyed", "Unclosed", "unclosed", "ResourceWarning", "exchange_crashed")


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with emulator_process() as url:
        yield url


async def identity(request: Request) -> JSONResponse:
    return JSONResponse({"openid": request.scope["wechat"].openid})


async def issue_code(emulator_url: str, redirect_base: str = APP_URL) -> str:
    async with httpx.AsyncClient() as control:
        redirect_uri = f"{redirect_base}{CALLBACK}"
        callback = await consent(
            control, emulator_url, appid=DEFAULTS.appid, redirect_uri=redirect_uri
        )
    return parse_qs(urlsplit(callback).query)["code"][0]


async def set_latency(emulator_url: str, latency: float) -> None:
    async with httpx.AsyncClient() as control:
        await control.post(f"{emulator_url}/_emulator/reset")
        response = await control.post(
            f"{emulator_url}/_emulator/settings", params={"latency": latency}
        )
        response.raise_for_status()


async def total_exchanges(emulator_url: str) -> dict[str, int]:
    async with httpx.AsyncClient() as control:
        stats = (await control.get(f"{emulator_url}/_emulator/stats")).json()
    return dict(stats["exchanges"])


class Lifespan:
    """Runs an ASGI app's lifespan by hand: :meth:`send` a message, :meth:`expect` one back."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.to_app, self._inbox = anyio.create_memory_object_stream[dict[str, Any]](4)
        self._outbox_send, self.from_app = anyio.create_memory_object_stream[dict[str, Any]](4)

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        async with self._inbox, self._outbox_send:
            await self.app(scope, self._inbox.receive, self._outbox_send.send)

    async def send(self, message_type: str) -> None:
        await self.to_app.send({"type": message_type})

    async def expect(self, message_type: str) -> None:
        message = await self.from_app.receive()
        assert message["type"] == message_type, message

    async def aclose(self) -> None:
        await self.to_app.aclose()
        await self.from_app.aclose()


@pytest.mark.parametrize(
    ("latency", "expected"),
    [
        pytest.param(1.0, (200, "identity"), id="wechat-answers-within-the-bound"),
        pytest.param(30.0, (504, "upstream_timeout"), id="wechat-never-answers"),
    ],
)
async def test_lifespan_shutdown_with_exchanges_in_flight(
    emulator_url, latency, expected, caplog
) -> None:
    caplog.set_level(logging.INFO)
    await set_latency(emulator_url, latency)
    downstream = Starlette(routes=[Route(CALLBACK, identity)])
    middleware = WeChatOAuthMiddleware(  # no http_client: the middleware owns one
        downstream,
        appid=DEFAULTS.appid,
        secret=DEFAULTS.secret,
        api_base_url=emulator_url,
        exchange_timeout=EXCHANGE_TIMEOUT,
    )
    lifespan = Lifespan(middleware)
    codes = [await issue_code(emulator_url) for _ in range(3)]
    answers: list[tuple[int, str]] = []
    transport = httpx.ASGITransport(app=middleware)
    with anyio.fail_after(EXCHANGE_TIMEOUT + SLACK):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lifespan.run)
            await lifespan.send("lifespan.startup")
            await lifespan.expect("lifespan.startup.complete")
            async with httpx.AsyncClient(transport=transport, base_url=APP_URL) as client:

                async def login(code: str) -> None:
                    response = await client.get(f"{CALLBACK}?code={code}&state=bye")
                    ok = response.status_code == 200
                    reason = "identity" if ok else response.json()["error"]
                    answers.append((response.status_code, reason))

                async with anyio.create_task_group() as logins:
                    for code in codes:  # each code twice: a leader and a duplicate waiting
                        logins.start_soon(login, code)
                        logins.start_soon(login, code)
                    await wait_until(lambda: middleware.backend.in_flight == len(codes))
                    exchanges = await total_exchanges(emulator_url)
                    assert sorted(exchanges) == sorted(codes)  # all at WeChat: codes spent
                    started = anyio.current_time()
                    await lifespan.send("lifespan.shutdown")
                    await lifespan.expect("lifespan.shutdown.complete")
                    shutdown = anyio.current_time() - started
                    closed_at_shutdown = middleware.client._http_client is None
            await lifespan.aclose()
    gc.collect()  # anything left unclosed warns now, and warnings are errors
    print(
        f"\nlatency {latency}s: shutdown took {shutdown:.2f}s with {len(codes)} exchanges in "
        f"flight; the {len(answers)} callbacks got {sorted(set(answers))}"
    )
    assert answers == [expected] * (2 * len(codes))
    assert closed_at_shutdown
    assert middleware.client._http_client is None
    assert shutdown < EXCHANGE_TIMEOUT + SLACK
    assert (await total_exchanges(emulator_url)) == {code: 1 for code in codes}
    for record in caplog.records:
        assert "Task was destroyed" not in record.getMessage()
        assert "exchange_crashed" not in record.getMessage()
        assert not (record.name == "asyncio" and record.levelno >= logging.ERROR)


# --- a real server process given SIGTERM ---------------------------------------------------------

SERVERS = ["uvicorn", "hypercorn", "hypercorn-trio"]


def server_args(server: str, port: int) -> list[str]:
    app = "examples.starlette_app:app"
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "info", "--no-access-log",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}",
        "--log-level", "info", "--graceful-timeout", "10",
        "--worker-class", "trio" if server == "hypercorn-trio" else "asyncio",
    ]  # fmt: skip


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_sigterm_with_a_login_in_flight(server, emulator_url) -> None:
    latency = 1.5
    await set_latency(emulator_url, latency)
    port = free_port()
    env = {
        **os.environ,
        "WECHAT_APPID": DEFAULTS.appid,
        "WECHAT_SECRET": DEFAULTS.secret,
        "WECHAT_API_BASE_URL": emulator_url,
        "PYTHONWARNINGS": "default::ResourceWarning",
        "PYTHONTRACEMALLOC": "5",
    }
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            server_args(server, port),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_for_port(port, proc)
            app_url = f"http://127.0.0.1:{port}"
            code = await issue_code(emulator_url, app_url)
            result: dict[str, Any] = {}

            async def login() -> None:
                async with httpx.AsyncClient(timeout=30) as browser:
                    try:
                        result["response"] = await browser.get(
                            f"{app_url}{CALLBACK}?code={code}&state=term"
                        )
                    except httpx.HTTPError as exc:
                        result["error"] = type(exc).__name__

            with anyio.fail_after(latency + SLACK + 10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(login)
                    while emulator_stats(emulator_url)["exchanges"].get(code, 0) < 1:  # type: ignore[union-attr]
                        await anyio.sleep(0.02)
                    started = anyio.current_time()
                    proc.send_signal(signal.SIGTERM)
                    while proc.poll() is None:
                        await anyio.sleep(0.02)
                    exited = anyio.current_time() - started
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        stderr.seek(0)
        output = stderr.read().decode(errors="replace")
    response = result.get("response")
    print(
        f"\n{server}: SIGTERM with a login in flight -> exit {proc.returncode} after "
        f"{exited:.2f}s; the login got "
        f"{response.status_code if response is not None else result.get('error')}"
    )
    assert response is not None, (result, output[-3000:])
    assert response.status_code == 200, response.text
    assert response.json()["openid"] == DEFAULTS.user.openid
    # uvicorn re-raises the signal once it has shut down cleanly; hypercorn exits with 0.
    assert proc.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert exited < latency + SLACK
    for bad in BAD_OUTPUT:
        assert bad not in output, output[-3000:]
