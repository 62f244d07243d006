"""Calling a WeChat or WeCom JSON API: the one request helper, and a client base that maps
errcodes to errors.

Every failure becomes a :class:`WeChatOAuthError` whose message holds no URL (WeChat's carry
secrets, codes and tokens). A configuration error (a wrong secret, an untrusted server IP) is
logged here at ERROR with the errcode's meaning, once per answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx

from .apiclient import APIClient
from .errors import ConfigurationError, UpstreamError, UpstreamTimeout, WeChatOAuthError
from .redact import install as _install_log_redaction

logger = logging.getLogger("asgi_wechat_oauth")
_T = TypeVar("_T")

#: WeChat's answers are a few hundred bytes; anything far larger is not WeChat.
MAX_ANSWER_BYTES = 64 * 1024

_install_log_redaction()


class UpstreamClient(APIClient):
    """An :class:`APIClient` whose calls answer JSON with an ``errcode``; ``service`` names the
    remote side in messages, :meth:`error_for` maps its errcodes."""

    service = "WeChat"

    def error_for(self, errcode: int) -> WeChatOAuthError:
        """The error an answer with ``errcode`` raises; products map their own codes."""
        raise NotImplementedError

    async def call(
        self, method: str, path: str, params: dict[str, str], body: Any = None
    ) -> dict[str, Any]:
        """``method path?params`` (with ``body`` as JSON), the answer's JSON object; raises
        ``error_for(errcode)`` for a non-zero errcode."""
        data = await request_json(
            self.http_client,
            method,
            self._base_url + path,
            params=params,
            body=body,
            timeout=self._timeout,
            service=self.service,
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
    *,
    params: dict[str, str] | None = None,
    body: Any = None,
    timeout: float,
    service: str = "WeChat",
) -> dict[str, Any]:
    """One HTTP call answered by a JSON object, or an ``UpstreamError`` (HTTP errors, a body
    over :data:`MAX_ANSWER_BYTES`, malformed JSON: 502; ``UpstreamTimeout`` past ``timeout``,
    which bounds the whole call: httpx's own timeouts are per phase).

    Exceptions are reduced to their type name: their text may hold the URL, with the secret and
    the code."""
    content = bytearray()
    try:
        with anyio.fail_after(timeout):
            async with http_client.stream(method, url, params=params, json=body) as response:
                if response.status_code != 200:
                    raise UpstreamError(
                        "upstream_unavailable", f"{service} answered HTTP {response.status_code}."
                    )
                # Read to the end, keeping at most the cap: leaving httpx's nested chunk
                # generators early leaves them to the garbage collector, which warns.
                async for chunk in response.aiter_bytes():
                    if len(content) <= MAX_ANSWER_BYTES:
                        content += chunk[: MAX_ANSWER_BYTES + 1 - len(content)]
    except (TimeoutError, httpx.TimeoutException):
        raise UpstreamTimeout("upstream_timeout", f"{service} did not answer in time.") from None
    except (httpx.HTTPError, OSError) as exc:
        raise UpstreamError(
            "upstream_unavailable", f"Could not reach {service} ({type(exc).__name__})."
        ) from None
    if len(content) > MAX_ANSWER_BYTES:
        raise UpstreamError("upstream_bad_response", f"{service}'s answer is too large.")
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
