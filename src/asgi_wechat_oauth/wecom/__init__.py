"""WeCom (企业微信) login: OAuth inside WeCom's browser, QR login elsewhere, each code traded
once at ``cgi-bin/auth/getuserinfo`` with one corp token shared by every worker."""

from ._authorize import in_wecom_browser, wecom_authorize_url, wecom_qr_login_url
from ._client import WeComOAuthClient
from ._config import WeComOAuthConfig
from ._identity import WeComIdentity, WeComUserDetail
from ._middleware import WeComOAuthMiddleware
from ._pages import WECOM_TEXTS

__all__ = [
    "WECOM_TEXTS",
    "WeComIdentity",
    "WeComOAuthClient",
    "WeComOAuthConfig",
    "WeComOAuthMiddleware",
    "WeComUserDetail",
    "in_wecom_browser",
    "wecom_authorize_url",
    "wecom_qr_login_url",
]
