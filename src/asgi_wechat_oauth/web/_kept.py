"""The ``next`` of a QR page's link, kept by the backend so that the link stays short.

The QR page (:mod:`._qrpage`) shows the login link to a phone, another browser: the link is
all that reaches it. A ``next`` of up to 2,000 bytes, percent-encoded (non-ASCII triples),
makes a link no QR code holds, or one too dense to scan off a screen. Such a ``next`` is
stored as a result under a key of its own, for the state's max age (the backend contract every
backend has, Redis included, so whichever worker the phone reaches finds it), and the link
carries a random id instead.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio

from .._core.asgi import Message, Receive
from .._core.contract import register_result, store_once
from .._core.login import validate_next
from ..backends import Backend
from ..errors import ErrorReason, InvalidCallbackRequest, WeChatOAuthError

logger = logging.getLogger("asgi_wechat_oauth")

#: A QR page's link longer than this (in bytes) names its ``next`` by id: a QR code of version
#: 10 (57 modules) at most at error level M, which a phone reads off a screen easily.
MAX_INLINE_LINK = 200
#: ``secrets.token_urlsafe(16)``: 128 random bits, 22 characters.
_NEXT_ID = re.compile(r"[A-Za-z0-9_-]{22}")


@dataclass(frozen=True)
class KeptNext:
    """A QR page's ``next``, as the backend stores it."""

    kind: ClassVar[str] = "wechat_kept_next"
    #: Any desktop page makes one, without a code: kept apart from code results (see
    #: ``MemoryBackend``), so that a flood of pages cannot push a real login's result out.
    unbidden: ClassVar[bool] = True
    next: str

    def to_dict(self) -> dict[str, Any]:
        return {"next": self.next}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeptNext:
        next_path = data["next"]
        if not isinstance(next_path, str):
            raise TypeError("a kept next is a string")
        return cls(next_path)


register_result(KeptNext.kind, KeptNext.from_dict)


def is_next_id(value: str) -> bool:
    """Whether ``value`` can be an id this module made (checked before any backend call)."""
    return _NEXT_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class KeptNexts:
    """Where a middleware keeps its QR links' ``next``: its backend, under its appid, for
    ``ttl`` seconds (the state's max age: a link lives as long as the login it starts)."""

    backend: Backend
    appid: str
    ttl: float

    async def qr_link(self, link: str, next_path: str | None, named: Callable[[str], str]) -> str:
        """``link`` when it is short; else ``named(id)``, with ``next_path`` kept under that
        id. ``link`` again when the backend cannot keep it: the page still answers (as text
        when no QR code holds the link)."""
        if next_path is None or len(link.encode()) <= MAX_INLINE_LINK:
            return link
        next_id = secrets.token_urlsafe(16)
        key = self._key(next_id)
        try:
            # attempts=1: a fresh random key is never known; anything found is not ours.
            found = await store_once(
                self.backend, key, KeptNext(next_path), ttl=self.ttl, wait=0, attempts=1
            )
        except (WeChatOAuthError, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, WeChatOAuthError) else "not_settled"
            logger.warning("wechat_oauth.qr_next_not_kept reason=%s", reason)
            return link
        return link if found is not None else named(next_id)

    async def find(self, next_id: str) -> str:
        """The ``next`` kept under ``next_id``, checked again as any ``next`` is. Raises 400
        ``qr_link_expired`` when nothing is kept under it (expired, or never issued here), or
        the backend's own error (503) when it cannot answer."""
        key = self._key(next_id)
        with anyio.CancelScope(shield=True):
            claim = await self.backend.claim(key)
            if claim.lease is not None:  # nothing stored: the lease just taken goes back
                await self.backend.complete(key, claim.lease, _expired(), ttl=0)
        if not isinstance(claim.outcome, KeptNext):
            raise _expired()
        return validate_next(claim.outcome.next)

    def _key(self, next_id: str) -> str:
        """A hash, as every key is, that never is a code's key (those are 64 hex digits)."""
        return "next:" + hashlib.sha256(f"{self.appid}:{next_id}".encode()).hexdigest()


def _expired() -> InvalidCallbackRequest:
    return InvalidCallbackRequest(
        ErrorReason.QR_LINK_EXPIRED,
        "This QR code has expired: reload the page on the computer and scan it again.",
    )


def bodiless_request() -> Receive:
    """A ``receive`` for an answer given where the request's own is out of reach (after the
    login endpoint's checks): a GET's empty body, then nothing (a disconnect is unknown here,
    so an app listening for one is stopped only by its own end)."""
    received = False

    async def receive() -> Message:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        return {"type": "http.disconnect"}  # pragma: no cover - sleep_forever never returns

    return receive
