"""Access tokens for WeChat's and WeCom's server APIs, one per app across all workers.

``AccessTokenKeeper(fetcher, backend=...)`` with one of the ready-made fetchers:
:class:`WeComTokenFetcher` (``cgi-bin/gettoken``), :class:`StableTokenFetcher`
(``cgi-bin/stable_token``) or :class:`ClientCredentialTokenFetcher` (``cgi-bin/token``); and
the official account's ``jsapi_ticket`` with :class:`JsapiTicketFetcher`, for
:func:`jssdk_config` (what a page's ``wx.config`` takes).
"""

from ._fetchers import (
    ClientCredentialTokenFetcher,
    StableTokenFetcher,
    TokenFetcher,
    WeComTokenFetcher,
)
from ._grant import TokenGrant
from ._jsapi import JsapiTicketFetcher, jssdk_config
from ._keeper import AccessTokenKeeper

__all__ = [
    "AccessTokenKeeper",
    "ClientCredentialTokenFetcher",
    "JsapiTicketFetcher",
    "StableTokenFetcher",
    "TokenFetcher",
    "TokenGrant",
    "WeComTokenFetcher",
    "jssdk_config",
]
