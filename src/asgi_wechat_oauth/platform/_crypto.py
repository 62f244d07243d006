"""WeChat's message encryption, as third-party platforms (and official accounts in safe mode)
receive pushes: a SHA-1 ``msg_signature`` and an AES-256-CBC ``Encrypt``.

- Signature: SHA-1 of the four strings token, timestamp, nonce and ciphertext, sorted and
  joined, as lowercase hex.
- Key: base64-decode(``EncodingAESKey`` + ``"="``), 43 characters giving 32 bytes; the IV is
  the key's first 16 bytes.
- Plaintext: 16 random bytes, the message's length (4 bytes, big endian), the message (UTF-8)
  and the appid; PKCS#7-padded to a multiple of 32 bytes (WeChat's block, not AES's 16).

Decrypt only what :meth:`MessageCrypto.verify` accepted (:meth:`MessageCrypto.decrypt_message`
does both): the signature gate keeps anyone without the token from probing the padding check.
Every failure is a :class:`~asgi_wechat_oauth.WeChatOAuthError` with a reason; nothing here
ever puts the token, the key or a plaintext into a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from typing import TYPE_CHECKING

from ..errors import ErrorReason, InvalidCallbackRequest, InvalidConfig, PushRejected

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher

#: WeChat pads to multiples of 32 bytes; a pad byte outside 1..32 is not WeChat's.
BLOCK = 32
#: The random prefix and the length field before the message.
_PREFIX = 16
_HEADER = _PREFIX + 4
#: What the WeChat console generates: 43 letters and digits (base64's ``+`` and ``/`` are
#: accepted too: the key is base64 all the same).
_AES_KEY = re.compile(r"[A-Za-z0-9+/]{43}")
#: The console's Token is 3 to 32 letters and digits; anything printable is signed the same
#: way, so only what is surely a mistake is refused (empty, whitespace, control characters).
_TOKEN = re.compile(r"[\x21-\x7e]{1,128}")
#: A ciphertext larger than this is no push (the endpoints read at most 64 KiB of XML).
MAX_CIPHERTEXT_CHARS = 64 * 1024
EXTRA = "platform"


def token_problem(value: object, option: str = "token") -> str | None:
    """What is wrong with ``value`` as WeChat's message Token (``None``: nothing)."""
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        return (
            f"{option} must be the message Token set in WeChat's console: 1 to 128 printable "
            "ASCII characters without spaces (the console allows 3 to 32 letters and digits)"
        )
    return None


def encoding_aes_key_problem(value: object, option: str = "encoding_aes_key") -> str | None:
    """What is wrong with ``value`` as an EncodingAESKey (``None``: nothing). Says its length,
    never its characters."""
    if not isinstance(value, str):
        return f"{option} must be a string: the 43-character EncodingAESKey from WeChat's console"
    if _AES_KEY.fullmatch(value) is None:
        return (
            f"{option} must be the 43-character EncodingAESKey from WeChat's console "
            f"(letters and digits); this one has {len(value)} characters"
            + ("" if len(value) != 43 else " and some outside that alphabet")
        )
    return None


def _appid_problem(value: object, option: str) -> str | None:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        return f"{option} must be the AppID the messages are encrypted for (letters and digits)"
    return None


class MessageCrypto:
    """Signs, verifies, encrypts and decrypts WeChat's pushed messages for one app.

    ``MessageCrypto(token, encoding_aes_key, appid)``: the console's message Token and
    EncodingAESKey, and the appid the messages carry (a third-party platform's
    ``component_appid``). Raises :class:`~asgi_wechat_oauth.errors.InvalidConfig` for a value
    that cannot be right, or when ``cryptography`` is missing (extra ``platform``). The token
    and the key never appear in its ``repr``.
    """

    def __init__(self, token: str, encoding_aes_key: str, appid: str) -> None:
        problems = [
            problem
            for problem in (
                token_problem(token),
                encoding_aes_key_problem(encoding_aes_key),
                _appid_problem(appid, "appid"),
            )
            if problem is not None
        ]
        if problems:
            raise InvalidConfig(problems)
        try:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        except ImportError:  # pragma: no cover - the test environment has the extra
            raise InvalidConfig(
                [
                    f"WeChat's message encryption needs cryptography: pip install "
                    f"'asgi-wechat-oauth[{EXTRA}]'"
                ]
            ) from None
        key = base64.b64decode(encoding_aes_key + "=")
        self.appid = appid
        self._token = token
        self._appid_bytes = appid.encode()
        self._cipher: Cipher[modes.CBC] = Cipher(algorithms.AES(key), modes.CBC(key[:16]))

    def __repr__(self) -> str:
        return f"MessageCrypto(appid={self.appid!r})"

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """``msg_signature`` of a message: SHA-1 of the sorted token, timestamp, nonce and
        ciphertext, joined, in lowercase hex."""
        joined = "".join(sorted((self._token, timestamp, nonce, encrypt)))
        return hashlib.sha1(joined.encode(), usedforsecurity=False).hexdigest()

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Raise :class:`~asgi_wechat_oauth.errors.PushRejected` (``push_signature_invalid``)
        unless ``msg_signature`` signs the message (compared in constant time)."""
        expected = self.signature(timestamp, nonce, encrypt)
        if not hmac.compare_digest(
            expected.encode(), msg_signature.lower().encode("ascii", "replace")
        ):
            raise PushRejected(
                ErrorReason.PUSH_SIGNATURE_INVALID,
                "The push's msg_signature does not match: it is not from WeChat, or the "
                "token is not the one set in WeChat's console.",
            )

    def encrypt(self, xml_text: str, *, nonce_bytes: bytes | None = None) -> str:
        """``xml_text`` encrypted as WeChat does, base64. ``nonce_bytes``: the 16 random bytes
        that start the plaintext (fresh ones by default; given, for known answers)."""
        prefix = secrets.token_bytes(_PREFIX) if nonce_bytes is None else nonce_bytes
        if len(prefix) != _PREFIX:
            raise ValueError("nonce_bytes must be 16 bytes")
        message = xml_text.encode()
        plain = prefix + struct.pack(">I", len(message)) + message + self._appid_bytes
        pad = BLOCK - len(plain) % BLOCK
        encryptor = self._cipher.encryptor()
        sealed = encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()
        return base64.b64encode(sealed).decode("ascii")

    def decrypt(self, encrypt_b64: str) -> str:
        """The message inside ``encrypt_b64``. Raises
        :class:`~asgi_wechat_oauth.errors.InvalidCallbackRequest` (``push_unreadable``) for
        anything but WeChat's format, :class:`~asgi_wechat_oauth.errors.PushRejected`
        (``push_wrong_appid``) when it was encrypted for another appid. Call it on verified
        messages only (:meth:`decrypt_message`)."""
        if len(encrypt_b64) > MAX_CIPHERTEXT_CHARS:
            raise _unreadable("is too long")
        try:
            sealed = base64.b64decode(encrypt_b64.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise _unreadable("is not base64") from None
        if not sealed or len(sealed) % BLOCK:
            raise _unreadable("is not a whole number of blocks")
        decryptor = self._cipher.decryptor()
        plain = decryptor.update(sealed) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise _unreadable("is not padded as WeChat pads")
        plain = plain[:-pad]
        if len(plain) < _HEADER:
            raise _unreadable("is too short")
        (length,) = struct.unpack(">I", plain[_PREFIX:_HEADER])
        if length > len(plain) - _HEADER:
            raise _unreadable("says a length longer than itself")
        message, appid = plain[_HEADER : _HEADER + length], plain[_HEADER + length :]
        if not hmac.compare_digest(appid, self._appid_bytes):
            raise PushRejected(
                ErrorReason.PUSH_WRONG_APPID,
                f"The push is encrypted for another appid, not {self.appid}: check the "
                "appid configured beside the token and EncodingAESKey.",
            )
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError:
            raise _unreadable("is not UTF-8") from None

    def decrypt_message(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> str:
        """:meth:`verify`, then :meth:`decrypt`."""
        self.verify(msg_signature, timestamp, nonce, encrypt)
        return self.decrypt(encrypt)


def _unreadable(what: str) -> InvalidCallbackRequest:
    return InvalidCallbackRequest(
        ErrorReason.PUSH_UNREADABLE, f"The push's signed ciphertext {what}: it is not WeChat's."
    )
