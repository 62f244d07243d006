"""Upstream faults over real sockets: five callbacks carrying one code all get the same answer,
within a bound, and a fresh code works right after.

WeChat is the emulator in its own process (uvicorn), reached through ``FaultProxy``, a TCP server
on loopback in this process. The proxy holds each new connection until the test releases it (so
that all five callbacks are parked on one flight first), then passes the bytes through, or plays
a network fault itself: a RST after the request (SO_LINGER 0), a response that never comes, or
a TLS-free slow drip (headers, then the body a byte at a time, each byte sooner than httpx's
read timeout but the whole far later than ``exchange_timeout``). The emulator plays WeChat's own
faults (latency, errcode -1, HTTP 500/502, malformed JSON, truncated body, dropped connection).

The middleware owns its HTTP client here, as in production: real timeouts, a real pool.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import httpx
import pytest

from _servers import emulator_process
from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.testing import WeChatEmulator
from support import APP_URL, CALLBACK, CountingBackend, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DEFAULTS = WeChatEmulator()  # the emulator process runs with the default appid, secret, user
WAITERS = 5
#: The middleware's own backstop beyond exchange_timeout (``_singleflight._GRACE``, twice for
#: waiters), plus generous room for a loaded machine: only a hang fails this bound.
SLACK = 2 * 1.0 + 8.0


@dataclass(frozen=True)
class Case:
    """A fault, and what every one of the five callbacks must get."""

    status: int
    answer: str  # the error's reason, or "identity"
    exchanges: int  # calls to sns/oauth2/access_token the emulator sees for the code
    proxy: str = "pass"  # how FaultProxy answers: pass, reset, no_answer, drip
    fault: str | None = None  # an emulator Fault
    count: int = 1
    endpoint: str = "access_token"
    latency: float = 0.0  # the emulator's
    scope: str = "snsapi_base"
    exchange_timeout: float = 5.0  # timeouts are not what most cases are about: room to park


CASES = {
    "latency_beyond_timeout": Case(504, "upstream_timeout", 1, latency=4.0, exchange_timeout=1.0),
    "busy_once_then_ok": Case(200, "identity", 2, fault="busy"),
    "busy_twice": Case(502, "upstream_busy", 2, fault="busy", count=2),
    "http_500": Case(502, "upstream_unavailable", 1, fault="http_500"),
    "http_502": Case(502, "upstream_unavailable", 1, fault="http_502"),
    "malformed_json": Case(502, "upstream_bad_response", 1, fault="malformed_json"),
    "truncated_body": Case(502, "upstream_unavailable", 1, fault="truncated"),
    "dropped_after_status": Case(502, "upstream_unavailable", 1, fault="drop"),
    "connection_reset": Case(502, "upstream_unavailable", 0, proxy="reset"),
    "no_answer": Case(504, "upstream_timeout", 0, proxy="no_answer", exchange_timeout=1.0),
    "slow_drip": Case(504, "upstream_timeout", 0, proxy="drip", exchange_timeout=1.0),
    # sns/userinfo failing after the code is spent: the login is kept, without the profile.
    "userinfo_http_500": Case(
        200, "identity", 1, fault="http_500", endpoint="userinfo", scope="snsapi_userinfo"
    ),
    "userinfo_slow_drip": Case(
        200, "identity", 1, proxy="drip_userinfo", scope="snsapi_userinfo", exchange_timeout=1.0
    ),
}

#: What the slow drip sends: a valid answer, had anyone the patience to read it all.
DRIP_BODY = json.dumps(
    {
        "access_token": "ACCESS_drip",
        "expires_in": 7200,
        "refresh_token": "REFRESH_drip",
        "openid": DEFAULTS.user.openid,
        "scope": "snsapi_base",
    }
).encode()
DRIP_INTERVAL = 0.2  # per byte: well under httpx's read timeout (= exchange_timeout)


class FaultProxy:
    """A TCP server on loopback in front of the emulator process. Each connection waits until
    :meth:`release`, then gets the behaviour of ``mode`` as it was when it was accepted."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode = "pass"
        self.arrived = 0
        self.port = 0
        self._released = anyio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        self._released.set()

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
        async with listener:
            task_status.started()
            await listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        self.arrived += 1
        mode = self.mode
        async with client:
            with anyio.fail_after(30):  # a broken test must not hang on a connection
                await self._released.wait()
            try:
                if mode == "pass":
                    await self._pipe(client)
                    return
                head = await _read_head(client)
                if mode == "drip_userinfo":
                    if b"/sns/userinfo" not in head.split(b"\r\n", 1)[0]:
                        # One request per connection, so that sns/userinfo comes on a new one.
                        close = head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
                        await self._pipe(client, close)
                        return
                    mode = "drip"
                if mode == "reset":
                    raw = client.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif mode == "no_answer":
                    with anyio.fail_after(30):
                        await client.receive()  # until the middleware gives up and closes
                elif mode == "drip":
                    await client.send(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(DRIP_BODY)
                    )
                    for byte in DRIP_BODY:
                        await anyio.sleep(DRIP_INTERVAL)
                        await client.send(bytes([byte]))
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the middleware closed its side: what it should do

    async def _pipe(self, client: anyio.abc.SocketStream, already: bytes = b"") -> None:
        async with await anyio.connect_tcp("127.0.0.1", self.target_port) as upstream:
            if already:
                await upstream.send(already)
            async with anyio.create_task_group() as tg:

                async def copy(src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream) -> None:
                    try:
                        async for chunk in src:
                            await dst.send(chunk)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(copy, client, upstream)
                tg.start_soon(copy, upstream, client)


async def _read_head(stream: anyio.abc.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    return data


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with emulator_process() as url:
        yield url


@pytest.fixture
async def proxy(emulator_url: str) -> AsyncIterator[FaultProxy]:
    async with httpx.AsyncClient() as control:
        (await control.post(f"{emulator_url}/_emulator/reset")).raise_for_status()
    proxy = FaultProxy(urlsplit(emulator_url).port or 0)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        yield proxy
        tg.cancel_scope.cancel()


async def identity_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    me = scope["wechat"]
    nickname = me.userinfo.nickname if me.userinfo is not None else None
    body = json.dumps({"openid": me.openid, "nickname": nickname}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def issue_code(emulator_url: str, scope: str) -> str:
    async with httpx.AsyncClient() as control:
        response = await control.get(
            f"{emulator_url}/connect/oauth2/authorize",
            params={
                "appid": DEFAULTS.appid,
                "redirect_uri": f"{APP_URL}{CALLBACK}",
                "response_type": "code",
                "scope": scope,
            },
        )
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


async def configure(emulator_url: str, **settings: Any) -> None:
    async with httpx.AsyncClient() as control:
        response = await control.post(f"{emulator_url}/_emulator/settings", params=settings)
        response.raise_for_status()


async def exchanges_of(emulator_url: str, code: str) -> int:
    async with httpx.AsyncClient() as control:
        stats = (await control.get(f"{emulator_url}/_emulator/stats")).json()
    return int(stats["exchanges"].get(code, 0))


def answer_of(response: httpx.Response) -> tuple[int, str]:
    if response.status_code == 200:
        return 200, "identity"
    return response.status_code, response.json()["error"]


@pytest.mark.parametrize("name", list(CASES))
async def test_fault_releases_every_waiter_with_the_same_answer(name, proxy, emulator_url):
    case = CASES[name]
    backend = CountingBackend(MemoryBackend())
    middleware = WeChatOAuthMiddleware(
        identity_app,
        appid=DEFAULTS.appid,
        secret=DEFAULTS.secret,
        api_base_url=proxy.url,
        exchange_timeout=case.exchange_timeout,
        backend=backend,
    )
    transport = httpx.ASGITransport(app=middleware)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=APP_URL) as client:
            proxy.mode = case.proxy
            settings: dict[str, Any] = {"latency": case.latency}
            if case.fault:
                settings.update(fault=case.fault, count=case.count, endpoint=case.endpoint)
            await configure(emulator_url, **settings)
            code = await issue_code(emulator_url, case.scope)
            url = f"{CALLBACK}?code={code}&state=fault"
            responses: list[httpx.Response] = []

            async def callback() -> None:
                responses.append(await client.get(url))

            started = anyio.current_time()
            with anyio.fail_after(case.exchange_timeout + SLACK):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(callback)
                    await wait_until(lambda: proxy.arrived >= 1)  # the leader's exchange
                    for _ in range(WAITERS - 1):
                        tg.start_soon(callback)
                    await wait_until(lambda: middleware.counters.waiting == WAITERS - 1)
                    proxy.release()
            elapsed = anyio.current_time() - started
            answers = [answer_of(r) for r in responses]
            exchanges = await exchanges_of(emulator_url, code)

            # The next login, with a fresh code, works.
            proxy.mode = "pass"
            await configure(emulator_url, latency=0)
            fresh = await issue_code(emulator_url, case.scope)
            with anyio.fail_after(case.exchange_timeout + SLACK):
                after = await client.get(f"{CALLBACK}?code={fresh}&state=fresh")
            fresh_exchanges = await exchanges_of(emulator_url, fresh)
    finally:
        await middleware.aclose()
    print(
        f"\n{name}: {WAITERS} callbacks -> {sorted(set(answers))} in {elapsed:.2f}s "
        f"(exchange_timeout {case.exchange_timeout}s), {exchanges} exchange(s); "
        f"fresh code -> {after.status_code}"
    )
    assert answers == [(case.status, case.answer)] * WAITERS
    assert exchanges == case.exchanges
    if case.status == 200:
        assert {r.json()["openid"] for r in responses} == {DEFAULTS.user.openid}
        if case.scope == "snsapi_userinfo":
            assert {r.json()["nickname"] for r in responses} == {None}
    assert after.status_code == 200
    assert after.json()["openid"] == DEFAULTS.user.openid
    assert fresh_exchanges == 1
    assert middleware.client._http_client is None  # aclose() closed the owned client
