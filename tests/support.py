"""Helpers shared by the tests: overlap control, a waiter-counting backend, raw ASGI calls.

Nothing here replaces the code under test: requests still go through the middleware and the
emulator. The helpers only make overlaps certain instead of timed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from asgi_wechat_oauth.backends import Backend, Claim, Outcome

APP_URL = "http://app.test"
WECHAT_URL = "http://wechat.test"
CALLBACK = "/wechat/callback"


def browser_at(app: Any, emulator: Any, host: str) -> httpx.AsyncClient:
    """A browser on ``http://{host}`` (served by ``app``) that reaches ``emulator`` at
    ``WECHAT_URL``: a site whose app is picked by its host."""
    return httpx.AsyncClient(
        mounts={
            f"http://{host}": httpx.ASGITransport(app=app),
            WECHAT_URL: httpx.ASGITransport(app=emulator),
        },
        base_url=f"http://{host}",
    )


def code_key(appid: str, code: str) -> str:
    """The backend key the middleware derives from a code (a hash, never the code)."""
    return hashlib.sha256(f"{appid}:{code}".encode()).hexdigest()


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail (TimeoutError) if it does not within ``timeout``.

    The bound only turns a hang into a failure: no assertion depends on how fast it holds."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.001)


class Gate:
    """An ASGI app in front of the emulator that holds requests to ``path`` until opened.

    It plays the network between the middleware and WeChat, under the test's control: a test
    waits until a request has *arrived* at the gate (so the middleware has claimed the code and
    is mid-exchange), arranges what it needs, then opens the gate. The emulator still answers
    every request. A request held longer than ``max_hold`` fails as a dropped connection, so a
    broken test cannot hang.
    """

    def __init__(
        self, app: Any, path: str = "/sns/oauth2/access_token", *, max_hold: float = 10.0
    ) -> None:
        self.app = app
        self.path = path
        self.max_hold = max_hold
        self.arrived = 0
        self._open = anyio.Event()

    def open(self) -> None:
        self._open.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            self.arrived += 1
            try:
                with anyio.fail_after(self.max_hold):
                    await self._open.wait()
            except TimeoutError:
                raise ConnectionResetError("gate never opened") from None
        await self.app(scope, receive, send)


class CountingBackend:
    """Wraps any backend and counts the requests parked in :meth:`wait` right now
    (``waiting``) and since it was made (``waits``).

    Followers in the process that leads a flight wait on the leader, not in the backend: for
    them a test reads ``middleware.counters.waiting``. ``waiting == n`` tells a test that n
    duplicates are waiting on the flight, so releasing the leader afterwards proves they were
    served by that flight and not by the result cache.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.lease_ttl = inner.lease_ttl
        self.waiting = 0
        self.waits = 0

    def __getattr__(self, name: str) -> Any:  # in_flight, stored, ...
        return getattr(self.inner, name)

    async def claim(self, key: str) -> Claim:
        return await self.inner.claim(key)

    async def complete(
        self, key: str, lease: str, outcome: Outcome, *, ttl: float
    ) -> Outcome | None:
        return await self.inner.complete(key, lease, outcome, ttl=ttl)

    async def wait(self, key: str, *, timeout: float) -> Outcome | None:
        self.waiting += 1
        self.waits += 1
        try:
            return await self.inner.wait(key, timeout=timeout)
        finally:
            self.waiting -= 1

    async def recover(self, key: str, *, timeout: float) -> Outcome | None:
        return await self.inner.recover(key, timeout=timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def get_all(client: httpx.AsyncClient, urls: list[str]) -> list[httpx.Response]:
    """GET every URL concurrently; responses in the order of ``urls``."""
    responses: list[httpx.Response | None] = [None] * len(urls)

    async def one(index: int, url: str) -> None:
        responses[index] = await client.get(url)

    async with anyio.create_task_group() as tg:
        for index, url in enumerate(urls):
            tg.start_soon(one, index, url)
    return [r for r in responses if r is not None]


class RawResponse:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        start = messages[0]
        assert start["type"] == "http.response.start"
        self.status: int = start["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        self.body = b"".join(m.get("body", b"") for m in messages[1:])


def http_scope(
    path: str = CALLBACK, query_string: bytes = b"", method: str = "GET", **extra: Any
) -> dict[str, Any]:
    """An ASGI HTTP scope built by hand, for inputs an HTTP client would not send."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string,
        "root_path": "",
        "headers": [(b"host", b"app.test")],
        "client": ("127.0.0.1", 12345),
        "server": ("app.test", 80),
    }
    scope.update(extra)
    return scope


async def call_asgi(app: Any, scope: dict[str, Any]) -> RawResponse:
    """Call an ASGI app with ``scope`` and an empty request body; return what it sent."""
    messages: list[dict[str, Any]] = []
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        messages.append(dict(message))

    await app(scope, receive, send)
    return RawResponse(messages)
