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

This module holds the emulator's options, state and what tests call on it; the endpoints are in
``_pages`` (authorize pages), ``_api`` (the API), ``_control`` (``/_emulator/*``) and the faults
and answers in ``_faults``.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import Route, Router

from .._core.asgi import Receive, Scope, Send
from .._core.singleflight import flight_key
from ._api import SnsApi
from ._control import ControlSurface
from ._faults import Fault
from ._pages import QRCONNECT_SCOPES, AuthorizePages
from ._platform import PlatformApi
from ._tokens import ServerTokens
from ._users import Code, EmulatedUser, Token


@dataclass
class WeChatEmulator(AuthorizePages, SnsApi, PlatformApi, ControlSurface):
    """WeChat's OAuth endpoints as an ASGI app.

    Serves ``connect/oauth2/authorize``, ``connect/qrconnect``, ``sns/oauth2/access_token``,
    ``sns/userinfo``, ``sns/oauth2/refresh_token``, ``sns/auth`` and, for mini-programs,
    ``sns/jscode2session`` (codes from :meth:`issue_miniprogram_code`); for the official
    account's server APIs, ``cgi-bin/token``, ``cgi-bin/stable_token`` and the JS-SDK's
    ``cgi-bin/ticket/getticket`` (see :attr:`jsapi_ticket`); for a third-party platform
    (``component_appid``), the pushes it sends (:meth:`push_ticket`, :meth:`ticket_push`),
    ``cgi-bin/component/api_component_token`` and ``sns/oauth2/component/access_token``, with
    the authorize page taking ``component_appid`` for the ``authorizer_appids``. ``latency``
    (seconds) delays every ``sns/*`` answer; the code is used when the exchange *arrives*, as at
    WeChat, so the first of two racing exchanges wins.
    """

    appid: str = "wxemulated0000001"
    secret: str = "emulated-app-secret-0123456789ab"  # noqa: S105 - a test credential
    #: The site's website app (open platform, ``connect/qrconnect`` only).
    website_appid: str = "wxemulatedweb00001"
    website_secret: str = "emulated-website-secret-0123456789"  # noqa: S105 - a test credential
    #: More official accounts (AppID → AppSecret), for a site that serves several.
    apps: dict[str, str] = field(default_factory=dict)
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
    #: ``jscode2session``, ``token``, ``stable_token``, ``getticket``).
    calls: Counter[str] = field(default_factory=Counter)
    #: The official account's server access tokens (``cgi-bin/token``, ``cgi-bin/stable_token``).
    server_tokens: ServerTokens = field(default_factory=lambda: ServerTokens("OA_TOKEN_"))
    #: A third-party platform (open platform "component"): its appid and secret, and the
    #: message Token and EncodingAESKey its pushes are signed and encrypted with.
    component_appid: str = "wxemulatedcomp0001"
    component_secret: str = "emulated-component-secret-0123456789"  # noqa: S105 - a test credential
    component_token: str = "emulatedcomponenttoken01"  # noqa: S105 - a test credential
    component_encoding_aes_key: str = "EmulatedEncodingAESKey0123456789abcdefghijk"
    #: The official accounts that authorized the platform: its logins are on their behalf.
    authorizer_appids: tuple[str, ...] = ("wxemulatedauth0001", "wxemulatedauth0002")
    #: How long a pushed ``component_verify_ticket`` is accepted (WeChat: 12 hours).
    ticket_ttl: float = 12 * 3600.0
    #: The platform's ``component_access_token``s (a new one per ``api_component_token`` call).
    component_tokens: ServerTokens = field(default_factory=lambda: ServerTokens("COMPONENT_TOKEN_"))
    #: The JS-SDK's tickets (``cgi-bin/ticket/getticket?type=jsapi``), given for a valid
    #: server token: the same one until it expires (``jsapi_tickets.rotate()`` makes another).
    jsapi_tickets: ServerTokens = field(default_factory=lambda: ServerTokens("JSAPI_TICKET_"))

    def __post_init__(self) -> None:
        self._codes: dict[str, Code] = {}
        self._miniprogram_codes: dict[str, Code] = {}
        self._session_keys: set[str] = set()
        self._tokens: dict[str, Token] = {}
        self._refresh_tokens: dict[str, Token] = {}
        self._faults: dict[str, deque[Fault]] = {}
        #: Exchanged code → the backend key a middleware trading it holds it under: its product's
        #: namespace (``mp`` for ``jscode2session``) and the appid the exchange came with.
        self._keys: dict[str, str] = {}
        #: ``pass_ticket`` of a double-navigation page → the callback URL its reissue goes to.
        self._reissues: dict[str, str] = {}
        self._tickets: dict[str, float] = {}
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
                Route(
                    "/cgi-bin/component/api_component_token",
                    self._api_component_token,
                    methods=["POST"],
                ),
                Route("/sns/oauth2/component/access_token", self._component_access_token),
                Route("/cgi-bin/ticket/getticket", self._getticket),
                Route("/_emulator/stats", self._stats),
                Route("/_emulator/settings", self._settings, methods=["POST"]),
                Route("/_emulator/reset", self._reset, methods=["POST"]),
                Route(
                    "/_emulator/miniprogram_code", self._miniprogram_code_route, methods=["POST"]
                ),
                Route("/_emulator/push_ticket", self._push_ticket_route, methods=["POST"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._router(scope, receive, send)

    def issue_code(
        self,
        scope: str = "snsapi_base",
        user: EmulatedUser | None = None,
        *,
        openid: str | None = None,
        unionid: str | None = None,
        snapshot: bool | None = None,
        appid: str | None = None,
        component_appid: str | None = None,
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
        self._codes[code] = Code(
            who, scope, appid or self.appid, expires_at, component_appid=component_appid
        )
        return code

    def issue_miniprogram_code(
        self, user: EmulatedUser | None = None, *, appid: str | None = None
    ) -> str:
        """Issue a fresh ``wx.login()`` code for the mini-program ``appid`` (default: this
        emulator's), as WeChat does in the mini-program. It is valid once, for ``code_ttl``."""
        code = secrets.token_hex(16)
        expires_at = time.monotonic() + self.code_ttl
        self._miniprogram_codes[code] = Code(
            user or self.user, "miniprogram", appid or self.appid, expires_at
        )
        return code

    @property
    def jsapi_ticket(self) -> str | None:
        """The ``jsapi_ticket`` getticket hands out now (None before the first call, or once
        it expired): what a test checks a ``wx.config`` signature against."""
        issued = self.jsapi_tickets.issued
        if issued and self.jsapi_tickets.check(issued[-1]) == 0:
            return issued[-1]
        return None

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
        """Forget codes, tokens, tickets, counts and pending faults."""
        self._codes.clear()
        self._miniprogram_codes.clear()
        self._session_keys.clear()
        self._tokens.clear()
        self._refresh_tokens.clear()
        self._faults.clear()
        self._reissues.clear()
        self.server_tokens.revoke()
        self._reset_platform()
        self.jsapi_tickets.revoke()
        self.exchanges.clear()
        self._keys.clear()
        self.calls.clear()
