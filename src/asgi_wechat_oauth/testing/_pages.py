"""The WeChat emulator's authorize pages: ``connect/oauth2/authorize`` (the official account's
page, in the WeChat app) and ``connect/qrconnect`` (QR login, ending in a desktop browser).

Consent is given at once: the page redirects to the callback with a fresh code and the state.
With ``double_navigation`` on, the official account's page answers as the WeChat in-app browser
plays it, sending the callback twice with the same code, the first request cut off (see
:meth:`AuthorizePages._wechat_browser_page`).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections import Counter
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from ._base import EmulatorBase

AUTHORIZE_SCOPES = frozenset({"snsapi_base", "snsapi_userinfo"})
QRCONNECT_SCOPES = frozenset({"snsapi_login"})

#: The WeChat browser's duplicate, as traced: the first callback is aborted a few milliseconds
#: after it starts, and the reissued authorize request follows 19 ms after the first navigation.
ABORT_AFTER_MS = 5
REISSUE_AFTER_MS = 19
#: Consent pages whose reissue is still expected; older ones are forgotten beyond this many.
_MAX_PENDING_REISSUES = 1024


class AuthorizePages(EmulatorBase):
    """The authorize pages of :class:`~asgi_wechat_oauth.testing.WeChatEmulator`."""

    # What the pages use of the emulator.
    appid: str
    website_appid: str
    apps: dict[str, str]
    component_appid: str
    authorizer_appids: tuple[str, ...]
    double_navigation: bool
    calls: Counter[str]
    #: ``pass_ticket`` of a double-navigation page → the callback URL its reissue goes to.
    _reissues: dict[str, str]

    def issue_code(
        self,
        scope: str = "snsapi_base",
        *,
        appid: str | None = None,
        component_appid: str | None = None,
    ) -> str:
        raise NotImplementedError

    async def _authorize(self, request: Request) -> Response:
        # Only the official-account page opens in the WeChat in-app browser; QR login
        # (qrconnect) ends in the user's desktop browser, which sends the callback once. A
        # website app has no official-account page.
        if "component_appid" in request.query_params:
            # A third-party platform asks on behalf of an account that authorized it.
            if request.query_params["component_appid"] != self.component_appid:
                return PlainTextResponse("component_appid invalid (emulator)", status_code=400)
            return self._consent(
                request,
                AUTHORIZE_SCOPES,
                set(self.authorizer_appids),
                in_wechat=self.double_navigation,
                component_appid=self.component_appid,
            )
        return self._consent(
            request, AUTHORIZE_SCOPES, {self.appid, *self.apps}, in_wechat=self.double_navigation
        )

    async def _qrconnect(self, request: Request) -> Response:
        # ``appid`` too: a site whose only app is a website app passes it as ``appid``.
        apps = {self.appid, self.website_appid}
        return self._consent(request, QRCONNECT_SCOPES, apps, in_wechat=False)

    def _consent(
        self,
        request: Request,
        scopes: frozenset[str],
        apps: set[str],
        *,
        in_wechat: bool,
        component_appid: str | None = None,
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
        code = self.issue_code(params["scope"], appid=appid, component_appid=component_appid)
        query = {"code": code, "state": params.get("state", "")}
        if component_appid is not None:
            query["appid"] = appid  # which of the platform's accounts the code is for
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
