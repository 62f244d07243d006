"""Signed ``state``: login CSRF protection bound to the browser by a nonce cookie.

The state carries when it was issued, the scope asked for, whether it comes from an automatic
re-authorization, which of the site's apps it was issued for (the official account or the
website app: the callback trades the code with that app, never a guessed one), the desktop
login it is for when a phone logs in to hand the login over (its 16-byte id follows the
header), and a hash
binding it to the login cookie; it is HMAC-signed. The cookie
(HttpOnly, set by the login endpoint) holds a random nonce and the ``next`` path, so ``next``
can be as long as a cookie allows instead of squeezing into WeChat's 128-byte state; the hash
in the signed state makes the cookie as tamper-proof as the state itself. Only the browser that
started the login holds the cookie, so a callback carrying someone else's code and state (login
CSRF, a leaked or replayed link) fails verification before the code is traded. The state is
encoded in ``[A-Za-z0-9]`` (base62), the alphabet WeChat passes through untouched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
import struct
import time
from dataclasses import dataclass

from ..errors import ErrorReason, InvalidCallbackRequest, StateRejected

_VERSION = 2
#: version, issued at (unix seconds), scope, flags, hash of the cookie (nonce and next)
_HEADER = struct.Struct(">BIBB16s")
_SCOPES = ("snsapi_base", "snsapi_userinfo", "snsapi_login", "snsapi_privateinfo")
_RETRIED = 1
_WEBSITE_APP = 2
_HANDOFF = 4
#: A desktop handoff's id: 16 bytes, in links as 32 hex digits.
HANDOFF_ID_BYTES = 16
_MAC_SIZE = 12
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
MAX_STATE_BYTES = 128
#: Longest ``next`` (UTF-8 bytes): its base64 form keeps the cookie well under 4 KB.
MAX_NEXT_BYTES = 2000


@dataclass(frozen=True)
class VerifiedState:
    issued_at: int
    next: str | None
    scope: str
    #: The login was started by an automatic re-authorization: do not start another.
    retried: bool
    #: Issued for the website app (``connect/qrconnect``), not the official account: its code
    #: is traded with the website app's credentials.
    website_app: bool = False
    #: The desktop login (handoff id, 32 hex digits) this phone's login is for: the callback
    #: records the identity there and asks the phone to confirm, instead of calling the app.
    handoff: str | None = None


class UnverifiedState(StateRejected):
    """A state we signed that does not verify here: expired, or its cookie is missing or
    different. ``signed`` is what it says (``next`` only when the browser's cookie still
    matches), enough to start the same login again; nothing in it may log anyone in."""

    def __init__(self, message: str, signed: VerifiedState) -> None:
        super().__init__(ErrorReason.INVALID_STATE, message)
        self.signed = signed


def require_same_state(traded: str | None, state: str | None) -> None:
    """A stored result belongs to the request that traded the code: a request with another
    state carries a replayed or leaked code and gets nothing (403)."""
    if traded != state:
        raise StateRejected(
            ErrorReason.STATE_MISMATCH, "This login link was already used; please log in again."
        )


def derive_state_secret(app_secret: str) -> bytes:
    """A key for signing state, derived so that the app secret itself is never the HMAC key."""
    return hmac.new(app_secret.encode(), b"asgi-wechat-oauth/state/v1", hashlib.sha256).digest()


class StateSigner:
    """Issues and verifies signed states and the login cookie that goes with each."""

    def __init__(self, secret: bytes, *, max_age: float) -> None:
        if len(secret) < 16:
            raise ValueError("state_secret must be at least 16 bytes")
        if not 1 <= max_age < math.inf:  # NaN fails too
            raise ValueError("state_max_age must be at least 1 second (and finite)")
        self._secret = secret
        self.max_age = max_age

    def __repr__(self) -> str:
        return f"StateSigner(max_age={self.max_age!r})"

    def derive(self, label: bytes) -> bytes:
        """A key of its own for ``label`` (another cookie's MAC), derived from this one."""
        return hmac.new(self._secret, label, hashlib.sha256).digest()

    def issue(
        self,
        next_path: str | None,
        *,
        scope: str = "snsapi_base",
        retried: bool = False,
        website_app: bool = False,
        handoff: str | None = None,
        issued_at: int | None = None,
    ) -> tuple[str, str]:
        """Return ``(state, cookie)``: the cookie's value holds the nonce and ``next``."""
        next_bytes = (next_path or "").encode()
        if len(next_bytes) > MAX_NEXT_BYTES:
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_NEXT, f"The next path is longer than {MAX_NEXT_BYTES} bytes."
            )
        cookie = secrets.token_hex(16)
        if next_bytes:
            cookie += "." + base64.urlsafe_b64encode(next_bytes).decode().rstrip("=")
        flags = (_RETRIED if retried else 0) | (_WEBSITE_APP if website_app else 0)
        tail = b""
        if handoff is not None:
            tail = bytes.fromhex(handoff)
            if len(tail) != HANDOFF_ID_BYTES:
                raise ValueError("a handoff id is 16 bytes (32 hex digits)")
            flags |= _HANDOFF
        body = _HEADER.pack(
            _VERSION,
            int(time.time()) if issued_at is None else issued_at,
            _SCOPES.index(scope),
            flags,
            _cookie_hash(cookie),
        )
        body += tail
        return _b62encode(body + self._mac(body)), cookie

    def verify(self, state: str | None, cookie: str | None) -> VerifiedState:
        """Check signature, age and cookie; raise :class:`StateRejected` (403) otherwise, or
        its subclass :class:`UnverifiedState` when the signature holds."""
        if not state:
            raise StateRejected(
                ErrorReason.INVALID_STATE, "The login has no state; please log in again."
            )
        try:
            raw = _b62decode(state)
        except ValueError:
            raw = b""
        body, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
        sizes = (_HEADER.size, _HEADER.size + HANDOFF_ID_BYTES)
        if len(body) not in sizes or not hmac.compare_digest(mac, self._mac(body)):
            raise StateRejected(
                ErrorReason.INVALID_STATE, "The login state is not valid; please log in again."
            )
        version, issued_at, scope, flags, cookie_hash = _HEADER.unpack(body[: _HEADER.size])
        tail = body[_HEADER.size :]
        if version != _VERSION or scope >= len(_SCOPES) or bool(tail) != bool(flags & _HANDOFF):
            raise StateRejected(
                ErrorReason.INVALID_STATE, "The login state is not valid; please log in again."
            )
        bound = bool(cookie) and hmac.compare_digest(cookie_hash, _cookie_hash(cookie or ""))
        signed = VerifiedState(
            issued_at=issued_at,
            next=_next_of(cookie) if bound else None,
            scope=_SCOPES[scope],
            retried=bool(flags & _RETRIED),
            website_app=bool(flags & _WEBSITE_APP),
            handoff=tail.hex() if tail else None,
        )
        if not -60 <= time.time() - issued_at <= self.max_age:
            raise UnverifiedState("The login has expired; please log in again.", signed)
        if not bound:
            raise UnverifiedState(
                "The login was started in another browser or its cookie is missing; "
                "please log in again.",
                signed,
            )
        return signed

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_SIZE]


def _cookie_hash(cookie: str) -> bytes:
    return hashlib.sha256(cookie.encode()).digest()[:16]


def _next_of(cookie: str | None) -> str | None:
    """The ``next`` a bound cookie holds (its hash was signed, so it decodes)."""
    _, _, encoded = (cookie or "").partition(".")
    if not encoded:
        return None
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


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
