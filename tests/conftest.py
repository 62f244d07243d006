"""Shared fixtures: the WeChat emulator, an upstream client to it, a downstream Starlette app,
and ``make_app`` to put the middleware in front of that app.

Every async test runs on asyncio and on trio (the ``anyio_backend`` fixture below; test modules
set ``pytestmark = pytest.mark.anyio``). Backends are injected with ``make_app(backend=...)``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from _miniprogram_app import make_mp, mp_gate, mp_gated_upstream  # noqa: F401 - fixtures
from _servers import RedisClusterServers, RedisServer
from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.testing import WeChatEmulator, WeComEmulator
from support import APP_URL, CALLBACK, WECHAT_URL, Gate

MakeApp = Callable[..., Awaitable[tuple[WeChatOAuthMiddleware, httpx.AsyncClient]]]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the tests' own on a free loopback port (skipped without the binary,
    failing in CI). Tests keep apart by key prefix or by the codes they use."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A real Redis Cluster of the tests' own: three masters, one replica each (skipped without
    redis-server and redis-cli, failing in CI). Tests that kill a node start their own."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def emulator() -> WeChatEmulator:
    return WeChatEmulator()


@pytest.fixture
async def upstream(emulator: WeChatEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client whose requests reach the emulator (as WeChat's API) in-process."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator), base_url=WECHAT_URL
    ) as client:
        yield client


@pytest.fixture
async def gate(emulator: WeChatEmulator) -> Gate:
    """Holds ``sns/oauth2/access_token`` calls made through ``gated_upstream`` until opened."""
    return Gate(emulator)


@pytest.fixture
async def gated_upstream(gate: Gate) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gate), base_url=WECHAT_URL
    ) as client:
        yield client


async def _identity_json(request: Request) -> JSONResponse:
    me = request.scope["wechat"]
    return JSONResponse(
        {
            "openid": me.openid,
            "unionid": me.unionid,
            "scope": me.scope,
            "state": me.state,
            "is_snapshotuser": me.is_snapshotuser,
            "next": me.next,
            "nickname": me.userinfo.nickname if me.userinfo is not None else None,
        }
    )


async def _other(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"downstream saw wechat={'wechat' in request.scope}")


@pytest.fixture
def downstream() -> Starlette:
    """The app behind the middleware: its callback route answers the identity as JSON."""
    return Starlette(routes=[Route(CALLBACK, _identity_json), Route("/other", _other)])


@pytest.fixture
async def make_app(
    emulator: WeChatEmulator,
    upstream: httpx.AsyncClient,
    downstream: Starlette,
    gate: Gate,
) -> AsyncIterator[MakeApp]:
    """``await make_app(**middleware_kwargs)`` → ``(middleware, client)``.

    Defaults: the emulator's credentials, ``api_base_url="http://wechat.test"``,
    ``http_client=upstream``, the ``downstream`` app; any of them can be overridden
    (``app=``, ``backend=``, ``http_client=gated_upstream``, ...), and ``middleware=`` picks
    another product's middleware class. Middlewares are closed with ``aclose()`` and clients
    closed at teardown.
    """
    created: list[tuple[Any, httpx.AsyncClient]] = []

    async def factory(**kwargs: Any) -> tuple[Any, httpx.AsyncClient]:
        app = kwargs.pop("app", downstream)
        middleware_class = kwargs.pop("middleware", WeChatOAuthMiddleware)
        options: dict[str, Any] = {
            "appid": emulator.appid,
            "secret": emulator.secret,
            "api_base_url": WECHAT_URL,
            "http_client": upstream,
        }
        options.update(kwargs)
        middleware = middleware_class(app, **options)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=APP_URL)
        created.append((middleware, client))
        return middleware, client

    yield factory
    gate.open()  # never leave an exchange parked at the gate while closing
    for middleware, client in reversed(created):
        await client.aclose()
        await middleware.aclose()


@pytest.fixture
async def browser_factory(
    emulator: WeChatEmulator,
) -> AsyncIterator[Callable[[WeChatOAuthMiddleware], httpx.AsyncClient]]:
    """``browser_factory(middleware)`` → a browser: one cookie jar, ``app.test`` served by the
    middleware and ``wechat.test`` by the emulator, so following redirects walks
    login → consent → callback as a real browser does."""
    made: list[httpx.AsyncClient] = []

    def make(middleware: WeChatOAuthMiddleware) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            mounts={
                APP_URL: httpx.ASGITransport(app=middleware),
                WECHAT_URL: httpx.ASGITransport(app=emulator),
            },
            base_url=APP_URL,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def flow(
    make_app: MakeApp, browser_factory: Callable[[WeChatOAuthMiddleware], httpx.AsyncClient]
) -> Callable[..., Awaitable[tuple[WeChatOAuthMiddleware, httpx.AsyncClient]]]:
    """``await flow(**options)`` → (middleware, browser) with ``login_path="/wechat/login"``
    and the emulator's consent page."""

    async def make(**options: Any) -> tuple[WeChatOAuthMiddleware, httpx.AsyncClient]:
        middleware, _ = await make_app(
            login_path="/wechat/login", authorize_base_url=WECHAT_URL, **options
        )
        return middleware, browser_factory(middleware)

    return make


Consent = Callable[..., Awaitable[str]]


@pytest.fixture
def consent() -> Consent:
    """``await consent(browser, next_path=None, scope=None, login="/wechat/login")``: walk the
    login endpoint and WeChat's consent page; return the callback URL, not yet requested."""

    async def walk(
        browser: httpx.AsyncClient,
        *,
        next_path: str | None = None,
        scope: str | None = None,
        login: str = "/wechat/login",
    ) -> str:
        params = {k: v for k, v in {"next": next_path, "scope": scope}.items() if v}
        to_wechat = await browser.get(login, params=params)
        assert to_wechat.status_code == 302, to_wechat.text
        to_callback = await browser.get(to_wechat.headers["location"].split("#")[0])
        assert to_callback.status_code == 302, to_callback.text
        return str(to_callback.headers["location"])

    return walk


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self._formatter = logging.Formatter("%(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        # The formatted message, with the traceback when there is one, and the extra fields.
        self.texts.append(self._formatter.format(record) + repr(record.__dict__))


@pytest.fixture(autouse=True)
def no_secret_in_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test runs with the package's and httpx's logging at DEBUG, and afterwards no
    record may hold the emulator's app secret, a code it issued (web or mini-program), or a
    token or mini-program session_key it granted."""
    emulator: WeChatEmulator | None = None
    if "emulator" in request.fixturenames:
        emulator = request.getfixturevalue("emulator")
    wecom: WeComEmulator | None = None
    if "wecom" in request.fixturenames:
        wecom = request.getfixturevalue("wecom")
    loggers = [logging.getLogger(name) for name in ("asgi_wechat_oauth", "httpx")]
    recorder = _Recorder()
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(recorder)
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.removeHandler(recorder)
            logger.setLevel(level)
    secrets: set[str] = set(wecom.issued_secrets) if wecom is not None else set()
    if emulator is not None:
        secrets |= {
            emulator.secret,
            emulator.website_secret,
            *emulator.apps.values(),
            *emulator._codes,
            *emulator._tokens,
            *emulator._refresh_tokens,
            *emulator._miniprogram_codes,
            *emulator._session_keys,
            *emulator.server_tokens.issued,
            *emulator.jsapi_tickets.issued,
        }
    leaked = [s for s in secrets if any(s in text for text in recorder.texts)]
    assert not leaked, f"{len(leaked)} secret value(s) reached the logs"
