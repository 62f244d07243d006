"""The requests of a desktop login handed over from a phone (the records: :mod:`._handoff`).

- ``GET login_path`` from a desktop browser: a new handoff, the desktop's cookie, its page.
- ``GET login_path?handoff=ID`` in WeChat: the official account's login, its state signed
  for the handoff (the middleware starts it; elsewhere the page says to open it in WeChat).
- The callback of such a login: the identity is recorded in the handoff, not given to the app,
  and the phone gets the confirmation page.
- ``POST callback_path?handoff=ID``: the phone confirms (or cancels), CSRF-checked.
- ``GET login_path?handoff_poll=ID``: the desktop's poll: 202, then 200 ``{"redirect"}``.
- ``GET callback_path?handoff=ID``: the desktop redeems the handoff, once, and the middleware
  calls the app's callback handler with the identity.

Every answer is built after the backend's work, so that an error (raised as a
:class:`WeChatOAuthError`) is still answered by the middleware's error page or JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit

from .._core.asgi import Receive, Scope, Send, read_body, send_body
from .._core.callback import form_pairs
from .._core.cookies import cookie_name, set_cookie
from .._core.middleware import Answer
from .._core.negotiation import header_value, preferred_language
from .._core.paths import matches
from .._core.state import StateSigner
from ..errors import ErrorReason, InvalidCallbackRequest
from ._handoff import (
    CONFIRM_GRACE,
    DESKTOP_COOKIE,
    DESKTOP_VALUE,
    HANDOFF_ID,
    HandoffStore,
    not_yours,
)
from ._handoff_pages import (
    describe_browser,
    render_confirm_page,
    render_desktop_page,
    render_message_page,
)
from ._identity import WeChatIdentity
from ._login import LoginEndpoint, LoginQuery

#: The confirmation form's body is two short fields.
MAX_FORM_BYTES = 1024
_FORM = "application/x-www-form-urlencoded"


class Handoffs:
    """The handoff endpoints of one middleware."""

    def __init__(
        self,
        store: HandoffStore,
        login: LoginEndpoint,
        signer: StateSigner,
    ) -> None:
        self.store = store
        self.login = login
        self._csrf_key = signer.derive(b"asgi-wechat-oauth/handoff-csrf/v1")

    # --- which request -------------------------------------------------------------------------

    @staticmethod
    def kind(
        scope: Scope, callback_paths: tuple[str, ...], login_paths: tuple[str, ...]
    ) -> str | None:
        """``"redeem"``, ``"confirm"`` or ``"poll"`` for a handoff request of the callback or
        login path, else None (cheap: the query is parsed only when it names a handoff)."""
        if b"handoff" not in scope["query_string"]:
            return None
        if matches(scope, callback_paths):
            return "confirm" if scope["method"] == "POST" else "redeem"
        if matches(scope, login_paths) and b"handoff_poll=" in scope["query_string"]:
            return "poll"
        return None

    def phone_link_id(self, scope: Scope) -> str | None:
        """The ``handoff`` of a login link a phone opened (400 when malformed), or None."""
        return self._handoff_id(scope, "handoff")

    def _handoff_id(self, scope: Scope, name: str) -> str | None:
        query: bytes = scope["query_string"]
        if name.encode() not in query:
            return None
        values: list[str]
        try:  # read as the login endpoint reads it: a ``next`` may come as raw UTF-8
            pairs = parse_qsl(query.decode("utf-8"), errors="strict", max_num_fields=16)
            values = [value for key, value in pairs if key == name]
        except (UnicodeDecodeError, ValueError):
            values = ["?"]
        if not values:
            return None
        if len(values) != 1 or not HANDOFF_ID.fullmatch(values[0]):
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_QUERY, f"{name} must be a handoff id (32 hex digits)."
            )
        return values[0]

    def _required_id(self, scope: Scope, name: str) -> str:
        handoff = self._handoff_id(scope, name)
        if handoff is None:
            raise InvalidCallbackRequest(ErrorReason.INVALID_QUERY, f"{name} is missing.")
        return handoff

    # --- the desktop ---------------------------------------------------------------------------

    def _desktop_cookie(self, scope: Scope) -> str | None:
        value, _ = self.login.read_cookie(scope, DESKTOP_COOKIE, "/")
        return value if value is not None and DESKTOP_VALUE.fullmatch(value) else None

    def _tossed_desktop_cookies(self, scope: Scope) -> list[str]:
        """``Set-Cookie`` values that expire copies of the desktop's cookie tossed (on plain
        http) by a sibling site at any path reaching the login, the poll or the redemption:
        with two copies neither is trusted, and the browser could never be handed a login."""
        expiries: dict[str, None] = {}
        for path in (self.login.login_path, self.login.callback_path):
            _, found = self.login.read_cookie(scope, DESKTOP_COOKIE, path)
            expiries.update(dict.fromkeys(found))
        return list(expiries)

    async def desktop_page(self, scope: Scope, query: LoginQuery) -> Answer:
        """A new handoff for this desktop browser (its cookie kept when it has one, so that
        two tabs both work) and the page that shows its QR code and polls."""
        desktop = self._desktop_cookie(scope) or secrets.token_urlsafe(32)
        browser = describe_browser(header_value(scope, b"user-agent"))
        handoff = await self.store.start(desktop, query.next, browser)
        link = self.phone_link(scope, query, handoff)
        root = scope.get("root_path", "")
        login_path = self.login.login_path
        again = f"{root}{login_path}"
        if scope["query_string"]:
            again += "?" + scope["query_string"].decode("latin-1")
        body = render_desktop_page(
            link,
            f"{root}{login_path}?handoff_poll={handoff}",
            again,
            self.store.ttl,
            preferred_language(scope),
        )
        https = self.login.is_https(scope)
        cookie = set_cookie(
            cookie_name(DESKTOP_COOKIE, https=https),
            desktop,
            path="/",
            max_age=math.ceil(self.store.ttl + CONFIRM_GRACE) + 60,
            https=https,
        )
        headers = [
            *((b"set-cookie", expiry.encode()) for expiry in self._tossed_desktop_cookies(scope)),
            (b"set-cookie", cookie.encode()),
            (b"vary", b"accept, accept-language"),
        ]
        return _answer(scope, 200, body, b"text/html; charset=utf-8", headers)

    def phone_link(self, scope: Scope, query: LoginQuery, handoff: str) -> str:
        """The absolute login link of ``handoff`` (with the scope asked for), for the QR code."""
        link = self.login.link(scope, LoginQuery(None, None, False, "", ""))
        params = {"handoff": handoff, **({"scope": query.scope} if query.scope else {})}
        return f"{link}?{urlencode(params)}"

    async def poll(self, scope: Scope) -> Answer:
        """202 ``{"status": "waiting"}``, or 200 ``{"status": "confirmed", "redirect": URL}``;
        the errors (403, 410) are raised."""
        handoff = self._required_id(scope, "handoff_poll")
        if await self.store.poll(handoff, self._desktop_cookie(scope)):
            root = scope.get("root_path", "")
            url = f"{root}{self.login.callback_path}?handoff={handoff}"
            return _json(scope, 200, {"status": "confirmed", "redirect": url})
        return _json(scope, 202, {"status": "waiting"})

    async def redeem(self, scope: Scope) -> WeChatIdentity:
        """The identity the desktop is handed, once (raises otherwise)."""
        handoff = self._required_id(scope, "handoff")
        return await self.store.redeem(handoff, self._desktop_cookie(scope))

    # --- the phone -----------------------------------------------------------------------------

    def _csrf(self, handoff: str, phone: str) -> str:
        message = f"{handoff}:{phone}".encode()
        return hmac.new(self._csrf_key, message, hashlib.sha256).hexdigest()[:32]

    def _host(self, scope: Scope) -> str:
        """The site's host as the phone sees it, for the pages."""
        if self.login.redirect_uri is not None:
            return urlsplit(self.login.redirect_uri).netloc
        try:
            return urlsplit(self.login.own_url(scope, "/")).netloc
        except InvalidCallbackRequest:
            return ""

    async def scanned(self, scope: Scope, identity: WeChatIdentity, handoff: str) -> Answer:
        """The phone's callback: record its login, answer the confirmation page."""
        phone, _ = self.login.read_nonce(scope)
        if phone is None:  # the state verified with it: only a misconfiguration gets here
            raise not_yours()
        waiting = await self.store.scan(handoff, identity, phone)
        language = preferred_language(scope)
        action = f"{scope.get('root_path', '')}{self.login.callback_path}?handoff={handoff}"
        body = render_confirm_page(
            self._host(scope),
            waiting.started.browser,
            max(0.0, self.store.ttl - waiting.remaining),
            action,
            self._csrf(handoff, phone),
            language,
        )
        return _answer(scope, 200, body, b"text/html; charset=utf-8", _VARY)

    async def answered(self, scope: Scope, receive: Receive) -> Answer:
        """The phone's POST: confirm or cancel, with the CSRF token of its own page."""
        handoff = self._required_id(scope, "handoff")
        form = await _read_form(scope, receive)
        phone, _ = self.login.read_nonce(scope)
        # Bytes: compare_digest refuses a str holding non-ASCII (a hostile form's %C3%A9).
        token = form.get("csrf", "").encode()
        if phone is None or not hmac.compare_digest(token, self._csrf(handoff, phone).encode()):
            raise not_yours()
        answer = form.get("answer")
        if answer == "confirm":
            await self.store.confirm(handoff, phone)
            what = "done"
        elif answer == "cancel":
            await self.store.cancel(handoff, phone)
            what = "done" if await self.store.is_confirmed(handoff) else "cancelled"
        else:
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_BODY, "The answer must be confirm or cancel."
            )
        body = render_message_page(what, self._host(scope), preferred_language(scope))
        return _answer(scope, 200, body, b"text/html; charset=utf-8", _VARY)


_VARY = [(b"vary", b"accept-language")]


async def _read_form(scope: Scope, receive: Receive) -> dict[str, str]:
    """The POSTed form (at most :data:`MAX_FORM_BYTES`), each name once."""
    media_type = header_value(scope, b"content-type").split(";")[0].strip().lower()
    if media_type != _FORM:
        raise InvalidCallbackRequest(ErrorReason.INVALID_BODY, "The answer must be a form.")
    body = await read_body(scope, receive, limit=MAX_FORM_BYTES, what="The form")
    try:
        pairs = form_pairs(body or b"")  # the client gone: nobody reads the answer
    except ValueError:
        pairs = None
    if pairs is None or len(pairs) != len({name for name, _ in pairs}):
        raise InvalidCallbackRequest(ErrorReason.INVALID_BODY, "The form could not be read.")
    return dict(pairs)


def _json(scope: Scope, status: int, data: dict[str, str]) -> Answer:
    return _answer(scope, status, json.dumps(data).encode(), b"application/json", [])


def _answer(
    scope: Scope,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]],
) -> Answer:
    head = scope["method"] == "HEAD"

    async def send_it(send: Send) -> None:
        await send_body(send, status, body, content_type, *headers, head=head)

    return send_it
