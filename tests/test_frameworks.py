"""Django and Litestar, each served by a real uvicorn with its example app
(``examples/django_app``, ``examples/litestar_app.py``), logging in through a WeChat emulator in
another process, with a real httpx client that keeps cookies as a browser does: the login link,
WeChat's consent, the WeChat browser's double callback, the session, the greeting.

Django runs with its defaults (``APPEND_SLASH=True``, routes ending with a slash) and has no
lifespan: the middleware answers the server's lifespan events itself. Its callback is served
both at ``callback_path="/wechat/callback/"`` (the route's own spelling) and at the default
``/wechat/callback``, whose slash redirect comes back to the middleware.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from _servers import emulator_process, emulator_stats, free_port, process, uvicorn_args
from asgi_wechat_oauth.testing import WeChatEmulator, double_callback

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DEFAULTS = WeChatEmulator()
NICKNAME = DEFAULTS.user.nickname
APPS = {"django": "examples.django_app.asgi:application", "litestar": "examples.litestar_app:app"}


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    emulator_url: str

    def stop(self) -> str:
        """SIGTERM, as a process manager does; the server's log."""
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return err.decode()


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with emulator_process() as url:
        yield url


@contextlib.contextmanager
def serve(app: str, emulator_url: str, **env: str) -> Iterator[Server]:
    port = free_port()
    variables = {
        "WECHAT_APPID": DEFAULTS.appid,
        "WECHAT_SECRET": DEFAULTS.secret,
        "WECHAT_API_BASE_URL": emulator_url,
        "WECHAT_AUTHORIZE_BASE_URL": emulator_url,
        **env,
    }
    args = uvicorn_args(APPS[app], port, "--log-level", "info")
    with process(args, port, env=variables) as running:
        yield Server(running.url, running.proc, emulator_url)


@pytest.fixture(scope="module")
def django(emulator_url: str) -> Iterator[Server]:
    with serve("django", emulator_url) as server:
        yield server


@pytest.fixture
def django_default_callback_path(emulator_url: str) -> Iterator[Server]:
    """Django with the middleware's default ``callback_path``, which has no trailing slash."""
    with serve("django", emulator_url, WECHAT_CALLBACK_PATH="/wechat/callback") as server:
        yield server


@pytest.fixture(scope="module")
def litestar(emulator_url: str) -> Iterator[Server]:
    with serve("litestar", emulator_url) as server:
        yield server


async def consent(client: httpx.AsyncClient, server: Server) -> str:
    """Open the home page and follow its login link through WeChat's consent; return the
    callback URL WeChat redirects to (not requested yet)."""
    home = await client.get("/")
    assert home.status_code == 200 and "Welcome" in home.text
    link = re.search(r'id="login" href="([^"]+)"', home.text)
    assert link is not None, home.text
    to_wechat = await client.get(link.group(1).replace("&amp;", "&"))
    assert to_wechat.status_code == 302, to_wechat.text
    assert to_wechat.headers["location"].startswith(server.emulator_url)
    to_callback = await client.get(to_wechat.headers["location"])
    assert to_callback.status_code == 302, to_callback.text
    callback = to_callback.headers["location"]
    assert callback.startswith(server.url)
    return callback


def code_of(url: str) -> str:
    return str(httpx.URL(url).params["code"])


@pytest.mark.parametrize("app", ["django", "litestar"])
async def test_double_callback_logs_the_user_in_with_one_exchange(app, request):
    server: Server = request.getfixturevalue(app)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        callback = await consent(client, server)
        answer = await double_callback(client, callback)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/"
        home = await client.get("/")
    assert home.status_code == 200
    assert f"Hello, {NICKNAME}" in home.text
    assert emulator_stats(server.emulator_url)["exchanges"][code_of(callback)] == 1


async def test_django_slash_redirect_comes_back_and_gets_the_identity(
    django_default_callback_path,
):
    server = django_default_callback_path
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        callback = await consent(client, server)
        assert httpx.URL(callback).path == "/wechat/callback"
        first = await client.get(callback)
        # Django's APPEND_SLASH answers the traded callback with a 301 to the route's spelling,
        # which the middleware also intercepts: it serves the stored identity.
        assert first.status_code == 301
        assert httpx.URL(first.headers["location"]).path == "/wechat/callback/"
        second = await client.get(first.headers["location"])
        assert second.status_code == 303, second.text
        home = await client.get("/")
    assert f"Hello, {NICKNAME}" in home.text
    assert emulator_stats(server.emulator_url)["exchanges"][code_of(callback)] == 1
    log = server.stop()
    warnings = [line for line in log.splitlines() if "wechat_oauth.callback_unhandled" in line]
    assert len(warnings) == 1, log
    assert "answered 301" in warnings[0] and "callback_path='/wechat/callback/'" in warnings[0]
    assert code_of(callback) not in log


@pytest.mark.parametrize("app", ["django", "litestar"])
async def test_lifespan_runs_and_shutdown_completes(app, emulator_url):
    """Django refuses the lifespan protocol: the middleware answers it, so uvicorn reports a
    normal startup and shutdown (no 'lifespan unsupported'). Litestar keeps its own."""
    with serve(app, emulator_url) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/")).status_code == 200
        log = server.stop()
    # uvicorn exits 0, or re-raises SIGTERM after its graceful shutdown (newer versions).
    assert server.proc.returncode in (0, -signal.SIGTERM), log
    assert "Application startup complete." in log
    assert "Application shutdown complete." in log
    assert "unsupported" not in log and "Traceback" not in log and "ERROR" not in log, log
