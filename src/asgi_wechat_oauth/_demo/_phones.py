"""The phones: logins made the way the WeChat in-app browser makes them, callback #1 aborted
and callback #2 sent with the same code, each scored by the page the user ends up on."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import anyio
import httpx

from ..testing import WeChatEmulator, consent, double_callback
from ._model import DemoConfig, Tally
from ._output import LoginProgress
from ._servers import RequestTracker


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
    progress: LoginProgress,
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

    async def phone(delay: float, advance: Callable[[], None]) -> None:
        await anyio.sleep(delay)
        # A client per phone keeps its connection pool small (httpx scans the whole pool on
        # every request, which with one big shared pool would slow the loop and blur the gap).
        async with httpx.AsyncClient(verify=tls) as browser:
            for _ in remaining:  # the phones share one iterator: each login is taken once
                await login(browser, tally)
                advance()

    with progress.counting(mode, config.logins) as advance:
        async with anyio.create_task_group() as tg:
            for i in range(min(config.concurrency, config.logins)):
                tg.start_soon(phone, i * config.stagger, advance)
    await tracker.wait_idle()
    tally.exchanges = emulator.total_exchanges - exchanges_before
    tally.callbacks = tracker.received[path] - callbacks_before
    return tally
