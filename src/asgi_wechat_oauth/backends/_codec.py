"""Outcomes as bytes, for backends that store them outside the process.

The first byte says what follows (``1`` identity, ``0`` error) so that a store can prefer a
success over an error without parsing JSON (the Redis scripts do exactly that). With a
:class:`ResultCipher` the JSON after that byte is sealed with AES-GCM, bound to the key it is
stored under, so tokens never sit in the store in clear.
"""

from __future__ import annotations

import json
import os
from typing import Protocol

from .._core.contract import Outcome, result_loader
from ..errors import WeChatOAuthError

_SEALED = b"E"


class _AEAD(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...
    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


class ResultCipher:
    """AES-GCM with a 16, 24 or 32-byte key (``cryptography`` does the cryptography)."""

    def __init__(self, key: bytes) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise ImportError(
                "encryption_key needs cryptography: pip install 'asgi-wechat-oauth[encryption]'"
            ) from None
        if len(key) not in (16, 24, 32):
            raise ValueError("encryption_key must be 16, 24 or 32 bytes")
        self._aead: _AEAD = AESGCM(key)

    def __repr__(self) -> str:
        return "ResultCipher(AES-GCM)"

    def seal(self, data: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, context)

    def open(self, data: bytes, context: bytes) -> bytes:
        return self._aead.decrypt(data[:12], data[12:], context)


#: One encoder for every outcome (``json.dumps`` with options builds a new one per call): ASCII
#: with ``\u`` escapes, so that any ``str`` round-trips, no NaN or infinity, no spaces.
_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def dump_outcome(
    outcome: Outcome, *, cipher: ResultCipher | None = None, context: bytes = b""
) -> bytes:
    """``outcome`` as bytes. Any ``str`` that ``json.loads`` can produce is stored, lone
    surrogates included (half an emoji in a nickname): the JSON is ASCII with ``\\u`` escapes.
    Raises ``ValueError`` naming only the type when ``to_dict()`` is not JSON data; the message
    and context never hold the outcome (it has tokens)."""
    marker = b"0" if isinstance(outcome, WeChatOAuthError) else b"1"
    payload: bytes | None = None
    try:
        if isinstance(outcome, WeChatOAuthError):
            document = outcome.to_dict()
        else:
            document = {"kind": outcome.kind, **outcome.to_dict()}
        payload = _ENCODER.encode(document).encode("ascii")
    except (TypeError, ValueError, AttributeError):
        pass  # raised below, outside this block, so that no context holds the data
    if payload is None:
        raise ValueError(f"a {type(outcome).__name__} cannot be stored: to_dict() is not JSON")
    if cipher is not None:
        return marker + _SEALED + cipher.seal(payload, context)
    return marker + payload


def load_outcome(
    data: bytes, *, cipher: ResultCipher | None = None, context: bytes = b""
) -> Outcome:
    """The inverse of :func:`dump_outcome`. Raises ``ValueError`` for what it cannot read
    (a sealed value without the cipher, or sealed with another key)."""
    marker, payload = data[:1], data[1:]
    if cipher is not None and payload[:1] != _SEALED:
        # With a key set, only sealed values are trusted: anyone able to write to the store
        # could otherwise plant an identity in clear.
        raise ValueError("the stored outcome is not sealed, and an encryption_key is set")
    if payload[:1] == _SEALED:
        if cipher is None:
            raise ValueError("the stored outcome is encrypted and no encryption_key is set")
        try:
            payload = cipher.open(payload[1:], context)
        except Exception:
            raise ValueError("the stored outcome does not decrypt with this key") from None
    outcome: Outcome | None = None
    try:
        document = json.loads(payload)
        if marker == b"1":
            load = result_loader(str(document.pop("kind", "")))
            if load is not None:
                outcome = load(document)
        else:
            outcome = WeChatOAuthError.from_dict(document)
    except (ValueError, TypeError, KeyError, AttributeError):
        pass  # raised below: a JSONDecodeError keeps the whole document in ``doc``
    if outcome is None:
        raise ValueError("the stored outcome is unreadable, or of a kind unknown here")
    return outcome
