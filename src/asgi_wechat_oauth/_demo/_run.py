"""Running the demo: both servers up, the naive logins and then the middleware logins, both
servers down (gracefully, Ctrl-C included), and the report."""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import TextIO

import anyio
import httpx

from ..testing import WeChatEmulator
from ._model import MODES, DemoConfig, DemoResult
from ._output import LoginProgress, console_for, print_report
from ._phones import run_mode
from ._servers import RequestTracker, build_app, serving


class DemoInterrupted(Exception):
    """Ctrl-C stopped the logins; the servers were still shut down cleanly."""


async def run_demo(
    config: DemoConfig, *, progress_stream: TextIO | None = None, interruptible: bool = False
) -> DemoResult:
    """Start both servers, run the naive logins and then the middleware logins, stop both.

    With ``interruptible`` (main thread only), Ctrl-C stops the logins, not the servers: they
    still shut down gracefully, instead of being torn down mid-request with a page of tracebacks.
    """
    progress = LoginProgress(progress_stream)
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
    print_report(result, console_for(out))
    return 0 if result.ok else 1
