"""The READMEs' Quick start, run as a new user runs it: in a fresh virtual environment holding
exactly what its install line installs (this checkout in place of the package's name, which has
no release to install), its code saved as ``main.py`` as copied from README.md, served by the
commands the README shows (the emulator in the background, then ``uvicorn main:app``, each only
given a free loopback port), and logged in end to end by an HTTP client playing a desktop
browser: the login link, the emulator's consent, the callback, the page that names the user.
Both READMEs show the same code and the same commands.

pip reaches the package index for the other packages, and reuses its own cache between runs."""

from __future__ import annotations

import ast
import html
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from _servers import free_port, wait_for_port
from asgi_wechat_oauth.testing import WeChatEmulator

ROOT = Path(__file__).resolve().parent.parent
QUICK_STARTS = {"README.md": "## Quick start", "README.zh-CN.md": "## 快速上手"}
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
#: Where the README says its servers listen: the emulator's and uvicorn's default ports.
EMULATOR_ADDRESS, APP_URL = "127.0.0.1:8900", "http://127.0.0.1:8000/"
DESKTOP_BROWSER = {
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36",
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
}
WECHAT_BROWSER = {
    "user-agent": "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Mobile Safari/537.36 MicroMessenger/8.0.47.2560(0x28002F30) NetType/WIFI Language/zh_CN",
    "accept": DESKTOP_BROWSER["accept"],
}
LOGIN_LINK = re.compile(r'<a href="([^"]+)">Log in with WeChat</a>')


def quick_start(readme: str) -> str:
    text = (ROOT / readme).read_text("utf-8")
    start = text.index(f"\n{QUICK_STARTS[readme]}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(readme: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(quick_start(readme)) if lang == language]


def commands(block: str) -> list[list[str]]:
    """Each command of a shell block as its words: continuation lines joined, comments out."""
    lines = block.replace("\\\n", " ").splitlines()
    return [words for line in lines if (words := shlex.split(line, comments=True))]


def code(readme: str) -> str:
    (source,) = blocks(readme, "python")
    return source


def shell(readme: str, first_word: str) -> list[list[str]]:
    """The commands of the one shell block of the Quick start that has a ``first_word``
    command (``pip``, ``python``) and also the real account's (``export`` without it)."""
    found = [
        commands(block)
        for block in blocks(readme, "sh")
        if any(words[0] == first_word for words in commands(block))
    ]
    assert len(found) == 1, f"{readme}'s Quick start has {len(found)} blocks running {first_word}"
    return found[0]


def real_account_block(readme: str) -> list[list[str]]:
    (found,) = [
        commands(block)
        for block in blocks(readme, "sh")
        if commands(block)[0][0] == "export" and "emulator" not in block
    ]
    return found


def test_both_readmes_show_the_same_quick_start() -> None:
    """The same program (comments aside: each README's are in its language) and the same
    commands, word for word."""
    english, chinese = "README.md", "README.zh-CN.md"
    assert ast.dump(ast.parse(code(english))) == ast.dump(ast.parse(code(chinese)))
    for first_word in ("pip", "python"):
        assert shell(english, first_word) == shell(chinese, first_word)
    assert real_account_block(english) == real_account_block(chinese)
    user = WeChatEmulator().user.nickname
    for readme in QUICK_STARTS:
        assert f"Logged in as {user}" in quick_start(readme), readme
        assert APP_URL in quick_start(readme), readme


# --- the Quick start in a fresh virtual environment ---------------------------------------------


def clean_environment() -> dict[str, str]:
    """This machine's environment without this suite's: no WECHAT_* option, no path to the
    checkout's sources, no virtual environment of the suite's."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if not k.startswith("WECHAT_") and k not in drop}


def install_line(readme: str) -> list[str]:
    """The install line's ``pip install`` arguments, with this checkout for the package."""
    (words,) = shell(readme, "pip")
    assert words[:2] == ["pip", "install"], words
    arguments = []
    for word in words[2:]:
        requirement = Requirement(word)
        if canonicalize_name(requirement.name) == "asgi-wechat-oauth":
            extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
            word = f"{ROOT}{extras}"
        arguments.append(word)
    return arguments


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding what the Quick start's install line installs."""
    where = tmp_path_factory.mktemp("quickstart") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=300)
    install = [str(where / "bin" / "pip"), "install", "--disable-pip-version-check"]
    proc = subprocess.run(
        [*install, *install_line("README.md")],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    return where


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory holding ``main.py``, the README's code as copied."""
    (tmp_path / "main.py").write_text(code("README.md"), "utf-8")
    return tmp_path


@contextmanager
def served(words: list[str], venv: Path, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """A command of the README run from the venv's ``bin`` in the background, given a free
    loopback port; yields its URL. Its output is shown if the test fails."""
    port = free_port()
    args = [str(venv / "bin" / words[0]), *words[1:], "--port", str(port)]
    log = cwd / f"{words[0]}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(port, proc)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{shlex.join(words)}: {exc}\n{log.read_text()}") from exc
        yield f"http://127.0.0.1:{port}"
    except BaseException:
        print(f"--- {shlex.join(words)}\n{log.read_text()}")  # shown by pytest on failure
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def exported(words: list[str]) -> dict[str, str]:
    assert words[0] == "export", words
    return dict(word.split("=", 1) for word in words[1:])


def log_in(app_url: str, headers: dict[str, str]) -> tuple[httpx.Response, httpx.Response]:
    """Follow the home page's login link as a browser with ``headers``, to the page it ends
    on; then the home page again."""
    with httpx.Client(headers=headers, follow_redirects=True) as browser:
        home = browser.get(f"{app_url}/")
        assert home.status_code == 200, home.text
        link = LOGIN_LINK.search(home.text)
        assert link, home.text
        page = browser.get(home.url.join(html.unescape(link.group(1))))
        return page, browser.get(f"{app_url}/")


def redirects(page: httpx.Response) -> list[tuple[int, str, str]]:
    return [(r.status_code, f"http://{r.url.netloc.decode()}", r.url.path) for r in page.history]


@pytest.mark.slow
def test_the_quick_start_logs_in_against_the_emulator_as_copied(venv: Path, app_dir: Path):
    """The emulator block as written: the emulator in the background, the variables it shows,
    ``uvicorn main:app``; then a login from the home page's link to the page that names the
    emulated user, in a desktop browser (the website app's QR login, with the nickname) and in
    WeChat's (the official account, ``snsapi_base``: the openid)."""
    steps = shell("README.md", "python")
    background, variables, foreground = steps
    assert background[-1] == "&", f"the emulator runs in the background: {background}"
    assert foreground == ["uvicorn", "main:app"]
    env = clean_environment()
    with served(background[:-1], venv, app_dir, env) as emulator_url:
        variables = exported(variables)
        assert {"WECHAT_APPID", "WECHAT_SECRET"} <= set(variables)
        for name, value in variables.items():
            assert "127.0.0.1" not in value or EMULATOR_ADDRESS in value, (name, value)
            env[name] = value.replace(f"http://{EMULATOR_ADDRESS}", emulator_url)
        with served(foreground, venv, app_dir, env) as app_url:
            desktop, desktop_again = log_in(app_url, DESKTOP_BROWSER)
            wechat, wechat_again = log_in(app_url, WECHAT_BROWSER)
    user = WeChatEmulator().user
    assert redirects(desktop) == [
        (302, app_url, "/wechat/login"),  # the middleware: to WeChat's QR login
        (302, emulator_url, "/connect/qrconnect"),  # consent
        (303, app_url, "/wechat/callback"),  # the app: logged in, back to next
    ]
    assert (desktop.status_code, desktop.url.path) == (200, "/")
    assert f"Logged in as {user.nickname}" in desktop.text
    assert f"Logged in as {user.nickname}" in desktop_again.text  # the session keeps the user
    assert redirects(wechat) == [
        (302, app_url, "/wechat/login"),  # the middleware: to the official account's consent
        (302, emulator_url, "/connect/oauth2/authorize"),
        (303, app_url, "/wechat/callback"),
    ]
    assert f"Logged in as {user.openid}" in wechat.text
    assert f"Logged in as {user.openid}" in wechat_again.text


@pytest.mark.slow
def test_the_quick_start_with_an_official_account_sends_wechat_to_its_consent_page(
    venv: Path, app_dir: Path
) -> None:
    """The real account's block: the app starts on those two variables alone, and its login
    link sends WeChat's browser to WeChat's consent page for that appid (not followed: this
    machine does not reach WeChat)."""
    variables, foreground = real_account_block("README.md")
    assert foreground == ["uvicorn", "main:app"]
    env = {**clean_environment(), **exported(variables)}
    assert set(exported(variables)) == {"WECHAT_APPID", "WECHAT_SECRET"}
    with (
        served(foreground, venv, app_dir, env) as app_url,
        httpx.Client(headers=WECHAT_BROWSER) as wechat_browser,
    ):
        home = wechat_browser.get(f"{app_url}/")
        link = LOGIN_LINK.search(home.text)
        assert link, home.text
        login = wechat_browser.get(home.url.join(html.unescape(link.group(1))))
    assert login.status_code == 302, login.text
    consent = httpx.URL(login.headers["location"])
    assert (consent.host, consent.path) == ("open.weixin.qq.com", "/connect/oauth2/authorize")
    assert consent.params["appid"] == env["WECHAT_APPID"]
    assert consent.params["redirect_uri"] == f"{app_url}/wechat/callback"


@pytest.mark.slow
def test_the_quick_start_without_its_environment_names_the_variables(venv: Path, app_dir: Path):
    """As the README says: without WECHAT_APPID and WECHAT_SECRET, ``uvicorn main:app`` stops
    at the import with an InvalidConfig naming both."""
    proc = subprocess.run(
        [str(venv / "bin" / "uvicorn"), "main:app", "--port", str(free_port())],
        cwd=app_dir,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "InvalidConfig" in proc.stderr
    assert "WECHAT_APPID" in proc.stderr and "WECHAT_SECRET" in proc.stderr
    for readme in QUICK_STARTS:
        assert "`InvalidConfig`" in quick_start(readme), readme
