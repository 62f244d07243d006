"""The documentation's Testing page runs as written, in English and in Chinese: each
Python block that starts with a test file's name (``# test_login.py``) is written to a fresh
directory and run under pytest with the plugin, the other blocks as async code (top-level
``await`` allowed), each in a fresh interpreter (the snippets' ``test_login`` is also a module
of this suite); and the test the section shows failing does fail."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = {"en": "docs/en/testing.md", "zh": "docs/zh/testing.md"}
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
TEST_FILE = re.compile(r"# (test_\w+\.py)\n")
#: Runs a block read from stdin as the body of an async function, as ``python -m asyncio`` does.
RUNNER = """
import ast, inspect, sys

import anyio


async def main():
    code = compile(sys.stdin.read(), "README", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, {"__name__": "readme"})
    if inspect.isawaitable(result):
        await result


anyio.run(main)
"""
#: As in this suite: every async test on asyncio and trio (a snippet may narrow it).
CONFTEST = """
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""


@pytest.fixture(params=sorted(SECTIONS))
def readme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def snippets(readme: str) -> dict[str, str]:
    """Test file name (or ``"block N"``) → code, for the section's Python blocks."""
    found: dict[str, str] = {}
    text = (ROOT / SECTIONS[readme]).read_text("utf-8")
    for number, code in enumerate(BLOCK.findall(text)):
        name = TEST_FILE.match(code)
        found[name.group(1) if name else f"block {number}"] = code
    return found


def test_the_section_has_its_snippets(readme):
    assert set(snippets(readme)) == {
        "test_login.py",
        "test_miniprogram.py",
        "test_served.py",
        "test_wecom.py",
        "test_desktop_login.py",
        "block 5",
    }


def test_the_test_files_pass(pytester: pytest.Pytester, readme):
    tests = {name: code for name, code in snippets(readme).items() if name.startswith("test_")}
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**{Path(name).stem: code for name, code in tests.items()})
    result = pytester.runpytest_subprocess("--strict-markers", "-W", "error")
    result.assert_outcomes(passed=(3 + 1 + 1 + 2) * 2 + 1)  # test_served.py: asyncio only


def test_the_async_block_runs(readme, tmp_path):
    code = snippets(readme)["block 5"]
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=code,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_naive_callback_fails_as_the_section_shows(pytester: pytest.Pytester):
    """The section's failure text comes from a naive callback hit by the double callback."""
    login = snippets("en")["test_login.py"]
    naive = """

from asgi_wechat_oauth import authorize_url

EMULATOR = None


async def naive_login(request):
    return RedirectResponse(
        authorize_url(EMULATOR.appid, "http://app.test/wechat/callback", scope="snsapi_base",
                      state="s", base_url=EMULATOR.url)
    )


async def naive_callback(request):  # trades the code itself, on every callback
    async with EMULATOR.http_client() as wechat:
        await wechat.get(
            "/sns/oauth2/access_token",
            params={"appid": EMULATOR.appid, "secret": EMULATOR.secret,
                    "code": request.query_params["code"], "grant_type": "authorization_code"},
        )
    return RedirectResponse("/", status_code=303)


async def test_naive_callback(wechat_emulator, wechat_login):
    global EMULATOR
    EMULATOR = wechat_emulator
    app = Starlette(routes=[Route("/wechat/login", naive_login),
                            Route("/wechat/callback", naive_callback)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
        await wechat_login(client)
"""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_login=login + naive)
    result = pytester.runpytest_subprocess("--strict-markers", "-ra", "-k", "naive")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_naive_callback*",
            "WeChat emulator: 1 code(s) traded more than once (code_hash=* traded 2 "
            "times). At WeChat every exchange after the first fails (errcode 40163, then 40029)*",
            "ERROR test_login.py::test_naive_callback* - Failed: WeChat emulator*",
        ]
    )
