"""One options base for every product (issue 27, items 1 and 2): the same mistake gets the same
message naming the option in the web, WeCom and mini-program configs and in each middleware's
keywords; a misspelt option or variable is answered with the name meant; ``from_env`` reads
each product's variables; ``repr`` masks the secrets; ``config=`` and keywords build the same
middleware."""

from __future__ import annotations

import dataclasses
import inspect
import math
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from starlette.applications import Starlette

from asgi_wechat_oauth import WeChatOAuthConfig, WeChatOAuthMiddleware
from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.errors import InvalidConfig
from asgi_wechat_oauth.miniprogram import MiniProgramConfig, MiniProgramMiddleware
from asgi_wechat_oauth.wecom import WeComOAuthConfig, WeComOAuthMiddleware

SECRET = "s3cret-value-of-the-app"
PRODUCTS: dict[str, tuple[type[Any], type[Any], dict[str, str]]] = {
    "web": (WeChatOAuthConfig, WeChatOAuthMiddleware, {"appid": "wx1", "secret": SECRET}),
    "wecom": (
        WeComOAuthConfig,
        WeComOAuthMiddleware,
        {"corpid": "ww1", "agentid": "1000002", "secret": SECRET},
    ),
    "miniprogram": (MiniProgramConfig, MiniProgramMiddleware, {"appid": "wx1", "secret": SECRET}),
}
#: The path each product answers at (the mini-program has no callback: its login endpoint).
PATH = {"web": "callback_path", "wecom": "callback_path", "miniprogram": "login_path"}
#: What each product's variables start with.
PREFIX = {"web": "WECHAT_", "wecom": "WECOM_", "miniprogram": "WECHAT_MINIPROGRAM_"}


def build(product: str, form: str, **options: Any) -> object:
    """The product's config (``form="config"``) or middleware (``"keywords"``) from its
    credentials and ``options``."""
    config, middleware, credentials = PRODUCTS[product]
    if form == "config":
        return config(**{**credentials, **options})
    return middleware(Starlette(), **{**credentials, **options})


def path_problem(option: str, value: str) -> str:
    if value.startswith("/") and not value.startswith("//"):
        return f"{option} must be a path without a query or fragment ('?', '#'), got {value!r}"
    return f"{option} must be a path starting with '/', got {value!r}"


def mistakes(product: str) -> list[tuple[dict[str, Any], str]]:
    """Each mistake every product can make, and the one message it must get."""
    path = PATH[product]
    found: list[tuple[dict[str, Any], str]] = [
        ({path: value}, path_problem(path, value))
        for value in ("wechat/callback", "//evil.example/cb", "/cb?x=1", "/cb#top", "")
    ]
    found += [
        ({"result_ttl": -1}, "result_ttl must not be negative (and finite)"),
        ({"result_ttl": math.nan}, "result_ttl must not be negative (and finite)"),
        ({"result_ttl": math.inf}, "result_ttl must not be negative (and finite)"),
        ({"exchange_timeout": 0}, "exchange_timeout must be positive (and finite)"),
        ({"exchange_timeout": math.nan}, "exchange_timeout must be positive (and finite)"),
        ({"exchange_timeout": math.inf}, "exchange_timeout must be positive (and finite)"),
        ({"exchange_timeout": "10"}, "exchange_timeout must be positive (and finite)"),
        ({"api_base_url": "api.weixin.qq.com"}, "api_base_url must be an absolute http(s) URL"),
        ({"secret": ""}, "secret is required"),
    ]
    found += [({name: ""}, f"{name} is required") for name in PRODUCTS[product][2]]
    if path == "callback_path":  # a login page beside the callback
        callback = {"callback_path": "/auth/callback"}
        for login_path in ("/auth/callback", "/auth/callback/"):
            problem = "login_path must differ from callback_path"
            found.append(({**callback, "login_path": login_path}, problem))
        found += [
            ({"login_path": value}, path_problem("login_path", value))
            for value in ("login", "//evil.example/login", "/login?next=/")
        ]
        found += [
            ({"state_max_age": 0.5}, "state_max_age must be at least 1 second (and finite)"),
            ({"login_loop_window": math.inf}, "login_loop_window must be positive (and finite)"),
            ({"nonce_cookie": "a b"}, "nonce_cookie must be a plain ASCII name (the __Host- "
             "prefix is allowed)"),
            ({"verify_state": True}, "verify_state needs login_path: the login endpoint sets "
             "the cookie"),
        ]  # fmt: skip
    return found


CASES = [
    pytest.param(product, form, options, message, id=f"{product}-{form}-{index}")
    for product in PRODUCTS
    for form in ("config", "keywords")
    for index, (options, message) in enumerate(mistakes(product))
]


@pytest.mark.parametrize(("product", "form", "options", "message"), CASES)
def test_the_same_mistake_gets_the_same_message_in_every_product(product, form, options, message):
    with pytest.raises(InvalidConfig) as raised:
        build(product, form, **options)
    assert raised.value.problems == [message]
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("product", PRODUCTS)
def test_every_problem_is_listed_at_once(product):
    path = PATH[product]
    with pytest.raises(InvalidConfig) as raised:
        build(product, "config", secret="", result_ttl=-1, **{path: "x"})
    assert raised.value.problems == [
        "secret is required",
        "result_ttl must not be negative (and finite)",
        path_problem(path, "x"),
    ]


# --- a misspelt option, in the config and in the middleware's keywords -----------------------


@pytest.mark.parametrize("form", ["config", "keywords"])
@pytest.mark.parametrize("product", PRODUCTS)
def test_a_misspelt_option_is_refused_with_the_name_meant(product, form):
    config = PRODUCTS[product][0].__name__
    path = PATH[product]
    misspelt = path.replace("path", "pth")
    with pytest.raises(InvalidConfig) as raised:
        build(product, form, **{misspelt: "/somewhere"})
    assert raised.value.problems == [
        f"unknown option `{misspelt}` for {config}: did you mean `{path}`?"
    ]
    with pytest.raises(InvalidConfig, match="exchange_timeout"):
        build(product, form, exchnage_timeout=3)


def test_a_name_close_to_none_lists_the_options():
    with pytest.raises(InvalidConfig) as raised:
        MiniProgramConfig(appid="wx1", secret=SECRET, colour="blue")
    (problem,) = raised.value.problems
    assert problem.startswith("unknown option `colour` for MiniProgramConfig (known: ")
    assert "duplicates, exchange_timeout" in problem


# --- from_env ----------------------------------------------------------------------------------


def test_wecom_from_env_reads_wecom_variables():
    config = WeComOAuthConfig.from_env(
        environ={
            "WECOM_CORPID": "ww1",
            "WECOM_AGENTID": "1000002",
            "WECOM_SECRET": SECRET,
            "WECOM_LOGIN_PATH": "/wecom/login",
            "WECOM_FETCH_PROFILE": "yes",
            "WECOM_DEFAULT_SCOPE": "snsapi_privateinfo",
            "WECOM_EXCHANGE_TIMEOUT": "4",
            "WECOM_MAX_CODES_PER_STATE": "2",
            "WECOM_LOGIN_LOOP_LIMIT": "none",
            "WECOM_QR_LOGIN_BASE_URL": "https://login.example",
            "WECHAT_APPID": "wx-of-another-product",  # not WECOM_: none of its business
        }
    )
    assert (config.corpid, config.agentid, config.secret) == ("ww1", "1000002", SECRET)
    assert (config.login_path, config.callback_path) == ("/wecom/login", "/wecom/callback")
    assert config.fetch_profile is True and config.default_scope == "snsapi_privateinfo"
    assert (config.exchange_timeout, config.max_codes_per_state) == (4.0, 2)
    assert config.login_loop_limit is None
    assert config.qr_login_base_url == "https://login.example"
    assert config == WeComOAuthConfig(
        corpid="ww1",
        agentid="1000002",
        secret=SECRET,
        login_path="/wecom/login",
        fetch_profile=True,
        default_scope="snsapi_privateinfo",
        exchange_timeout=4,
        max_codes_per_state=2,
        login_loop_limit=None,
        qr_login_base_url="https://login.example",
    )


def test_miniprogram_from_env_reads_its_variables_and_a_redis_backend():
    config = MiniProgramConfig.from_env(
        environ={
            "WECHAT_MINIPROGRAM_APPID": "wxmini",
            "WECHAT_MINIPROGRAM_SECRET": SECRET,
            "WECHAT_MINIPROGRAM_DUPLICATES": "reject",
            "WECHAT_MINIPROGRAM_RESULT_TTL": "30",
            "WECHAT_MINIPROGRAM_REDIS_URL": "redis://127.0.0.1:1/0",
            "WECHAT_MINIPROGRAM_REDIS_PREFIX": "mini",
            "WECHAT_APPID": "wx-web",  # the web product's: not a mini-program variable
        }
    )
    assert (config.appid, config.secret, config.duplicates) == ("wxmini", SECRET, "reject")
    assert config.result_ttl == 30.0
    assert config.login_path == "/wechat/miniprogram/login"
    assert isinstance(config.backend, RedisBackend) and config.backend.prefix == "mini"


def test_web_from_env_leaves_the_miniprogram_variables_alone():
    """``WECHAT_`` is a prefix of ``WECHAT_MINIPROGRAM_``: an app with both products in one
    environment must not have the mini-program's variables refused as misspelt web options."""
    environ = {
        "WECHAT_APPID": "wxweb",
        "WECHAT_SECRET": SECRET,
        "WECHAT_MINIPROGRAM_APPID": "wxmini",
        "WECHAT_MINIPROGRAM_SECRET": "another-secret",
    }
    assert WeChatOAuthConfig.from_env(environ=environ).appid == "wxweb"
    assert MiniProgramConfig.from_env(environ=environ).appid == "wxmini"


@pytest.mark.parametrize("product", PRODUCTS)
def test_from_env_suggests_the_variable_meant(product):
    config = PRODUCTS[product][0]
    prefix = PREFIX[product]
    environ = {prefix + name.upper(): "x1" for name in PRODUCTS[product][2]}
    del environ[prefix + "SECRET"]
    environ[prefix + "SECRTE"] = SECRET
    with pytest.raises(InvalidConfig) as raised:
        config.from_env(environ=environ)
    assert raised.value.problems == [
        f"{prefix}SECRET is required",
        f"unknown variable `{prefix}SECRTE` for {config.__name__}: did you mean `{prefix}SECRET`?",
    ]


@pytest.mark.parametrize("product", PRODUCTS)
def test_from_env_names_each_missing_variable(product):
    config = PRODUCTS[product][0]
    with pytest.raises(InvalidConfig) as raised:
        config.from_env(environ={})
    assert raised.value.problems == [
        f"{PREFIX[product]}{name.upper()} is required" for name in PRODUCTS[product][2]
    ]


@pytest.mark.parametrize("product", PRODUCTS)
def test_from_env_names_the_variable_of_a_bad_value(product):
    config = PRODUCTS[product][0]
    prefix = PREFIX[product]
    environ = {prefix + name.upper(): "x1" for name in PRODUCTS[product][2]}
    environ[prefix + "EXCHANGE_TIMEOUT"] = "ten"
    environ[prefix + PATH[product].upper()] = "/cb?x=1"
    with pytest.raises(InvalidConfig) as raised:
        config.from_env(environ=environ)
    assert raised.value.problems == [
        f"{prefix}EXCHANGE_TIMEOUT (exchange_timeout) must be a number, got 'ten'",
        path_problem(PATH[product], "/cb?x=1"),
    ]


# --- secrets, equality, the two forms ---------------------------------------------------------


@pytest.mark.parametrize("product", PRODUCTS)
def test_repr_and_summary_mask_the_secrets(product):
    config, middleware, credentials = PRODUCTS[product]
    extra = {"state_secret": "another-secret-of-16+"} if PATH[product] == "callback_path" else {}
    made = config(**credentials, **extra)
    for text in (repr(made), str(made.summary()), repr(middleware(Starlette(), config=made))):
        assert SECRET not in text and "another-secret" not in text
    assert "secret='********'" in repr(made)
    assert list(made.summary())[: len(credentials)] == list(credentials)  # credentials first


@pytest.mark.parametrize("product", PRODUCTS)
def test_configs_are_frozen_and_replace_validates_again(product):
    config, _, credentials = PRODUCTS[product]
    made = config(**credentials)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.secret = "other"
    with pytest.raises(InvalidConfig, match=PATH[product]):
        dataclasses.replace(made, **{PATH[product]: "nope"})
    assert dataclasses.replace(made, exchange_timeout=3).exchange_timeout == 3


@pytest.mark.parametrize("product", PRODUCTS)
def test_config_and_keywords_build_the_same_middleware(product):
    config_type, middleware_type, credentials = PRODUCTS[product]
    options = {**credentials, "result_ttl": 30.0, "exchange_timeout": 4.0, PATH[product]: "/in"}
    if PATH[product] == "callback_path":
        options["login_path"] = "/in/login"
    by_keywords = middleware_type(Starlette(), **options)
    by_config = middleware_type(Starlette(), config=config_type(**options))
    assert by_keywords.config == by_config.config == config_type(**options)
    for attribute in ("exchange_timeout", "login_path", "appid", "verify_state", "on_invalid_code"):
        assert getattr(by_keywords, attribute, None) == getattr(by_config, attribute, None)
    assert type(by_keywords.backend) is type(by_config.backend)
    assert by_keywords._own_paths == by_config._own_paths
    assert (by_keywords._flight.result_ttl, by_config._flight.result_ttl) == (30.0, 30.0)


@pytest.mark.parametrize("product", PRODUCTS)
def test_config_and_keywords_together_are_refused(product):
    config_type, middleware_type, credentials = PRODUCTS[product]
    config = config_type(**credentials)
    with pytest.raises(TypeError, match="not both.*exchange_timeout"):
        middleware_type(Starlette(), config=config, exchange_timeout=3)
    with pytest.raises(TypeError, match=config_type.__name__):
        middleware_type(Starlette(), config=dict(credentials))


@pytest.mark.parametrize("product", PRODUCTS)
def test_constructor_keywords_are_the_config_fields_with_its_defaults(product):
    config_type, middleware_type, _ = PRODUCTS[product]
    parameters = inspect.signature(middleware_type.__init__).parameters
    keywords = {n: p for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(keywords) == {f.name for f in dataclasses.fields(config_type)}
    for option in dataclasses.fields(config_type):
        expected = "" if option.default is dataclasses.MISSING else option.default
        assert keywords[option.name].default == expected, option.name


def test_a_constructor_that_forgets_an_option_fails_at_import():
    """Adding an option is one field in the config: a product whose constructor does not spell
    it out (for type checkers) is refused when its class is made, not when someone uses it."""
    with pytest.raises(TypeError, match="no keyword for option 'duplicates'"):

        class Forgetful(MiniProgramMiddleware):
            def __init__(
                self,
                app: Any,
                config: MiniProgramConfig | None = None,
                *,
                appid: str = "",
                secret: str = "",
                login_path: str = "/wechat/miniprogram/login",
                backend: Any = None,
                api_base_url: str = "https://api.weixin.qq.com",
                result_ttl: float = 120.0,
                exchange_timeout: float = 10.0,
                http_client: Any = None,
                counters: Any = None,
            ) -> None:
                super().__init__(app, config)


def test_type_checkers_check_every_products_keywords(tmp_path):
    """The keywords are spelled out: mypy flags a misspelt one (and a wrong type) in
    Starlette's ``add_middleware`` for each product, and accepts ``config=``."""
    source = tmp_path / "products.py"
    source.write_text(
        textwrap.dedent(
            """
            from starlette.applications import Starlette
            from asgi_wechat_oauth.miniprogram import MiniProgramConfig, MiniProgramMiddleware
            from asgi_wechat_oauth.wecom import WeComOAuthConfig, WeComOAuthMiddleware

            app = Starlette()
            wecom = WeComOAuthConfig(corpid="ww1", agentid="1", secret="s")
            mini = MiniProgramConfig(appid="wx1", secret="s")
            app.add_middleware(WeComOAuthMiddleware, config=wecom)
            app.add_middleware(MiniProgramMiddleware, config=mini)
            app.add_middleware(WeComOAuthMiddleware, corpid="ww1", agentid="1", secret="s")
            app.add_middleware(MiniProgramMiddleware, appid="wx1", secret="s", duplicates="reject")
            app.add_middleware(WeComOAuthMiddleware, corpid="ww1", calback_path="/cb")
            app.add_middleware(MiniProgramMiddleware, appid="wx1", duplicates="once")
            """
        )
    )
    proc = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict", "--no-incremental",
            "--cache-dir", str(tmp_path / ".mypy"), str(source),
        ],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, proc.stdout
    assert "products.py:13:" in errors[0] and "calback_path" in errors[0]
    assert "products.py:14:" in errors[1] and "duplicates" in errors[1]
