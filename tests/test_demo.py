"""The demo command and the emulator command of ``python -m asgi_wechat_oauth``.

The demo runs real uvicorn servers on loopback ports; these tests keep it small. Its claim, that
the middleware shows no error and trades each code once where a naive handler fails, is
asserted on the tallies (in-process) and on the printed table (as a subprocess).
"""

from __future__ import annotations

import subprocess
import sys

import anyio
import httpx
import pytest
import uvicorn

from _servers import free_port, process
from asgi_wechat_oauth import __main__ as cli
from asgi_wechat_oauth._demo import DemoConfig, run_demo


def test_demo_naive_handler_fails_and_middleware_trades_each_code_once() -> None:
    config = DemoConfig(logins=20, concurrency=5)
    result = anyio.run(lambda: run_demo(config), backend="asyncio")

    naive, mw = result.naive, result.middleware
    assert naive.logins == mw.logins == 20
    assert naive.error_count > 0
    assert set(naive.errors) <= {"40163 code been used", "40029 invalid code"}
    assert naive.exchanges > naive.logins  # the duplicate traded the code again
    assert mw.error_count == 0
    assert mw.identities == 20
    assert mw.exchanges == mw.logins
    assert result.ok


def table_rows(stdout: str) -> dict[str, dict[str, str]]:
    """The printed table, by mode and column."""
    columns = ("logins", "callbacks", "exchanges", "per login", "identities", "errors")
    rows = {}
    for line in stdout.splitlines():
        mode, *cells = line.split() or [""]
        if mode in ("naive", "middleware") and len(cells) == len(columns) and cells[0].isdigit():
            rows[mode] = dict(zip(columns, cells, strict=True))
    return rows


@pytest.mark.slow
def test_demo_command_prints_the_table_and_exits_0() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "asgi_wechat_oauth", "demo", "--logins", "10"]
        + ["--concurrency", "5", "--latency", "0.05"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = table_rows(proc.stdout)
    assert int(rows["naive"]["errors"]) > 0
    middleware = rows["middleware"]
    assert middleware["logins"] == middleware["exchanges"] == middleware["identities"] == "10"
    assert middleware["errors"] == "0"
    assert "middleware: 0 errors, 1.00 exchanges per login" in proc.stdout
    # stderr is a pipe here: progress comes as plain lines, without carriage returns.
    assert "\r" not in proc.stderr
    assert "naive: 10/10 logins" in proc.stderr.splitlines()


def test_without_uvicorn_the_commands_say_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "uvicorn_available", lambda: False)

    assert cli.main(["demo"]) == 2
    assert "pip install 'asgi-wechat-oauth[demo]'" in capsys.readouterr().err


def test_without_rich_the_demo_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "rich_available", lambda: False)

    assert cli.main(["demo"]) == 2
    assert "The demo needs rich" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--logins", "0"], ["--concurrency", "0"], ["--gap", "-1"]])
def test_demo_refuses_nonsense_options(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", *option])
    assert exit_info.value.code == 2
    capsys.readouterr()


@pytest.mark.slow
def test_emulator_command_serves_the_wechat_api() -> None:
    port = free_port()
    args = [sys.executable, "-m", "asgi_wechat_oauth", "emulator", "--port", str(port)]
    args += ["--appid", "wxtest", "--secret", "s3cret"]
    with process(args, port) as running:
        answer = httpx.get(
            f"{running.url}/sns/oauth2/access_token",
            params={
                "appid": "wxtest",
                "secret": "s3cret",
                "code": "no-such-code",
                "grant_type": "authorization_code",
            },
        )
    assert answer.status_code == 200
    assert answer.json()["errcode"] == 40029


def test_emulator_command_prints_what_to_configure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options, app=app))

    assert cli.main(["emulator", "--port", "8999", "--latency", "0.05"]) == 0

    assert served["port"] == 8999
    assert served["app"].latency == 0.05
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8999" in out
    assert served["app"].appid in out
    assert served["app"].secret in out
    for platform in ["component_appid", "component_secret", "component_encoding_aes_key"]:
        assert getattr(served["app"], platform) in out
    assert "/_emulator/push_ticket?url=" in out
