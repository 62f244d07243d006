"""ASGI middleware that trades each WeChat OAuth code exactly once.

The WeChat in-app browser often sends the OAuth callback twice with the same code; only the
first exchange can succeed. The middleware makes every duplicate wait for, or reuse, that one
exchange, and puts the resulting :class:`WeChatIdentity` in ``scope["wechat"]``.
"""

from ._core.counters import Counters
from ._core.pages import ErrorPages
from .backends import Backend, Claim, MemoryBackend, Outcome, Result
from .errors import (
    CodeRejected,
    CredentialsRejected,
    ExchangeLost,
    InvalidCallbackRequest,
    LoginDeclined,
    LoginLoop,
    MethodNotAllowed,
    RateLimited,
    RequestTooLarge,
    RiskyUserRejected,
    ServiceUnavailable,
    SnapshotUserRejected,
    StateRejected,
    UpstreamError,
    UpstreamTimeout,
    WeChatOAuthError,
)
from .web import (
    AccessToken,
    UserInfo,
    WeChatIdentity,
    WeChatOAuthClient,
    WeChatOAuthConfig,
    WeChatOAuthMiddleware,
    authorize_url,
    login_url,
)

__version__ = "0.1.0"

__all__ = [
    "AccessToken",
    "Backend",
    "Claim",
    "CodeRejected",
    "CredentialsRejected",
    "Counters",
    "ExchangeLost",
    "ErrorPages",
    "InvalidCallbackRequest",
    "LoginDeclined",
    "LoginLoop",
    "MemoryBackend",
    "MethodNotAllowed",
    "Outcome",
    "RateLimited",
    "RequestTooLarge",
    "Result",
    "RiskyUserRejected",
    "ServiceUnavailable",
    "SnapshotUserRejected",
    "StateRejected",
    "UpstreamError",
    "UpstreamTimeout",
    "UserInfo",
    "WeChatIdentity",
    "WeChatOAuthClient",
    "WeChatOAuthConfig",
    "WeChatOAuthError",
    "WeChatOAuthMiddleware",
    "authorize_url",
    "login_url",
]
