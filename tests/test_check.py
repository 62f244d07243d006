"""``python -m asgi_wechat_oauth check``, run as users run it (a subprocess), against the
emulator served by uvicorn in another process and a real redis-server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from _servers import ROOT, emulator_process, free_port, wait_for_port
from asgi_wechat_oauth.testing import WeChatEmulator

pytestmark = pytest.mark.slow

DEFAULTS = WeChatEmulator()


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with emulator_process() as url:
        yield url


def check(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "WECOM_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "asgi_wechat_oauth", "check", *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout + proc.stderr


def emulator_env(url: str, **overrides: str) -> dict[str, str]:
    return {
        "WECHAT_APPID": DEFAULTS.appid,
        "WECHAT_SECRET": DEFAULTS.secret,
        "WECHAT_API_BASE_URL": url,
        "WECHAT_AUTHORIZE_BASE_URL": url,
        **overrides,
    }


def test_the_emulators_hint_is_a_working_configuration():
    """The emulator's start-up hint names every option it needs; the environment it prints,
    as it is, passes ``check --online``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "asgi_wechat_oauth", "emulator", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        assert proc.stdout is not None
        hint = [proc.stdout.readline() for _ in range(8)]
        for option in ("appid", "secret", "api_base_url", "authorize_base_url"):
            assert any(line.strip().startswith(f"{option}:") for line in hint), hint
        [export] = [line for line in hint if line.strip().startswith("export ")]
        env = dict(re.findall(r"(WECHAT_\w+)=(\S+)", export))
        assert set(env) == {
            "WECHAT_APPID", "WECHAT_SECRET", "WECHAT_API_BASE_URL", "WECHAT_AUTHORIZE_BASE_URL"
        }  # fmt: skip
        status, out = check("--online", env=env)
        assert status == 0, out
        assert "ok: appid and secret accepted" in out
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_environment_is_printed_masked_and_validated(emulator_url):
    status, out = check(env=emulator_env(emulator_url, WECHAT_LOGIN_PATH="/wechat/login"))
    assert status == 0, out
    assert "configuration (the environment (WECHAT_*))" in out
    assert re.search(r"appid\s+'wxemulated0000001'", out)
    assert re.search(r"secret\s+'\*+'", out) and DEFAULTS.secret not in out
    assert re.search(r"verify_state\s+True", out)  # the effective value, not None
    assert out.rstrip().endswith("OK")


def test_every_problem_is_listed(emulator_url):
    status, out = check(
        env=emulator_env(
            emulator_url,
            WECHAT_APPID="",
            WECHAT_CALLBACK_PATH="wechat/callback",
            WECHAT_DEFAULT_SCOPE="snsapi_info",
            WECHAT_LOGIN_PAHT="/wechat/login",
        )
    )
    assert status == 2  # an invalid configuration: the app would not start
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    assert len(problems) == 4, out
    # A missing credential is named by its variable (from_env, issue 27 item 1).
    for needle in (
        "WECHAT_LOGIN_PAHT",
        "WECHAT_APPID is required",
        "callback_path",
        "default_scope",
    ):
        assert needle in out


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        pytest.param({"WECHAT_APPID": "wxwrongappid00001"}, "the appid is wrong", id="40013"),
        pytest.param(
            {"WECHAT_SECRET": "wrong-secret-0123456789abcdef"}, "the secret is wrong", id="40125"
        ),
    ],
)  # fmt: skip
def test_online_tells_which_credential_is_wrong(emulator_url, overrides, says):
    status, out = check("--online", env=emulator_env(emulator_url, **overrides))
    assert status == 1
    assert f"PROBLEM: {says}" in out
    assert "1 problem(s)" in out
    assert "wrong-secret" not in out


def website_env(url: str, secret: str = DEFAULTS.website_secret) -> dict[str, str]:
    return emulator_env(
        url,
        WECHAT_LOGIN_PATH="/wechat/login",
        WECHAT_WEBSITE_APPID=DEFAULTS.website_appid,
        WECHAT_WEBSITE_SECRET=secret,
    )


def test_online_tries_the_website_app_too(emulator_url):
    status, out = check("--online", env=website_env(emulator_url))
    assert status == 0, out
    assert out.count("ok: ") == 2  # the official account and the website app
    assert "ok: website app: appid and secret accepted" in out

    wrong = "wrong-website-secret-0123456789"
    status, out = check("--online", env=website_env(emulator_url, secret=wrong))
    assert status == 1
    assert "ok: appid and secret accepted" in out  # the official account's are fine
    assert "PROBLEM: website app: the secret is wrong" in out
    assert "1 problem(s)" in out
    assert wrong not in out


def test_online_without_wechat_is_a_problem():
    dead = f"http://127.0.0.1:{free_port()}"
    status, out = check("--online", env=emulator_env(dead))
    assert status == 1
    assert f"PROBLEM: could not ask WeChat at {dead}: upstream_unavailable" in out

    # With a website app too: one problem, not the same one twice.
    status, out = check("--online", env=website_env(dead))
    assert status == 1
    assert out.count("could not ask WeChat") == 1 and "1 problem(s)" in out, out


@pytest.mark.redis
def test_online_pings_the_redis_backend(emulator_url, redis_server):
    status, out = check(
        "--online", env=emulator_env(emulator_url, WECHAT_REDIS_URL=redis_server.url)
    )
    assert status == 0, out
    assert "ok: Redis answered PING" in out
    dead = f"redis://127.0.0.1:{free_port()}/0"
    status, out = check("--online", env=emulator_env(emulator_url, WECHAT_REDIS_URL=dead))
    assert status == 1
    assert "PROBLEM: Redis did not answer PING" in out


APP_MODULE = """
from starlette.applications import Starlette
from asgi_wechat_oauth import WeChatOAuthMiddleware

app = Starlette()
app.add_middleware(WeChatOAuthMiddleware, appid="wx123", secret="s3cret-value", {options})
"""


@pytest.mark.parametrize("started", [False, True], ids=["not-started", "started"])
def test_app_with_add_middleware(tmp_path, emulator_url, started):
    """Found in ``user_middleware`` before the app starts, in the built stack after."""
    source = APP_MODULE.format(options=f"api_base_url={emulator_url!r}")
    if started:
        source += "app.middleware_stack = app.build_middleware_stack()\n"
    (tmp_path / "goodapp.py").write_text(textwrap.dedent(source))
    status, out = check("--app", "goodapp:app", cwd=tmp_path)
    assert status == 0, out
    assert "configuration (goodapp:app)" in out and "s3cret-value" not in out
    assert re.search(r"appid\s+'wx123'", out)
    status, out = check("--app", "goodapp:app", "--online", cwd=tmp_path)
    assert status == 1
    assert out.splitlines()[-2].startswith("PROBLEM: the appid is wrong (WeChat answered 40013")


def test_app_whose_options_would_fail_at_start_up(tmp_path):
    """Starlette builds ``add_middleware``'s middleware at the first event: ``check`` finds the
    bad options before any server does."""
    options = 'callback_path="wechat/callback", default_scope="snsapi_info"'
    (tmp_path / "badapp.py").write_text(APP_MODULE.format(options=options))
    status, out = check("--app", "badapp:app", cwd=tmp_path)
    assert status == 2
    assert "Invalid WeChatOAuthMiddleware configuration in badapp:app:" in out
    assert "callback_path must be a path" in out and "default_scope must be one of" in out


def test_app_without_the_middleware(tmp_path):
    (tmp_path / "plain.py").write_text(
        "from starlette.applications import Starlette\napp = Starlette()\n"
    )
    status, out = check("--app", "plain:app", cwd=tmp_path)
    products = (
        "WeChatOAuthMiddleware, WeComOAuthMiddleware, MiniProgramMiddleware, "
        "PlatformOAuthMiddleware or AccessTokenKeeper"
    )
    assert (status, out.strip()) == (1, f"No {products} found in plain:app.")


def test_django_example_wrapped_by_hand(emulator_url):
    status, out = check(
        "--app", "examples.django_app.asgi:application", "--online", env=emulator_env(emulator_url)
    )
    assert status == 0, out
    assert re.search(r"callback_path\s+'/wechat/callback/'", out)
    assert "ok: appid and secret accepted" in out


@pytest.mark.parametrize(
    "app",
    [
        "examples.starlette_app:app",  # add_middleware, not started
        "examples.fastapi_app:app",
        "examples.quart_app:app",  # around Quart's asgi_app
        "examples.litestar_app:app",  # wrapped by hand
    ],
)
def test_every_example_is_found(app, emulator_url):
    status, out = check("--app", app, env=emulator_env(emulator_url))
    assert status == 0, out
    assert out.count("WeChatOAuthMiddleware configuration") == 1
    assert re.search(r"appid\s+'wxemulated0000001'", out)
