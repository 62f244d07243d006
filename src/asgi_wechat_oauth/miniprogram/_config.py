"""Every option of the mini-program middleware in one frozen, validated object (see
:mod:`asgi_wechat_oauth._core.options`: the options every product has are there)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .._core.checks import is_path, one_of, option, required, text
from .._core.options import Options
from ..backends import Backend, MemoryBackend

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

    appid: str = field(metadata=required())
    #: Where the mini-program POSTs its ``wx.login()`` code.
    login_path: str = field(default="/wechat/miniprogram/login", metadata=option(text, is_path))
    duplicates: Duplicates = field(
        default="share", metadata=option(text, one_of("share", "reject"))
    )

    @staticmethod
    def _backend(redis_url: str | None = None, **options: Any) -> Backend:
        if redis_url is None:
            return MemoryBackend()
        from ..backends.redis import RedisBackend  # the redis extra: imported when used

        return RedisBackend(redis_url, **options)
