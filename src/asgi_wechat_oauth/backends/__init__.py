"""Backends coordinate who trades a code and where the result waits for duplicates.

For app authors: :class:`MemoryBackend` (one process) here, ``RedisBackend`` in
:mod:`asgi_wechat_oauth.backends.redis` (several workers or hosts). For backend authors: the
contract every backend implements (:class:`Backend`, :class:`Claim`, :class:`Outcome`,
:class:`Result`, the optional capabilities :class:`Peekable` and :class:`TokenStore`), and
:func:`register_result` for result types of one's own.
"""

from typing import Any

from .._core.contract import (
    Backend,
    Claim,
    Mark,
    Outcome,
    Peekable,
    Result,
    TokenStore,
    check_lease,
    register_result,
)
from ._memory import MemoryBackend


def backend_from_url(redis_url: str | None = None, **options: Any) -> Backend:
    """A new :class:`MemoryBackend` (``redis_url`` None), or a ``RedisBackend`` at
    ``redis_url`` with ``options`` (the ``redis`` extra, imported only then): what a config's
    ``backend=None`` and its ``{PREFIX}REDIS_URL`` variable make."""
    if redis_url is None:
        return MemoryBackend()
    from .redis import RedisBackend

    return RedisBackend(redis_url, **options)


__all__ = [
    "Backend",
    "Claim",
    "Mark",
    "MemoryBackend",
    "Outcome",
    "Peekable",
    "Result",
    "TokenStore",
    "backend_from_url",
    "check_lease",
    "register_result",
]
