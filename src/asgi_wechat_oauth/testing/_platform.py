"""The WeChat emulator's third-party platform (开放平台第三方平台): the ticket pushes it sends,
``cgi-bin/component/api_component_token`` and ``sns/oauth2/component/access_token``.

A push is built exactly as WeChat builds one: the message encrypted with the platform's
EncodingAESKey, the outer ``<xml><AppId/><Encrypt/></xml>``, and the query's ``timestamp``,
``nonce``, ``encrypt_type=aes``, ``msg_signature`` (and the plain ``signature``).
:meth:`PlatformApi.ticket_push` builds one without sending it (a test may tamper with it);
:meth:`PlatformApi.push_ticket` sends it. The tickets it pushed are the only ones
``api_component_token`` accepts (61006 otherwise, 61005 once expired); the component token it
hands out is the only one the component exchange accepts. Codes the authorize page issued with
``component_appid`` are traded there only, once (40163, then 40029), and the tokens they give
work with ``sns/userinfo``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._core.singleflight import flight_key
from ..platform import MessageCrypto
from ._base import EmulatorBase
from ._control import BadSettings, bad_settings, known_names
from ._faults import BEFORE_USE, Fault, answer_fault, answer_with, error
from ._tokens import ServerTokens
from ._users import Code, EmulatedUser, Token

#: The namespace of a component code's backend key (web OAuth's have none, mini-programs' "mp").
PLATFORM_NAMESPACE = "component"
#: What ``POST /_emulator/push_ticket`` takes.
PUSH_SETTINGS = {
    "url": "the platform's event URL (its ticket_path), such as "
    "http://127.0.0.1:8000/wechat/platform/ticket",
}


@dataclass(frozen=True)
class PlatformPush:
    """A push as WeChat sends it to the platform's event URL: ``POST url?{params}`` with
    ``body``. ``message`` is the XML inside ``Encrypt``, for tests to read. Change ``params``
    or ``body`` (``dataclasses.replace``) to send a tampered one."""

    params: dict[str, str]
    body: bytes
    message: str = field(repr=False)

    async def send(self, url: str, *, client: httpx.AsyncClient | None = None) -> httpx.Response:
        """POST it to ``url`` (relative to ``client``'s ``base_url`` when given; a client of
        its own over the network otherwise)."""
        headers = {"content-type": "text/xml"}
        if client is not None:
            return await client.post(url, params=self.params, content=self.body, headers=headers)
        async with httpx.AsyncClient() as own:
            return await own.post(url, params=self.params, content=self.body, headers=headers)


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


class PlatformApi(EmulatorBase):
    """The platform's part of :class:`~asgi_wechat_oauth.testing.WeChatEmulator`."""

    # What the platform uses of the emulator.
    component_appid: str
    component_secret: str
    component_token: str
    component_encoding_aes_key: str
    authorizer_appids: tuple[str, ...]
    component_tokens: ServerTokens
    ticket_ttl: float
    user: EmulatedUser
    code_ttl: float
    latency: float
    calls: Counter[str]
    _codes: dict[str, Code]
    _tokens: dict[str, Token]
    _refresh_tokens: dict[str, Token]
    _faults: dict[str, deque[Fault]]
    _keys: dict[str, str]
    #: Ticket -> when it expires (``time.monotonic()``), in the order pushed.
    _tickets: dict[str, float]

    # What the platform shares with the official account's API (``_api.SnsApi``).
    def _grant(self, user: EmulatedUser, scope: str, appid: str) -> dict[str, Any]:
        raise NotImplementedError

    def _next_fault(self, endpoint: str) -> Fault | None:
        raise NotImplementedError

    # --- for tests ---------------------------------------------------------------------------

    @property
    def crypto(self) -> MessageCrypto:
        """The platform's message crypto, as WeChat holds it (needs ``cryptography``)."""
        return MessageCrypto(
            self.component_token, self.component_encoding_aes_key, self.component_appid
        )

    def issue_ticket(self) -> str:
        """A new ``component_verify_ticket``, valid ``ticket_ttl`` seconds (WeChat: 12 hours),
        as WeChat makes one before each push."""
        ticket = "ticket@@@" + secrets.token_urlsafe(64)
        self._tickets[ticket] = time.monotonic() + self.ticket_ttl
        return ticket

    @property
    def current_ticket(self) -> str | None:
        """The ticket pushed last (``None`` before the first)."""
        return next(reversed(self._tickets), None)

    def expire_tickets(self) -> None:
        """Every ticket pushed so far expires now (``api_component_token`` answers 61005)."""
        for ticket in self._tickets:
            self._tickets[ticket] = 0.0

    def ticket_push(
        self,
        *,
        ticket: str | None = None,
        timestamp: int | None = None,
        nonce: str | None = None,
    ) -> PlatformPush:
        """Build (not send) a ``component_verify_ticket`` push of a new ticket (or ``ticket``),
        signed at ``timestamp`` (now) with ``nonce`` (a random one)."""
        ticket = self.issue_ticket() if ticket is None else ticket
        return self._push(
            "component_verify_ticket", {"ComponentVerifyTicket": ticket}, timestamp, nonce
        )

    def event_push(
        self,
        info_type: str,
        *,
        authorizer_appid: str,
        timestamp: int | None = None,
        nonce: str | None = None,
        **fields: str,
    ) -> PlatformPush:
        """Build (not send) an ``authorized``, ``unauthorized`` or ``updateauthorized`` push
        (or any ``info_type``) about ``authorizer_appid``; ``fields`` are added to the message
        (``authorized`` gets an ``AuthorizationCode`` by default, as at WeChat)."""
        body: dict[str, str] = {"AuthorizerAppid": authorizer_appid}
        if info_type in ("authorized", "updateauthorized"):
            body["AuthorizationCode"] = "queryauthcode@@@" + secrets.token_urlsafe(48)
            body["AuthorizationCodeExpiredTime"] = str(int(time.time()) + 3600)
            body["PreAuthCode"] = "preauthcode@@@" + secrets.token_urlsafe(32)
        body.update(fields)
        return self._push(info_type, body, timestamp, nonce)

    async def push_ticket(
        self, url: str, *, client: httpx.AsyncClient | None = None
    ) -> httpx.Response:
        """Push a new ticket to the platform's event URL ``url``, as WeChat does every 10
        minutes (``client``: an ``httpx.AsyncClient`` that reaches the app, such as one over
        ``ASGITransport``; ``url`` is then relative to its ``base_url``)."""
        self.calls["ticket_push"] += 1
        return await self.ticket_push().send(url, client=client)

    async def push_event(
        self,
        url: str,
        info_type: str,
        *,
        authorizer_appid: str,
        client: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """Push an authorization event (see :meth:`event_push`) to ``url``."""
        self.calls["event_push"] += 1
        push = self.event_push(info_type, authorizer_appid=authorizer_appid)
        return await push.send(url, client=client)

    def issue_component_code(
        self,
        authorizer_appid: str | None = None,
        scope: str = "snsapi_base",
        user: EmulatedUser | None = None,
    ) -> str:
        """A code for ``authorizer_appid`` (default: the first authorizer) asked for by the
        platform, as the authorize page issues with ``component_appid``."""
        appid = authorizer_appid or self.authorizer_appids[0]
        code = secrets.token_hex(16)
        expires_at = time.monotonic() + self.code_ttl
        self._codes[code] = Code(
            user or self.user, scope, appid, expires_at, component_appid=self.component_appid
        )
        return code

    def _push(
        self, info_type: str, body: dict[str, str], timestamp: int | None, nonce: str | None
    ) -> PlatformPush:
        created = int(time.time()) if timestamp is None else timestamp
        fields = {
            "AppId": self.component_appid,
            "CreateTime": str(created),
            "InfoType": info_type,
            **body,
        }
        message = "<xml>" + "".join(f"<{k}>{_cdata(v)}</{k}>" for k, v in fields.items())
        message += "</xml>"
        crypto = self.crypto
        encrypt = crypto.encrypt(message)
        stamp = str(created)
        nonce = nonce or str(secrets.randbelow(9 * 10**9) + 10**9)
        plain = "".join(sorted((self.component_token, stamp, nonce)))
        params = {
            "signature": hashlib.sha1(plain.encode(), usedforsecurity=False).hexdigest(),
            "timestamp": stamp,
            "nonce": nonce,
            "encrypt_type": "aes",
            "msg_signature": crypto.signature(stamp, nonce, encrypt),
        }
        outer = (
            f"<xml><AppId>{_cdata(self.component_appid)}</AppId>"
            f"<Encrypt>{_cdata(encrypt)}</Encrypt></xml>"
        )
        return PlatformPush(params, outer.encode(), message)

    # --- endpoints ---------------------------------------------------------------------------

    async def _push_ticket_route(self, request: Request) -> Response:
        """``POST /_emulator/push_ticket?url=...``: push a new ticket to the platform's event
        URL (:meth:`push_ticket`), for a test that runs the emulator in another process; the
        answer says what the platform answered (``status``, ``body``), 502 if it did not."""
        params = request.query_params
        try:
            known_names(params, PUSH_SETTINGS)
            url = params.get("url", "")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise BadSettings(f"url={url!r}: not an http(s) URL")
        except BadSettings as exc:
            return bad_settings(exc, PUSH_SETTINGS)
        try:
            answer = await self.push_ticket(url)
        except httpx.HTTPError as exc:
            message = f"the platform did not answer ({type(exc).__name__})"
            return JSONResponse({"error": "push_failed", "message": message}, status_code=502)
        return JSONResponse({"status": answer.status_code, "body": answer.text[:1000]})

    async def _api_component_token(self, request: Request) -> Response:
        """``POST cgi-bin/component/api_component_token``: a new component token for the
        platform's appid, secret and a ticket it pushed."""
        self.calls["api_component_token"] += 1
        fault = self._next_fault("api_component_token")
        if fault in BEFORE_USE:
            return await answer_fault(fault, self.latency)
        try:
            params = json.loads(await request.body())
        except ValueError:
            params = None
        answer: dict[str, Any]
        if not isinstance(params, dict):
            answer = error(47001, "data format error")
        elif params.get("component_appid") != self.component_appid:
            answer = error(40013, "invalid appid")
        elif params.get("component_appsecret") != self.component_secret:
            answer = error(40125, "invalid appsecret")
        else:
            expires = self._tickets.get(str(params.get("component_verify_ticket")))
            if expires is None:
                answer = error(61006, "component ticket is invalid")
            elif time.monotonic() >= expires:
                answer = error(61005, "component ticket is expired")
            else:
                token, expires_in = self.component_tokens.rotate()
                answer = {"component_access_token": token, "expires_in": expires_in}
        return await answer_with(answer, fault, self.latency)

    async def _component_access_token(self, request: Request) -> Response:
        """``GET sns/oauth2/component/access_token``: trade an authorizer's code with the
        platform's token. A call refused for its token never reaches the code (unused, and
        not counted as an exchange of it)."""
        self.calls["component_access_token"] += 1
        fault = self._next_fault("component_access_token")
        if fault in BEFORE_USE:
            return await answer_fault(fault, self.latency)
        params = request.query_params
        appid = params.get("appid", "")
        code = params.get("code", "")
        answer: dict[str, Any]
        checked = self.component_tokens.check(params.get("component_access_token", ""))
        if params.get("component_appid") != self.component_appid:
            answer = error(40013, "invalid component_appid")
        elif checked:
            answer = error(checked, "invalid component_access_token")
        elif appid not in self.authorizer_appids:
            answer = error(40013, "invalid appid")
        elif params.get("grant_type") != "authorization_code":
            answer = error(40002, "invalid grant_type")
        elif not code:
            answer = error(41008, "missing code")
        else:
            self.exchanges[code] += 1
            self._keys[code] = flight_key(PLATFORM_NAMESPACE, appid, code)
            answer = self._trade_component_code(appid, code)
        return await answer_with(answer, fault, self.latency)

    def _trade_component_code(self, appid: str, code: str) -> dict[str, Any]:
        issued = self._codes.get(code)
        if (
            issued is None
            or issued.appid != appid
            or issued.component_appid != self.component_appid
        ):
            return error(40029, "invalid code")
        return issued.spend() or self._grant(issued.user, issued.scope, appid)

    def _reset_platform(self) -> None:
        self._tickets.clear()
        self.component_tokens.revoke()
