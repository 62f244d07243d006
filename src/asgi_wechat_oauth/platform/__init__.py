"""Third-party platforms (开放平台第三方平台, "component"): one platform logs users in on behalf
of the many official accounts that authorized it.

:class:`PlatformOAuthMiddleware` (configured with :class:`PlatformOAuthConfig`) takes WeChat's
ticket pushes and logs users in on behalf of the request's authorizer, each code traded once;
it is built on the web product (the same identity, :class:`~asgi_wechat_oauth.WeChatIdentity`,
whose ``appid`` is the authorizer). Its parts, usable on their own: :class:`MessageCrypto`
(WeChat's message signature and encryption),
:class:`TicketEndpoint` (the event URL WeChat pushes ``component_verify_ticket`` to),
:class:`TicketStore` (the ticket, kept in the backend every worker shares) and
:class:`ComponentTokenFetcher` (``component_access_token``, through
:class:`~asgi_wechat_oauth.tokens.AccessTokenKeeper`). Needs the extra ``platform``
(``cryptography``).
"""

from ._client import ComponentOAuthClient
from ._component import ComponentTokenFetcher
from ._config import PlatformOAuthConfig
from ._crypto import MessageCrypto
from ._middleware import PlatformOAuthMiddleware
from ._ticket import PushEvent, TicketEndpoint
from ._tickets import TicketStore

__all__ = [
    "ComponentOAuthClient",
    "ComponentTokenFetcher",
    "MessageCrypto",
    "PlatformOAuthConfig",
    "PlatformOAuthMiddleware",
    "PushEvent",
    "TicketEndpoint",
    "TicketStore",
]
