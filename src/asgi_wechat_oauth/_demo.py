"""``python -m asgi_wechat_oauth demo``: the duplicate callback, with and without the middleware.

Everything runs over real loopback HTTP, in one process: the WeChat emulator and a small
Starlette app each under their own uvicorn server, and a "phone" that logs in the way the WeChat
in-app browser does (callback #1 aborted after a few milliseconds, callback #2 with the same code
~19 ms after #1). The app answers the callback twice over: a naive handler that trades the code
itself, and the same app behind :class:`~asgi_wechat_oauth.WeChatOAuthMiddleware`. The tallies
show what users see and how often WeChat was asked.

The emulator uses a code on *arrival* and answers after ``latency``, so the naive handler's two
exchanges really race: #1's arrives first and wins, #2's gets 40163, and #2's answer is the page
the user sees. uvicorn does not cancel a request's task when its client disconnects, so the
aborted #1 still completes its trade, exactly as in production.
"""

from __future__ import annotations

import contextlib
import signal
import ssl
import sys
from collections import Counter
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import TextIO

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._core.asgi import ASGIApp, Receive, Scope, Send
from .testing import WeChatEmulator, consent, double_callback
from .web import WeChatOAuthMiddleware

NAIVE_PATH = "/naive/callback"
MIDDLEWARE_PATH = "/wechat/callback"
#: (label, callback path), in the order the demo runs them.
MODES = (("naive", NAIVE_PATH), ("middleware", MIDDLEWARE_PATH))

_STARTUP_TIMEOUT = 10.0
_SETTLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs: how many logins, how slow WeChat is, and how the browser behaves."""

    logins: int = 100
    latency: float = 0.08  #: seconds the emulated WeChat takes to answer an exchange
    gap: float = 0.019  #: seconds between callback #1 and its duplicate #2
    concurrency: int = 20  #: logins in progress at once
    abort_after: float = 0.01  #: seconds after which the browser aborts callback #1

    def __post_init__(self) -> None:
        if self.logins < 1 or self.concurrency < 1:
            raise ValueError("logins and concurrency must be at least 1")
        if not min(self.latency, self.gap, self.abort_after) >= 0:  # also refuses nan
            raise ValueError("latency, gap and abort_after must be >= 0 seconds")

    @property
    def stagger(self) -> float:
        """Seconds between the first logins of two phones: they start spread over the time one
        login takes, as real users do, rather than all in the same millisecond. (A herd of
        simultaneous logins would stall the one event loop that runs the phones, the app and
        WeChat, and delay callback #1 past its abort before it is even sent.)"""
        return (self.gap + self.latency) / self.concurrency


@dataclass
class Tally:
    """What happened to one mode's logins. ``errors`` counts, by reason, the error pages users
    saw (a non-200 answer to callback #2, the one the WeChat browser displays)."""

    mode: str
    logins: int = 0
    callbacks: int = 0  #: callback requests that reached the app (two per login)
    exchanges: int = 0  #: calls to WeChat's ``sns/oauth2/access_token``, counted by the emulator
    identities: int = 0  #: users who saw a 200 carrying their openid
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def exchanges_per_login(self) -> float:
        return self.exchanges / self.logins if self.logins else 0.0


@dataclass(frozen=True)
class DemoResult:
    config: DemoConfig
    naive: Tally
    middleware: Tally

    @property
    def ok(self) -> bool:
        """The claim the demo makes: behind the middleware no user saw an error, and WeChat was
        asked exactly once per login."""
        mw = self.middleware
        return mw.error_count == 0 and mw.exchanges == mw.logins


# --- the app under test ----------------------------------------------------------------------


def build_app(
    *, emulator: WeChatEmulator, api_base_url: str, upstream: httpx.AsyncClient
) -> ASGIApp:
    """The Starlette app with both callbacks; ``/wechat/callback`` goes through the middleware."""

    async def naive_callback(request: Request) -> Response:
        # What many apps do: trade the code on every callback. The duplicate trades it again.
        answer = await upstream.get(
            f"{api_base_url}/sns/oauth2/access_token",
            params={
                "appid": emulator.appid,
                "secret": emulator.secret,
                "code": request.query_params.get("code", ""),
                "grant_type": "authorization_code",
            },
        )
        data = answer.json()  # WeChat labels its JSON text/plain
        if data.get("errcode"):
            return JSONResponse(data, status_code=400)
        return JSONResponse({"openid": data["openid"]})

    async def middleware_callback(request: Request) -> Response:
        return JSONResponse({"openid": request.scope["wechat"].openid})

    app = Starlette(
        routes=[
            Route(NAIVE_PATH, naive_callback),
            Route(MIDDLEWARE_PATH, middleware_callback),
        ]
    )
    return WeChatOAuthMiddleware(
        app,
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=api_base_url,
        callback_path=MIDDLEWARE_PATH,
    )


class RequestTracker:
    """Counts the requests that reach the wrapped app, by path, and knows when none is running.

    The count proves both callbacks of every login really arrived; waiting for idleness lets an
    aborted callback #1, whose handler goes on after the client left, finish before counting.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.received: Counter[str] = Counter()
        self.active = 0
        self._idle: anyio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.received[scope["path"]] += 1
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            if not self.active and self._idle is not None:
                self._idle.set()

    async def wait_idle(self, timeout: float = _SETTLE_TIMEOUT) -> None:
        if self.active:
            self._idle = anyio.Event()
            with anyio.fail_after(timeout):
                await self._idle.wait()


# --- servers ---------------------------------------------------------------------------------


class _InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: two servers in one process would stack their
    SIGINT handlers, and Ctrl-C should simply stop the demo."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL; stop it on exit
    (uvicorn then runs the app's lifespan shutdown, which closes the middleware's client)."""
    # log_config=None: leave the host's logging alone (warnings still reach stderr).
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", log_config=None, access_log=False
    )
    server = _InProcessServer(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        try:
            with anyio.fail_after(_STARTUP_TIMEOUT):
                while not server.started:  # noqa: ASYNC110 - uvicorn has no startup event
                    await anyio.sleep(0.005)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


# --- the phone -------------------------------------------------------------------------------


def failure_of(page: httpx.Response) -> str | None:
    """``None`` if the page shows the user logged in (200 with an openid); else a short label
    for the error: WeChat's errcode and message for the naive handler (``40163 code been
    used``), the middleware's ``reason``, or the HTTP status."""
    try:
        data = page.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return f"HTTP {page.status_code}"
    if page.status_code == 200 and data.get("openid"):
        return None
    if data.get("errcode"):
        message = str(data.get("errmsg", "")).split(",")[0]  # drop WeChat's ", rid: ..."
        return f"{data['errcode']} {message}".strip()
    return str(data.get("error") or f"HTTP {page.status_code}")


async def log_in(
    browser: httpx.AsyncClient,
    tally: Tally,
    *,
    emulator_url: str,
    appid: str,
    callback_url: str,
    config: DemoConfig,
) -> None:
    """One login as the WeChat browser does it, scored by the page the user ends up on."""
    url = await consent(browser, emulator_url, appid=appid, redirect_uri=callback_url, state="demo")
    tally.logins += 1
    try:
        page = await double_callback(browser, url, abort_after=config.abort_after, gap=config.gap)
    except httpx.HTTPError as exc:
        tally.errors[type(exc).__name__] += 1
        return
    failure = failure_of(page)
    if failure is None:
        tally.identities += 1
    else:
        tally.errors[failure] += 1


async def run_mode(
    mode: str,
    path: str,
    *,
    emulator: WeChatEmulator,
    emulator_url: str,
    app_url: str,
    tracker: RequestTracker,
    config: DemoConfig,
    progress: Progress,
) -> Tally:
    """Drive ``config.logins`` logins against ``path``, ``config.concurrency`` phones logging in
    side by side, then wait for stragglers and read the emulator's exchange count."""
    # Unused over http, but an httpx client builds one when created (~20 ms of CPU): share it.
    tls = ssl.create_default_context()
    callback_url = app_url + path

    async def login(browser: httpx.AsyncClient, tally: Tally) -> None:
        await log_in(
            browser,
            tally,
            emulator_url=emulator_url,
            appid=emulator.appid,
            callback_url=callback_url,
            config=config,
        )

    # One login first, not counted: Python's first-use work (lazy imports, first connections)
    # would otherwise stall the loop just as the first wave sends its callback #1s.
    async with httpx.AsyncClient(verify=tls) as browser:
        await login(browser, Tally(mode))
    await tracker.wait_idle()

    tally = Tally(mode)
    exchanges_before = emulator.total_exchanges
    callbacks_before = tracker.received[path]
    remaining = iter(range(config.logins))

    async def phone(delay: float) -> None:
        await anyio.sleep(delay)
        # A client per phone keeps its connection pool small (httpx scans the whole pool on
        # every request, which with one big shared pool would slow the loop and blur the gap).
        async with httpx.AsyncClient(verify=tls) as browser:
            for _ in remaining:  # the phones share one iterator: each login is taken once
                await login(browser, tally)
                progress.advance()

    progress.start(mode, config.logins)
    try:
        async with anyio.create_task_group() as tg:
            for i in range(min(config.concurrency, config.logins)):
                tg.start_soon(phone, i * config.stagger)
    finally:
        progress.finish()
    await tracker.wait_idle()
    tally.exchanges = emulator.total_exchanges - exchanges_before
    tally.callbacks = tracker.received[path] - callbacks_before
    return tally


class DemoInterrupted(Exception):
    """Ctrl-C stopped the logins; the servers were still shut down cleanly."""


async def run_demo(
    config: DemoConfig, *, progress_stream: TextIO | None = None, interruptible: bool = False
) -> DemoResult:
    """Start both servers, run the naive logins and then the middleware logins, stop both.

    With ``interruptible`` (main thread only), Ctrl-C stops the logins, not the servers: they
    still shut down gracefully, instead of being torn down mid-request with a page of tracebacks.
    """
    progress = Progress(progress_stream)
    emulator = WeChatEmulator(latency=config.latency)
    logins = anyio.CancelScope()
    async with anyio.create_task_group() as watcher:
        if interruptible:
            watcher.start_soon(cancel_on_sigint, logins)
        async with contextlib.AsyncExitStack() as stack:
            emulator_url = await stack.enter_async_context(serving(emulator))
            # No connection limit: a pool queue would delay the naive exchanges it races.
            unlimited = httpx.Limits(max_connections=None)
            upstream = await stack.enter_async_context(httpx.AsyncClient(limits=unlimited))
            app = build_app(emulator=emulator, api_base_url=emulator_url, upstream=upstream)
            tracker = RequestTracker(app)
            app_url = await stack.enter_async_context(serving(tracker))
            with logins:
                tallies = [
                    await run_mode(
                        mode,
                        path,
                        emulator=emulator,
                        emulator_url=emulator_url,
                        app_url=app_url,
                        tracker=tracker,
                        config=config,
                        progress=progress,
                    )
                    for mode, path in MODES
                ]
        watcher.cancel_scope.cancel()
    if logins.cancelled_caught:
        raise DemoInterrupted
    return DemoResult(config, *tallies)


async def cancel_on_sigint(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


# --- output ----------------------------------------------------------------------------------


class Progress:
    """``naive: 37/100 logins`` on one line, rewritten in place on a terminal. Elsewhere (a
    pipe, a log file) only the final count is written, so there is no carriage-return junk."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.live = bool(stream is not None and stream.isatty())
        self.label = ""
        self.done = 0
        self.total = 0

    def start(self, label: str, total: int) -> None:
        self.label, self.done, self.total = label, 0, total
        if self.live:
            self._write("\r" + self._line())

    def advance(self) -> None:
        self.done += 1
        if self.live:
            self._write("\r" + self._line())

    def finish(self) -> None:
        if self.live:
            self._write("\n")
        elif self.stream is not None:
            self._write(self._line() + "\n")

    def _line(self) -> str:
        return f"{self.label}: {self.done}/{self.total} logins"

    def _write(self, text: str) -> None:
        assert self.stream is not None
        self.stream.write(text)
        self.stream.flush()


COLUMNS = ("mode", "logins", "callbacks", "exchanges", "per login", "identities", "errors")


def format_table(result: DemoResult) -> str:
    """An aligned table, one row per mode: the mode left-aligned, numbers right-aligned."""
    rows = [
        (
            t.mode,
            str(t.logins),
            str(t.callbacks),
            str(t.exchanges),
            f"{t.exchanges_per_login:.2f}",
            str(t.identities),
            str(t.error_count),
        )
        for t in (result.naive, result.middleware)
    ]
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]

    def line(cells: tuple[str, ...]) -> str:
        first, *numbers = cells
        parts = [first.ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(numbers, widths[1:], strict=True)]
        return "  ".join(parts)

    return "\n".join([line(COLUMNS), *(line(row) for row in rows)])


def format_verdict(result: DemoResult) -> str:
    naive, mw = result.naive, result.middleware
    return (
        f"naive handler: {naive.error_count} of {naive.logins} users saw a login error; "
        f"middleware: {mw.error_count} errors, {mw.exchanges_per_login:.2f} exchanges per login"
    )


def format_report(result: DemoResult) -> str:
    """The settings, the table and what it counts, the errors by reason, a note where the
    simulation slipped, and the verdict."""
    c = result.config
    lines = [
        f"{c.logins} logins per mode, {c.concurrency} at a time, each as the WeChat browser "
        "makes it: callback #1",
        f"aborted after {c.abort_after * 1000:g} ms, callback #2 (same code) sent "
        f"{c.gap * 1000:g} ms after #1. WeChat answers in {c.latency * 1000:g} ms.",
        "",
        format_table(result),
        "",
        "callbacks: requests that reached the app. exchanges: calls to WeChat's",
        "sns/oauth2/access_token. identities / errors: what callback #2 answered,",
        "i.e. the page the user saw.",
    ]
    for t in (result.naive, result.middleware):
        if t.errors:
            reasons = ", ".join(f"{reason} ({n})" for reason, n in t.errors.most_common())
            lines.append(f"{t.mode} errors: {reasons}")
    for t in (result.naive, result.middleware):
        unsent = 2 * t.logins - t.callbacks
        if unsent > 0:
            lines.append(
                f"note: {t.mode}: {unsent} of {t.logins} callback #1s never reached the app "
                "(aborted while the event loop was busy; try a lower --concurrency)"
            )
    lines.append(format_verdict(result))
    return "\n".join(lines)


def main(config: DemoConfig, *, out: TextIO | None = None, progress: TextIO | None = None) -> int:
    """Run the demo, print the report, and return the exit status: 0 when the middleware row is
    clean (no errors, one exchange per login), 1 otherwise; 130 if interrupted."""
    out = out if out is not None else sys.stdout
    try:
        result = anyio.run(
            lambda: run_demo(config, progress_stream=progress, interruptible=True),
            backend="asyncio",
        )
    except DemoInterrupted:
        print("interrupted", file=sys.stderr)
        return 130
    print(format_report(result), file=out)
    return 0 if result.ok else 1
