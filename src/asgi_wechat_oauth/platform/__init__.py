"""Third-party platforms (开放平台第三方平台, "component"): one platform logs users in on behalf
of the many official accounts that authorized it.

The foundations: :class:`MessageCrypto` (WeChat's message signature and encryption),
:class:`TicketEndpoint` (the event URL WeChat pushes ``component_verify_ticket`` to),
:class:`TicketStore` (the ticket, kept in the backend every worker shares) and
:class:`ComponentTokenFetcher` (``component_access_token``, through
:class:`~asgi_wechat_oauth.tokens.AccessTokenKeeper`). Needs the extra ``platform``
(``cryptography``).
"""

from ._component import ComponentTokenFetcher
from ._crypto import MessageCrypto
from ._ticket import PushEvent, TicketEndpoint
from ._tickets import TicketStore

__all__ = [
    "ComponentTokenFetcher",
    "MessageCrypto",
    "PushEvent",
    "TicketEndpoint",
    "TicketStore",
]
