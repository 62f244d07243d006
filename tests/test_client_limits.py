"""Bounded calls to WeChat over real sockets: ``timeout`` bounds each client call in total (an
upstream dripping a byte every 0.5 s fails within about ``timeout``), bodies are streamed and
refused beyond 64 KiB, and ``exchange_timeout`` bounds the middleware's whole exchange.

``upstream()`` is a small HTTP/1.1 server on a loopback port, in the test's own event loop
(asyncio or trio), whose paths answer as the test says: JSON, JSON after a delay, a drip, an
endless body, a declared 800 MB body. The bounds asserted are several seconds wider than the
configured timeouts: they tell a bounded call from one that runs on, not how fast it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from asgi_wechat_oauth import WeChatOAuthClient, WeChatOAuthMiddleware
from asgi_wechat_oauth._core.upstream import MAX_ANSWER_BYTES, request_json
from asgi_wechat_oauth.errors import UpstreamError, UpstreamTimeout
from asgi_wechat_oauth.testing import WeChatEmulator
from support import APP_URL, CALLBACK

pytestmark = pytest.mark.anyio

DEFAULTS = WeChatEmulator()
#: Room beyond a configured timeout for a loaded machine; a call that is not bounded runs for
#: the whole drip (a minute) or forever.
SLACK = 4.0

Stream = anyio.abc.ByteStream
Answer = Callable[[Stream, dict[str, Any]], Awaitable[None]]


def json_answer(data: dict[str, Any], *, delay: float = 0.0) -> Answer:
    async def answer(stream: Stream, request: dict[str, Any]) -> None:
        await anyio.sleep(delay)
        await stream.send(_response(json.dumps(data).encode()))

    return answer


def drip(data: dict[str, Any], *, interval: float = 0.5) -> Answer:
    """The whole response, status line included, one byte every ``interval`` seconds: each
    read is quick, so httpx's per-phase timeouts never trip."""

    async def answer(stream: Stream, request: dict[str, Any]) -> None:
        for byte in _response(json.dumps(data).encode() + b" " * 200):
            await stream.send(bytes([byte]))
            await anyio.sleep(interval)

    return answer


class Endless:
    """A chunked body that never ends; ``sent`` counts what the client let through."""

    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self, stream: Stream, request: dict[str, Any]) -> None:
        await stream.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
        while True:
            await stream.send(chunk)
            self.sent += 16384


async def declared_huge(stream: Stream, request: dict[str, Any]) -> None:
    """Announces 800 MB, sends a little, then holds the connection."""
    await stream.send(b'HTTP/1.1 200 OK\r\ncontent-length: 800000000\r\n\r\n{"openid": ')
    await anyio.sleep_forever()


async def echo(stream: Stream, request: dict[str, Any]) -> None:
    """Answers the request's method, path and JSON body."""
    body = json.loads(request["body"] or b"null")
    answer = {"method": request["method"], "path": request["path"], "body": body}
    await stream.send(_response(json.dumps(answer).encode()))


def _response(body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n"
    return head % len(body) + body


async def _read_request(stream: Stream) -> dict[str, Any]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", "0")):
        body += await stream.receive()
    return {"method": method, "path": target.split("?")[0], "body": body}


@asynccontextmanager
async def upstream(routes: dict[str, Answer]) -> AsyncIterator[str]:
    """Serve ``routes`` on a free loopback port; yields the base URL."""

    async def handle(stream: Stream) -> None:
        async with stream:
            try:
                request = await _read_request(stream)
                await routes[request["path"]](stream, request)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                pass  # the client hung up: what a bounded client does

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - not Django
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            tg.cancel_scope.cancel()


TOKEN = {
    "access_token": "ACCESS_slow_0001",
    "expires_in": 7200,
    "refresh_token": "REFRESH_slow_0001",
    "openid": "oSlowOpenId",
    "scope": "snsapi_userinfo",
}


def _client(base_url: str, timeout: float) -> WeChatOAuthClient:
    return WeChatOAuthClient(
        DEFAULTS.appid, DEFAULTS.secret, api_base_url=base_url, timeout=timeout
    )


async def test_timeout_bounds_each_call_in_total():
    routes = {"/sns/oauth2/refresh_token": drip(TOKEN)}
    async with upstream(routes) as url, _client(url, timeout=1.0) as wechat:
        started = anyio.current_time()
        with anyio.fail_after(60), pytest.raises(UpstreamTimeout) as exc:
            await wechat.refresh_access_token("REFRESH_stored")
        elapsed = anyio.current_time() - started
    assert exc.value.reason == "upstream_timeout"
    assert elapsed < 1.0 + SLACK


async def test_an_endless_body_is_cut_at_the_cap():
    endless = Endless()
    routes = {"/sns/oauth2/access_token": endless}
    async with upstream(routes) as url, _client(url, timeout=30.0) as wechat:
        with anyio.fail_after(20), pytest.raises(UpstreamError) as exc:
            await wechat.exchange_code("somecode123")
    assert exc.value.reason == "upstream_bad_response"
    assert "65536 bytes" in exc.value.message
    # Streamed and dropped: the client read a little past the cap and hung up (what the
    # server got through also sits in socket buffers).
    assert endless.sent < 64 * MAX_ANSWER_BYTES


async def test_a_declared_huge_body_is_refused_before_reading():
    routes = {"/sns/userinfo": declared_huge}
    async with upstream(routes) as url, _client(url, timeout=30.0) as wechat:
        with anyio.fail_after(20), pytest.raises(UpstreamError) as exc:
            await wechat.get_userinfo("ACCESS_x", "oOpen")
    assert exc.value.reason == "upstream_bad_response"


async def test_request_json_posts_json_for_other_products():
    async with upstream({"/cgi-bin/stable_token": echo}) as url, httpx.AsyncClient() as http:
        data = await request_json(
            http, "POST", f"{url}/cgi-bin/stable_token", body={"a": 1}, timeout=5.0
        )
    assert data == {"method": "POST", "path": "/cgi-bin/stable_token", "body": {"a": 1}}


# --- through the middleware -----------------------------------------------------------------


async def _callback(base_url: str, **options: Any) -> httpx.Response:
    async def downstream(scope: Any, receive: Any, send: Any) -> None:
        me = scope["wechat"]
        body = json.dumps({"openid": me.openid, "userinfo": me.userinfo is not None}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    middleware = WeChatOAuthMiddleware(
        downstream, appid=DEFAULTS.appid, secret=DEFAULTS.secret, api_base_url=base_url, **options
    )
    transport = httpx.ASGITransport(app=middleware)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=APP_URL) as client:
            return await client.get(f"{CALLBACK}?code=somecode123")
    finally:
        await middleware.aclose()


async def test_exchange_timeout_bounds_a_dripping_token_answer():
    async with upstream({"/sns/oauth2/access_token": drip(TOKEN)}) as url:
        started = anyio.current_time()
        with anyio.fail_after(60):
            response = await _callback(url, exchange_timeout=1.0)
        elapsed = anyio.current_time() - started
    assert response.status_code == 504
    assert response.json()["error"] == "upstream_timeout"
    assert elapsed < 1.0 + SLACK


async def test_exchange_timeout_bounds_token_and_userinfo_together():
    # The token takes most of the budget, the profile drips: the login succeeds without the
    # profile once the exchange's budget is spent, not a full timeout later.
    routes = {
        "/sns/oauth2/access_token": json_answer(TOKEN, delay=0.7),
        "/sns/userinfo": drip({"openid": TOKEN["openid"]}),
    }
    async with upstream(routes) as url:
        started = anyio.current_time()
        with anyio.fail_after(60):
            response = await _callback(url, exchange_timeout=1.5)
        elapsed = anyio.current_time() - started
    assert response.status_code == 200
    assert response.json() == {"openid": TOKEN["openid"], "userinfo": False}
    assert elapsed < 1.5 + SLACK


async def test_a_huge_token_answer_is_upstream_bad_response():
    async with upstream({"/sns/oauth2/access_token": Endless()}) as url:
        with anyio.fail_after(20):
            response = await _callback(url, exchange_timeout=10.0)
    assert response.status_code == 502
    assert response.json()["error"] == "upstream_bad_response"


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan, math.inf])
def test_timeout_must_be_positive_and_finite(timeout):
    with pytest.raises(ValueError, match="timeout"):
        WeChatOAuthClient("wx", "secret", timeout=timeout)
