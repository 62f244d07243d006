"""Ready-made fetchers: WeCom's corp token and an official account's access token.

A fetcher trades the app's credentials for a token; :class:`~.AccessTokenKeeper` decides when
and makes sure that, across all workers, only one of them is fetching.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import httpx

from .._core.apiclient import DEFAULT_API_BASE_URL, WECOM_API_BASE_URL, WECOM_CONFIG_ERRCODES
from .._core.errcodes import server_api_error
from .._core.upstream import UpstreamClient, once_more_if_busy
from ..errors import ErrorReason, UpstreamError, WeChatOAuthError
from ._grant import TokenGrant

_WECHAT_MEANINGS = {
    40001: "invalid AppSecret, or it belongs to another account",
    40013: "invalid appid",
    40125: "invalid AppSecret",
    40164: "this server's IP is not in the account's IP allowlist",
    40243: "the AppSecret is frozen; unfreeze it in the admin console",
    89503: "this server's IP needs the administrator's confirmation",
}
#: Rate limits: transient, not configuration.
#: WeChat forces a new stable token at most once in 30 s (a forced call sooner does not
#: refresh) and 20 times a day: the spacing a fetcher that forces refreshes declares.
FORCE_REFRESH_SPACING = 30.0


class TokenFetcher(Protocol):
    """What :class:`~.AccessTokenKeeper` needs from a token endpoint."""

    #: Names the app in backend keys (hashed there): the product, the app and its secret, so
    #: that two apps never share a token and a new secret gets a new one.
    key_material: bytes
    #: errcodes with which the product's other APIs say a token is invalid or expired.
    invalid_token_errcodes: frozenset[int]
    # Optional: ``force_refresh_spacing``, the seconds that must pass between two fetches with
    # ``force_refresh`` across workers (default FORCE_REFRESH_SPACING; 0: no limit, or nothing
    # to force). Sooner, the keeper fetches without force and logs a warning.

    async def fetch(self, *, force_refresh: bool, margin: float) -> TokenGrant:
        """A fresh token. ``force_refresh``: the last one was rejected, do not hand it back.
        The grant's ``refresh_at`` is by this machine's clock, set as the answer arrives."""
        ...

    async def aclose(self) -> None: ...


class _Fetcher(UpstreamClient):
    meanings: dict[int, str] = {}

    def __init__(
        self,
        product: str,
        appid: str,
        secret: str,
        *,
        api_base_url: str,
        http_client: httpx.AsyncClient | None,
        timeout: float,
    ) -> None:
        super().__init__(
            appid, secret, api_base_url=api_base_url, http_client=http_client, timeout=timeout
        )
        digest = hashlib.sha256(secret.encode()).hexdigest()
        self.key_material = f"access_token:{product}:{appid}:{digest}".encode()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(appid={self.appid!r})"

    def error_for(self, errcode: int) -> WeChatOAuthError:
        return server_api_error(
            self.service,
            "the token endpoint",
            errcode,
            self.meanings,
            unknown_is_configuration=True,
        )

    async def fetch(self, *, force_refresh: bool, margin: float) -> TokenGrant:
        data = await once_more_if_busy(lambda: self._request(force_refresh))
        try:
            return TokenGrant.from_answer(data, margin=margin)
        except (TypeError, ValueError):
            raise UpstreamError(
                ErrorReason.UPSTREAM_BAD_RESPONSE, f"{self.service}'s token answer is unusable."
            ) from None

    async def _request(self, force_refresh: bool) -> dict[str, object]:
        raise NotImplementedError


class WeComTokenFetcher(_Fetcher):
    """WeCom's corp token, ``GET cgi-bin/gettoken?corpid=&corpsecret=`` (7,200 s). Each app
    (agent) has its own secret, hence its own token."""

    service = "WeCom"
    meanings = WECOM_CONFIG_ERRCODES
    invalid_token_errcodes = frozenset({40014, 42001})
    force_refresh_spacing = 0.0  # gettoken has nothing to force

    def __init__(
        self,
        corpid: str,
        secret: str,
        *,
        api_base_url: str = WECOM_API_BASE_URL,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(
            "wecom",
            corpid,
            secret,
            api_base_url=api_base_url,
            http_client=http_client,
            timeout=timeout,
        )

    async def _request(self, force_refresh: bool) -> dict[str, object]:
        # gettoken hands back the current token while it is valid; nothing to force.
        return await self.call(
            "GET", "/cgi-bin/gettoken", {"corpid": self.appid, "corpsecret": self._secret}
        )


class StableTokenFetcher(_Fetcher):
    """An official account's (or mini program's) token from ``POST cgi-bin/stable_token``:
    the same token until it expires, whoever asks, so it is the safe default. After the token
    was rejected the next fetch, on whichever worker, asks with ``force_refresh`` (WeChat:
    at most once in 30 s, 20 times a day; a rejection sooner fetches without it)."""

    invalid_token_errcodes = frozenset({40001, 40014, 42001})
    meanings = _WECHAT_MEANINGS
    force_refresh_spacing = FORCE_REFRESH_SPACING

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        api_base_url: str = DEFAULT_API_BASE_URL,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(
            "wechat",
            appid,
            secret,
            api_base_url=api_base_url,
            http_client=http_client,
            timeout=timeout,
        )

    async def _request(self, force_refresh: bool) -> dict[str, object]:
        body = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self._secret,
            "force_refresh": force_refresh,
        }
        return await self.call("POST", "/cgi-bin/stable_token", {}, body)


class ClientCredentialTokenFetcher(StableTokenFetcher):
    """The classic ``GET cgi-bin/token?grant_type=client_credential``: every call makes a new
    token and retires the previous one after a short overlap, which is exactly why only one
    fetcher in the whole deployment may call it (the keeper sees to that)."""

    force_refresh_spacing = 0.0  # every call is a new token: nothing to force

    async def _request(self, force_refresh: bool) -> dict[str, object]:
        params = {"grant_type": "client_credential", "appid": self.appid, "secret": self._secret}
        return await self.call("GET", "/cgi-bin/token", params)
