"""``duplicates="reject"``: a session handed to one request, not to whoever repeats its code.

A stored session makes a code a bearer credential for ``result_ttl``: WeChat would answer a
second use with 40163, the shared result does not. With ``"reject"`` the first request to be
given the session takes it, through the backend (atomic across workers on Redis), and any
other request with that code gets 400 ``code_used``. A request counts as the one that took it
when it repeats that request's ``Idempotency-Key`` header: the retry of a network layer or a
proxy, or two pages that share one ``wx.login()``, which is what sharing exists for.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from .._core.asgi import Scope
from ..backends import Backend
from ..errors import CodeRejected, ErrorReason, InvalidCallbackRequest

#: The header a client sends to say "this request is a retry of that one" (IETF
#: draft-ietf-httpapi-idempotency-key-header); its value may be a quoted structured string.
HEADER = b"idempotency-key"
#: Long enough not to be guessed by whoever holds only the code; a UUID is 36 characters.
_KEY = re.compile(r"[\x21-\x7e]{16,255}")


def idempotency_key(scope: Scope) -> str | None:
    """The request's ``Idempotency-Key`` (quotes removed), ``None`` without one;
    :class:`InvalidCallbackRequest` for a key sent twice, too short, too long or not visible
    ASCII."""
    values = [value for name, value in scope.get("headers", ()) if name.lower() == HEADER]
    if not values:
        return None
    key = bytes(values[0]).decode("latin-1").strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if len(values) > 1 or not _KEY.fullmatch(key):
        raise InvalidCallbackRequest(
            ErrorReason.INVALID_IDEMPOTENCY_KEY,
            "The Idempotency-Key header must be given once, 16 to 255 visible ASCII characters.",
        )
    return key


def holder(key: str | None) -> str:
    """Who a request is, for the hand-out: its key's hash, or else a value of its own that no
    other request can repeat."""
    if key is None:
        return secrets.token_hex(32)
    return hashlib.sha256(f"mp-idempotency:{key}".encode()).hexdigest()


async def take(backend: Backend, flight: str, holder: str, *, ttl: float) -> None:
    """Take the session of ``flight`` (a code's key) for ``holder``; :class:`CodeRejected`
    (400 ``code_used``) when another holder took it. ``ttl`` must outlive every copy of the
    session the backend may still serve for that code."""
    group = hashlib.sha256(f"mp-taken:{flight}".encode()).hexdigest()
    if not await backend.note_code(group, holder, limit=1, ttl=ttl):
        raise CodeRejected(
            ErrorReason.CODE_USED,
            "This login code was already used by another request. Please log in again.",
        )
