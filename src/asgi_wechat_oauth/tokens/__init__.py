"""Access tokens for WeChat's and WeCom's server APIs, one per app across all workers.

``AccessTokenKeeper(fetcher, backend=...)`` with one of the ready-made fetchers:
:class:`WeComTokenFetcher` (``cgi-bin/gettoken``), :class:`StableTokenFetcher`
(``cgi-bin/stable_token``) or :class:`ClientCredentialTokenFetcher` (``cgi-bin/token``).
"""

from ._fetchers import (
    ClientCredentialTokenFetcher,
    StableTokenFetcher,
    TokenFetcher,
    WeComTokenFetcher,
)
from ._grant import TokenGrant
from ._keeper import AccessTokenKeeper

__all__ = [
    "AccessTokenKeeper",
    "ClientCredentialTokenFetcher",
    "StableTokenFetcher",
    "TokenFetcher",
    "TokenGrant",
    "WeComTokenFetcher",
]
