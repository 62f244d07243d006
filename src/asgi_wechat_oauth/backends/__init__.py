"""Backends coordinate who trades a code and where the result waits for duplicates.

For app authors: :class:`MemoryBackend` (one process) here, ``RedisBackend`` in
:mod:`asgi_wechat_oauth.backends.redis` (several workers or hosts). For backend authors: the
contract every backend implements (:class:`Backend`, :class:`Claim`, :class:`Outcome`,
:class:`Result`, the optional capabilities :class:`Peekable` and :class:`TokenStore`), and
:func:`register_result` for result types of one's own.
"""

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

__all__ = [
    "Backend",
    "Claim",
    "Mark",
    "MemoryBackend",
    "Outcome",
    "Peekable",
    "Result",
    "TokenStore",
    "check_lease",
    "register_result",
]
