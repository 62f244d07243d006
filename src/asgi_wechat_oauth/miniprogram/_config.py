"""Every option of the mini-program middleware in one frozen, validated object (see
:mod:`asgi_wechat_oauth._core.options`: the options every product has are there)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .._core.checks import is_path, one_of, option, required, text
from .._core.oauth_options import appid_problem
from .._core.options import Options, app_secret
from ..backends import backend_from_url

#: What a request with a code whose session another request was given gets: ``"share"`` the
#: same session (for ``result_ttl``), ``"reject"`` 400 ``code_used``.
Duplicates = Literal["share", "reject"]


@dataclass(frozen=True, kw_only=True, repr=False)
class MiniProgramConfig(Options):
    """The options of :class:`MiniProgramMiddleware`, validated on construction.

    ``MiniProgramMiddleware(app, config=config)`` and ``MiniProgramMiddleware(app, **options)``
    build the same middleware. Invalid options raise
    :class:`~asgi_wechat_oauth.errors.InvalidConfig` (a ``ValueError``) naming each bad option,
    and a misspelt one with the name meant. ``repr`` masks the secret. :meth:`from_env` reads
    ``WECHAT_MINIPROGRAM_APPID``, ``WECHAT_MINIPROGRAM_SECRET``, ...
    """

    env_prefix: ClassVar[str] = "WECHAT_MINIPROGRAM_"

    # ``doc`` and ``doc_zh``: the option's meaning on the documentation site (docs/hooks.py).
    appid: str = field(
        metadata=required()
        | {
            "doc": "The mini-program's AppID (not the official account's).",
            "doc_zh": "小程序的 AppID（不是公众号的）。",
        }
    )
    secret: str = app_secret()
    #: Where the mini-program POSTs its ``wx.login()`` code.
    login_path: str = field(
        default="/wechat/miniprogram/login",
        metadata=option(text, is_path)
        | {
            "doc": "Where the mini-program POSTs its `wx.login()` code; every other request "
            "passes through untouched.",
            "doc_zh": "小程序 POST `wx.login()` code 的路径；其他请求一概原样放行。",
        },
    )
    duplicates: Duplicates = field(
        default="share",
        metadata=option(text, one_of("share", "reject"))
        | {
            "doc": '`"share"`: a request with a code whose session another request got gets '
            'the same session (within `result_ttl`). `"reject"`: one request takes the '
            "session, the others 400 `code_used`; requests with the same `Idempotency-Key` "
            "count as one.",
            "doc_zh": '`"share"`：带着已被别的请求兑换的 code 来的请求，在 `result_ttl` 内拿到'
            '同一个会话。`"reject"`：会话只给一个请求，其他请求得到 400 `code_used`；带相同 '
            "`Idempotency-Key` 的请求算作同一个请求。",
        },
    )

    _backend = staticmethod(backend_from_url)

    def _problems(self) -> list[str]:
        problem = appid_problem("appid", self.appid)
        return super()._problems() + ([problem] if problem else [])
