"""The WeCom API calls a login needs, each with the shared corp token."""

from __future__ import annotations

from typing import Any

import httpx

from .._core.apiclient import WECOM_API_BASE_URL, WECOM_CONFIG_ERRCODES
from .._core.errcodes import configuration_error, error_from_errcode
from .._core.upstream import UpstreamClient, once_more_if_busy
from ..backends import Backend
from ..errors import ErrorReason, UpstreamError, WeChatOAuthError
from ..tokens import AccessTokenKeeper, WeComTokenFetcher
from ._identity import WeComIdentity, WeComUserDetail


class WeComOAuthClient(UpstreamClient):
    """``auth/getuserinfo`` and ``auth/getuserdetail`` for one app (agent), failures as
    :class:`WeChatOAuthError`. The corp token comes from ``token_keeper`` (an
    :class:`~asgi_wechat_oauth.tokens.AccessTokenKeeper`; by default one of its own, shared with
    other workers through ``backend``, and closed with the client); an answer
    that it is invalid or expired (40014, 42001) refreshes it once and retries, and a busy
    answer (-1) is retried once."""

    service = "WeCom"

    def __init__(
        self,
        corpid: str,
        agentid: str,
        secret: str,
        *,
        backend: Backend | None = None,
        api_base_url: str = WECOM_API_BASE_URL,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        token_keeper: AccessTokenKeeper | None = None,
    ) -> None:
        if not agentid:
            raise ValueError("agentid is required")
        super().__init__(
            corpid, secret, api_base_url=api_base_url, http_client=http_client, timeout=timeout
        )
        self.corpid = corpid
        self.agentid = agentid
        self._owns_keeper = token_keeper is None
        if token_keeper is None:
            fetcher = WeComTokenFetcher(
                corpid, secret, api_base_url=api_base_url, http_client=http_client, timeout=timeout
            )
            token_keeper = AccessTokenKeeper(fetcher, backend=backend, exchange_timeout=timeout)
        self.token_keeper = token_keeper

    def __repr__(self) -> str:
        return f"WeComOAuthClient(corpid={self.corpid!r}, agentid={self.agentid!r})"

    def error_for(self, errcode: int) -> WeChatOAuthError:
        if errcode in WECOM_CONFIG_ERRCODES:
            return configuration_error(self.service, errcode, WECOM_CONFIG_ERRCODES[errcode])
        return error_from_errcode(errcode)

    async def aclose(self) -> None:
        """Close the token keeper and the HTTP client, if this client created them."""
        if self._owns_keeper:
            await self.token_keeper.aclose()
        await super().aclose()

    async def get_identity(self, code: str) -> WeComIdentity:
        """Trade a login code (once: WeCom answers 40029 to a second try)."""

        async def ask(token: str) -> dict[str, Any]:
            params = {"access_token": token, "code": code}
            return await once_more_if_busy(
                lambda: self.call("GET", "/cgi-bin/auth/getuserinfo", params)
            )

        data = await self.token_keeper.call(ask)
        try:
            return WeComIdentity.from_wecom(data, corpid=self.corpid, agentid=self.agentid)
        except (TypeError, ValueError):
            raise self._unusable() from None

    async def get_user_detail(self, user_ticket: str) -> WeComUserDetail:
        """The member's consented details for a ``user_ticket`` (``snsapi_privateinfo``)."""

        async def ask(token: str) -> dict[str, Any]:
            path, params = "/cgi-bin/auth/getuserdetail", {"access_token": token}
            body = {"user_ticket": user_ticket}
            return await once_more_if_busy(lambda: self.call("POST", path, params, body))

        data = await self.token_keeper.call(ask)
        try:
            return WeComUserDetail.from_wecom(data)
        except (TypeError, ValueError):
            raise self._unusable() from None

    def _unusable(self) -> WeChatOAuthError:
        return UpstreamError(
            ErrorReason.UPSTREAM_BAD_RESPONSE, "WeCom's answer lacks required fields."
        )
