"""One bounded JSON call to a WeChat API: the whole call within ``timeout``, the body capped.

httpx's ``timeout`` is per phase (connect, each read, ...), so an upstream dripping a byte now
and then never trips it, and ``response.aread()`` reads whatever size comes. Here the call runs
in one deadline and the body is streamed and refused beyond ``max_bytes`` (WeChat's answers are
about 1 KB). Every failure is a :class:`WeChatOAuthError` whose message holds no URL (URLs carry
the secret, codes and tokens). Every product calls its endpoints through :func:`request_json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from .errors import UpstreamError, UpstreamTimeout, WeChatOAuthError, error_from_errcode

#: WeChat's JSON answers are about 1 KB; anything beyond this is not one of them.
MAX_BODY_BYTES = 64 * 1024

ErrcodeMapper = Callable[[int], WeChatOAuthError]

_HEADERS = {"accept": "application/json", "accept-encoding": "identity"}


async def request_json(
    http_client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout: float,
    json_body: Any = None,
    max_bytes: int = MAX_BODY_BYTES,
    errors: ErrcodeMapper = error_from_errcode,
) -> dict[str, Any]:
    """``method`` ``url`` (with ``json_body`` as the request body, if given) and return the
    answer's JSON object; an answer with a non-zero ``errcode`` raises ``errors(errcode)``.

    Raises :class:`UpstreamTimeout` when the whole call (connect, send, every read) takes
    longer than ``timeout`` seconds, and :class:`UpstreamError` for a transport failure, an
    HTTP status other than 200, a body over ``max_bytes``, or anything but a JSON object.
    """
    body = b""
    with anyio.move_on_after(timeout) as scope:
        body = await _fetch(http_client, method, url, json_body, max_bytes)
    if scope.cancelled_caught:
        raise UpstreamTimeout("upstream_timeout", "WeChat did not answer in time.")
    try:
        # WeChat often labels JSON as text/plain, so the content type is not checked.
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise UpstreamError("upstream_bad_response", "WeChat answered with malformed JSON.")
    errcode = data.get("errcode")
    if errcode is None or (errcode == 0 and type(errcode) is int):
        return data
    if type(errcode) is not int:  # "0", 0.0, true: not an answer WeChat gives
        raise UpstreamError("upstream_bad_response", "WeChat answered with a malformed errcode.")
    raise errors(errcode)


async def _fetch(
    http_client: httpx.AsyncClient, method: str, url: str, json_body: Any, max_bytes: int
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async with http_client.stream(method, url, json=json_body, headers=_HEADERS) as response:
            if response.status_code != 200:
                raise UpstreamError(
                    "upstream_unavailable", f"WeChat answered HTTP {response.status_code}."
                )
            declared = response.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(max_bytes)
            # Past the cap, the next read is cancelled: the cancellation is raised inside
            # httpx's own nested generators, so they end there (breaking out of the loop would
            # leave them to the garbage collector, and the connection with them).
            with anyio.CancelScope() as over_the_cap:
                async for chunk in response.aiter_raw():  # raw: identity was asked for
                    size += len(chunk)
                    if size > max_bytes:
                        over_the_cap.cancel()
                    else:
                        chunks.append(chunk)
            if over_the_cap.cancel_called:
                raise _too_large(max_bytes)
    except httpx.TimeoutException:
        raise UpstreamTimeout("upstream_timeout", "WeChat did not answer in time.") from None
    except (httpx.HTTPError, OSError) as exc:
        # httpx's text may hold the URL, and with it the secret, a code or a token.
        raise UpstreamError(
            "upstream_unavailable", f"Could not reach WeChat ({type(exc).__name__})."
        ) from None
    return b"".join(chunks)


def _too_large(max_bytes: int) -> UpstreamError:
    return UpstreamError(
        "upstream_bad_response", f"WeChat's answer is larger than {max_bytes} bytes."
    )
