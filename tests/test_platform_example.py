"""examples/platform_app.py: two sites on two authorizers against the emulator in-process, and
the same app under ``uvicorn --workers 4`` sharing a real Redis, with the emulator in a process
of its own pushing the ticket (``POST /_emulator/push_ticket``): 503 before the ticket, then
many logins at once, each with the WeChat browser's double callback: none lost, one component
token for the four workers, one exchange per code, each identity its host's authorizer's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
import httpx
import pytest

from _apps import load_example, running
from _servers import Running, free_port, process, uvicorn_args
from asgi_wechat_oauth.testing import WeChatEmulator, double_callback, web_login
from support import WECHAT_URL

pytestmark = pytest.mark.anyio

PLATFORM = load_example("platform_app")
LOGIN = "/wechat/platform/login"
TICKET = "/wechat/platform/ticket"
WECHAT_UA = {
    "user-agent": "Mozilla/5.0 (Linux; Android 13) Mobile Safari/537.36 MicroMessenger/8.0.47"
}
AS_JSON = {**WECHAT_UA, "accept": "application/json"}


def two_hosts(emulator: WeChatEmulator) -> dict[str, str]:
    first, second = emulator.authorizer_appids[:2]
    return {"a.example": first, "b.example": second}


@pytest.fixture
async def app(emulator: WeChatEmulator, upstream: httpx.AsyncClient) -> AsyncIterator[Any]:
    app = PLATFORM.create_app(
        session_secret="s" * 32,
        hosts=two_hosts(emulator),
        api_base_url=WECHAT_URL,
        authorize_base_url=WECHAT_URL,
        http_client=upstream,
    )
    async with running(app):
        yield app


def browser(app: Any, emulator: WeChatEmulator, host: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        mounts={
            f"http://{host}": httpx.ASGITransport(app=app),
            WECHAT_URL: httpx.ASGITransport(app=emulator),
        },
        base_url=f"http://{host}",
    )


async def test_before_the_ticket_503_then_each_host_logs_in_with_its_authorizer(app, emulator):
    async with browser(app, emulator, "a.example") as client:
        waiting = await client.get(LOGIN, headers=AS_JSON)
        assert waiting.status_code == 503, waiting.text
        assert waiting.json()["error"] == "platform_ticket_pending"
        pushed = await emulator.push_ticket(TICKET, client=client)
        assert (pushed.status_code, pushed.text) == (200, "success")
    for host, appid in two_hosts(emulator).items():
        async with browser(app, emulator, host) as client:
            home = await client.get("/")
            assert appid in home.text and f'href="{LOGIN}?next=/"' in home.text
            landed = await web_login(client, emulator, login_path=LOGIN, next="/me")
            assert (landed.status_code, landed.headers["location"]) == (303, "/me")
            me = (await client.get("/me")).json()
            assert me["appid"] == appid
            assert appid in (await client.get("/")).text
    assert emulator.calls["api_component_token"] == 1
    assert emulator.calls["component_access_token"] == 2
    assert sorted(emulator.exchanges.values()) == [1, 1]


async def test_a_host_without_an_authorizer_is_404_and_no_session(app, emulator):
    async with browser(app, emulator, "a.example") as client:
        await emulator.push_ticket(TICKET, client=client)
    async with browser(app, emulator, "elsewhere.example") as client:
        answer = await client.get(LOGIN, headers=AS_JSON)
        assert answer.status_code == 404 and answer.json()["error"] == "unknown_app"
        assert (await client.get("/me")).status_code == 401


def test_hosts_are_parsed_from_the_environment_form():
    assert PLATFORM.parse_hosts(" A.example=wx1 , b.example=wx2,") == {
        "a.example": "wx1",
        "b.example": "wx2",
    }
    for bad in ["", "a.example", "a.example=", "=wx1"]:
        with pytest.raises(ValueError, match="WECHAT_PLATFORM_HOSTS"):
            PLATFORM.parse_hosts(bad)
    host = PLATFORM.request_host
    assert host({"headers": [(b"host", b"A.Example:8000")]}) == "a.example"
    assert host({"headers": [(b"host", b"[::1]:8000")]}) == "[::1]"
    assert host({"headers": []}) == ""


async def test_the_control_surface_refuses_a_push_it_cannot_make(emulator, upstream):
    bad = await upstream.post("/_emulator/push_ticket", params={"url": "ftp://x/y"})
    assert bad.status_code == 400 and bad.json()["error"] == "bad_settings"
    typo = await upstream.post("/_emulator/push_ticket", params={"ulr": "http://x/"})
    assert typo.status_code == 400 and "did you mean url?" in typo.json()["message"]
    nobody = f"http://127.0.0.1:{free_port()}{TICKET}"
    unanswered = await upstream.post("/_emulator/push_ticket", params={"url": nobody})
    assert unanswered.status_code == 502 and unanswered.json()["error"] == "push_failed"
    assert emulator.calls["api_component_token"] == 0


# --- four workers, one Redis ------------------------------------------------------------------

LOGINS = 160
HOSTS = {"a.example": "wxemulatedauth0001", "b.example": "wxemulatedauth0002"}


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_four_workers_one_component_token_no_login_lost(redis_server):
    emulator_port, port = free_port(), free_port()
    emulator_args = uvicorn_args(
        "asgi_wechat_oauth.testing:WeChatEmulator", emulator_port, "--factory"
    )
    with process(emulator_args, emulator_port) as emulator:
        env = {
            "WECHAT_PLATFORM_API_BASE_URL": emulator.url,
            "WECHAT_PLATFORM_AUTHORIZE_BASE_URL": emulator.url,
            "WECHAT_PLATFORM_HOSTS": ",".join(f"{h}={a}" for h, a in HOSTS.items()),
            "WECHAT_PLATFORM_REDIS_URL": redis_server.url,
            "WECHAT_PLATFORM_REDIS_PREFIX": f"platform-example-{uuid.uuid4().hex[:8]}",
            "WECHAT_PLATFORM_SESSION_SECRET": "s" * 32,
            # What is asserted is that no login is lost, not how fast: room for a busy machine.
            "WECHAT_PLATFORM_EXCHANGE_TIMEOUT": "20",
            "WECHAT_PLATFORM_LEASE_TTL": "25",
        }
        args = uvicorn_args("examples.platform_app:app", port, "--workers", "4")
        with process(args, port, env) as app:
            async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
                # Before WeChat's first push: a clear 503, whichever worker answers.
                for host in [*HOSTS, *HOSTS]:
                    waiting = await client.get(LOGIN, headers={**AS_JSON, "host": host})
                    assert waiting.status_code == 503, waiting.text
                    assert waiting.json()["error"] == "platform_ticket_pending"
            # No keep-alive: the emulator may close an idle connection just as it is reused
            # (a ReadError on a loaded machine), which is not what this test is about.
            control = httpx.AsyncClient(
                base_url=emulator.url,
                timeout=30,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
            async with control:
                pushed = await control.post(
                    "/_emulator/push_ticket", params={"url": app.url + TICKET}
                )
                assert pushed.json() == {"status": 200, "body": "success"}
                identities = await _logins(app, control, LOGINS)
                stats = (await control.get("/_emulator/stats")).json()
    assert len(identities) == LOGINS  # no login lost
    for host, me in identities:
        assert me["appid"] == HOSTS[host]
    # One openid per authorizer for the emulator's one user: the accounts' openids differ.
    openids = {host: {me["openid"] for h, me in identities if h == host} for host in HOSTS}
    assert all(len(found) == 1 for found in openids.values())
    assert openids["a.example"] != openids["b.example"]
    calls = stats["calls"]
    assert calls["ticket_push"] == 1
    assert calls["api_component_token"] == 1  # one component token across the four workers
    assert calls["component_access_token"] == LOGINS
    assert len(stats["exchanges"]) == LOGINS
    assert set(stats["exchanges"].values()) == {1}  # one exchange per code


async def _logins(
    app: Running, control: httpx.AsyncClient, n: int
) -> list[tuple[str, dict[str, str]]]:
    """``n`` browsers, the hosts in turn, walk the login and the consent page; then, with
    WeChat slow to answer (so the workers' first exchanges overlap), all send their double
    callbacks at once; each then asks ``/me`` who it is."""
    limits = httpx.Limits(max_keepalive_connections=0)
    hosts = [list(HOSTS)[i % len(HOSTS)] for i in range(n)]
    browsers = [
        httpx.AsyncClient(
            base_url=app.url, headers={**WECHAT_UA, "host": host}, timeout=30, limits=limits
        )
        for host in hosts
    ]
    callbacks: dict[int, str] = {}
    identities: list[tuple[str, dict[str, str]]] = []
    try:
        limiter = anyio.CapacityLimiter(32)

        async def consent(i: int) -> None:
            async with limiter:
                to_wechat = await browsers[i].get(LOGIN, params={"next": "/me"})
                assert to_wechat.status_code == 302, to_wechat.text
                authorize = to_wechat.headers["location"].split("#")[0]
                to_callback = await control.get(authorize)
                location = httpx.URL(to_callback.headers["location"])
                assert location.host == hosts[i]
                callbacks[i] = location.raw_path.decode("ascii")

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(consent, i)
        settings = await control.post("/_emulator/settings", params={"latency": 0.2})
        settings.raise_for_status()

        async def callback(i: int) -> None:
            landed = await double_callback(browsers[i], callbacks[i])
            assert (landed.status_code, landed.headers.get("location")) == (303, "/me"), landed.text
            me = await browsers[i].get("/me")
            assert me.status_code == 200, me.text
            identities.append((hosts[i], me.json()))

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(partial(callback, i))
    finally:
        for client in browsers:
            await client.aclose()
    return identities
