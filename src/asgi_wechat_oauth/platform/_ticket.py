"""The platform's event URL (WeChat's "授权事件接收 URL") as an ASGI endpoint: WeChat pushes
``component_verify_ticket`` there every 10 minutes, and ``authorized``, ``unauthorized`` and
``updateauthorized`` when an official account grants, revokes or changes its authorization.

``POST ticket_path?timestamp=&nonce=&encrypt_type=aes&msg_signature=`` with
``<xml><AppId>…</AppId><Encrypt>…</Encrypt></xml>``. The endpoint checks the query, reads at
most :data:`~._xml.MAX_XML_BYTES` of body, parses it safely, verifies the signature, checks
the timestamp against the replay window, decrypts, checks the appid (inside the ciphertext, in
the inner ``AppId``, and the outer one), stores a ticket, and answers ``success``. Anything
else gets a 4xx with a reason, and nothing is stored:

- 405 ``method_not_allowed`` (``Allow: POST``); 400 ``invalid_query`` / ``duplicate_parameter``
  for a missing, malformed or repeated parameter, or ``encrypt_type`` other than ``aes``;
- 413 ``body_too_large``; 400 ``invalid_body`` for XML WeChat never sends (a DOCTYPE, an
  entity, ...), or no ``Encrypt``;
- 403 ``push_signature_invalid`` (not WeChat, or the wrong token), 403 ``push_stale`` (a
  signed push whose timestamp is more than ``replay_window`` seconds from this server's clock:
  a replay, or a clock that is off), 403 ``push_wrong_appid`` (a push for another platform:
  check ``component_appid``);
- 400 ``push_unreadable``: the signed ciphertext or the message inside is not WeChat's format.

403 rather than 400 for the signature: the request is well-formed and refused for who sent
it, as a forged state is.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .._core.asgi import Receive, Scope, Send, read_body, send_body
from .._core.callback import form_pairs
from .._core.endpoints import send_error
from ..errors import (
    ErrorReason,
    InvalidCallbackRequest,
    MethodNotAllowed,
    PushRejected,
    RequestTooLarge,
    WeChatOAuthError,
)
from ._crypto import MessageCrypto
from ._tickets import TicketStore, is_ticket
from ._xml import MAX_XML_BYTES, parse_flat_xml

logger = logging.getLogger("asgi_wechat_oauth")

#: A signed push more than this many seconds from this server's clock is refused. WeChat signs
#: its timestamp (Unix seconds) as it sends; an hour leaves room for clocks that drift and for
#: WeChat's retries, and a replay within it cannot do harm: a ticket never replaces the ticket
#: of a later push, and events are only acknowledged.
REPLAY_WINDOW = 3600.0
AUTHORIZATION_EVENTS = frozenset({"authorized", "unauthorized", "updateauthorized"})
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[A-Za-z0-9]{1,64}")
_SIGNATURE = re.compile(r"[0-9A-Fa-f]{40}")
#: What may go into a log line from a push: appids and info types look like this.
_LOGGABLE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REQUIRED = ("timestamp", "nonce", "encrypt_type", "msg_signature")
_SUCCESS = b"success"


@dataclass(frozen=True)
class PushEvent:
    """One push, verified and decrypted: its ``InfoType``, the ``AuthorizerAppid`` it is about
    (``None`` for a ticket), its ``CreateTime`` (Unix seconds, 0 if absent), and every field of
    the message (``fields``, never in ``repr``: an ``authorized`` event carries an
    ``AuthorizationCode``, a ticket push the ticket)."""

    info_type: str
    authorizer_appid: str | None
    create_time: int
    fields: dict[str, str] = field(repr=False)


class TicketEndpoint:
    """The ASGI app for ``ticket_path``; see the module docstring for what it answers.

    ``crypto`` holds the platform's token, EncodingAESKey and ``component_appid``; ``tickets``
    is where the ticket goes (its backend shared by every worker). ``on_event`` is awaited with
    each accepted push, after the ticket is stored (an exception it raises reaches the
    server, and WeChat pushes again). ``counts`` counts accepted pushes by ``InfoType`` and
    refused ones by reason (``"refused:<reason>"``).
    """

    def __init__(
        self,
        *,
        crypto: MessageCrypto,
        tickets: TicketStore,
        replay_window: float = REPLAY_WINDOW,
        on_event: Callable[[PushEvent], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if crypto.appid != tickets.component_appid:
            raise ValueError("crypto and tickets must be for the same component_appid")
        if not replay_window >= 0:  # NaN fails too
            raise ValueError("replay_window must be 0 (off) or positive seconds")
        self.crypto = crypto
        self.tickets = tickets
        self.replay_window = replay_window
        self.on_event = on_event
        self._clock = clock
        self.counts: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"TicketEndpoint(component_appid={self.crypto.appid!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError("TicketEndpoint serves HTTP requests only")
        try:
            event = await self.handle(scope, receive)
        except WeChatOAuthError as exc:
            self.counts[f"refused:{exc.reason}"] += 1
            logger.log(
                _level(exc),
                "wechat_oauth.platform_push_refused component_appid=%s reason=%s status=%s",
                self.crypto.appid,
                exc.reason,
                exc.status_code,
            )
            await send_error(scope, send, exc, allow=b"POST")
            return
        if event is None:  # the client went away: nobody to answer
            return
        await send_body(send, 200, _SUCCESS, b"text/plain; charset=utf-8")

    async def handle(self, scope: Scope, receive: Receive) -> PushEvent | None:
        """Check, decrypt and act on the push (store a ticket); the event, or ``None`` if the
        client went away before sending its body. Raises a
        :class:`~asgi_wechat_oauth.WeChatOAuthError` for a push it refuses."""
        if scope["method"] != "POST":
            raise MethodNotAllowed(
                ErrorReason.METHOD_NOT_ALLOWED, "The platform's event URL accepts POST only."
            )
        query = _query(scope)
        body = await read_body(scope, receive, limit=MAX_XML_BYTES, what="The push's body")
        if body is None:
            return None
        outer = parse_flat_xml(body)
        encrypt = outer.get("Encrypt")
        if not encrypt:
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_BODY, "The push's XML has no <Encrypt>."
            )
        self.crypto.verify(query["msg_signature"], query["timestamp"], query["nonce"], encrypt)
        self._check_fresh(int(query["timestamp"]))
        try:
            inner = parse_flat_xml(self.crypto.decrypt(encrypt))
        except RequestTooLarge:
            raise _unreadable("is larger than a push") from None
        except InvalidCallbackRequest as exc:
            if exc.reason != ErrorReason.INVALID_BODY:
                raise
            raise _unreadable("is not WeChat's XML") from None
        for appid in (outer.get("AppId"), inner.get("AppId")):
            if appid is not None and appid != self.crypto.appid:
                raise _wrong_appid(self.crypto.appid)
        info_type = inner.get("InfoType", "")
        if not info_type:
            raise _unreadable("has no InfoType")
        created = inner.get("CreateTime", "")
        event = PushEvent(
            info_type=info_type,
            authorizer_appid=inner.get("AuthorizerAppid"),
            create_time=int(created) if _TIMESTAMP.fullmatch(created) else 0,
            fields=inner,
        )
        await self._act(event)
        self.counts[info_type if _LOGGABLE.fullmatch(info_type) else "other"] += 1
        if self.on_event is not None:
            await self.on_event(event)
        return event

    async def _act(self, event: PushEvent) -> None:
        appid = self.crypto.appid
        if event.info_type == "component_verify_ticket":
            ticket = event.fields.get("ComponentVerifyTicket")
            if not is_ticket(ticket):
                raise _unreadable("carries no usable ComponentVerifyTicket")
            assert ticket is not None
            stored = await self.tickets.save(ticket, created_at=event.create_time)
            logger.info(
                "wechat_oauth.platform_ticket_received component_appid=%s stored=%s",
                appid,
                stored,
            )
        elif event.info_type in AUTHORIZATION_EVENTS:
            logger.info(
                "wechat_oauth.platform_authorization component_appid=%s info_type=%s "
                "authorizer_appid=%s",
                appid,
                event.info_type,
                _loggable(event.authorizer_appid),
            )
        else:
            logger.info(
                "wechat_oauth.platform_push component_appid=%s info_type=%s (acknowledged)",
                appid,
                _loggable(event.info_type),
            )

    def _check_fresh(self, timestamp: int) -> None:
        if self.replay_window and abs(self._clock() - timestamp) > self.replay_window:
            raise PushRejected(
                ErrorReason.PUSH_STALE,
                f"The push's timestamp is more than {self.replay_window:g} s from this "
                "server's clock: a replayed push, or a server clock that is off (check NTP).",
            )


def _query(scope: Scope) -> dict[str, str]:
    try:
        pairs = form_pairs(bytes(scope.get("query_string", b"")))
    except ValueError:
        raise InvalidCallbackRequest(
            ErrorReason.INVALID_QUERY, "The push's query string could not be read."
        ) from None
    query: dict[str, str] = {}
    for name in _REQUIRED:
        values = [value for key, value in pairs if key == name]
        if len(values) > 1:
            raise InvalidCallbackRequest(
                ErrorReason.DUPLICATE_PARAMETER, f"The push carries {name!r} more than once."
            )
        if not values or not values[0]:
            raise InvalidCallbackRequest(ErrorReason.INVALID_QUERY, f"The push has no {name!r}.")
        query[name] = values[0]
    if query["encrypt_type"] != "aes":
        raise InvalidCallbackRequest(
            ErrorReason.INVALID_QUERY,
            "The push's encrypt_type is not 'aes': set the platform's messages to be encrypted.",
        )
    for name, pattern in (
        ("timestamp", _TIMESTAMP),
        ("nonce", _NONCE),
        ("msg_signature", _SIGNATURE),
    ):
        if pattern.fullmatch(query[name]) is None:
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_QUERY, f"The push's {name!r} is malformed."
            )
    return query


def _level(error: WeChatOAuthError) -> int:
    if error.reason in (ErrorReason.PUSH_WRONG_APPID, ErrorReason.PUSH_STALE):
        return logging.ERROR  # WeChat's own push refused: a setting or the clock to fix
    if isinstance(error, PushRejected):
        return logging.WARNING  # forged, or the token is not the console's
    if isinstance(error, (InvalidCallbackRequest, RequestTooLarge)):
        return logging.INFO
    return logging.WARNING


def _loggable(value: str | None) -> str:
    if value is None:
        return "-"
    return value if _LOGGABLE.fullmatch(value) else "<malformed>"


def _unreadable(what: str) -> InvalidCallbackRequest:
    return InvalidCallbackRequest(ErrorReason.PUSH_UNREADABLE, f"The push's message {what}.")


def _wrong_appid(appid: str) -> PushRejected:
    return PushRejected(
        ErrorReason.PUSH_WRONG_APPID,
        f"The push is for another platform, not {appid}: check component_appid.",
    )
