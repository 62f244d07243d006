"""Signed ``state``: login CSRF protection bound to the browser by a nonce cookie.

The state carries when it was issued, the scope asked for, whether it comes from an automatic
re-authorization, the ``next`` path, and a hash of a random nonce that the login endpoint also
sets as an HttpOnly cookie; it is HMAC-signed. Only the browser that started
the login holds the nonce, so a callback carrying someone else's code and state (login CSRF, a
leaked or replayed link) fails verification before the code is traded. It is encoded in
``[A-Za-z0-9]`` (base62), the alphabet WeChat passes through untouched, in at most 128 bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import struct
import time
from dataclasses import dataclass

from .errors import InvalidCallbackRequest, StateRejected

_VERSION = 1
#: version, issued at (unix seconds), scope, flags, nonce hash
_HEADER = struct.Struct(">BIBB8s")
_SCOPES = ("snsapi_base", "snsapi_userinfo", "snsapi_login")
_RETRIED = 1
_MAC_SIZE = 12
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
MAX_STATE_BYTES = 128
#: Longest ``next`` that fits: 128 base62 digits hold 95 bytes, less header, MAC and a marker.
MAX_NEXT_BYTES = 95 - 1 - _HEADER.size - _MAC_SIZE


@dataclass(frozen=True)
class VerifiedState:
    issued_at: int
    next: str | None
    scope: str
    #: The login was started by an automatic re-authorization: do not start another.
    retried: bool


def derive_state_secret(app_secret: str) -> bytes:
    """A key for signing state, derived so that the app secret itself is never the HMAC key."""
    return hmac.new(app_secret.encode(), b"asgi-wechat-oauth/state/v1", hashlib.sha256).digest()


class StateSigner:
    """Issues and verifies signed states."""

    def __init__(self, secret: bytes, *, max_age: float) -> None:
        if len(secret) < 16:
            raise ValueError("state_secret must be at least 16 bytes")
        if not 1 <= max_age < math.inf:  # NaN fails too
            raise ValueError("state_max_age must be at least 1 second (and finite)")
        self._secret = secret
        self.max_age = max_age

    def __repr__(self) -> str:
        return f"StateSigner(max_age={self.max_age!r})"

    def issue(
        self, next_path: str | None, *, scope: str = "snsapi_base", retried: bool = False
    ) -> tuple[str, str]:
        """Return ``(state, nonce)``; the nonce goes into the cookie."""
        nonce = secrets.token_hex(16)
        next_bytes = (next_path or "").encode()
        if len(next_bytes) > MAX_NEXT_BYTES:
            raise InvalidCallbackRequest(
                "invalid_next", f"The next path is longer than {MAX_NEXT_BYTES} bytes."
            )
        header = _HEADER.pack(
            _VERSION,
            int(time.time()),
            _SCOPES.index(scope),
            _RETRIED if retried else 0,
            _nonce_hash(nonce),
        )
        body = header + next_bytes
        return _b62encode(body + self._mac(body)), nonce

    def verify(self, state: str | None, nonce: str | None) -> VerifiedState:
        """Check signature, age and nonce; raise :class:`StateRejected` (403) otherwise."""
        if not state:
            raise StateRejected("invalid_state", "The login has no state; please log in again.")
        try:
            raw = _b62decode(state)
        except ValueError:
            raw = b""
        body, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
        if len(body) < _HEADER.size or not hmac.compare_digest(mac, self._mac(body)):
            raise StateRejected(
                "invalid_state", "The login state is not valid; please log in again."
            )
        version, issued_at, scope, flags, nonce_hash = _HEADER.unpack_from(body)
        age = time.time() - issued_at
        if version != _VERSION or scope >= len(_SCOPES) or not -60 <= age <= self.max_age:
            raise StateRejected("invalid_state", "The login has expired; please log in again.")
        if not nonce or not hmac.compare_digest(nonce_hash, _nonce_hash(nonce)):
            raise StateRejected(
                "invalid_state",
                "The login was started in another browser or its cookie is missing; "
                "please log in again.",
            )
        next_path = body[_HEADER.size :].decode("utf-8", "replace") or None
        return VerifiedState(
            issued_at=issued_at,
            next=next_path,
            scope=_SCOPES[scope],
            retried=bool(flags & _RETRIED),
        )

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_SIZE]


def _nonce_hash(nonce: str) -> bytes:
    return hashlib.sha256(nonce.encode()).digest()[:8]


def _b62encode(data: bytes) -> str:
    number = int.from_bytes(b"\x01" + data, "big")  # the marker keeps leading zero bytes
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))


def _b62decode(text: str) -> bytes:
    if not text or len(text) > MAX_STATE_BYTES:
        raise ValueError("bad length")
    number = 0
    for char in text:
        number = number * 62 + _INDEX[char] if char in _INDEX else _bad()
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    if not raw or raw[0] != 1:
        raise ValueError("bad marker")
    if _b62encode(raw[1:]) != text:
        # Only the canonical spelling: "0" digits in front decode to the same bytes, and the
        # replay guard compares states as strings.
        raise ValueError("not canonical")
    return raw[1:]


def _bad() -> int:
    raise ValueError("not base62")
