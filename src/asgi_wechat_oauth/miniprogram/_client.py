"""A small typed client for ``sns/jscode2session``, usable with or without the middleware."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx

from .._core.apiclient import APIClient
from .._core.errors import (
    ErrcodeTable,
    RateLimited,
    RiskyUserRejected,
    UpstreamError,
    UpstreamTimeout,
    error_from_errcode,
)
from .._core.redact import install as _install_log_redaction
from ._session import MiniProgramSession

#: WeChat's answers are a few hundred bytes; anything far larger is not WeChat.
MAX_ANSWER_BYTES = 64 * 1024

#: The errcodes of ``jscode2session`` that the other WeChat endpoints do not answer.
MINIPROGRAM_ERRCODES: ErrcodeTable = {
    45011: (RateLimited, "rate_limited", "Too many logins right now; try again in a minute."),
    40226: (RiskyUserRejected, "risky_user", "WeChat refused this login (high-risk user)."),
}

# httpx logs request URLs at INFO, with the secret and the code: redact them.
_install_log_redaction()


class MiniProgramClient(APIClient):
    """Trades a ``wx.login()`` code at ``sns/jscode2session`` for a :class:`MiniProgramSession`,
    and turns every failure into a :class:`~asgi_wechat_oauth.WeChatOAuthError`.

    A code can be traded once: this client does no deduplication (the middleware does). Pass
    ``http_client`` to share a pooled ``httpx.AsyncClient`` (you then close it); otherwise the
    client owns one and :meth:`aclose` closes it. ``timeout`` bounds each call as a whole.
    Errors never carry the secret, the code or the session key.
    """

    async def code2session(self, code: str) -> MiniProgramSession:
        """Trade a ``wx.login()`` code for the user's openid, unionid and session key."""
        query = urlencode(
            {
                "appid": self.appid,
                "secret": self._secret,
                "js_code": code,
                "grant_type": "authorization_code",
            }
        )
        url = f"{self._base_url}/sns/jscode2session?{query}"
        data = await get_json(self.http_client, url, timeout=self._timeout)
        errcode = data.get("errcode", 0)
        if errcode not in (0, None):
            raise error_from_errcode(
                errcode if isinstance(errcode, int) else -999, MINIPROGRAM_ERRCODES
            )
        try:
            return MiniProgramSession.from_wechat(data, appid=self.appid)
        except ValueError:
            raise UpstreamError(
                "upstream_bad_response", "WeChat's answer lacks a valid openid or session_key."
            ) from None


async def get_json(http_client: httpx.AsyncClient, url: str, *, timeout: float) -> dict[str, Any]:
    """GET ``url`` and return WeChat's JSON object, or raise an ``UpstreamError``.

    The body is streamed and at most :data:`MAX_ANSWER_BYTES` of it kept (a larger answer is
    refused), and ``timeout`` bounds the whole call (httpx's own timeouts are per phase).
    Exceptions are reduced to their type name: their text may hold the URL, with the secret and
    the code. One small function, to be replaced by the core's bounded HTTP helper.
    """
    body = bytearray()
    try:
        with anyio.fail_after(timeout):
            async with http_client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise UpstreamError(
                        "upstream_unavailable", f"WeChat answered HTTP {response.status_code}."
                    )
                # Read to the end, keeping at most the cap: leaving httpx's nested chunk
                # generators early leaves them to the garbage collector, which warns.
                async for chunk in response.aiter_bytes():
                    if len(body) <= MAX_ANSWER_BYTES:
                        body += chunk[: MAX_ANSWER_BYTES + 1 - len(body)]
    except (TimeoutError, httpx.TimeoutException):
        raise UpstreamTimeout("upstream_timeout", "WeChat did not answer in time.") from None
    except (httpx.HTTPError, OSError) as exc:
        raise UpstreamError(
            "upstream_unavailable", f"Could not reach WeChat ({type(exc).__name__})."
        ) from None
    if len(body) > MAX_ANSWER_BYTES:
        raise UpstreamError("upstream_bad_response", "WeChat's answer is too large.")
    try:
        # WeChat often labels JSON as text/plain, so the content type is not checked.
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError("upstream_bad_response", "WeChat answered with malformed JSON.")
    return data
