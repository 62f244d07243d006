"""What the demo shows, drawn by rich: each mode's progress, then the report (the settings, the
table, the errors by reason, a note where the simulation slipped, and the verdict).

On a terminal the progress is a live bar and the table fits the window; in a pipe or a log file
there is no carriage-return junk: one final line per mode, and whole lines, unwrapped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TextIO

try:
    from rich import box
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("The demo needs rich: pip install 'asgi-wechat-oauth[demo]'") from exc

from ._model import DemoConfig, DemoResult

COLUMNS = ("mode", "logins", "callbacks", "exchanges", "per login", "identities", "errors")
#: Seconds between two redraws of a live bar.
_REDRAW_EVERY = 0.1
#: The width of a pipe or a file: enough for every line whole.
_PLAIN_WIDTH = 200


def console_for(stream: TextIO) -> Console:
    console = Console(file=stream, highlight=False)
    if not console.is_terminal:
        console.width = _PLAIN_WIDTH  # not the width of a terminal that may be around it
    return console


class LoginProgress:
    """``naive: 37/100 logins``, with a bar on a terminal; elsewhere only the final count.

    A live bar is redrawn by the event loop as logins end, at most every ``_REDRAW_EVERY``
    seconds: rich's drawing thread would compete for the GIL with the loop that runs the
    phones, the app and WeChat, and blur the timing of the callbacks."""

    def __init__(self, stream: TextIO | None) -> None:
        self._console = console_for(stream) if stream is not None else None

    @contextlib.contextmanager
    def counting(self, label: str, total: int) -> Iterator[Callable[[], None]]:
        """Show ``label``'s progress while the block runs; yield what counts one login."""
        if self._console is None:
            yield lambda: None
            return
        columns: list[ProgressColumn] = [
            TextColumn("{task.description}: {task.completed}/{task.total} logins")
        ]
        if self._console.is_terminal:
            columns += [BarColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=self._console, auto_refresh=False) as progress:
            task = progress.add_task(label, total=total)
            drawn = time.monotonic()

            def advance() -> None:
                nonlocal drawn
                progress.advance(task)
                if time.monotonic() - drawn >= _REDRAW_EVERY:
                    drawn = time.monotonic()
                    progress.refresh()

            yield advance


def result_table(result: DemoResult) -> Table:
    """One row per mode: the mode left-aligned, numbers right-aligned."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column(COLUMNS[0])
    for name in COLUMNS[1:]:
        table.add_column(name, justify="right", no_wrap=True)
    for t in (result.naive, result.middleware):
        table.add_row(
            t.mode,
            str(t.logins),
            str(t.callbacks),
            str(t.exchanges),
            f"{t.exchanges_per_login:.2f}",
            str(t.identities),
            str(t.error_count),
        )
    return table


def format_verdict(result: DemoResult) -> str:
    naive, mw = result.naive, result.middleware
    return (
        f"naive handler: {naive.error_count} of {naive.logins} users saw a login error; "
        f"middleware: {mw.error_count} errors, {mw.exchanges_per_login:.2f} exchanges per login"
    )


def print_report(result: DemoResult, console: Console) -> None:
    """The settings, the table and what it counts, the errors by reason, a note where the
    simulation slipped, and the verdict (green when the middleware row is clean)."""

    def say(text: str = "", style: str | None = None) -> None:
        console.print(text, style=style, markup=False, soft_wrap=True)

    for line in _settings(result.config):
        say(line)
    say()
    console.print(result_table(result))
    say()
    say("callbacks: requests that reached the app. exchanges: calls to WeChat's")
    say("sns/oauth2/access_token. identities / errors: what callback #2 answered,")
    say("i.e. the page the user saw.")
    for t in (result.naive, result.middleware):
        if t.errors:
            reasons = ", ".join(f"{reason} ({n})" for reason, n in t.errors.most_common())
            say(f"{t.mode} errors: {reasons}")
    for t in (result.naive, result.middleware):
        unsent = 2 * t.logins - t.callbacks
        if unsent > 0:
            say(
                f"note: {t.mode}: {unsent} of {t.logins} callback #1s never reached the app "
                "(aborted while the event loop was busy; try a lower --concurrency)"
            )
    say(format_verdict(result), style="bold green" if result.ok else "bold red")


def _settings(c: DemoConfig) -> list[str]:
    return [
        f"{c.logins} logins per mode, {c.concurrency} at a time, each as the WeChat browser "
        "makes it: callback #1",
        f"aborted after {c.abort_after * 1000:g} ms, callback #2 (same code) sent "
        f"{c.gap * 1000:g} ms after #1. WeChat answers in {c.latency * 1000:g} ms.",
    ]
