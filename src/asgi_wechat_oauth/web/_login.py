"""The login endpoint: a redirect to the consent page of the app this browser can log in with,
with a signed state and its cookie."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from .._core.asgi import Scope
from .._core.login import LoginEndpoint as _LoginEndpoint
from .._core.login import validate_next
from .._core.state import StateSigner
from ..errors import ErrorReason, InvalidCallbackRequest
from ._authorize import SCOPES, authorize_url
from ._browsers import LoginRoute, route_login
from ._kept import is_next_id

#: ``?format=`` values: the default 302, or WxLogin's parameters as JSON.
FORMATS = frozenset({"", "wxlogin"})
#: An HTML element id for WxLogin's ``id`` (``?id=``), nothing that needs escaping.
_ELEMENT_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
DEFAULT_WXLOGIN_ID = "wechat-login"


@dataclass(frozen=True)
class LoginStart:
    """A login that goes to WeChat: its authorize URL, the nonce cookie, and what built them."""

    location: str
    cookie: str
    route: LoginRoute
    redirect_uri: str
    state: str


@dataclass(frozen=True)
class LoginQuery:
    """``GET login_path``'s parameters, checked."""

    scope: str | None
    next: str | None
    retried: bool
    format: str
    element_id: str
    #: ``?next_id=``: a QR page's link, whose ``next`` the backend keeps (see :mod:`._kept`).
    next_id: str | None = None


class LoginEndpoint(_LoginEndpoint):
    """Builds the answer to ``GET login_path?scope=...&next=...``: which app this browser logs
    in with (:func:`route_login`), its authorize URL, the signed state and its cookie."""

    scopes = SCOPES

    def __init__(
        self,
        *,
        appid: str,
        signer: StateSigner,
        callback_path: str,
        login_path: str,
        redirect_uri: str | None,
        default_scope: str,
        trust_forwarded: bool,
        authorize_base_url: str,
        cookie_name: str,
        connect_redirect: bool,
        website_appid: str | None = None,
    ) -> None:
        super().__init__(
            signer=signer,
            callback_path=callback_path,
            redirect_uri=redirect_uri,
            default_scope=default_scope,
            trust_forwarded=trust_forwarded,
            cookie_name=cookie_name,
        )
        self.appid = appid
        self.website_appid = website_appid
        self.login_path = login_path
        self.authorize_base_url = authorize_base_url
        self.connect_redirect = connect_redirect

    def read_query(self, scope: Scope) -> LoginQuery:
        """The checked query; raises a 400 error for a bad ``scope``/``next``/``format``/``id``."""
        params = self.params(scope)
        asked = params.get("scope") or None
        if asked is not None and asked not in SCOPES:
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_SCOPE, f"scope must be one of {', '.join(sorted(SCOPES))}."
            )
        output = params.get("format", "")
        element_id = params.get("id") or DEFAULT_WXLOGIN_ID
        if output not in FORMATS or not _ELEMENT_ID.fullmatch(element_id):
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_QUERY, "format may only be wxlogin, and id an HTML element id."
            )
        next_id = params.get("next_id") or None
        if next_id is not None and (params.get("next") or not is_next_id(next_id)):
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_QUERY, "next_id must be a QR page's id, and comes without next."
            )
        return LoginQuery(
            scope=asked,
            next=validate_next(params["next"]) if params.get("next") else None,
            retried=params.get("retry") == "1",
            format=output,
            element_id=element_id,
            next_id=next_id,
        )

    def route(self, scope: Scope, query: LoginQuery) -> LoginRoute | None:
        """The app this browser logs in with; None: show the QR page of the login link."""
        return route_login(
            scope,
            query.scope,
            appid=self.appid,
            website_appid=self.website_appid,
            default_scope=self.default_scope,
        )

    def start(
        self, scope: Scope, query: LoginQuery, route: LoginRoute, handoff: str | None = None
    ) -> LoginStart:
        """Sign a state for ``route`` (for a desktop's ``handoff``, when given) and build its
        authorize URL and cookie. Raises a 400 error for an unusable ``Host``."""
        redirect_uri = self.redirect_uri or self.own_url(scope, self.callback_path)
        state, value = self.signer.issue(
            query.next,
            scope=route.scope,
            retried=query.retried,
            website_app=route.website_app,
            handoff=handoff,
        )
        location = authorize_url(
            route.appid,
            redirect_uri,
            scope=route.scope,
            state=state,
            connect_redirect=self.connect_redirect,
            base_url=self.authorize_base_url,
        )
        return LoginStart(location, self.cookie(value, redirect_uri), route, redirect_uri, state)

    def link(self, scope: Scope, query: LoginQuery, next_id: str | None = None) -> str:
        """This login's own absolute URL (under ``root_path``, with its ``next`` and scope), for
        a phone to open in WeChat: on the ``redirect_uri``'s origin when that is set. With
        ``next_id`` (or the query's own), the link names the ``next`` the backend keeps under
        that id instead of holding it: a short link, whatever the ``next``."""
        next_id = next_id or query.next_id
        params = {"next_id": next_id} if next_id else {"next": query.next} if query.next else {}
        if query.scope:
            params["scope"] = query.scope
        if self.redirect_uri is not None:
            origin = "/".join(self.redirect_uri.split("/", 3)[:3])
            url = f"{origin}{scope.get('root_path', '')}{self.login_path}"
        else:
            url = self.own_url(scope, self.login_path)
        return f"{url}?{urlencode(params)}" if params else url


def wxlogin_params(start: LoginStart, element_id: str) -> dict[str, object]:
    """The options of WeChat's ``WxLogin`` JS for a started website login: the QR panel in the
    site's own page. ``redirect_uri`` is URL-encoded, as ``WxLogin`` expects it."""
    return {
        "self_redirect": False,
        "id": element_id,
        "appid": start.route.appid,
        "scope": start.route.scope,
        "redirect_uri": quote(start.redirect_uri, safe=""),
        "state": start.state,
    }
