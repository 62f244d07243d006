"""A small typed client for WeChat's web OAuth endpoints, usable with or without the middleware."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from .._core.apiclient import APIClient
from .._core.errcodes import error_from_errcode
from .._core.redact import install as _install_log_redaction
from .._core.upstream import request_json
from ..errors import ErrorReason, UpstreamError, WeChatOAuthError
from ._identity import AccessToken, UserInfo

_T = TypeVar("_T")

# httpx logs request URLs at INFO, and WeChat's carry the secret, codes and tokens: redact them
# in every httpx record from the moment this package is imported.
_install_log_redaction()


class WeChatOAuthClient(APIClient):
    """Calls ``sns/oauth2/access_token``, ``sns/userinfo``, ``sns/oauth2/refresh_token`` and
    ``sns/auth``, and turns every failure into a :class:`WeChatOAuthError`.

    Pass ``http_client`` to share a pooled ``httpx.AsyncClient`` (the caller then closes it);
    otherwise the client owns one and :meth:`aclose` closes it. ``timeout`` bounds each call in
    total (connect, send and every read together), and answers over 64 KiB are refused. Error
    messages never carry the secret, the code or a token: httpx exceptions (whose text may hold
    the request URL) are reduced to their type name.
    """

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
        return self._parsed(AccessToken.from_wechat, data)

    async def get_userinfo(self, access_token: str, openid: str, lang: str = "zh_CN") -> UserInfo:
        """Fetch the profile (needs scope ``snsapi_userinfo`` or ``snsapi_login``)."""
        data = await self._get(
            "/sns/userinfo", {"access_token": access_token, "openid": openid, "lang": lang}
        )
        return self._parsed(UserInfo.from_wechat, data)

    async def refresh_access_token(self, refresh_token: str) -> AccessToken:
        """Get a fresh access token with a refresh token (valid about 30 days)."""
        data = await self._get(
            "/sns/oauth2/refresh_token",
            {"appid": self.appid, "grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        return self._parsed(AccessToken.from_wechat, data)

    async def check_access_token(self, access_token: str, openid: str) -> bool:
        """Whether WeChat still accepts the access token for this openid (``sns/auth``)."""
        try:
            await self._get("/sns/auth", {"access_token": access_token, "openid": openid})
        except WeChatOAuthError as exc:
            if isinstance(exc, UpstreamError) and exc.errcode is None:
                raise  # transport or HTTP failure: we do not know
            return False
        return True

    @staticmethod
    def _parsed(build: Callable[[dict[str, Any]], _T], data: dict[str, Any]) -> _T:
        """``build(data)``; an answer it cannot build from is WeChat's bad answer (502)."""
        try:
            return build(data)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            raise UpstreamError(
                ErrorReason.UPSTREAM_BAD_RESPONSE,
                "WeChat's answer lacks required fields or has bad ones.",
            ) from None

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        # The query is encoded here: httpx's params= merging costs more than the call itself.
        url = f"{self._base_url}{path}?{urlencode(params)}"
        data = await request_json(self.http_client, "GET", url, timeout=self._timeout)
        errcode = data.get("errcode", 0)
        if errcode not in (0, None):
            raise error_from_errcode(errcode)
        return data
