"""WeChat web OAuth: official-account pages (``snsapi_base``, ``snsapi_userinfo``) and website
QR login (``snsapi_login``), all traded at ``sns/oauth2/access_token``.

The implementation of the web product: import its names from the top level,
``asgi_wechat_oauth``, their one public home.
"""

from ._authorize import authorize_url
from ._client import WeChatOAuthClient
from ._config import WeChatOAuthConfig
from ._identity import AccessToken, UserInfo, WeChatIdentity
from ._links import login_url
from ._middleware import WeChatOAuthMiddleware

__all__ = [
    "AccessToken",
    "UserInfo",
    "WeChatIdentity",
    "WeChatOAuthClient",
    "WeChatOAuthConfig",
    "WeChatOAuthMiddleware",
    "authorize_url",
    "login_url",
]
