"""An ASGI app that answers like WeCom (企业微信): the corp token, web OAuth and QR login.

One app serves what WeCom spreads over three hosts: ``connect/oauth2/authorize`` (the
authorize page inside WeCom, at ``open.weixin.qq.com``), ``wwlogin/sso/login`` (the QR login
page, at ``login.work.weixin.qq.com``), and ``cgi-bin/gettoken``, ``cgi-bin/auth/getuserinfo``
and ``cgi-bin/auth/getuserdetail`` (at ``qyapi.weixin.qq.com``). Codes are one-time (40029 on
reuse, as WeCom answers), tokens expire (42001) and can be revoked (40014), faults can be
injected per endpoint, and every call is counted. A call refused for its token never reaches its
code: the code stays unused and the call is not counted as an exchange of it, so a client that
refreshes the token and retries trades the code once.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, Router

from .._core.asgi import Receive, Scope, Send
from .._core.singleflight import flight_key
from ._base import EmulatorBase
from ._control import (
    BadSettings,
    bad_settings,
    errcode,
    fault_named,
    flag,
    known_names,
    one_of,
    positive_count,
    seconds,
    setting,
)
from ._faults import BEFORE_USE, Fault, answer_fault, answer_with, error
from ._tokens import ServerTokens

AUTHORIZE_SCOPES = frozenset({"snsapi_base", "snsapi_privateinfo"})
#: Answers that refuse the call's corp token (missing, invalid, expired) before its code is seen.
TOKEN_ERRCODES = frozenset({41001, 40014, 42001})
#: How long a ``user_ticket`` lives (WeCom: 1,800 s).
USER_TICKET_TTL = 1800


#: The endpoints whose answers a fault or an errcode can spoil (``endpoint=``).
FAULT_ENDPOINTS = ("getuserinfo", "getuserdetail", "gettoken")
#: What ``POST /_emulator/settings`` takes, and what each setting is.
SETTINGS = {
    "latency": "seconds before each answer, such as 0.5",
    "decline_qr_login": "1 or 0: the user declines the QR login",
    "detail_userid": "another member's userid for getuserdetail (empty: the ticket's again)",
    "fault": f"spoils the next answers: one of {', '.join(f.value for f in Fault)}",
    "errcode": "answers the next calls with this errcode, such as 60020",
    "count": "how many answers the fault or errcode spoils (1)",
    "endpoint": f"whose answers they spoil: one of {', '.join(FAULT_ENDPOINTS)} (getuserinfo)",
    "expire_tokens": "1: the corp tokens handed out expire now",
    "revoke_tokens": "1: the corp tokens handed out are revoked now",
}


@dataclass
class WeComMember:
    """The person the emulator logs in. ``member=False`` makes them a non-member (an
    ``openid`` and an ``external_userid`` instead of a ``userid``)."""

    userid: str = "zhangsan"
    member: bool = True
    openid: str = "oEmulatedWeComOpenId00000001"
    external_userid: str = "wmEmulatedExternal0000000001"
    gender: str = "1"
    avatar: str = "https://wework.qpic.cn/emulated/avatar/0"
    qr_code: str = "https://open.work.weixin.qq.com/wwopen/userQRCode?vcode=emulated"
    mobile: str = "13800000000"
    email: str = "zhangsan@example.com"
    biz_mail: str = "zhangsan@emulated.wecom.work"
    address: str = "广州市海珠区新港中路 🐼"


@dataclass
class _Code:
    user: WeComMember
    scope: str
    expires_at: float
    uses: int = 0


@dataclass
class WeComEmulator(EmulatorBase):
    """WeCom's OAuth and token endpoints as an ASGI app; see the module docstring.

    ``decline_qr_login`` makes the QR page come back with ``state`` only (the user declined);
    ``detail_member`` makes ``auth/getuserdetail`` answer with that member's details whoever
    the ticket's member is (a confused or hostile upstream).
    ``latency`` delays every ``cgi-bin`` answer. The control surface (``/_emulator/stats``,
    ``/_emulator/settings``, ``/_emulator/reset``) serves tests that run it in another process.
    """

    corpid: str = "wwemulated00000001"
    agentid: str = "1000002"
    secret: str = "emulated-wecom-agent-secret-0123456789"  # noqa: S105 - a test credential
    user: WeComMember = field(default_factory=WeComMember)
    latency: float = 0.0
    code_ttl: float = 300.0
    decline_qr_login: bool = False
    #: Answer every ``auth/getuserdetail`` with this member's details, not the ticket's.
    detail_member: WeComMember | None = None
    #: The base URL to give the middleware as ``api_base_url``, ``authorize_base_url`` and
    #: ``qr_login_base_url``: any host in-process (see :meth:`http_client`).
    url: str = "http://wecom.test"
    #: ``auth/getuserinfo`` calls per code, whatever they answered, except those refused for
    #: their token (41001, 40014, 42001, injected ones too): those never reached the code.
    exchanges: Counter[str] = field(default_factory=Counter)
    #: Calls per endpoint: ``gettoken``, ``getuserinfo``, ``getuserdetail``, ``authorize``,
    #: ``qr_login``.
    calls: Counter[str] = field(default_factory=Counter)
    tokens: ServerTokens = field(default_factory=lambda: ServerTokens("WECOM_TOKEN_"))

    def __post_init__(self) -> None:
        self._codes: dict[str, _Code] = {}
        self._tickets: dict[str, tuple[WeComMember, float]] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._errcodes: dict[str, deque[int]] = {}
        self._router = Router(
            routes=[
                Route("/connect/oauth2/authorize", self._authorize),
                Route("/wwlogin/sso/login", self._qr_login),
                Route("/cgi-bin/gettoken", self._gettoken),
                Route("/cgi-bin/auth/getuserinfo", self._getuserinfo),
                Route("/cgi-bin/auth/getuserdetail", self._getuserdetail, methods=["POST"]),
                Route("/_emulator/stats", self._stats),
                Route("/_emulator/settings", self._settings, methods=["POST"]),
                Route("/_emulator/reset", self._reset, methods=["POST"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._router(scope, receive, send)

    # --- for tests ---------------------------------------------------------------------------

    def issue_code(self, scope: str = "snsapi_base", user: WeComMember | None = None) -> str:
        """Issue a fresh code, as the authorize or QR page does after consent."""
        code = secrets.token_hex(16)
        self._codes[code] = _Code(user or self.user, scope, time.monotonic() + self.code_ttl)
        return code

    def exchange_count(self, code: str) -> int:
        """How many times ``code`` was presented to ``auth/getuserinfo``."""
        return self.exchanges[code]

    def _flight_key(self, code: str) -> str:
        """``wecom:corpid:agentid:code``, as ``WeComOAuthMiddleware`` keys it."""
        return flight_key("wecom", f"{self.corpid}:{self.agentid}", code)

    def inject_fault(
        self, fault: Fault | str, *, count: int = 1, endpoint: str = "getuserinfo"
    ) -> None:
        """Answer the next ``count`` calls to ``endpoint`` with ``fault``."""
        self._faults.setdefault(endpoint, deque()).extend([Fault(fault)] * count)

    def inject_errcode(
        self, errcode: int, *, count: int = 1, endpoint: str = "getuserinfo"
    ) -> None:
        """Answer the next ``count`` calls to ``endpoint`` with ``errcode`` (60020, 40056, ...)."""
        self._errcodes.setdefault(endpoint, deque()).extend([errcode] * count)

    @property
    def issued_secrets(self) -> list[str]:
        """The secret, codes, tokens and tickets it handed out, for tests that look for leaks."""
        return [self.secret, *self._codes, *self.tokens.issued, *self._tickets]

    def reset(self) -> None:
        """Forget codes, tokens, tickets, counts and pending faults."""
        self._codes.clear()
        self._tickets.clear()
        self._faults.clear()
        self._errcodes.clear()
        self.tokens.revoke()
        self.exchanges.clear()
        self.calls.clear()

    # --- control surface ---------------------------------------------------------------------

    async def _stats(self, request: Request) -> Response:
        return JSONResponse({"exchanges": dict(self.exchanges), "calls": dict(self.calls)})

    async def _settings(self, request: Request) -> Response:
        """``POST /_emulator/settings?latency=0.5&fault=busy&count=1&endpoint=gettoken``,
        ``errcode=60020``, ``decline_qr_login=1``, ``expire_tokens=1``, ``revoke_tokens=1``,
        ``detail_userid=lisi`` (details of another member; empty: the ticket's again). A name
        or value it does not know: 400, saying which, with every setting listed."""
        params = request.query_params
        try:
            known_names(params, SETTINGS)
            latency = setting(params, "latency", seconds)
            decline = setting(params, "decline_qr_login", flag)
            userid = setting(params, "detail_userid", str)
            fault = setting(params, "fault", fault_named)
            code = setting(params, "errcode", errcode)
            count = setting(params, "count", positive_count) or 1
            endpoint = setting(params, "endpoint", one_of(FAULT_ENDPOINTS)) or "getuserinfo"
            expire = setting(params, "expire_tokens", flag)
            revoke = setting(params, "revoke_tokens", flag)
        except BadSettings as exc:
            return bad_settings(exc, SETTINGS)
        if latency is not None:
            self.latency = latency
        if decline is not None:
            self.decline_qr_login = decline
        if userid is not None:
            self.detail_member = replace(self.user, userid=userid) if userid else None
        if fault is not None:
            self.inject_fault(fault, count=count, endpoint=endpoint)
        if code is not None:
            self.inject_errcode(code, count=count, endpoint=endpoint)
        if expire:
            self.tokens.expire()
        if revoke:
            self.tokens.revoke()
        return JSONResponse({"latency": self.latency, "decline_qr_login": self.decline_qr_login})

    async def _reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    # --- pages -------------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        """Inside WeCom: ``appid`` is the corpid, ``agentid`` is required for
        ``snsapi_privateinfo``; consent redirects with a code and the state."""
        self.calls["authorize"] += 1
        params = request.query_params
        if params.get("response_type") != "code" or params.get("scope") not in AUTHORIZE_SCOPES:
            return PlainTextResponse("scope or response_type invalid (emulator)", status_code=400)
        return self._consent(params, params["scope"])

    async def _qr_login(self, request: Request) -> Response:
        """Elsewhere: the QR page. A declined login comes back with ``state`` only."""
        self.calls["qr_login"] += 1
        params = request.query_params
        if params.get("login_type") != "CorpApp":
            return PlainTextResponse("login_type invalid (emulator)", status_code=400)
        return self._consent(params, "snsapi_base", declined=self.decline_qr_login)

    def _consent(self, params: Any, scope: str, *, declined: bool = False) -> Response:
        if params.get("appid") != self.corpid or params.get("agentid") != self.agentid:
            return PlainTextResponse("appid or agentid invalid (emulator)", status_code=400)
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")):
            return PlainTextResponse("redirect_uri invalid (emulator)", status_code=400)
        query = {"state": params.get("state", "")}
        if not declined:
            query = {"code": self.issue_code(scope), **query}
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(redirect_uri + separator + urlencode(query), status_code=302)

    # --- cgi-bin -----------------------------------------------------------------------------

    async def _gettoken(self, request: Request) -> Response:
        params = request.query_params
        return await self._api("gettoken", lambda: self._token_for(params))

    def _token_for(self, params: Any) -> dict[str, Any]:
        if params.get("corpid") != self.corpid:
            return error(40013, "invalid corpid")
        if params.get("corpsecret") != self.secret:
            return error(40001, "invalid secret")
        token, expires_in = self.tokens.current()
        return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in}

    async def _getuserinfo(self, request: Request) -> Response:
        code = request.query_params.get("code", "")
        token = request.query_params.get("access_token", "")
        return await self._api("getuserinfo", lambda: self._user_of(token, code), code=code)

    def _user_of(self, token: str, code: str) -> dict[str, Any]:
        # WeCom checks the token before the code: a token error leaves the code unused (and
        # uncounted, see _api).
        if not token:
            return error(41001, "access_token missing")
        if errcode := self.tokens.check(token):
            return error(errcode, "invalid access_token" if errcode == 40014 else "expired")
        issued = self._codes.get(code)
        if issued is None:
            return error(40029, "invalid code")
        issued.uses += 1
        if issued.uses > 1 or time.monotonic() > issued.expires_at:
            return error(40029, "invalid code")
        user = issued.user
        if not user.member:
            return {
                "errcode": 0,
                "errmsg": "ok",
                "openid": user.openid,
                "external_userid": user.external_userid,
            }
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "userid": user.userid}
        if issued.scope == "snsapi_privateinfo":
            ticket = "TICKET_" + secrets.token_urlsafe(24)
            self._tickets[ticket] = (user, time.monotonic() + USER_TICKET_TTL)
            answer.update(user_ticket=ticket, expires_in=USER_TICKET_TTL)
        return answer

    async def _getuserdetail(self, request: Request) -> Response:
        token = request.query_params.get("access_token", "")
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        ticket = body.get("user_ticket") if isinstance(body, dict) else None
        return await self._api("getuserdetail", lambda: self._detail_of(token, ticket))

    def _detail_of(self, token: str, ticket: object) -> dict[str, Any]:
        if errcode := self.tokens.check(token):
            return error(errcode, "invalid access_token" if errcode == 40014 else "expired")
        held = self._tickets.get(ticket) if isinstance(ticket, str) else None
        if held is None or time.monotonic() > held[1]:
            # The emulator's choice of errcode for an unknown or expired ticket.
            return error(40089, "invalid user_ticket")
        user = self.detail_member or held[0]
        fields = ("gender", "avatar", "qr_code", "mobile", "email", "biz_mail", "address")
        return {
            "errcode": 0,
            "errmsg": "ok",
            "userid": user.userid,
            **{name: getattr(user, name) for name in fields},
        }

    async def _api(self, endpoint: str, answer: Any, *, code: str = "") -> Response:
        """Count the call, then answer with an injected fault or errcode, or ``answer()``;
        count ``code`` as exchanged unless the answer refused the call's token."""
        self.calls[endpoint] += 1
        queue = self._faults.get(endpoint)
        fault = queue.popleft() if queue else None
        errcodes = self._errcodes.get(endpoint)
        reply: dict[str, Any] | None = None  # None: the fault answers
        if fault not in BEFORE_USE:
            reply = error(errcodes.popleft(), "injected") if errcodes else answer()
        if code and (reply is None or reply.get("errcode") not in TOKEN_ERRCODES):
            self.exchanges[code] += 1
        if reply is None:
            assert fault is not None
            return await answer_fault(fault, self.latency)
        return await answer_with(reply, fault, self.latency)
