"""The official account's ``jsapi_ticket``, and the ``wx.config`` signature made with it.

:class:`JsapiTicketFetcher` is a :class:`~.TokenFetcher`: an :class:`~.AccessTokenKeeper`
over it keeps one ticket for all callers and workers, for its lifetime, as it keeps an access
token. The ticket is fetched with the account's access token, from another keeper.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from typing import Any

import httpx

from .._core.apiclient import DEFAULT_API_BASE_URL
from .._core.errcodes import server_api_error
from .._core.upstream import once_more_if_busy, request_json
from ..errors import ErrorReason, UpstreamError, WeChatOAuthError
from ._grant import TokenGrant
from ._keeper import AccessTokenKeeper

#: What getticket's configuration errcodes mean (the rest are transient or the token's).
_MEANINGS = {
    40164: "this server's IP is not in the account's IP allowlist",
    48001: "the account is not authorized for the JS-SDK ticket (check its verification)",
    89503: "this server's IP needs the administrator's confirmation",
}


class JsapiTicketFetcher:
    """The ``jsapi_ticket`` of ``GET cgi-bin/ticket/getticket?type=jsapi`` (7,200 s), with
    the access token ``token_keeper`` keeps (a :class:`~.StableTokenFetcher`'s, say).

    Give it to an :class:`~.AccessTokenKeeper`, on the backend your workers share::

        tokens = AccessTokenKeeper(StableTokenFetcher(appid, secret), backend=backend)
        tickets = AccessTokenKeeper(JsapiTicketFetcher(tokens), backend=backend)
        ticket = await tickets.get()  # one getticket call for every worker, per lifetime

    When WeChat refuses the access token (40001, 40014, 42001), the token keeper drops it and
    the ticket is asked for once more with a fresh token. The ticket's key in the backend is
    not the token's. :meth:`aclose` closes the HTTP client it made, not ``token_keeper``.
    """

    #: No API of WeChat's refuses a ticket: a page's ``wx.config`` fails on the phone.
    invalid_token_errcodes: frozenset[int] = frozenset()
    #: getticket has nothing to force.
    force_refresh_spacing = 0.0

    def __init__(
        self,
        token_keeper: AccessTokenKeeper,
        *,
        api_base_url: str = DEFAULT_API_BASE_URL,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not 0 < timeout < math.inf:
            raise ValueError("timeout must be positive (and finite)")
        self.token_keeper = token_keeper
        #: The token's app and secret, under another name: one ticket per account.
        self.key_material = b"jsapi_ticket:" + token_keeper.fetcher.key_material
        self._url = api_base_url.rstrip("/") + "/cgi-bin/ticket/getticket"
        self._http_client = http_client
        self._owns_http_client = http_client is None
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"JsapiTicketFetcher(token_keeper={self.token_keeper!r})"

    async def fetch(self, *, force_refresh: bool, margin: float) -> TokenGrant:
        """A ticket, as a grant whose ``access_token`` is the ticket."""
        data = await self.token_keeper.call(self._ask_once_more_if_busy)
        answer = {"access_token": data.get("ticket"), "expires_in": data.get("expires_in")}
        try:
            return TokenGrant.from_answer(answer, margin=margin)
        except (TypeError, ValueError):
            raise UpstreamError(
                ErrorReason.UPSTREAM_BAD_RESPONSE, "WeChat's jsapi_ticket answer is unusable."
            ) from None

    async def aclose(self) -> None:
        """Close the HTTP client this fetcher made (not the token keeper)."""
        if self._owns_http_client and self._http_client is not None:
            client, self._http_client = self._http_client, None
            await client.aclose()

    async def _ask_once_more_if_busy(self, token: str) -> dict[str, object]:
        return await once_more_if_busy(lambda: self._ask(token))

    async def _ask(self, token: str) -> dict[str, object]:
        if self._http_client is None:
            self._http_client = httpx.AsyncClient(timeout=self._timeout)
        data = await request_json(
            self._http_client,
            "GET",
            self._url,
            params={"access_token": token, "type": "jsapi"},
            timeout=self._timeout,
        )
        errcode = data.get("errcode", 0)
        if errcode in (0, None):
            return data
        raise _error_for(errcode if isinstance(errcode, int) else -999)


def _error_for(errcode: int) -> WeChatOAuthError:
    # 40001/40014/42001 (the access token) are retried once by the token keeper.
    return server_api_error("WeChat", "getticket", errcode, _MEANINGS)


#: Random ``nonceStr``s (16 hex digits) cut from ``os.urandom`` bytes 512 at a time: one
#: system call per 512 signatures instead of one each (it was most of a signature's cost).
#: ``list.pop`` hands each out once, threads or not. A nonce is no secret (the page gets it):
#: it makes each signature differ.
_nonces: list[str] = []
# Bound once: a signature costs about two SHA1s, and each look-up is a few per cent of that.
_next_nonce = _nonces.pop
_now = time.time
_sha1 = hashlib.sha1
#: The last ticket signed with, and the SHA1 state of ``jsapi_ticket=<it>&noncestr=``: its
#: first block hashed once per ticket, not once per signature. One tuple, swapped whole.
_head: tuple[str, Any] = ("", _sha1())


def _more_nonces() -> None:
    pool = os.urandom(4096).hex()
    _nonces.extend(pool[at : at + 16] for at in range(0, len(pool), 16))


def jssdk_config(appid: str, ticket: str, url: str) -> dict[str, str | int]:
    """What ``wx.config`` takes besides ``jsApiList``: ``appId``, ``timestamp`` (whole
    seconds), ``nonceStr`` (random) and ``signature``, the SHA1 of
    ``jsapi_ticket=…&noncestr=…&timestamp=…&url=…`` with ``url``'s fragment (``#…``) removed.
    ``url`` is signed as given: the page's ``location.href`` (see the JS-SDK page of the docs
    for iOS's rule)."""
    global _head
    try:
        nonce = _next_nonce()
    except IndexError:
        _more_nonces()
        nonce = _next_nonce()
    timestamp = int(_now())
    if "#" in url:
        url = url.split("#", 1)[0]
    last, head = _head
    if ticket != last:
        head = _sha1(f"jsapi_ticket={ticket}&noncestr=".encode())
        _head = (ticket, head)
    signed = head.copy()
    signed.update(f"{nonce}&timestamp={timestamp}&url={url}".encode())
    return {
        "appId": appid,
        "timestamp": timestamp,
        "nonceStr": nonce,
        "signature": signed.hexdigest(),
    }
