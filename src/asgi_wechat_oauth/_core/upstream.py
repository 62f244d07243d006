"""Calling a WeChat or WeCom JSON API: the one place the new products make HTTP requests.

Every failure becomes a :class:`WeChatOAuthError` whose message holds no URL (WeChat's carry
secrets, codes and tokens). A configuration error (a wrong secret, an untrusted server IP) is
logged here at ERROR with the errcode's meaning, once per answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import httpx

from .errors import ConfigurationError, UpstreamError, UpstreamTimeout, WeChatOAuthError
from .redact import install as _install_log_redaction

logger = logging.getLogger("asgi_wechat_oauth")
_T = TypeVar("_T")
_Self = TypeVar("_Self", bound="UpstreamClient")

_install_log_redaction()


class UpstreamClient:
    """Owns an ``httpx.AsyncClient`` (created on first use) unless one is passed in, which the
    caller then closes. ``service`` names the remote side in error messages."""

    service = "WeChat"

    def __init__(
        self, *, base_url: str, http_client: httpx.AsyncClient | None, timeout: float
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._owns_http_client = http_client is None
        self._http_client = http_client
        self._timeout = timeout

    @property
    def http_client(self) -> httpx.AsyncClient:
        if self._http_client is None:
            self._http_client = httpx.AsyncClient(timeout=self._timeout)
        return self._http_client

    async def aclose(self) -> None:
        """Close the ``httpx.AsyncClient`` if this client created it."""
        if self._owns_http_client and self._http_client is not None:
            client, self._http_client = self._http_client, None
            await client.aclose()

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def error_for(self, errcode: int) -> WeChatOAuthError:
        """The error an answer with ``errcode`` raises; products map their own codes."""
        raise NotImplementedError

    async def call(
        self, method: str, path: str, params: dict[str, str], body: Any = None
    ) -> dict[str, Any]:
        """``method path?params`` (with ``body`` as JSON), the answer's JSON object; raises
        ``error_for(errcode)`` for a non-zero errcode."""
        data = await request_json(
            self.http_client, method, self._base_url + path, params, body, self.service
        )
        errcode = data.get("errcode", 0)
        if errcode in (0, None):
            return data
        error = self.error_for(errcode if isinstance(errcode, int) else -999)
        if isinstance(error, ConfigurationError):
            logger.error(
                "wechat_oauth.configuration_error service=%s errcode=%s message=%s",
                self.service,
                error.errcode,
                error.message,
            )
        raise error


async def request_json(
    http_client: httpx.AsyncClient,
    method: str,
    url: str,
    params: dict[str, str],
    body: Any,
    service: str,
) -> dict[str, Any]:
    """One HTTP call answered by a JSON object (HTTP errors, malformed JSON: 502; timeout: 504).

    Kept as one small function so that a bounded request helper (a total deadline, a body cap)
    can replace its inside without touching the callers."""
    try:
        response = await http_client.request(method, url, params=params, json=body)
        content = await response.aread()
    except httpx.TimeoutException:
        raise UpstreamTimeout("upstream_timeout", f"{service} did not answer in time.") from None
    except (httpx.HTTPError, OSError) as exc:
        raise UpstreamError(
            "upstream_unavailable", f"Could not reach {service} ({type(exc).__name__})."
        ) from None
    if response.status_code != 200:
        raise UpstreamError(
            "upstream_unavailable", f"{service} answered HTTP {response.status_code}."
        )
    try:
        data = json.loads(content)  # often labelled text/plain: the content type is not checked
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError("upstream_bad_response", f"{service} answered with malformed JSON.")
    return data


async def once_more_if_busy(call: Callable[[], Awaitable[_T]]) -> _T:
    """``call()``, and one retry when the answer is errcode -1 ("system busy")."""
    try:
        return await call()
    except UpstreamError as exc:
        if exc.errcode != -1:
            raise
    return await call()
