"""The WeChat emulator's API: trading codes (``sns/oauth2/access_token``, and
``sns/jscode2session`` for mini-programs), the user's profile and tokens (``sns/userinfo``,
``sns/oauth2/refresh_token``, ``sns/auth``), and the official account's server access tokens
(``cgi-bin/token``, ``cgi-bin/stable_token``) and the JS-SDK's ``jsapi_ticket``
(``cgi-bin/ticket/getticket``).

A code is used when its exchange *arrives*, as at WeChat, so the first of two racing exchanges
wins; the second gets 40163, later ones 40029. Every answer waits for the emulator's
``latency`` and may be spoiled by the fault queued for its endpoint.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections import Counter, deque
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .._core.singleflight import MINIPROGRAM_NAMESPACE, flight_key
from ._base import EmulatorBase
from ._faults import BEFORE_USE, Fault, answer_fault, answer_with, error
from ._tokens import ServerTokens
from ._users import Code, EmulatedUser, Token


class SnsApi(EmulatorBase):
    """The API endpoints of :class:`~asgi_wechat_oauth.testing.WeChatEmulator`."""

    # What the API uses of the emulator.
    appid: str
    secret: str
    website_appid: str
    website_secret: str
    apps: dict[str, str]
    latency: float
    calls: Counter[str]
    server_tokens: ServerTokens
    jsapi_tickets: ServerTokens
    _codes: dict[str, Code]
    _miniprogram_codes: dict[str, Code]
    _session_keys: set[str]
    _tokens: dict[str, Token]
    _refresh_tokens: dict[str, Token]
    _faults: dict[str, deque[Fault]]
    #: Exchanged code → the backend key a middleware trading it holds it under.
    _keys: dict[str, str]

    async def _access_token(self, request: Request) -> Response:
        params = request.query_params
        code = params.get("code", "")
        fault = self._arrive("access_token", code, params.get("appid", ""))
        if fault in BEFORE_USE:
            return await self._answer_fault(fault)
        answer = self._trade(params, code)
        return await self._answer(answer, fault)

    def _secret_of(self, appid: str | None) -> str | None:
        known = {**self.apps, self.appid: self.secret, self.website_appid: self.website_secret}
        return known.get(appid or "")

    def _trade(self, params: Any, code: str) -> dict[str, Any]:
        issued = self._spend(params, code, self._codes)
        if isinstance(issued, Code):
            return self._grant(issued.user, issued.scope, issued.appid)
        return issued

    def _spend(self, params: Any, code: str, codes: dict[str, Code]) -> Code | dict[str, Any]:
        """Check the credentials and use ``code`` once: the code, or WeChat's error answer."""
        appid = params.get("appid")
        secret = self._secret_of(appid)
        if secret is None:
            return error(40013, "invalid appid")
        if params.get("secret") != secret:
            return error(40125, "invalid appsecret")
        if params.get("grant_type") != "authorization_code":
            return error(40002, "invalid grant_type")
        if not code:
            return error(41008, "missing code")
        issued = codes.get(code)
        if issued is None or issued.appid != appid or issued.component_appid is not None:
            # Another app's code (or a platform's) is as unknown here as a made-up one.
            return error(40029, "invalid code")
        return issued.spend() or issued

    def _grant(
        self, user: EmulatedUser, scope: str, appid: str, refresh_token: str | None = None
    ) -> dict[str, Any]:
        access_token = "ACCESS_" + secrets.token_urlsafe(24)
        refresh_token = refresh_token or "REFRESH_" + secrets.token_urlsafe(24)
        openid = user.openid_in(appid, main_appid=self.appid, website_appid=self.website_appid)
        token = Token(user, scope, time.monotonic() + 7200, appid, openid)
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
        if fault in BEFORE_USE:
            return await self._answer_fault(fault)
        token = self._tokens.get(request.query_params.get("access_token", ""))
        answer: dict[str, Any]
        if token is None or time.monotonic() > token.expires_at:
            answer = error(40001, "invalid credential, access_token is invalid or not latest")
        elif request.query_params.get("openid") != token.openid:
            answer = error(40003, "invalid openid")
        elif token.scope == "snsapi_base":
            answer = error(48001, "api unauthorized")
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
        if fault in BEFORE_USE:
            return await self._answer_fault(fault)
        params = request.query_params
        refresh_token = params.get("refresh_token", "")
        token = self._refresh_tokens.get(refresh_token)
        if self._secret_of(params.get("appid")) is None:
            answer = error(40013, "invalid appid")
        elif (
            params.get("grant_type") != "refresh_token"
            or token is None
            or token.appid != params.get("appid")
        ):
            answer = error(40030, "invalid refresh_token")
        else:
            answer = self._grant(token.user, token.scope, token.appid, refresh_token)
        return await self._answer(answer, fault)

    async def _auth(self, request: Request) -> Response:
        self.calls["auth"] += 1
        fault = self._next_fault("auth")
        if fault in BEFORE_USE:
            return await self._answer_fault(fault)
        token = self._tokens.get(request.query_params.get("access_token", ""))
        if token is None or time.monotonic() > token.expires_at:
            answer = error(40001, "invalid credential")
        elif request.query_params.get("openid") != token.openid:
            answer = error(40003, "invalid openid")
        else:
            answer = {"errcode": 0, "errmsg": "ok"}
        return await self._answer(answer, fault)

    async def _server_token(self, request: Request) -> Response:
        """``GET cgi-bin/token`` (a new token each call) and ``POST cgi-bin/stable_token`` (the
        current one, a new one with ``force_refresh``)."""
        stable = request.method == "POST"
        endpoint = "stable_token" if stable else "token"
        self.calls[endpoint] += 1
        fault = self._next_fault(endpoint)
        if fault in BEFORE_USE:
            return await self._answer_fault(fault)
        params: Any = request.query_params
        if stable:
            try:
                params = json.loads(await request.body())
            except ValueError:
                params = None
            if not isinstance(params, dict):
                return await self._answer(error(47001, "data format error"), fault)
        if params.get("grant_type") != "client_credential":
            answer = error(40002, "invalid grant_type")
        elif params.get("appid") != self.appid:
            answer = error(40013, "invalid appid")
        elif params.get("secret") != self.secret:
            answer = error(40125, "invalid appsecret")
        else:
            token, expires_in = (
                self.server_tokens.current(force=params.get("force_refresh") is True)
                if stable
                else self.server_tokens.rotate()
            )
            answer = {"access_token": token, "expires_in": expires_in}
        return await self._answer(answer, fault)

    async def _getticket(self, request: Request) -> Response:
        """``GET cgi-bin/ticket/getticket?access_token=&type=jsapi``: the current ticket (the
        same one until it expires), for a server access token this emulator issued and that
        is still valid (40001 for an unknown or revoked one, 42001 for an expired one)."""
        self.calls["getticket"] += 1
        fault = self._next_fault("getticket")
        if fault in BEFORE_USE:
            return await self._answer_fault(fault)
        params = request.query_params
        checked = self.server_tokens.check(params.get("access_token", ""))
        answer: dict[str, Any]
        if checked == 42001:
            answer = error(42001, "access_token expired")
        elif checked:
            answer = error(40001, "invalid credential, access_token is invalid or not latest")
        elif params.get("type") != "jsapi":
            answer = error(40097, "invalid args")
        else:
            ticket, expires_in = self.jsapi_tickets.current()
            answer = {"errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": expires_in}
        return await self._answer(answer, fault)

    async def _jscode2session(self, request: Request) -> Response:
        params = request.query_params
        code = params.get("js_code", "")
        fault = self._arrive("jscode2session", code, params.get("appid", ""))
        if fault in BEFORE_USE:
            return await self._answer_fault(fault)
        issued = self._spend(params, code, self._miniprogram_codes)
        if not isinstance(issued, Code):
            return await self._answer(issued, fault)
        session_key = base64.b64encode(secrets.token_bytes(16)).decode()
        self._session_keys.add(session_key)
        answer = {"openid": issued.user.openid, "session_key": session_key}
        if issued.user.unionid:
            answer["unionid"] = issued.user.unionid
        return await self._answer(answer, fault)

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
