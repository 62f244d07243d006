"""examples/wecom_app.py end to end against the WeCom emulator (in-process), and the same app
under ``uvicorn --workers 4`` sharing a real Redis: many logins on a cold start, one corp
token fetch."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from _apps import load_example, running
from _servers import free_port, process, uvicorn_args
from asgi_wechat_oauth.testing import WeComEmulator

pytestmark = pytest.mark.anyio

WECOM = load_example("wecom_app")
APP_URL = "http://app.test"
WECOM_URL = "http://wecom.test"


@pytest.fixture
def wecom() -> WeComEmulator:
    return WeComEmulator()


@pytest.fixture
async def browser(wecom: WeComEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wecom)) as upstream:
        app = WECOM.create_app(
            session_secret="s" * 32,
            api_base_url=WECOM_URL,
            authorize_base_url=WECOM_URL,
            qr_login_base_url=WECOM_URL,
            http_client=upstream,
        )
        async with (
            running(app),
            httpx.AsyncClient(
                mounts={
                    APP_URL: httpx.ASGITransport(app=app),
                    WECOM_URL: httpx.ASGITransport(app=wecom),
                },
                base_url=APP_URL,
                follow_redirects=True,
            ) as client,
        ):
            yield client


async def test_the_login_link_ends_on_the_home_page_greeting_the_member(browser, wecom):
    home = await browser.get("/")
    assert 'href="/wecom/login?next=/"' in home.text
    page = await browser.get("/wecom/login?next=/")
    assert page.status_code == 200, page.text
    assert (page.url.host, page.url.path) == ("app.test", "/")
    assert f"Hello, {wecom.user.userid}" in page.text
    assert (await browser.get("/me")).json() == {"userid": wecom.user.userid}
    assert wecom.calls["gettoken"] == 1 and wecom.calls["getuserinfo"] == 1


async def test_a_declined_login_is_answered_by_the_middleware(browser, wecom):
    wecom.decline_qr_login = True
    page = await browser.get("/wecom/login?next=/")
    assert page.status_code == 403 and page.json()["error"] == "login_declined"
    assert (await browser.get("/me")).status_code == 401


# --- four workers, one Redis ------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_four_workers_on_a_cold_start_fetch_one_corp_token(redis_server, backend):
    """Redis: four workers behind one port share one corp token. Memory, the control: two
    workers (two processes, each callback sent to one or the other in turn, as a balancer
    would; how the kernel spreads a ``--workers 4`` server's connections is left to chance)
    each fetch their own."""
    logins = 40
    emulator_port = free_port()
    emulator_args = uvicorn_args(
        "asgi_wechat_oauth.testing:WeComEmulator", emulator_port, "--factory"
    )
    with process(emulator_args, emulator_port) as emulator:
        # Slow answers, so that the workers' first token requests all overlap.
        settings = httpx.post(f"{emulator.url}/_emulator/settings", params={"latency": 0.3})
        settings.raise_for_status()
        env = {
            "WECOM_API_BASE_URL": emulator.url,
            "WECOM_AUTHORIZE_BASE_URL": emulator.url,
            "WECOM_QR_LOGIN_BASE_URL": emulator.url,
            "WECOM_REDIS_URL": redis_server.url if backend == "redis" else "",
            "WECOM_REDIS_PREFIX": f"wecom-proc-{uuid.uuid4().hex[:8]}",
            "WECOM_SESSION_SECRET": "s" * 32,
        }
        if backend == "redis":
            port = free_port()
            args = uvicorn_args("examples.wecom_app:app", port, "--workers", "4")
            with process(args, port, env) as app:
                statuses = await _logins(app.url, logins)
                stats = httpx.get(f"{emulator.url}/_emulator/stats").json()
        else:
            port_a, port_b = free_port(), free_port()
            with (
                process(uvicorn_args("examples.wecom_app:app", port_a), port_a, env) as a,
                process(uvicorn_args("examples.wecom_app:app", port_b), port_b, env) as b,
            ):
                statuses = await _logins(a.url, logins, other_url=b.url)
                stats = httpx.get(f"{emulator.url}/_emulator/stats").json()
    assert statuses == [303] * logins
    assert stats["calls"]["getuserinfo"] == logins
    assert set(stats["exchanges"].values()) == {1}
    # What the shared backend fixes: without it each worker fetches a token of its own.
    assert stats["calls"]["gettoken"] == (1 if backend == "redis" else 2)


async def _logins(app_url: str, n: int, *, other_url: str | None = None) -> list[int]:
    """``n`` browsers walk the login and the QR page, then all send their callbacks at once
    (new connections, spread over the workers by the kernel); with ``other_url``, every
    second callback goes to that worker instead."""
    limits = httpx.Limits(max_keepalive_connections=0)
    browsers = [httpx.AsyncClient(timeout=30, limits=limits) for _ in range(n)]
    try:
        callbacks = []
        for browser in browsers:
            to_wecom = await browser.get(f"{app_url}/wecom/login?next=/")
            to_callback = await browser.get(to_wecom.headers["location"])
            url = to_callback.headers["location"]
            if other_url is not None and len(callbacks) % 2:
                url = url.replace(app_url, other_url, 1)
            callbacks.append(url)
        statuses: list[int] = []

        async def callback(browser: httpx.AsyncClient, url: str) -> None:
            statuses.append((await browser.get(url)).status_code)

        async with anyio.create_task_group() as tg:
            for browser, url in zip(browsers, callbacks, strict=True):
                tg.start_soon(callback, browser, url)
        return statuses
    finally:
        for browser in browsers:
            await browser.aclose()
