"""``python -m asgi_wechat_oauth check`` for every product: WeCom, the mini-program and token
keepers beside the web flow, from the environment and from an app; and every mistake a user
can make answered with one line and exit status 2, never a traceback. Run as users run it (a
subprocess), against the emulators served by uvicorn in processes of their own."""

from __future__ import annotations

import io
import re
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette

from _servers import free_port, process, uvicorn_args
from asgi_wechat_oauth import Counters, WeChatOAuthMiddleware
from asgi_wechat_oauth._check import PRODUCTS, Product, Verdict
from asgi_wechat_oauth._check._run import run
from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.platform import TicketStore
from asgi_wechat_oauth.testing import EmulatorServer, WeChatEmulator, WeComEmulator
from test_check import check, emulator_env

pytestmark = pytest.mark.slow

WECHAT = WeChatEmulator()
WECOM = WeComEmulator()


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    port = free_port()
    args = uvicorn_args("asgi_wechat_oauth.testing:WeChatEmulator", port, "--factory")
    with process(args, port) as running:
        yield running.url


@pytest.fixture(scope="module")
def wecom_url() -> Iterator[str]:
    port = free_port()
    args = uvicorn_args("asgi_wechat_oauth.testing:WeComEmulator", port, "--factory")
    with process(args, port) as running:
        yield running.url


def wecom_env(url: str, **overrides: str) -> dict[str, str]:
    return {
        "WECOM_CORPID": WECOM.corpid,
        "WECOM_AGENTID": WECOM.agentid,
        "WECOM_SECRET": WECOM.secret,
        "WECOM_API_BASE_URL": url,
        **overrides,
    }


def miniprogram_env(url: str, **overrides: str) -> dict[str, str]:
    return {
        "WECHAT_MINIPROGRAM_APPID": WECHAT.appid,
        "WECHAT_MINIPROGRAM_SECRET": WECHAT.secret,
        "WECHAT_MINIPROGRAM_API_BASE_URL": url,
        **overrides,
    }


# --- from the environment ---------------------------------------------------------------------


def test_wecom_from_the_environment(wecom_url):
    status, out = check("--online", env=wecom_env(wecom_url, WECOM_LOGIN_PATH="/wecom/login"))
    assert status == 0, out
    assert "WeComOAuthMiddleware configuration (the environment (WECOM_*)):" in out
    assert re.search(rf"corpid\s+'{WECOM.corpid}'", out)
    assert re.search(r"secret\s+'\*+'", out) and WECOM.secret not in out
    assert re.search(r"verify_state\s+True", out)  # the effective value
    assert "ok: corpid and secret accepted, the corp token works (WeCom answered 40029" in out
    assert "WeChatOAuthMiddleware" not in out  # no WECHAT_* variable: no web flow to check
    assert out.rstrip().endswith("OK")


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        pytest.param({"WECOM_CORPID": "wwwrongcorp000001"}, "the corpid is wrong", id="40013"),
        pytest.param(
            {"WECOM_SECRET": "wrong-wecom-secret-0123456789"}, "the secret is wrong", id="40001"
        ),
    ],
)  # fmt: skip
def test_wecom_online_tells_which_credential_is_wrong(wecom_url, overrides, says):
    status, out = check("--online", env=wecom_env(wecom_url, **overrides))
    assert status == 1, out
    assert f"PROBLEM: {says} (WeCom answered" in out
    assert "1 problem(s)" in out and "wrong-wecom-secret" not in out


def test_mini_program_from_the_environment(emulator_url):
    status, out = check("--online", env=miniprogram_env(emulator_url))
    assert status == 0, out
    assert "MiniProgramMiddleware configuration (the environment (WECHAT_MINIPROGRAM_*)):" in out
    assert re.search(r"login_path\s+'/wechat/miniprogram/login'", out)
    assert re.search(r"secret\s+'\*+'", out) and WECHAT.secret not in out
    assert "ok: appid and secret accepted (WeChat answered 40029 to a made-up code)" in out
    # WECHAT_MINIPROGRAM_* is the mini-program's, not a web flow with unknown variables.
    assert "WeChatOAuthMiddleware" not in out


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        pytest.param(
            {"WECHAT_MINIPROGRAM_APPID": "wxwrongappid00001"}, "the appid is wrong", id="40013"
        ),
        pytest.param(
            {"WECHAT_MINIPROGRAM_SECRET": "wrong-mp-secret-0123456789"},
            "the secret is wrong",
            id="40125",
        ),
    ],
)  # fmt: skip
def test_mini_program_online_tells_bad_credentials_from_a_bad_code(emulator_url, overrides, says):
    status, out = check("--online", env=miniprogram_env(emulator_url, **overrides))
    assert status == 1, out
    assert f"PROBLEM: {says} (WeChat answered" in out
    assert "wrong-mp-secret" not in out


def test_every_product_in_one_environment(emulator_url, wecom_url):
    env = {
        **emulator_env(emulator_url),
        **wecom_env(wecom_url),
        **miniprogram_env(emulator_url),
    }
    status, out = check("--online", env=env)
    assert status == 0, out
    headings = [line for line in out.splitlines() if line.endswith("):")]
    assert headings == [
        "WeChatOAuthMiddleware configuration (the environment (WECHAT_*)):",
        "WeComOAuthMiddleware configuration (the environment (WECOM_*)):",
        "MiniProgramMiddleware configuration (the environment (WECHAT_MINIPROGRAM_*)):",
    ]
    assert out.count("ok: ") == 3


def test_one_invalid_product_among_valid_ones(emulator_url, wecom_url):
    """Each product is reported; the invalid one's problems listed, exit 2."""
    env = {**wecom_env(wecom_url, WECOM_CALLBACK_PATH="wecom/callback"), **miniprogram_env(
        emulator_url
    )}  # fmt: skip
    status, out = check(env=env)
    assert status == 2, out
    assert "Invalid WeComOAuthMiddleware configuration in the environment (WECOM_*):" in out
    assert "  - callback_path" in out
    assert "MiniProgramMiddleware configuration (the environment (WECHAT_MINIPROGRAM_*)):" in out


def test_another_prefix_per_product(wecom_url):
    env = {
        "CORP_CORPID": WECOM.corpid,
        "CORP_AGENTID": WECOM.agentid,
        "CORP_SECRET": WECOM.secret,
        "CORP_API_BASE_URL": wecom_url,
    }
    status, out = check("--prefix", "wecom=CORP_", "--online", env=env)
    assert status == 0, out
    assert "WeComOAuthMiddleware configuration (the environment (CORP_*)):" in out

    status, out = check("--prefix", "weCom=CORP_", env=env)
    assert status == 2
    assert out.count("\n") == 1 and "--prefix takes PREFIX" in out and "weCom=CORP_" in out


def test_nothing_in_the_environment_is_one_line():
    status, out = check(env={})
    assert status == 2
    assert out.strip() == (
        "Nothing to check: no WECHAT_*, WECOM_*, WECHAT_MINIPROGRAM_* or WECHAT_PLATFORM_* "
        "variable is set (or check an app: --app module:attr)."
    )


@pytest.mark.redis
def test_wecom_online_pings_its_redis_backend(wecom_url, redis_server):
    status, out = check("--online", env=wecom_env(wecom_url, WECOM_REDIS_URL=redis_server.url))
    assert status == 0, out
    assert "ok: Redis answered PING" in out
    dead = f"redis://127.0.0.1:{free_port()}/0"
    status, out = check("--online", env=wecom_env(wecom_url, WECOM_REDIS_URL=dead))
    assert status == 1
    assert "PROBLEM: Redis did not answer PING" in out


# --- from an app ------------------------------------------------------------------------------

EVERY_PRODUCT = """
import os
from starlette.applications import Starlette
from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.miniprogram import MiniProgramMiddleware
from asgi_wechat_oauth.tokens import AccessTokenKeeper, StableTokenFetcher
from asgi_wechat_oauth.wecom import WeComOAuthMiddleware

WECHAT, WECOM = os.environ["TEST_WECHAT_URL"], os.environ["TEST_WECOM_URL"]
keeper = AccessTokenKeeper(
    StableTokenFetcher("{appid}", "{keeper_secret}", api_base_url=WECHAT)
)
app = Starlette()
app.add_middleware(
    MiniProgramMiddleware, appid="{appid}", secret="{secret}", api_base_url=WECHAT
)
app.add_middleware(
    WeComOAuthMiddleware,
    corpid="{corpid}",
    agentid="{agentid}",
    secret="{wecom_secret}",
    api_base_url=WECOM,
)
app.add_middleware(WeChatOAuthMiddleware, appid="{appid}", secret="{secret}", api_base_url=WECHAT)
"""


def every_product(tmp_path: Path, *, started: bool = False, **overrides: str) -> None:
    values = {
        "appid": WECHAT.appid,
        "secret": WECHAT.secret,
        "keeper_secret": WECHAT.secret,
        "corpid": WECOM.corpid,
        "agentid": WECOM.agentid,
        "wecom_secret": WECOM.secret,
        **overrides,
    }
    source = EVERY_PRODUCT.format(**values)
    if started:
        source += "app.middleware_stack = app.build_middleware_stack()\n"
    (tmp_path / "shop.py").write_text(source)


@pytest.mark.parametrize("started", [False, True], ids=["not-started", "started"])
def test_every_product_in_an_app(tmp_path, emulator_url, wecom_url, started):
    """The middlewares outermost first (found in ``user_middleware`` before the app starts, in
    the built stack after), then the token keeper the app's module holds."""
    every_product(tmp_path, started=started)
    env = {"TEST_WECHAT_URL": emulator_url, "TEST_WECOM_URL": wecom_url}
    status, out = check("--app", "shop:app", "--online", env=env, cwd=tmp_path)
    assert status == 0, out
    headings = [line for line in out.splitlines() if line.endswith("):")]
    assert headings == [
        "WeChatOAuthMiddleware configuration (shop:app):",
        "WeComOAuthMiddleware configuration (shop:app):",
        "MiniProgramMiddleware configuration (shop:app):",
        "AccessTokenKeeper configuration (shop:keeper):",
    ]
    assert re.search(r"fetcher\s+StableTokenFetcher\(appid='wxemulated0000001'\)", out)
    assert out.count("ok: ") == 4, out
    assert "ok: the keeper got a token (fetched one)" in out
    for secret in (WECHAT.secret, WECOM.secret):
        assert secret not in out


def test_every_products_credentials_are_tried_apart(tmp_path, emulator_url, wecom_url):
    every_product(
        tmp_path, wecom_secret="wrong-wecom-secret-0123456789", keeper_secret="wrong-keeper-0123"
    )
    env = {"TEST_WECHAT_URL": emulator_url, "TEST_WECOM_URL": wecom_url}
    status, out = check("--app", "shop:app", "--online", env=env, cwd=tmp_path)
    assert status == 1
    verdicts = [line for line in out.splitlines() if line.startswith(("ok: ", "PROBLEM: "))]
    assert [line.split(":")[0] for line in verdicts] == ["ok", "PROBLEM", "ok", "PROBLEM"]
    assert verdicts[1].startswith("PROBLEM: the secret is wrong (WeCom answered 40001")
    assert verdicts[3].startswith("PROBLEM: the keeper got no token: WeChat rejected")
    assert "2 problem(s)" in out
    assert "wrong-wecom-secret" not in out and "wrong-keeper" not in out


def test_a_token_keeper_as_the_target(tmp_path, emulator_url):
    (tmp_path / "tokens.py").write_text(
        textwrap.dedent(f"""
        from asgi_wechat_oauth.tokens import AccessTokenKeeper, ClientCredentialTokenFetcher

        keeper = AccessTokenKeeper(
            ClientCredentialTokenFetcher(
                "{WECHAT.appid}", "{WECHAT.secret}", api_base_url="{emulator_url}"
            )
        )
        """)
    )
    status, out = check("--app", "tokens:keeper", "--online", cwd=tmp_path)
    assert status == 0, out
    assert out.count("AccessTokenKeeper configuration (tokens:keeper):") == 1
    assert "ok: the keeper got a token (fetched one)" in out


@pytest.mark.parametrize(
    ("app", "titles"),
    [
        ("examples.wecom_app:app", ["WeComOAuthMiddleware"]),
        ("examples.miniprogram_app:app", ["MiniProgramMiddleware"]),
    ],
)
def test_the_product_examples_are_found(app, titles, emulator_url, wecom_url):
    env = {"WECHAT_API_BASE_URL": emulator_url, "WECOM_API_BASE_URL": wecom_url}
    status, out = check("--app", app, "--online", env=env)
    assert status == 0, out
    assert [line.split(" ")[0] for line in out.splitlines() if line.endswith("):")] == titles
    assert out.count("ok: ") == 1


# --- a user's mistake: one line, exit 2 -------------------------------------------------------

MIDDLEWARES = {
    "web": ("from asgi_wechat_oauth import WeChatOAuthMiddleware as M", 'appid="wx1"'),
    "wecom": (
        "from asgi_wechat_oauth.wecom import WeComOAuthMiddleware as M",
        'corpid="ww1", agentid="1000002"',
    ),
    "miniprogram": (
        "from asgi_wechat_oauth.miniprogram import MiniProgramMiddleware as M",
        'appid="wx1"',
    ),
}


@pytest.mark.parametrize("product", MIDDLEWARES)
def test_a_misspelt_option_under_add_middleware(tmp_path, product):
    importing, credentials = MIDDLEWARES[product]
    (tmp_path / "typo.py").write_text(
        "from starlette.applications import Starlette\n"
        f"{importing}\n"
        "app = Starlette()\n"
        f'app.add_middleware(M, {credentials}, secret="s" * 32, exchange_timout=5)\n'
    )
    status, out = check("--app", "typo:app", cwd=tmp_path)
    assert status == 2, out
    assert "Traceback" not in out
    [problem] = [line for line in out.splitlines() if line.startswith("  - ")]
    assert "exchange_timout" in problem and "exchange_timeout" in problem  # did you mean


@pytest.mark.parametrize(
    ("target", "module", "says"),
    [
        pytest.param("nosuch:app", None, "--app: no module named nosuch", id="no-module"),
        pytest.param(
            "broken:app",
            "import os\nraise RuntimeError('no database configured')\n",
            "Importing broken failed: RuntimeError: no database configured, at broken.py line 2",
            id="fails-to-import",
        ),
        pytest.param(
            "needs:app",
            "import not_installed_anywhere\n",
            "Importing needs failed: ModuleNotFoundError: No module named "
            "'not_installed_anywhere', at needs.py line 1",
            id="missing-dependency",
        ),
        pytest.param(
            "plain:ap",
            "app = object()\n",
            "--app plain:ap: module plain has no attribute ap",
            id="no-attribute",
        ),
        pytest.param(
            "plain.py", "app = object()\n", "--app takes module:attr", id="a-file-name"
        ),
        pytest.param(
            "configured:app",
            "from asgi_wechat_oauth import WeChatOAuthConfig\n"
            "config = WeChatOAuthConfig(appid='wx1', secret='s' * 32, callback_path='cb')\n",
            "Invalid configuration in configured (raised while importing it, at configured.py "
            "line 2):",
            id="invalid-config-at-import",
        ),
    ],
)  # fmt: skip
def test_an_app_that_cannot_be_loaded(tmp_path, target, module, says):
    if module is not None:
        name = target.split(":")[0].removesuffix(".py")
        (tmp_path / f"{name}.py").write_text(module)
    status, out = check("--app", target, cwd=tmp_path)
    assert status == 2, out
    assert "Traceback" not in out
    first, *rest = out.strip().splitlines()
    assert first.startswith(says), out
    assert all(line.startswith("  - ") for line in rest), out  # only a config's problems


# --- a product added later ---------------------------------------------------------------------


@dataclass(frozen=True)
class FakeProductConfig:
    """A made-up product's config, as small as a test can make it."""

    component_appid: str
    component_secret: str

    def summary(self) -> dict[str, object]:
        return {"component_appid": self.component_appid, "component_secret": "********"}


class FakeProductMiddleware:
    def __init__(self, app: object, *, component_appid: str, component_secret: str) -> None:
        self.app = app
        self.config = FakeProductConfig(component_appid, component_secret)
        self.counters = Counters()


class FakeProduct(Product[FakeProductConfig]):
    """The whole of what the check needs to know of a new product."""

    name = "fake"
    title = "FakeProductMiddleware"
    kinds = (FakeProductMiddleware,)
    env_prefix = "WECHAT_FAKE_"
    labels = ("fake",)

    def from_env(self, prefix, environ, ignore) -> FakeProductConfig:
        return FakeProductConfig(environ[f"{prefix}APPID"], environ[f"{prefix}SECRET"])

    def config_of(self, found: FakeProductMiddleware) -> FakeProductConfig:
        return found.config

    def summary(self, config: FakeProductConfig) -> dict[str, object]:
        return config.summary()

    async def probe(self, config: FakeProductConfig) -> list[Verdict]:
        # A failure of a kind no probe expects, whose message holds a URL with the secret.
        raise RuntimeError(f"https://api.weixin.qq.com/x?secret={config.component_secret}")


def run_check(
    *, app: str | None = None, environ: dict[str, str] | None = None, online: bool = False
) -> tuple[int, str]:
    out = io.StringIO()
    status = anyio.run(
        partial(
            run,
            (*PRODUCTS, FakeProduct()),
            app=app,
            prefixes=[],
            online=online,
            environ=environ or {},
            out=out,
            err=out,
        )
    )
    return status, out.getvalue()


def test_a_product_plugs_in_with_one_part(monkeypatch):
    """A new product's part is found in the environment (its prefix extends WECHAT_, and the
    web flow leaves its variables alone) and in an app, beside the products there are."""
    status, out = run_check(
        environ={
            "WECHAT_APPID": "wx1",
            "WECHAT_SECRET": "s" * 32,
            "WECHAT_FAKE_APPID": "wxcomponent1",
            "WECHAT_FAKE_SECRET": "component-secret",
        }
    )
    assert status == 0, out
    assert "WeChatOAuthMiddleware configuration (the environment (WECHAT_*)):" in out
    assert "FakeProductMiddleware configuration (the environment (WECHAT_FAKE_*)):" in out
    assert "component-secret" not in out

    module = types.ModuleType("fake_app")
    module.app = FakeProductMiddleware(  # type: ignore[attr-defined]
        WeChatOAuthMiddleware(Starlette(), appid="wx1", secret="s" * 32),
        component_appid="wxcomponent1",
        component_secret="component-secret",
    )
    monkeypatch.setitem(sys.modules, "fake_app", module)
    status, out = run_check(app="fake_app:app")
    assert status == 0, out
    headings = [line for line in out.splitlines() if line.endswith("):")]
    assert headings == [
        "FakeProductMiddleware configuration (fake_app:app):",
        "WeChatOAuthMiddleware configuration (fake_app:app):",
    ]


def test_a_probe_that_fails_unexpectedly_is_a_problem_without_its_message():
    environ = {"WECHAT_FAKE_APPID": "wxcomponent1", "WECHAT_FAKE_SECRET": "platform-secret"}
    status, out = run_check(environ=environ, online=True)
    assert status == 1, out
    assert "PROBLEM: could not try the credentials: RuntimeError" in out
    assert "platform-secret" not in out


def platform_env(url: str, emulator: WeChatEmulator, **overrides: str) -> dict[str, str]:
    return {
        "WECHAT_PLATFORM_COMPONENT_APPID": emulator.component_appid,
        "WECHAT_PLATFORM_COMPONENT_SECRET": emulator.component_secret,
        "WECHAT_PLATFORM_TOKEN": emulator.component_token,
        "WECHAT_PLATFORM_ENCODING_AES_KEY": emulator.component_encoding_aes_key,
        "WECHAT_PLATFORM_AUTHORIZER": emulator.authorizer_appids[0],
        "WECHAT_PLATFORM_LOGIN_PATH": "/wechat/platform/login",
        "WECHAT_PLATFORM_API_BASE_URL": url,
        **overrides,
    }


@pytest.mark.redis
def test_platform_online_reads_the_shared_ticket_then_tries_the_credentials(redis_server):
    """``--online`` finds no ticket, then (once WeChat pushed one into the workers' Redis)
    fetches the component token with it; a wrong secret is said as such."""
    emulator = WeChatEmulator()
    prefix = f"check-{free_port()}"
    with EmulatorServer(emulator) as server:
        env = platform_env(
            server.url,
            emulator,
            WECHAT_PLATFORM_REDIS_URL=redis_server.url,
            WECHAT_PLATFORM_REDIS_PREFIX=prefix,
        )
        status, out = run_check(environ=env, online=True)
        assert status == 1, out
        assert "PlatformOAuthMiddleware configuration (the environment (WECHAT_PLATFORM_*)):" in out
        assert "PROBLEM: no component_verify_ticket in the backend the workers share yet" in out
        assert emulator.calls["api_component_token"] == 0

        async def store_ticket() -> None:
            backend = RedisBackend(redis_server.url, prefix=prefix)
            await TicketStore(backend, emulator.component_appid).save(emulator.issue_ticket())
            await backend.aclose()

        anyio.run(store_ticket)
        status, out = run_check(environ=env, online=True)
        assert status == 0, out
        assert "ok: a ticket is there" in out
        assert "ok: component_appid and component_secret accepted" in out
        assert emulator.calls["api_component_token"] == 1
        for secret in (emulator.component_secret, emulator.component_token):
            assert secret not in out
        wrong = {**env, "WECHAT_PLATFORM_COMPONENT_SECRET": "a-wrong-component-secret-0000"}
        status, out = run_check(environ=wrong, online=True)
        assert status == 1, out
        assert "PROBLEM: errcode" in out
        assert "a-wrong-component-secret" not in out
