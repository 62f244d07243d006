"""The public API, pinned: every public module's ``__all__``, the error reasons and the pytest
fixtures, as they stand. A failure here means the API a 1.0 freezes changed: make the change
on purpose, here and in the CHANGELOG (which says what the public API is).

One import path per name: no name is exported by two public modules, and every other module of
the package is private (an underscore, or ``web``: the top level is its public home).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

import asgi_wechat_oauth
from asgi_wechat_oauth.errors import ErrorReason

PUBLIC = {
    "asgi_wechat_oauth": {
        "AccessToken",
        "Counters",
        "ErrorPages",
        "UserInfo",
        "WeChatIdentity",
        "WeChatOAuthClient",
        "WeChatOAuthConfig",
        "WeChatOAuthMiddleware",
        "authorize_url",
        "login_url",
    },
    "asgi_wechat_oauth.errors": {
        "CodeRejected",
        "CredentialsRejected",
        "ErrorReason",
        "ExchangeLost",
        "HandoffExpired",
        "InvalidCallbackRequest",
        "InvalidConfig",
        "LoginDeclined",
        "LoginLoop",
        "MethodNotAllowed",
        "PushRejected",
        "RateLimited",
        "RequestTooLarge",
        "RiskyUserRejected",
        "ServiceUnavailable",
        "UnknownApp",
        "SnapshotUserRejected",
        "StateRejected",
        "UpstreamError",
        "UpstreamTimeout",
        "WeChatOAuthError",
    },
    "asgi_wechat_oauth.backends": {
        "Backend",
        "Claim",
        "Mark",
        "MemoryBackend",
        "Outcome",
        "Peekable",
        "Result",
        "TokenStore",
        "backend_from_url",
        "check_lease",
        "register_result",
    },
    "asgi_wechat_oauth.backends.redis": {"RedisBackend"},
    "asgi_wechat_oauth.wecom": {
        "WECOM_TEXTS",
        "WeComIdentity",
        "WeComOAuthClient",
        "WeComOAuthConfig",
        "WeComOAuthMiddleware",
        "WeComUserDetail",
        "in_wecom_browser",
        "wecom_authorize_url",
        "wecom_qr_login_url",
    },
    "asgi_wechat_oauth.miniprogram": {
        "MiniProgramClient",
        "MiniProgramConfig",
        "MiniProgramIdentity",
        "MiniProgramMiddleware",
    },
    "asgi_wechat_oauth.tokens": {
        "AccessTokenKeeper",
        "ClientCredentialTokenFetcher",
        "JsapiTicketFetcher",
        "StableTokenFetcher",
        "TokenFetcher",
        "TokenGrant",
        "WeComTokenFetcher",
        "jssdk_config",
    },
    "asgi_wechat_oauth.testing": {
        "EmulatedUser",
        "EmulatorServer",
        "Fault",
        "PlatformPush",
        "ServerTokens",
        "WeChatEmulator",
        "WeComEmulator",
        "WeComMember",
        "consent",
        "double_callback",
        "double_login",
        "handoff_login",
        "miniprogram_login",
        "platform_login",
        "web_login",
        "wecom_login",
    },
    "asgi_wechat_oauth.fastapi": {
        "LoginRequired",
        "MiniProgramLoginRequired",
        "MiniProgramUser",
        "WeChatLoginRequired",
        "WeChatUser",
        "WeComLoginRequired",
        "WeComUser",
        "miniprogram_identity",
        "wechat_identity",
        "wecom_identity",
    },
    "asgi_wechat_oauth.prometheus": {"PRODUCT_LABEL", "WeChatOAuthCollector"},
    "asgi_wechat_oauth.platform": {
        "ComponentOAuthClient",
        "ComponentTokenFetcher",
        "MessageCrypto",
        "PlatformOAuthConfig",
        "PlatformOAuthMiddleware",
        "PushEvent",
        "TicketEndpoint",
        "TicketStore",
    },
}

REASONS = {
    "backend_unavailable",
    "body_too_large",
    "code_expired",
    "code_invalid",
    "code_used",
    "configuration_error",
    "app_mismatch",
    "duplicate_parameter",
    "exchange_lost",
    "handoff_expired",
    "handoff_not_yours",
    "handoff_taken",
    "handoff_used",
    "invalid_body",
    "invalid_host",
    "invalid_idempotency_key",
    "invalid_next",
    "invalid_query",
    "invalid_scope",
    "invalid_state",
    "invalid_url",
    "login_declined",
    "login_loop",
    "malformed_code",
    "malformed_state",
    "method_not_allowed",
    "missing_code",
    "missing_url",
    "overloaded",
    "platform_ticket_pending",
    "platform_ticket_rejected",
    "push_signature_invalid",
    "push_stale",
    "push_unreadable",
    "push_wrong_appid",
    "qr_link_expired",
    "rate_limited",
    "risky_user",
    "scope_not_supported_here",
    "shutting_down",
    "snapshot_user",
    "state_mismatch",
    "too_many_codes",
    "unknown_app",
    "upstream_bad_response",
    "upstream_busy",
    "upstream_error",
    "upstream_timeout",
    "upstream_unavailable",
    "url_not_allowed",
    "wxlogin_unavailable",
}

FIXTURES = {
    "wechat_emulator",
    "wechat_emulator_server",
    "wechat_handoff_login",
    "wechat_login",
    "wechat_miniprogram_login",
    "wechat_platform_login",
    "wecom_emulator",
    "wecom_login",
}
#: The package's modules that are not public: their names are reached through a public one.
PRIVATE_PACKAGES = {"asgi_wechat_oauth.web"}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_each_public_module_exports_exactly_its_pinned_names(module: str) -> None:
    imported = importlib.import_module(module)
    assert set(imported.__all__) == PUBLIC[module]
    assert len(imported.__all__) == len(set(imported.__all__)), "a name listed twice"
    for name in imported.__all__:
        assert hasattr(imported, name), f"{module}.{name} is in __all__ but does not exist"


def test_one_import_path_per_name() -> None:
    seen: dict[str, str] = {}
    for module, names in PUBLIC.items():
        for name in names:
            assert name not in seen, f"{name} is exported by {seen[name]} and {module}"
            seen[name] = module


def test_every_other_module_is_private() -> None:
    found = {
        info.name
        for info in pkgutil.walk_packages(asgi_wechat_oauth.__path__, "asgi_wechat_oauth.")
        if not any(part.startswith("_") for part in info.name.split(".")[1:])
    }
    assert found - {"asgi_wechat_oauth.__main__"} == set(PUBLIC) - {"asgi_wechat_oauth"} | (
        PRIVATE_PACKAGES
    )


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_nothing_public_is_left_out_of_all(module: str) -> None:
    """A class or function a public module defines (not imports) is in its ``__all__``."""
    imported = importlib.import_module(module)
    for name, value in vars(imported).items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == module:
            assert name in imported.__all__, f"{module}.{name} is public but not in __all__"


def test_the_error_reasons_are_pinned() -> None:
    assert {reason.value for reason in ErrorReason} == REASONS
    assert all(isinstance(reason, str) and str(reason) == reason.value for reason in ErrorReason)


def test_the_pytest_fixtures_are_pinned() -> None:
    plugin = importlib.import_module("pytest_asgi_wechat_oauth")
    fixtures = {
        name
        for name, value in vars(plugin).items()
        if not name.startswith("_")
        and hasattr(value, "_pytestfixturefunction")
        or type(value).__name__ == "FixtureFunctionDefinition"
    }
    assert fixtures == FIXTURES
