"""The third-party platform's ``component_access_token``: a token fetcher for
:class:`~asgi_wechat_oauth.tokens.AccessTokenKeeper`, which makes it one fetch across every
worker sharing the backend.

``POST cgi-bin/component/api_component_token`` with the platform's appid, secret and the
``component_verify_ticket`` WeChat pushed last (read from the :class:`~.TicketStore` at fetch
time). Before the first push there is nothing to fetch with: a 503 that says so, and no call
to WeChat. A ticket WeChat refuses (61005 expired, 61006 invalid) is dropped from the store, so
that the following requests wait for the next push (every 10 minutes) instead of sending it
again.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import httpx

from .._core.apiclient import DEFAULT_API_BASE_URL
from .._core.errcodes import server_api_error
from .._core.upstream import UpstreamClient, once_more_if_busy
from ..errors import ErrorReason, ServiceUnavailable, UpstreamError, WeChatOAuthError
from ..tokens import TokenGrant
from ._tickets import TicketStore

logger = logging.getLogger("asgi_wechat_oauth")

#: errcodes that refuse the ticket: expired (12 hours after its push), or invalid.
TICKET_ERRCODES = frozenset({61005, 61006})
#: What only a change of configuration fixes, and what to change.
_MEANINGS = {
    40013: "invalid component_appid",
    40125: "invalid component_appsecret",
    41002: "component_appid is missing",
    41004: "component_appsecret is missing",
    61004: "this server's IP is not on the platform's IP allowlist (open platform console)",
    61011: "invalid component: the appid is not a third-party platform",
    40164: "this server's IP is not on the platform's IP allowlist",
}


def ticket_pending() -> ServiceUnavailable:
    """The 503 of a platform that has no ``component_verify_ticket`` yet."""
    return ServiceUnavailable(
        ErrorReason.PLATFORM_TICKET_PENDING,
        "The platform is waiting for WeChat's component_verify_ticket push, which arrives "
        "every 10 minutes; try again in a few minutes.",
    )


class ComponentTokenFetcher(UpstreamClient):
    """Fetches ``component_access_token`` (7,200 s) with the current ticket of ``tickets``.

    ``AccessTokenKeeper(ComponentTokenFetcher(appid, secret, tickets), backend=backend)``:
    ``await keeper.get()`` is the token. Raises ``ServiceUnavailable``
    (``platform_ticket_pending``) while no ticket is stored, ``ServiceUnavailable``
    (``platform_ticket_rejected``, with the errcode) when WeChat refuses it, and otherwise the
    errors every token fetcher raises (``configuration_error`` for a wrong appid, secret or IP).
    The secret and the ticket never reach a log or a ``repr``.
    """

    service = "WeChat"
    #: errcodes with which the platform's APIs say the component token is invalid or expired.
    invalid_token_errcodes = frozenset({40001, 40014, 42001})
    #: ``api_component_token`` has nothing to force.
    force_refresh_spacing = 0.0

    def __init__(
        self,
        component_appid: str,
        component_secret: str,
        tickets: TicketStore,
        *,
        api_base_url: str = DEFAULT_API_BASE_URL,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(
            component_appid,
            component_secret,
            api_base_url=api_base_url,
            http_client=http_client,
            timeout=timeout,
        )
        if tickets.component_appid != component_appid:
            raise ValueError("the ticket store belongs to another component_appid")
        self.tickets = tickets
        digest = hashlib.sha256(component_secret.encode()).hexdigest()
        #: The app and its secret (a new secret gets a new token), not the ticket: a new ticket
        #: does not retire the token.
        self.key_material = f"access_token:component:{component_appid}:{digest}".encode()

    def error_for(self, errcode: int) -> WeChatOAuthError:
        if errcode in TICKET_ERRCODES:
            state = "expired" if errcode == 61005 else "invalid"
            return ServiceUnavailable(
                ErrorReason.PLATFORM_TICKET_REJECTED,
                f"WeChat refused the platform's component_verify_ticket as {state} (errcode "
                f"{errcode}); waiting for its next push, which arrives every 10 minutes.",
                errcode=errcode,
            )
        return server_api_error("WeChat", "the component token endpoint", errcode, _MEANINGS)

    async def fetch(self, *, force_refresh: bool, margin: float) -> TokenGrant:
        ticket = await self.tickets.current()
        if ticket is None:
            logger.warning(
                "wechat_oauth.platform_ticket_pending component_appid=%s: no "
                "component_verify_ticket yet; WeChat pushes one to the ticket URL every 10 "
                "minutes (check the URL set in the open platform console if this lasts)",
                self.appid,
            )
            raise ticket_pending()
        try:
            data = await once_more_if_busy(lambda: self._request(ticket))
        except ServiceUnavailable as exc:
            if exc.errcode in TICKET_ERRCODES:
                logger.warning(
                    "wechat_oauth.platform_ticket_rejected component_appid=%s errcode=%s: "
                    "dropped; the next push brings a new one",
                    self.appid,
                    exc.errcode,
                )
                await self.tickets.drop(ticket)
            raise
        answer = {
            "access_token": data.get("component_access_token"),
            "expires_in": data.get("expires_in"),
        }
        try:
            return TokenGrant.from_answer(answer, margin=margin)
        except (TypeError, ValueError):
            raise UpstreamError(
                ErrorReason.UPSTREAM_BAD_RESPONSE, "WeChat's component token answer is unusable."
            ) from None

    async def _request(self, ticket: str) -> dict[str, Any]:
        body = {
            "component_appid": self.appid,
            "component_appsecret": self._secret,
            "component_verify_ticket": ticket,
        }
        return await self.call("POST", "/cgi-bin/component/api_component_token", {}, body)
