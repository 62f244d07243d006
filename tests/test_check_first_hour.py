"""The mistakes of a first hour with the package (issue 28), each caught by ``check`` in one
line, without a traceback, and where it can be, by the config itself where it is written.

``check`` runs as users run it, in a subprocess; nothing here needs a network: an invalid
configuration is said before anything is tried.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _servers import ROOT
from asgi_wechat_oauth import WeChatOAuthConfig, WeChatOAuthMiddleware
from asgi_wechat_oauth.errors import InvalidConfig
from asgi_wechat_oauth.miniprogram import MiniProgramConfig
from asgi_wechat_oauth.wecom import WeComOAuthConfig

pytestmark = pytest.mark.slow

APPID = "wx0123456789abcdef"  # WeChat's form: wx and 16 hex digits
SECRET = "s3cret-value-0123456789"


def check(*args: str, env: dict[str, str], cwd: Path = ROOT) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "WECOM_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "asgi_wechat_oauth", "check", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout + proc.stderr


def refused(env: dict[str, str]) -> str:
    """The one problem line ``check`` says of ``env`` (an invalid configuration: status 2)."""
    status, out = check(env={"WECHAT_APPID": APPID, "WECHAT_SECRET": SECRET, **env})
    assert status == 2, out
    assert "Traceback" not in out
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, out
    return problems[0]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        pytest.param(
            {"WECHAT_CALLBACK_PATH": "/wechat/callback?x=1"},
            "callback_path must be a path without a query or fragment",
            id="callback-with-query",
        ),
        pytest.param(
            {"WECHAT_REDIRECT_URI": "https://www.example.com/auth/wechat"},
            "redirect_uri's path (/auth/wechat) must be callback_path (/wechat/callback)",
            id="redirect-uri-elsewhere",
        ),
        pytest.param(
            {"WECHAT_APPID": " " + APPID},
            f"appid has spaces around it: ' {APPID}'",
            id="appid-leading-space",
        ),
        pytest.param(
            {"WECHAT_APPID": "wx..."},
            "appid must be letters and digits only (WeChat's are wx followed by 16 hex digits",
            id="readme-placeholder",
        ),
        pytest.param(
            {"WECHAT_APPID": "gh_0123456789ab"},
            "appid 'gh_0123456789ab' is the account's original ID (原始ID), not its AppID",
            id="original-id",
        ),
        pytest.param(
            {"WECHAT_SECRET": ""}, "WECHAT_SECRET is required", id="no-secret-names-variable"
        ),
    ],
)
def test_a_first_hour_mistake_is_one_line_and_exit_2(env, says):
    assert says in refused(env)


def test_a_misspelt_variable_gets_the_one_meant():
    status, out = check(env={"WECHAT_APPID": APPID, "WECHAT_SECRTE": SECRET})
    assert status == 2 and "Traceback" not in out
    assert "WECHAT_SECRET is required" in out
    assert (
        "unknown variable `WECHAT_SECRTE` for WeChatOAuthConfig: did you mean `WECHAT_SECRET`?"
        in out
    )


def test_an_appid_not_of_wechats_form_is_a_warning_against_wechat_only():
    """``wx`` + 16 hex digits is the form of every AppID WeChat issues: another one is said
    when the config talks to WeChat itself; against an emulator (another ``api_base_url``)
    any AppID made of letters and digits will do."""
    status, out = check(env={"WECHAT_APPID": "wx1234", "WECHAT_SECRET": SECRET})
    assert status == 0, out
    assert (
        "WARNING: appid 'wx1234' is not of the form of WeChat's AppIDs (wx followed by 16 hex "
        "digits, 0-9 and a-f): WeChat will answer 40013 (invalid appid)"
    ) in out
    assert out.rstrip().endswith("OK, 1 warning(s)")
    emulated = {
        "WECHAT_APPID": "wx1234",
        "WECHAT_SECRET": SECRET,
        "WECHAT_API_BASE_URL": "http://127.0.0.1:9",
    }
    status, out = check(env=emulated)
    assert (status, "WARNING" in out, out.rstrip().endswith("OK")) == (0, False, True), out
    status, out = check(
        env={"WECHAT_APPID": APPID.upper().replace("WX", "wx"), "WECHAT_SECRET": SECRET}
    )
    assert "WARNING: appid" in out  # upper-case hex is not WeChat's form either


def test_the_mini_programs_appid_is_checked_the_same_way():
    env = {"WECHAT_MINIPROGRAM_APPID": "wx...", "WECHAT_MINIPROGRAM_SECRET": SECRET}
    status, out = check(env=env)
    assert status == 2 and "Traceback" not in out
    assert "appid must be letters and digits only" in out
    env["WECHAT_MINIPROGRAM_APPID"] = "wxmini"
    status, out = check(env=env)
    assert status == 0 and "WARNING: appid 'wxmini' is not of the form" in out


def test_a_misspelt_keyword_under_add_middleware_and_a_missing_module(tmp_path):
    (tmp_path / "typo.py").write_text(
        "from starlette.applications import Starlette\n"
        "from asgi_wechat_oauth import WeChatOAuthMiddleware\n"
        "app = Starlette()\n"
        f"app.add_middleware(WeChatOAuthMiddleware, appid={APPID!r}, secret={SECRET!r},"
        " login_pth='/wechat/login')\n"
    )
    status, out = check("--app", "typo:app", env={}, cwd=tmp_path)
    assert status == 2 and "Traceback" not in out
    assert "unknown option `login_pth` for WeChatOAuthConfig: did you mean `login_path`?" in out
    status, out = check("--app", "nosuch:app", env={}, cwd=tmp_path)
    assert status == 2 and "Traceback" not in out
    assert out.startswith("--app: no module named nosuch")


# --- the same, where the config is written ---------------------------------------------------


def test_a_redirect_uri_that_does_not_lead_to_the_callback_is_refused_naming_both():
    with pytest.raises(InvalidConfig) as raised:
        WeChatOAuthConfig(appid=APPID, secret=SECRET, redirect_uri="https://a.example/cb")
    assert raised.value.problems == [
        "redirect_uri's path (/cb) must be callback_path (/wechat/callback), or end with it "
        "under a root_path: the user comes back to redirect_uri, and the middleware answers "
        "at callback_path"
    ]
    with pytest.raises(InvalidConfig, match="redirect_uri's path"):
        WeComOAuthConfig(
            corpid="ww0123456789abcdef",
            agentid="1000002",
            secret=SECRET,
            redirect_uri="https://a.example/wecom/cb",
        )


@pytest.mark.parametrize(
    ("redirect_uri", "callback_path"),
    [
        ("https://a.example/wechat/callback", "/wechat/callback"),
        ("https://a.example/wechat/callback/", "/wechat/callback"),  # Django's spelling
        ("https://a.example/wechat/callback", "/wechat/callback/"),
        ("https://a.example/shop/wechat/callback", "/wechat/callback"),  # under a root_path
        ("https://a.example/wechat/callback?from=menu", "/wechat/callback"),
    ],
)
def test_a_redirect_uri_that_leads_to_the_callback_is_accepted(redirect_uri, callback_path):
    config = WeChatOAuthConfig(
        appid=APPID, secret=SECRET, redirect_uri=redirect_uri, callback_path=callback_path
    )
    assert config.redirect_uri == redirect_uri


@pytest.mark.parametrize(
    "appid", [" " + APPID, APPID + "\n", "wx...", "wx-0123456789abcdef", "gh_0123456789ab", "ｗx1"]
)
def test_what_no_appid_can_be_is_refused_where_it_is_written(appid):
    with pytest.raises(InvalidConfig, match="appid"):
        WeChatOAuthConfig(appid=appid, secret=SECRET)
    with pytest.raises(InvalidConfig, match="appid"):
        WeChatOAuthMiddleware(None, appid=APPID, secret=SECRET, login_path="/wechat/login",  # type: ignore[arg-type]
                              website_appid=appid, website_secret=SECRET)  # fmt: skip
    with pytest.raises(InvalidConfig, match="appid"):
        MiniProgramConfig(appid=appid, secret=SECRET)


def test_wecoms_corpid_is_not_held_to_wechats_form():
    config = WeComOAuthConfig(corpid="ww0123456789abcdef", agentid="1000002", secret=SECRET)
    assert config.corpid == "ww0123456789abcdef"


def test_jssdk_path_says_what_to_set_up_in_wechats_console():
    env = {"WECHAT_APPID": APPID, "WECHAT_SECRET": SECRET}
    status, out = check(env={**env, "WECHAT_JSSDK_PATH": "/wechat/jssdk"})
    assert status == 0, out
    notes = [line for line in out.splitlines() if line.startswith("NOTE: ")]
    assert len(notes) == 1 and "JS接口安全域名" in notes[0] and "/wechat/jssdk" in notes[0]
    assert out.rstrip().endswith("OK")  # a note is no warning
    status, out = check(env=env)
    assert "NOTE:" not in out
