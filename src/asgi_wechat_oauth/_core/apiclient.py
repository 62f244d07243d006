"""What every WeChat API client shares: an app's credentials and an httpx client."""

from __future__ import annotations

import math
from types import TracebackType
from typing import TypeVar

import httpx

DEFAULT_API_BASE_URL = "https://api.weixin.qq.com"
WECOM_API_BASE_URL = "https://qyapi.weixin.qq.com"
#: Answers from a token endpoint that only a change of configuration fixes.
WECOM_CONFIG_ERRCODES = {
    40001: "invalid corpsecret: use the secret of this app (agent)",
    40013: "invalid corpid",
    40056: "invalid agentid",
    50001: "the redirect URI's domain is not the app's trusted domain",
    60020: "this server's IP is not in the app's trusted IPs",
}
_C = TypeVar("_C", bound="APIClient")


class APIClient:
    """Holds ``appid`` and the secret (never in its ``repr``), and an ``httpx.AsyncClient``.

    Pass ``http_client`` to share a pooled client (the caller then closes it); otherwise one is
    created on first use and :meth:`aclose` (or ``async with``) closes it. ``timeout`` is for
    :func:`~._core.upstream.request_json`, which bounds each call in total.
    """

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        api_base_url: str = DEFAULT_API_BASE_URL,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not appid or not secret:
            raise ValueError("appid and secret are required")
        if not 0 < timeout < math.inf:  # NaN fails too
            raise ValueError("timeout must be positive (and finite)")
        self.appid = appid
        self._secret = secret
        self._base_url = api_base_url.rstrip("/")
        self._owns_http_client = http_client is None
        self._http_client = http_client
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}(appid={self.appid!r}, api_base_url={self._base_url!r})"

    @property
    def http_client(self) -> httpx.AsyncClient:
        # Created on first use so that constructing the client needs no running event loop.
        if self._http_client is None:
            self._http_client = httpx.AsyncClient(
                timeout=self._timeout,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
        return self._http_client

    async def aclose(self) -> None:
        """Close the ``httpx.AsyncClient`` if this client created it."""
        if self._owns_http_client and self._http_client is not None:
            client, self._http_client = self._http_client, None
            await client.aclose()

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
