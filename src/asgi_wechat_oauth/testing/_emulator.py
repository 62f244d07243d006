"""An ASGI app that answers like WeChat's web OAuth endpoints and the mini-program's
``sns/jscode2session``, with inspectable state.

Close enough to WeChat to catch the bug this project fixes: codes are one-time (the second
exchange gets 40163, later ones 40029), expire (42003), and belong to the appid that issued them
(an official account, ``appid``, and a website app, ``website_appid``: a code traded with the
other app's credentials gets 40029, as at WeChat); credentials are
checked (40013, 40125); ``sns/userinfo`` refuses ``snsapi_base`` tokens (48001). JSON comes back
as ``text/plain``, as WeChat often sends it. Latency and faults can be injected, and every
exchange is counted per code.

With ``double_navigation`` on, the consent page behaves like the WeChat in-app browser, for tests
that drive a real browser: see :meth:`WeChatEmulator._wechat_browser_page`.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route, Router

from .._core.asgi import Receive, Scope, Send
from .._core.singleflight import MINIPROGRAM_NAMESPACE, flight_key
from ._base import EmulatorBase
from ._tokens import ServerTokens

AUTHORIZE_SCOPES = frozenset({"snsapi_base", "snsapi_userinfo"})
QRCONNECT_SCOPES = frozenset({"snsapi_login"})

#: The WeChat browser's duplicate, as traced: the first callback is aborted a few milliseconds
#: after it starts, and the reissued authorize request follows 19 ms after the first navigation.
ABORT_AFTER_MS = 5
REISSUE_AFTER_MS = 19
#: Consent pages whose reissue is still expected; older ones are forgotten beyond this many.
_MAX_PENDING_REISSUES = 1024


class Fault(str, enum.Enum):
    """Faults the emulator can inject into its next answers of an endpoint."""

    BUSY = "busy"  #: errcode -1, before the code is used
    HTTP_500 = "http_500"  #: HTTP 500, before the code is used
    HTTP_502 = "http_502"  #: HTTP 502, before the code is used
    MALFORMED_JSON = "malformed_json"  #: the code is used, the answer is not JSON
    TRUNCATED = "truncated"  #: the code is used, the body stops halfway, the connection drops
    DROP = "drop"  #: the code is used, the connection drops after the status line
    RATE_LIMITED = "rate_limited"  #: errcode 45011 (minute quota reached), before the code is used
    RISKY_USER = "risky_user"  #: errcode 40226 (high-risk user), before the code is used


_BEFORE_USE = frozenset(
    {Fault.BUSY, Fault.HTTP_500, Fault.HTTP_502, Fault.RATE_LIMITED, Fault.RISKY_USER}
)
#: Faults answered with a WeChat errcode.
_ERRCODE_FAULTS = {
    Fault.BUSY: (-1, "system error"),
    Fault.RATE_LIMITED: (45011, "api minute-quota reach limit"),
    Fault.RISKY_USER: (40226, "high risk user"),
}


class EmulatedConnectionDrop(ConnectionResetError):
    """Raised by the emulator to cut a connection (a real server then closes the socket)."""


@dataclass
class EmulatedUser:
    """The user the emulator logs in. ``snapshot=True`` answers ``is_snapshotuser: 1``."""

    openid: str = "oEmulatedOpenId0000000000001"
    nickname: str = "微信用户 🐼"
    headimgurl: str = "https://thirdwx.qlogo.cn/mmopen/emulated/132"
    unionid: str | None = None
    snapshot: bool = False
    #: The same person's openid in the website app (one openid per app; ``unionid`` links them).
    website_openid: str = "oEmulatedWebOpenId00000000001"


@dataclass
class _Code:
    user: EmulatedUser
    scope: str
    appid: str
    expires_at: float
    uses: int = 0


@dataclass
class _Token:
    user: EmulatedUser
    scope: str
    expires_at: float
    appid: str
    openid: str


@dataclass
class WeChatEmulator(EmulatorBase):
    """WeChat's OAuth endpoints as an ASGI app.

    Serves ``connect/oauth2/authorize``, ``connect/qrconnect``, ``sns/oauth2/access_token``,
    ``sns/userinfo``, ``sns/oauth2/refresh_token``, ``sns/auth`` and, for mini-programs,
    ``sns/jscode2session`` (codes from :meth:`issue_miniprogram_code`). ``latency`` (seconds) delays
    every ``sns/*`` answer; the code is used when the exchange *arrives*, as at WeChat, so the
    first of two racing exchanges wins.
    """

    appid: str = "wxemulated0000001"
    secret: str = "emulated-app-secret-0123456789ab"  # noqa: S105 - a test credential
    #: The site's website app (open platform, ``connect/qrconnect`` only).
    website_appid: str = "wxemulatedweb00001"
    website_secret: str = "emulated-website-secret-0123456789"  # noqa: S105 - a test credential
    user: EmulatedUser = field(default_factory=EmulatedUser)
    latency: float = 0.0
    code_ttl: float = 300.0
    qr_code_ttl: float = 600.0
    #: Answer ``connect/oauth2/authorize`` like the WeChat in-app browser does (two callbacks
    #: with the same code, the first cut off) instead of with a plain 302. Off by default.
    double_navigation: bool = False
    #: The base URL to give the middleware as ``api_base_url`` and ``authorize_base_url``: any
    #: host in-process (see :meth:`http_client`), the loopback address when served.
    url: str = "http://wechat.test"
    #: Calls to ``sns/oauth2/access_token`` and ``sns/jscode2session`` per code, whatever they
    #: answered.
    exchanges: Counter[str] = field(default_factory=Counter)
    #: Calls per endpoint name (``access_token``, ``userinfo``, ``refresh_token``, ``auth``,
    #: ``jscode2session``, ``token``, ``stable_token``).
    calls: Counter[str] = field(default_factory=Counter)
    #: The official account's server access tokens (``cgi-bin/token``, ``cgi-bin/stable_token``).
    server_tokens: ServerTokens = field(default_factory=lambda: ServerTokens("OA_TOKEN_"))

    def __post_init__(self) -> None:
        self._codes: dict[str, _Code] = {}
        self._miniprogram_codes: dict[str, _Code] = {}
        self._session_keys: set[str] = set()
        self._tokens: dict[str, _Token] = {}
        self._refresh_tokens: dict[str, _Token] = {}
        self._faults: dict[str, deque[Fault]] = {}
        #: Exchanged code → the backend key a middleware trading it holds it under: its product's
        #: namespace (``mp`` for ``jscode2session``) and the appid the exchange came with.
        self._keys: dict[str, str] = {}
        #: ``pass_ticket`` of a double-navigation page → the callback URL its reissue goes to.
        self._reissues: dict[str, str] = {}
        self._router = Router(
            routes=[
                Route("/connect/oauth2/authorize", self._authorize),
                Route("/connect/qrconnect", self._qrconnect),
                Route("/sns/oauth2/access_token", self._access_token),
                Route("/sns/userinfo", self._userinfo),
                Route("/sns/oauth2/refresh_token", self._refresh_token),
                Route("/sns/auth", self._auth),
                Route("/cgi-bin/token", self._server_token),
                Route("/cgi-bin/stable_token", self._server_token, methods=["POST"]),
                Route("/sns/jscode2session", self._jscode2session),
                Route("/_emulator/stats", self._stats),
                Route("/_emulator/settings", self._settings, methods=["POST"]),
                Route("/_emulator/reset", self._reset, methods=["POST"]),
                Route(
                    "/_emulator/miniprogram_code", self._miniprogram_code_route, methods=["POST"]
                ),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._router(scope, receive, send)

    # --- for tests ---------------------------------------------------------------------------

    def issue_code(
        self,
        scope: str = "snsapi_base",
        user: EmulatedUser | None = None,
        *,
        openid: str | None = None,
        unionid: str | None = None,
        snapshot: bool | None = None,
        appid: str | None = None,
    ) -> str:
        """Issue a fresh code, as the authorize page does after consent: for ``user`` (default:
        the emulator's), with ``openid``, ``unionid`` or ``snapshot`` changed when given, bound
        to ``appid`` (default: the official account's ``appid``; or ``website_appid``)."""
        changes: dict[str, Any] = {"openid": openid, "unionid": unionid, "snapshot": snapshot}
        who = dataclasses.replace(
            user or self.user, **{k: v for k, v in changes.items() if v is not None}
        )
        ttl = self.qr_code_ttl if scope in QRCONNECT_SCOPES else self.code_ttl
        code = secrets.token_hex(16)
        expires_at = time.monotonic() + ttl
        self._codes[code] = _Code(who, scope, appid or self.appid, expires_at)
        return code

    def issue_miniprogram_code(
        self, user: EmulatedUser | None = None, *, appid: str | None = None
    ) -> str:
        """Issue a fresh ``wx.login()`` code for the mini-program ``appid`` (default: this
        emulator's), as WeChat does in the mini-program. It is valid once, for ``code_ttl``."""
        code = secrets.token_hex(16)
        expires_at = time.monotonic() + self.code_ttl
        self._miniprogram_codes[code] = _Code(
            user or self.user, "miniprogram", appid or self.appid, expires_at
        )
        return code

    def exchange_count(self, code: str) -> int:
        """How many times ``code`` was presented to ``sns/oauth2/access_token`` (or, for a
        mini-program code, to ``sns/jscode2session``)."""
        return self.exchanges[code]

    def _flight_key(self, code: str) -> str:
        """A web code's key is ``appid:code``, a mini-program code's ``mp:appid:code``, with
        the appid its exchange came with (:meth:`duplicate_exchanges` names codes by it)."""
        return self._keys.get(code) or flight_key("", self.appid, code)

    def inject_fault(
        self, fault: Fault | str, *, count: int = 1, endpoint: str = "access_token"
    ) -> None:
        """Answer the next ``count`` calls to ``endpoint`` with ``fault``."""
        self._faults.setdefault(endpoint, deque()).extend([Fault(fault)] * count)

    def expire_code(self, code: str) -> None:
        """Make ``code`` (web or mini-program) expired, as if its 5 minutes had passed."""
        (self._codes.get(code) or self._miniprogram_codes[code]).expires_at = 0.0

    def reset(self) -> None:
        """Forget codes, tokens, counts and pending faults."""
        self._codes.clear()
        self._miniprogram_codes.clear()
        self._session_keys.clear()
        self._tokens.clear()
        self._refresh_tokens.clear()
        self._faults.clear()
        self._reissues.clear()
        self.server_tokens.revoke()
        self.exchanges.clear()
        self._keys.clear()
        self.calls.clear()

    # --- control surface, for tests that run the emulator in another process ----------------

    async def _stats(self, request: Request) -> Response:
        """``GET /_emulator/stats``: exchanges per code, calls per endpoint."""
        return JSONResponse(
            {
                "exchanges": dict(self.exchanges),
                "calls": dict(self.calls),
                "total_exchanges": self.total_exchanges,
                "double_navigation": self.double_navigation,
            }
        )

    async def _settings(self, request: Request) -> Response:
        """``POST /_emulator/settings?latency=0.5&fault=busy&count=1&endpoint=access_token``,
        ``double_navigation=1`` (or ``0``) to switch the WeChat browser's behaviour, and
        ``snapshot=1`` (or ``0``) to log the user in in snapshot mode."""
        params = request.query_params
        try:
            if "latency" in params:
                self.latency = max(0.0, float(params["latency"]))
            if "double_navigation" in params:
                self.double_navigation = _flag(params["double_navigation"])
            if "snapshot" in params:
                self.user = replace(self.user, snapshot=_flag(params["snapshot"]))
            if "fault" in params:
                self.inject_fault(
                    params["fault"],
                    count=int(params.get("count", "1")),
                    endpoint=params.get("endpoint", "access_token"),
                )
        except ValueError:
            return PlainTextResponse("bad settings", status_code=400)
        return JSONResponse({"latency": self.latency, "double_navigation": self.double_navigation})

    async def _reset(self, request: Request) -> Response:
        """``POST /_emulator/reset``: forget codes, tokens, counts and faults."""
        self.reset()
        return JSONResponse({"ok": True})

    async def _miniprogram_code_route(self, request: Request) -> Response:
        """``POST /_emulator/miniprogram_code``: ``{"code": ...}``, as ``wx.login()`` gives."""
        return JSONResponse({"code": self.issue_miniprogram_code()})

    # --- authorize pages ---------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        # Only the official-account page opens in the WeChat in-app browser; QR login
        # (qrconnect) ends in the user's desktop browser, which sends the callback once. A
        # website app has no official-account page.
        return self._consent(
            request, AUTHORIZE_SCOPES, {self.appid}, in_wechat=self.double_navigation
        )

    async def _qrconnect(self, request: Request) -> Response:
        # ``appid`` too: a site whose only app is a website app passes it as ``appid``.
        apps = {self.appid, self.website_appid}
        return self._consent(request, QRCONNECT_SCOPES, apps, in_wechat=False)

    def _consent(
        self, request: Request, scopes: frozenset[str], apps: set[str], *, in_wechat: bool
    ) -> Response:
        params = request.query_params
        appid = params.get("appid", "")
        if appid not in apps:
            return PlainTextResponse("appid invalid (emulator)", status_code=400)
        if params.get("response_type") != "code" or params.get("scope") not in scopes:
            return PlainTextResponse("scope or response_type invalid (emulator)", status_code=400)
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")):
            return PlainTextResponse("redirect_uri invalid (emulator)", status_code=400)
        reissued = self._reissues.pop(params.get("pass_ticket", ""), None)
        if reissued is not None:
            # The WeChat browser's second authorize request: same consent, same code.
            self.calls["authorize_reissued"] += 1
            return RedirectResponse(reissued, status_code=302)
        code = self.issue_code(params["scope"], appid=appid)
        query = {"code": code, "state": params.get("state", "")}
        separator = "&" if "?" in redirect_uri else "?"
        callback = redirect_uri + separator + urlencode(query)
        if in_wechat:
            return self._wechat_browser_page(request, callback)
        return RedirectResponse(callback, status_code=302)

    def _wechat_browser_page(self, request: Request, callback: str) -> Response:
        """The consent answer as the WeChat in-app browser plays it, for a real browser.

        In WeChat the authorize request is sent, aborted by the client, and reissued with
        ``uin``, ``key`` and ``pass_ticket`` added; both answers redirect to the callback with
        the *same* code, so the app receives two callbacks, the first one cut off. This page's
        script does the same: it navigates to the callback (#1), stops that navigation
        ``ABORT_AFTER_MS`` later (the browser closes the connection), and ``REISSUE_AFTER_MS``
        after the first navigation requests this authorize URL again with the three parameters;
        the emulator answers that reissue with a 302 to the same callback URL (#2).
        """
        pass_ticket = secrets.token_urlsafe(24)
        self._reissues[pass_ticket] = callback
        while len(self._reissues) > _MAX_PENDING_REISSUES:
            del self._reissues[next(iter(self._reissues))]
        uin = base64.b64encode(str(secrets.randbelow(9 * 10**9) + 10**9).encode()).decode()
        extra = urlencode({"uin": uin, "key": secrets.token_hex(32), "pass_ticket": pass_ticket})
        reissue = f"{request.url.path}?{request.url.query}&{extra}"
        page = _WECHAT_BROWSER_PAGE.format(
            callback=_js_string(callback),
            reissue=_js_string(reissue),
            abort_after=ABORT_AFTER_MS,
            reissue_after=REISSUE_AFTER_MS,
        )
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    # --- sns API -----------------------------------------------------------------------------

    async def _access_token(self, request: Request) -> Response:
        params = request.query_params
        code = params.get("code", "")
        fault = self._arrive("access_token", code, params.get("appid", ""))
        if fault in _BEFORE_USE:
            return await self._answer_fault(fault)
        answer = self._trade(params, code)
        return await self._answer(answer, fault)

    def _secret_of(self, appid: str | None) -> str | None:
        return {self.appid: self.secret, self.website_appid: self.website_secret}.get(appid or "")

    def _trade(self, params: Any, code: str) -> dict[str, Any]:
        issued = self._spend(params, code, self._codes)
        if isinstance(issued, _Code):
            return self._grant(issued.user, issued.scope, issued.appid)
        return issued

    def _spend(self, params: Any, code: str, codes: dict[str, _Code]) -> _Code | dict[str, Any]:
        """Check the credentials and use ``code`` once: the code, or WeChat's error answer."""
        appid = params.get("appid")
        secret = self._secret_of(appid)
        if secret is None:
            return _error(40013, "invalid appid")
        if params.get("secret") != secret:
            return _error(40125, "invalid appsecret")
        if params.get("grant_type") != "authorization_code":
            return _error(40002, "invalid grant_type")
        if not code:
            return _error(41008, "missing code")
        issued = codes.get(code)
        if issued is None or issued.appid != appid:
            # Another app's code is as unknown here as a made-up one.
            return _error(40029, "invalid code")
        issued.uses += 1
        if issued.uses > 1:
            # WeChat answers a reused code with 40163 and later with 40029: treat both alike.
            return (
                _error(40163, "code been used")
                if issued.uses == 2
                else _error(40029, "invalid code")
            )
        if time.monotonic() > issued.expires_at:
            return _error(42003, "code expired")
        return issued

    def _grant(
        self, user: EmulatedUser, scope: str, appid: str, refresh_token: str | None = None
    ) -> dict[str, Any]:
        access_token = "ACCESS_" + secrets.token_urlsafe(24)
        refresh_token = refresh_token or "REFRESH_" + secrets.token_urlsafe(24)
        openid = user.website_openid if appid == self.website_appid else user.openid
        token = _Token(user, scope, time.monotonic() + 7200, appid, openid)
        self._tokens[access_token] = token
        self._refresh_tokens[refresh_token] = token
        answer: dict[str, Any] = {
            "access_token": access_token,
            "expires_in": 7200,
            "refresh_token": refresh_token,
            "openid": openid,
            "scope": scope,
        }
        if user.snapshot:
            answer["is_snapshotuser"] = 1
        if user.unionid and scope != "snsapi_base":
            answer["unionid"] = user.unionid
        return answer

    async def _userinfo(self, request: Request) -> Response:
        self.calls["userinfo"] += 1
        fault = self._next_fault("userinfo")
        if fault in _BEFORE_USE:
            return await self._answer_fault(fault)
        token = self._tokens.get(request.query_params.get("access_token", ""))
        answer: dict[str, Any]
        if token is None or time.monotonic() > token.expires_at:
            answer = _error(40001, "invalid credential, access_token is invalid or not latest")
        elif request.query_params.get("openid") != token.openid:
            answer = _error(40003, "invalid openid")
        elif token.scope == "snsapi_base":
            answer = _error(48001, "api unauthorized")
        else:
            user = token.user
            answer = {
                "openid": token.openid,
                "nickname": user.nickname,
                "sex": 0,
                "province": "",
                "city": "",
                "country": "",
                "headimgurl": user.headimgurl,
                "privilege": [],
            }
            if user.unionid:
                answer["unionid"] = user.unionid
        return await self._answer(answer, fault)

    async def _refresh_token(self, request: Request) -> Response:
        self.calls["refresh_token"] += 1
        fault = self._next_fault("refresh_token")
        if fault in _BEFORE_USE:
            return await self._answer_fault(fault)
        params = request.query_params
        refresh_token = params.get("refresh_token", "")
        token = self._refresh_tokens.get(refresh_token)
        if self._secret_of(params.get("appid")) is None:
            answer = _error(40013, "invalid appid")
        elif (
            params.get("grant_type") != "refresh_token"
            or token is None
            or token.appid != params.get("appid")
        ):
            answer = _error(40030, "invalid refresh_token")
        else:
            answer = self._grant(token.user, token.scope, token.appid, refresh_token)
        return await self._answer(answer, fault)

    async def _auth(self, request: Request) -> Response:
        self.calls["auth"] += 1
        fault = self._next_fault("auth")
        if fault in _BEFORE_USE:
            return await self._answer_fault(fault)
        token = self._tokens.get(request.query_params.get("access_token", ""))
        if token is None or time.monotonic() > token.expires_at:
            answer = _error(40001, "invalid credential")
        elif request.query_params.get("openid") != token.openid:
            answer = _error(40003, "invalid openid")
        else:
            answer = {"errcode": 0, "errmsg": "ok"}
        return await self._answer(answer, fault)

    # --- cgi-bin access tokens ---------------------------------------------------------------

    async def _server_token(self, request: Request) -> Response:
        """``GET cgi-bin/token`` (a new token each call) and ``POST cgi-bin/stable_token`` (the
        current one, a new one with ``force_refresh``)."""
        stable = request.method == "POST"
        endpoint = "stable_token" if stable else "token"
        self.calls[endpoint] += 1
        fault = self._next_fault(endpoint)
        if fault in _BEFORE_USE:
            return await self._answer_fault(fault)
        params: Any = request.query_params
        if stable:
            try:
                params = json.loads(await request.body())
            except ValueError:
                params = None
            if not isinstance(params, dict):
                return await self._answer(_error(47001, "data format error"), fault)
        if params.get("grant_type") != "client_credential":
            answer = _error(40002, "invalid grant_type")
        elif params.get("appid") != self.appid:
            answer = _error(40013, "invalid appid")
        elif params.get("secret") != self.secret:
            answer = _error(40125, "invalid appsecret")
        else:
            token, expires_in = (
                self.server_tokens.current(force=params.get("force_refresh") is True)
                if stable
                else self.server_tokens.rotate()
            )
            answer = {"access_token": token, "expires_in": expires_in}
        return await self._answer(answer, fault)

    async def _jscode2session(self, request: Request) -> Response:
        params = request.query_params
        code = params.get("js_code", "")
        fault = self._arrive("jscode2session", code, params.get("appid", ""))
        if fault in _BEFORE_USE:
            return await self._answer_fault(fault)
        issued = self._spend(params, code, self._miniprogram_codes)
        if not isinstance(issued, _Code):
            return await self._answer(issued, fault)
        session_key = base64.b64encode(secrets.token_bytes(16)).decode()
        self._session_keys.add(session_key)
        answer = {"openid": issued.user.openid, "session_key": session_key}
        if issued.user.unionid:
            answer["unionid"] = issued.user.unionid
        return await self._answer(answer, fault)

    # --- answers -----------------------------------------------------------------------------

    def _arrive(self, endpoint: str, code: str, appid: str) -> Fault | None:
        """Count an exchange of ``code`` for ``appid`` at ``endpoint``; the fault queued for it,
        if any."""
        self.calls[endpoint] += 1
        if code:
            self.exchanges[code] += 1
            namespace = MINIPROGRAM_NAMESPACE if endpoint == "jscode2session" else ""
            self._keys[code] = flight_key(namespace, appid, code)
        return self._next_fault(endpoint)

    def _next_fault(self, endpoint: str) -> Fault | None:
        queue = self._faults.get(endpoint)
        return queue.popleft() if queue else None

    async def _answer(self, answer: dict[str, Any], fault: Fault | None) -> Response:
        return await answer_with(answer, fault, self.latency)

    async def _answer_fault(self, fault: Fault) -> Response:
        return await answer_fault(fault, self.latency)


async def answer_with(answer: dict[str, Any], fault: Fault | None, latency: float) -> Response:
    """``answer`` as JSON labelled ``text/plain``, after ``latency``, spoiled by ``fault``."""
    await anyio.sleep(latency)
    try:
        body = json.dumps(answer, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate in a field: sent \u-escaped, as JSON can
        body = json.dumps(answer).encode()
    if fault is Fault.MALFORMED_JSON:
        return PlainTextResponse("<html>502 Bad Gateway</html>")
    if fault in (Fault.TRUNCATED, Fault.DROP):
        return _BrokenResponse(body, truncate=fault is Fault.TRUNCATED)
    return Response(body, media_type="text/plain")


async def answer_fault(fault: Fault, latency: float) -> Response:
    """The answer of a fault that strikes before the request is processed."""
    await anyio.sleep(latency)
    if fault in _ERRCODE_FAULTS:
        errcode, errmsg = _ERRCODE_FAULTS[fault]
        return Response(json.dumps(_error(errcode, errmsg)), media_type="text/plain")
    return PlainTextResponse("upstream error", status_code=500 if fault is Fault.HTTP_500 else 502)


class _BrokenResponse(Response):
    """Starts a response and then cuts the connection, halfway through the body or before it."""

    def __init__(self, body: bytes, *, truncate: bool) -> None:
        super().__init__(body, media_type="text/plain")
        self._truncate = truncate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        if self._truncate:
            half = self.body[: len(self.body) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
        raise EmulatedConnectionDrop("connection dropped by the WeChat emulator")


def _error(errcode: int, errmsg: str) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": f"{errmsg}, rid: {secrets.token_hex(4)}"}


def _flag(value: str) -> bool:
    """A boolean control parameter: ``1``/``true``/``on`` or ``0``/``false``/``off``."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "on", "yes"):
        return True
    if lowered in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _js_string(value: str) -> str:
    """A JavaScript string literal that is safe inside an inline ``<script>``."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


_WECHAT_BROWSER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>WeChat authorization (emulated)</title>
</head>
<body>
<p>WeChat emulator: consent given. Opening the callback the way the WeChat browser does:
twice, with the same code, the first request cut off.</p>
<script>
(function () {{
  var callback = {callback};
  var reissue = {reissue};
  window.location.assign(callback);
  setTimeout(function () {{ window.stop(); }}, {abort_after});
  setTimeout(function () {{ window.location.assign(reissue); }}, {reissue_after});
}})();
</script>
</body>
</html>
"""
