"""A small typed client for ``sns/jscode2session``, usable with or without the middleware."""

from __future__ import annotations

from urllib.parse import urlencode

from .._core.apiclient import APIClient
from .._core.errcodes import ErrcodeTable, error_from_errcode
from .._core.redact import install as _install_log_redaction
from .._core.upstream import request_json
from ..errors import ErrorReason, RateLimited, RiskyUserRejected, UpstreamError
from ._identity import MiniProgramIdentity

#: The errcodes of ``jscode2session`` that the other WeChat endpoints do not answer.
MINIPROGRAM_ERRCODES: ErrcodeTable = {
    45011: (RateLimited, "rate_limited", "Too many logins right now; try again in a minute."),
    40226: (RiskyUserRejected, "risky_user", "WeChat refused this login (high-risk user)."),
}

# httpx logs request URLs at INFO, with the secret and the code: redact them.
_install_log_redaction()


class MiniProgramClient(APIClient):
    """Trades a ``wx.login()`` code at ``sns/jscode2session`` for a :class:`MiniProgramIdentity`,
    and turns every failure into a :class:`~asgi_wechat_oauth.WeChatOAuthError`.

    A code can be traded once: this client does no deduplication (the middleware does). Pass
    ``http_client`` to share a pooled ``httpx.AsyncClient`` (you then close it); otherwise the
    client owns one and :meth:`aclose` closes it. ``timeout`` bounds each call as a whole.
    Errors never carry the secret, the code or the session key.
    """

    async def code2session(self, code: str) -> MiniProgramIdentity:
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
        data = await request_json(self.http_client, "GET", url, timeout=self._timeout)
        errcode = data.get("errcode", 0)
        if errcode not in (0, None):
            raise error_from_errcode(errcode, MINIPROGRAM_ERRCODES)
        try:
            return MiniProgramIdentity.from_wechat(data, appid=self.appid)
        except ValueError:
            raise UpstreamError(
                ErrorReason.UPSTREAM_BAD_RESPONSE,
                "WeChat's answer lacks a valid openid or session_key.",
            ) from None
