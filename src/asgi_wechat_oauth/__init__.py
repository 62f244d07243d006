"""ASGI middleware that trades each WeChat OAuth code exactly once.

The WeChat in-app browser often sends the OAuth callback twice with the same code; only the
first exchange can succeed. The middleware makes every duplicate wait for, or reuse, that one
exchange, and puts the resulting :class:`WeChatIdentity` in ``scope["wechat"]``.
"""

from ._authorize import authorize_url
from ._client import WeChatOAuthClient
from ._counters import Counters
from ._errors import (
    CodeRejected,
    ConfigurationError,
    ExchangeLost,
    InvalidCallbackRequest,
    MethodNotAllowed,
    ServiceUnavailable,
    SnapshotUserRejected,
    StateRejected,
    UpstreamError,
    UpstreamTimeout,
    WeChatOAuthError,
)
from ._identity import AccessToken, UserInfo, WeChatIdentity
from ._middleware import WeChatOAuthMiddleware
from .backends import Backend, Claim, MemoryBackend, Outcome

__version__ = "0.1.0"

__all__ = [
    "AccessToken",
    "Backend",
    "Claim",
    "CodeRejected",
    "ConfigurationError",
    "Counters",
    "ExchangeLost",
    "InvalidCallbackRequest",
    "MemoryBackend",
    "MethodNotAllowed",
    "Outcome",
    "ServiceUnavailable",
    "SnapshotUserRejected",
    "StateRejected",
    "UpstreamError",
    "UpstreamTimeout",
    "UserInfo",
    "WeChatIdentity",
    "WeChatOAuthClient",
    "WeChatOAuthError",
    "WeChatOAuthMiddleware",
    "authorize_url",
]
