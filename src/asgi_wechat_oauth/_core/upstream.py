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

from ..errors import (
    CredentialsRejected,
    ErrorReason,
    UpstreamError,
    UpstreamTimeout,
    WeChatOAuthError,
)
from .apiclient import APIClient
from .redact import install as _install_log_redaction

logger = logging.getLogger("asgi_wechat_oauth")
_T = TypeVar("_T")

#: WeChat's answers are a few hundred bytes; anything far larger is not WeChat.
MAX_ANSWER_BYTES = 64 * 1024
#: Identity: a compressed answer could inflate far beyond the cap from a few bytes.
_HEADERS = {"accept": "application/json", "accept-encoding": "identity"}

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
        if isinstance(error, CredentialsRejected):
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
    over :data:`MAX_ANSWER_BYTES`, malformed JSON or a mistyped ``errcode``: 502;
    ``UpstreamTimeout`` past ``timeout``, which bounds the whole call: httpx's own timeouts are
    per phase).

    Exceptions are reduced to their type name: their text may hold the URL, with the secret and
    the code."""
    content = b""
    with anyio.move_on_after(timeout) as scope:
        content = await _fetch(http_client, method, url, params, body, service)
    if scope.cancelled_caught:
        raise UpstreamTimeout(ErrorReason.UPSTREAM_TIMEOUT, f"{service} did not answer in time.")
    try:
        data = json.loads(content)  # often labelled text/plain: the content type is not checked
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        data = None
    if not isinstance(data, dict):
        raise UpstreamError(
            ErrorReason.UPSTREAM_BAD_RESPONSE, f"{service} answered with malformed JSON."
        )
    errcode = data.get("errcode")
    if errcode is not None and type(errcode) is not int:  # "0", 0.0, true: not an answer
        raise UpstreamError(
            ErrorReason.UPSTREAM_BAD_RESPONSE, f"{service} answered a malformed errcode."
        )
    return data


async def _fetch(
    http_client: httpx.AsyncClient,
    method: str,
    url: str,
    params: dict[str, str] | None,
    body: Any,
    service: str,
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async with http_client.stream(
            method, url, params=params, json=body, headers=_HEADERS
        ) as response:
            if response.status_code != 200:
                raise UpstreamError(
                    ErrorReason.UPSTREAM_UNAVAILABLE,
                    f"{service} answered HTTP {response.status_code}.",
                )
            declared = response.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                raise _too_large(service)
            # Past the cap, the next read is cancelled: the cancellation is raised inside
            # httpx's own nested generators, so they end there (breaking out of the loop would
            # leave them to the garbage collector, which warns, and an endless body would run
            # until the timeout).
            with anyio.CancelScope() as over_the_cap:
                async for chunk in response.aiter_raw():  # raw: identity was asked for
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        over_the_cap.cancel()
                    else:
                        chunks.append(chunk)
            if over_the_cap.cancel_called:
                raise _too_large(service)
    except httpx.TimeoutException:
        raise UpstreamTimeout(
            ErrorReason.UPSTREAM_TIMEOUT, f"{service} did not answer in time."
        ) from None
    except (httpx.HTTPError, OSError) as exc:
        raise UpstreamError(
            ErrorReason.UPSTREAM_UNAVAILABLE, f"Could not reach {service} ({type(exc).__name__})."
        ) from None
    return b"".join(chunks)


def _too_large(service: str) -> UpstreamError:
    return UpstreamError(
        ErrorReason.UPSTREAM_BAD_RESPONSE,
        f"{service}'s answer is larger than {MAX_ANSWER_BYTES} bytes.",
    )


async def once_more_if_busy(call: Callable[[], Awaitable[_T]]) -> _T:
    """``call()``, and one retry when the answer is errcode -1 ("system busy")."""
    try:
        return await call()
    except UpstreamError as exc:
        if exc.errcode != -1:
            raise
    return await call()
