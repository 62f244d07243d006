"""ASGI middleware that trades each WeChat OAuth code exactly once.

The WeChat in-app browser often sends the OAuth callback twice with the same code; only the
first exchange can succeed. The middleware makes every duplicate wait for, or reuse, that one
exchange, and puts the resulting :class:`WeChatIdentity` in ``scope["wechat"]``.

The top level is what an app author needs for the official account and website QR login.
Every other name has one home of its own: the errors in :mod:`asgi_wechat_oauth.errors`, the
backends in :mod:`asgi_wechat_oauth.backends` (and ``.backends.redis``), the other products in
:mod:`asgi_wechat_oauth.wecom`, :mod:`asgi_wechat_oauth.miniprogram` and
:mod:`asgi_wechat_oauth.tokens`, the emulator in :mod:`asgi_wechat_oauth.testing`, and the
framework helpers in :mod:`asgi_wechat_oauth.fastapi` and :mod:`asgi_wechat_oauth.prometheus`.
"""

from ._core.counters import Counters
from ._core.pages import ErrorPages
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
    "Counters",
    "ErrorPages",
    "UserInfo",
    "WeChatIdentity",
    "WeChatOAuthClient",
    "WeChatOAuthConfig",
    "WeChatOAuthMiddleware",
    "authorize_url",
    "login_url",
]
