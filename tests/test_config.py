"""``WeChatOAuthConfig``: every option in one frozen, validated object, built where it is
written (at import, or from the environment), and the middleware's constructor as its mirror."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
import textwrap

import pytest
from starlette.applications import Starlette

from asgi_wechat_oauth import WeChatOAuthConfig, WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.web import WeChatOAuthConfig as FromWeb

REQUIRED = {"appid": "wx123", "secret": "s3cret-value"}
ENV = {"WECHAT_APPID": "wx123", "WECHAT_SECRET": "s3cret-value"}


def test_constructor_keywords_and_config_fields_are_the_same_set():
    parameters = inspect.signature(WeChatOAuthMiddleware.__init__).parameters
    keywords = {n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keywords == {f.name for f in dataclasses.fields(WeChatOAuthConfig)}
    assert FromWeb is WeChatOAuthConfig


def test_defaults_are_the_constructors():
    parameters = inspect.signature(WeChatOAuthMiddleware.__init__).parameters
    for option in dataclasses.fields(WeChatOAuthConfig):
        if option.name not in REQUIRED:
            assert option.default == parameters[option.name].default, option.name


def test_keywords_and_config_build_the_same_middleware():
    options = {**REQUIRED, "login_path": "/wechat/login", "default_scope": "snsapi_userinfo"}
    by_keywords = WeChatOAuthMiddleware(Starlette(), **options)
    by_config = WeChatOAuthMiddleware(Starlette(), config=WeChatOAuthConfig(**options))
    assert by_keywords.config == by_config.config == WeChatOAuthConfig(**options)
    assert by_keywords.verify_state and by_config.verify_state
    assert by_keywords.on_invalid_code == by_config.on_invalid_code == "reauthorize"


def test_config_and_options_together_are_refused():
    config = WeChatOAuthConfig(**REQUIRED)
    with pytest.raises(TypeError, match="not both.*callback_path"):
        WeChatOAuthMiddleware(Starlette(), config=config, callback_path="/other")
    with pytest.raises(TypeError, match="WeChatOAuthConfig"):
        WeChatOAuthMiddleware(Starlette(), config={"appid": "wx"})  # type: ignore[arg-type]


def test_starlette_add_middleware_takes_the_config():
    app = Starlette()
    config = WeChatOAuthConfig(**REQUIRED, callback_path="/cb")
    app.add_middleware(WeChatOAuthMiddleware, config=config)
    assert app.user_middleware[0].kwargs == {"config": config}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"appid": ""}, "appid is required"),
        ({"secret": ""}, "secret is required"),
        ({"callback_path": "wechat/callback"}, "callback_path must be a path"),
        ({"callback_path": "//evil/callback"}, "callback_path must be a path"),
        ({"login_path": "login"}, "login_path must be a path"),
        ({"login_path": "/wechat/callback/"}, "login_path must differ from callback_path"),
        ({"result_ttl": -1}, "result_ttl must not be negative"),
        ({"exchange_timeout": 0}, "exchange_timeout must be positive"),
        ({"exchange_timeout": "10"}, "exchange_timeout must be positive"),
        ({"state_max_age": 0}, "state_max_age must be at least 1 second"),
        ({"state_max_age": 0.5}, "state_max_age must be at least 1 second"),
        ({"exchange_timeout": float("nan")}, "exchange_timeout must be positive"),
        ({"max_codes_per_state": 0}, "max_codes_per_state must be an int of at least 1"),
        ({"verify_state": True}, "verify_state needs login_path"),
        ({"default_scope": "snsapi_info"}, "default_scope must be one of"),
        ({"redirect_uri": "/wechat/callback"}, "redirect_uri must be an absolute http"),
        ({"api_base_url": "api.weixin.qq.com"}, "api_base_url must be an absolute http"),
        ({"authorize_base_url": "https://"}, "authorize_base_url must be an absolute http"),
        ({"nonce_cookie": "a b"}, "nonce_cookie must be a plain ASCII name"),
        ({"on_invalid_code": "retry"}, "on_invalid_code must be"),
        ({"on_invalid_code": "reauthorize"}, "on_invalid_code='reauthorize' needs login_path"),
        ({"snapshot_users": "deny"}, "snapshot_users must be"),
        ({"state_secret": "short"}, "state_secret must be at least 16 bytes"),
    ],
)
def test_each_bad_option_is_named(options, message):
    with pytest.raises(ValueError, match=message) as raised:
        WeChatOAuthConfig(**{**REQUIRED, **options})
    assert raised.value.problems == [raised.value.problems[0]]  # exactly one problem
    with pytest.raises(ValueError, match=message):  # the middleware raises the same
        WeChatOAuthMiddleware(Starlette(), **{**REQUIRED, **options})


def test_every_problem_is_listed_at_once():
    with pytest.raises(ValueError) as raised:
        WeChatOAuthConfig(appid="", secret="", callback_path="cb", default_scope="x")  # type: ignore[arg-type]
    assert len(raised.value.problems) == 4


def test_frozen_and_replace_validates_again():
    config = WeChatOAuthConfig(**REQUIRED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.appid = "other"  # type: ignore[misc]
    assert dataclasses.replace(config, login_path="/login").resolved_verify_state
    with pytest.raises(ValueError, match="callback_path"):
        dataclasses.replace(config, callback_path="nope")


def test_repr_masks_the_secrets():
    config = WeChatOAuthConfig(**REQUIRED, state_secret="another-secret-of-16+")
    text = repr(config)
    assert "s3cret-value" not in text and "another-secret" not in text
    assert "secret='********'" in text and "appid='wx123'" in text


# --- from_env ------------------------------------------------------------------------------------


def test_from_env_reads_typed_values():
    config = WeChatOAuthConfig.from_env(
        environ={
            **ENV,
            "WECHAT_LOGIN_PATH": "/wechat/login",
            "WECHAT_EXCHANGE_TIMEOUT": "3.5",
            "WECHAT_RESULT_TTL": "60",
            "WECHAT_TRUST_FORWARDED": "yes",
            "WECHAT_CONNECT_REDIRECT": "0",
            "WECHAT_FETCH_PROFILE": "",  # empty: unset
            "WECHAT_DEFAULT_SCOPE": "snsapi_login",
            "PATH": "/usr/bin",  # not under the prefix: none of its business
        }
    )
    assert (config.appid, config.secret, config.login_path) == (
        "wx123",
        "s3cret-value",
        "/wechat/login",
    )
    assert (config.exchange_timeout, config.result_ttl) == (3.5, 60.0)
    assert (config.trust_forwarded, config.connect_redirect, config.fetch_profile) == (
        True,
        False,
        None,
    )
    assert config.default_scope == "snsapi_login"


def test_from_env_lists_unknown_variables_and_bad_values():
    with pytest.raises(ValueError) as raised:
        WeChatOAuthConfig.from_env(
            environ={
                **ENV,
                "WECHAT_LOGIN_PAHT": "/typo",
                "WECHAT_EXCHANGE_TIMEOUT": "ten",
                "WECHAT_TRUST_FORWARDED": "maybe",
                "WECHAT_DEFAULT_SCOPE": "snsapi_info",
            }
        )
    text = "\n".join(raised.value.problems)
    assert "WECHAT_LOGIN_PAHT" in text
    assert "WECHAT_EXCHANGE_TIMEOUT (exchange_timeout) must be a number" in text
    assert "WECHAT_TRUST_FORWARDED (trust_forwarded) must be true or false" in text
    assert "default_scope must be one of" in text
    assert len(raised.value.problems) == 4


def test_from_env_prefix_ignore_and_overrides():
    environ = {"MYAPP_APPID": "wx9", "MYAPP_SECRET": "x" * 8, "MYAPP_SESSION_SECRET": "x"}
    backend = MemoryBackend()
    config = WeChatOAuthConfig.from_env(
        "MYAPP_", environ, ignore=["SESSION_SECRET"], backend=backend, appid="wxoverride"
    )
    assert (config.appid, config.backend) == ("wxoverride", backend)
    with pytest.raises(ValueError, match="MYAPP_SESSION_SECRET"):
        WeChatOAuthConfig.from_env("MYAPP_", environ)


def test_from_env_without_credentials_says_so():
    with pytest.raises(ValueError, match="WECHAT_APPID is required; WECHAT_SECRET is required"):
        WeChatOAuthConfig.from_env(environ={})


def test_from_env_redis_url_makes_a_redis_backend():
    config = WeChatOAuthConfig.from_env(
        environ={
            **ENV,
            "WECHAT_REDIS_URL": "redis://127.0.0.1:1/0",
            "WECHAT_REDIS_PREFIX": "myapp",
            "WECHAT_LEASE_TTL": "12",
        }
    )
    assert isinstance(config.backend, RedisBackend)
    assert (config.backend.prefix, config.backend.lease_ttl) == ("myapp", 12.0)
    with pytest.raises(ValueError, match="WECHAT_LEASE_TTL"):
        WeChatOAuthConfig.from_env(
            environ={**ENV, "WECHAT_REDIS_URL": "redis://127.0.0.1:1/0", "WECHAT_LEASE_TTL": "x"}
        )


def test_from_env_reads_the_redis_burst_and_failover_variables():
    """Issue 31's options can be set from the environment like the other Redis ones."""
    url = {**ENV, "WECHAT_REDIS_URL": "redis://127.0.0.1:1/0"}
    config = WeChatOAuthConfig.from_env(
        environ={
            **url,
            "WECHAT_REDIS_MAX_CONNECTIONS": "20",
            "WECHAT_REDIS_MAX_QUEUED": "300",
            "WECHAT_REDIS_FAILOVER_TIMEOUT": "15",
        }
    )
    backend = config.backend
    assert isinstance(backend, RedisBackend)
    assert backend._client.connection_pool.max_connections == 20
    assert backend._gate is not None and backend._gate.max_queued == 300
    assert backend.failover_timeout == 15.0
    for variable in ("REDIS_MAX_CONNECTIONS", "REDIS_MAX_QUEUED", "REDIS_FAILOVER_TIMEOUT"):
        with pytest.raises(ValueError, match=f"WECHAT_{variable} must be"):
            WeChatOAuthConfig.from_env(environ={**url, f"WECHAT_{variable}": "lots"})


# --- failing where it is written -----------------------------------------------------------------


def test_a_bad_config_fails_at_import(tmp_path):
    module = tmp_path / "badapp.py"
    module.write_text(
        textwrap.dedent(
            """
            from starlette.applications import Starlette
            from asgi_wechat_oauth import WeChatOAuthConfig, WeChatOAuthMiddleware

            config = WeChatOAuthConfig(appid="wx", secret="s", callback_path="wechat/callback")
            app = Starlette()
            app.add_middleware(WeChatOAuthMiddleware, config=config)
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-c", "import badapp"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "InvalidConfig: callback_path must be a path starting with '/'" in proc.stderr


def test_type_checkers_catch_a_scope_typo(tmp_path):
    """``default_scope`` and friends are ``Literal`` types: mypy flags a typo in the config and
    in ``add_middleware``'s keywords (Starlette checks them against the constructor)."""
    source = tmp_path / "typo.py"
    source.write_text(
        textwrap.dedent(
            """
            from starlette.applications import Starlette
            from asgi_wechat_oauth import WeChatOAuthConfig, WeChatOAuthMiddleware

            config = WeChatOAuthConfig(appid="wx", secret="s", default_scope="snsapi_info")
            app = Starlette()
            app.add_middleware(WeChatOAuthMiddleware, appid="wx", secret="s", snapshot_users="no")
            app.add_middleware(WeChatOAuthMiddleware, config=config)
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
    assert "typo.py:5:" in errors[0] and "default_scope" in errors[0]
    assert "typo.py:7:" in errors[1] and "snapshot_users" in errors[1]
