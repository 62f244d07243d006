"""The demo's progress, drawn by rich: a live bar on a terminal, one plain line per mode in a
pipe or a log file (the subprocess test in test_demo.py reads the report itself)."""

from __future__ import annotations

import io

from asgi_wechat_oauth._demo._output import LoginProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def count(stream: io.StringIO, logins: int) -> str:
    progress = LoginProgress(stream)
    with progress.counting("naive", logins) as advance:
        for _ in range(logins):
            advance()
    return stream.getvalue()


def test_a_pipe_gets_one_final_line_per_mode() -> None:
    assert count(io.StringIO(), 3) == "naive: 3/3 logins\n"


def test_a_terminal_gets_a_bar_ending_on_the_final_count() -> None:
    drawn = count(Terminal(), 3)

    last_frame = drawn[drawn.rindex("naive: ") :]
    assert last_frame.startswith("naive: 3/3 logins")  # the bar stays on the final count
    assert "━" in last_frame  # rich's bar


def test_without_a_stream_nothing_is_drawn() -> None:
    with LoginProgress(None).counting("naive", 2) as advance:
        advance()
