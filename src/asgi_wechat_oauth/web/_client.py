"""A small typed client for WeChat's web OAuth endpoints, usable with or without the middleware."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx

from .._core.errors import UpstreamError, WeChatOAuthError
from .._core.http import request_json
from .._core.redact import install as _install_log_redaction
from ._identity import AccessToken, UserInfo

DEFAULT_API_BASE_URL = "https://api.weixin.qq.com"
_T = TypeVar("_T")

# httpx logs request URLs at INFO, and WeChat's carry the secret, codes and tokens: redact them
# in every httpx record from the moment this package is imported.
_install_log_redaction()


class WeChatOAuthClient:
    """Calls ``sns/oauth2/access_token``, ``sns/userinfo``, ``sns/oauth2/refresh_token`` and
    ``sns/auth``, and turns every failure into a :class:`WeChatOAuthError`.

    Pass ``http_client`` to share a pooled ``httpx.AsyncClient`` (the caller then closes it);
    otherwise the client owns one and :meth:`aclose` closes it. ``timeout`` bounds each call in
    total (connect, send and every read together), and answers over 64 KiB are refused. Error
    messages never carry the secret, the code or a token: httpx exceptions (whose text may hold
    the request URL) are reduced to their type name.
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
        return f"WeChatOAuthClient(appid={self.appid!r}, api_base_url={self._base_url!r})"

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

    async def __aenter__(self) -> WeChatOAuthClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def exchange_code(self, code: str) -> AccessToken:
        """Trade an authorization code for an access token. A code can be traded once."""
        data = await self._get(
            "/sns/oauth2/access_token",
            {
                "appid": self.appid,
                "secret": self._secret,
                "code": code,
                "grant_type": "authorization_code",
            },
        )
        return _parse(AccessToken.from_wechat, data)

    async def get_userinfo(self, access_token: str, openid: str, lang: str = "zh_CN") -> UserInfo:
        """Fetch the profile (needs scope ``snsapi_userinfo`` or ``snsapi_login``)."""
        data = await self._get(
            "/sns/userinfo", {"access_token": access_token, "openid": openid, "lang": lang}
        )
        return _parse(UserInfo.from_wechat, data)

    async def refresh_access_token(self, refresh_token: str) -> AccessToken:
        """Get a fresh access token with a refresh token (valid about 30 days)."""
        data = await self._get(
            "/sns/oauth2/refresh_token",
            {"appid": self.appid, "grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        return _parse(AccessToken.from_wechat, data)

    async def check_access_token(self, access_token: str, openid: str) -> bool:
        """Whether WeChat still accepts the access token for this openid (``sns/auth``)."""
        try:
            await self._get("/sns/auth", {"access_token": access_token, "openid": openid})
        except WeChatOAuthError as exc:
            if isinstance(exc, UpstreamError) and exc.errcode is None:
                raise  # transport or HTTP failure: we do not know
            return False
        return True

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        # The query is encoded here: httpx's params= merging costs more than the call itself.
        url = f"{self._base_url}{path}?{urlencode(params)}"
        return await request_json(self.http_client, "GET", url, timeout=self._timeout)


def _parse(build: Callable[[dict[str, Any]], _T], data: dict[str, Any]) -> _T:
    try:
        return build(data)
    except (KeyError, TypeError, ValueError, ArithmeticError):
        raise UpstreamError(
            "upstream_bad_response", "WeChat's answer lacks required fields or has bad ones."
        ) from None
