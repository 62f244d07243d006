"""The login endpoint: a redirect to the consent page of the app this browser can log in with,
with a signed state and its cookie."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode

from starlette.requests import cookie_parser

from .._core.asgi import Scope
from .._core.errors import InvalidCallbackRequest
from .._core.state import MAX_NEXT_BYTES, StateSigner
from ._authorize import SCOPES, authorize_url
from ._browsers import LoginRoute, route_login

#: ``host`` or ``host:port``, a bracketed IPv6 address allowed; nothing that could smuggle a path.
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
#: Characters no redirect target holds: controls (browsers drop tabs and newlines from URLs,
#: which can turn ``/\t/host`` into ``//host``), format characters, line separators, surrogates.
_FORBIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: Levels of percent-decoding an app or proxy might apply before using ``next``.
_MAX_DECODES = 3
#: Seconds the login cookie outlives its state, so that an expired login can still be started
#: again with its ``next`` (the cookie proves nothing once the state has expired).
COOKIE_GRACE = 86_400


def validate_next(next_path: str) -> str:
    """Accept only a path on this site, up to 2,000 bytes, any query, non-ASCII included.

    An open redirect is what a ``next`` parameter is usually abused for, and apps and proxies
    decode: the value and each of its percent-decoded forms must start with one ``/`` not
    followed by another ``/`` or ``\\``, and hold no control characters; the value itself holds
    no backslash. Returned unchanged, so that it round-trips exactly."""
    if len(next_path.encode("utf-8", "surrogatepass")) > MAX_NEXT_BYTES:
        raise InvalidCallbackRequest(
            "invalid_next", f"The next path is longer than {MAX_NEXT_BYTES} bytes."
        )
    form = "" if "\\" in next_path else next_path
    for _ in range(_MAX_DECODES + 1):
        if not _is_local(form):
            break
        decoded = unquote(form)
        if decoded == form:
            return next_path
        form = decoded
    raise InvalidCallbackRequest(
        "invalid_next", "The next parameter must be a path on this site, such as /profile."
    )


def _is_local(path: str) -> bool:
    return (
        path.startswith("/")
        and not path.startswith(("//", "/\\"))
        and not any(unicodedata.category(char) in _FORBIDDEN for char in path)
    )


def read_cookie(scope: Scope, name: str) -> str | None:
    """The value of cookie ``name``, parsed as leniently as Starlette does."""
    for header, value in scope.get("headers", ()):
        if header == b"cookie":
            found = cookie_parser(value.decode("latin-1")).get(name)
            if found:
                return found
    return None


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


class LoginEndpoint:
    """Builds the answer to ``GET login_path?scope=...&next=...``: which app this browser logs
    in with (:func:`route_login`), its authorize URL, the signed state and its cookie."""

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
        self.appid = appid
        self.website_appid = website_appid
        self.signer = signer
        self.callback_path = callback_path
        self.login_path = login_path
        self.redirect_uri = redirect_uri
        self.default_scope = default_scope
        self.trust_forwarded = trust_forwarded
        self.authorize_base_url = authorize_base_url
        self.cookie_name = cookie_name
        self.connect_redirect = connect_redirect

    def read_query(self, scope: Scope) -> LoginQuery:
        """The checked query; raises a 400 error for a bad ``scope``/``next``/``format``/``id``."""
        try:
            params = dict(
                parse_qsl(
                    scope["query_string"].decode("utf-8"),
                    keep_blank_values=True,
                    errors="strict",
                    max_num_fields=16,
                )
            )
        except ValueError:
            raise InvalidCallbackRequest(
                "invalid_query", "The login query string could not be read."
            ) from None
        asked = params.get("scope") or None
        if asked is not None and asked not in SCOPES:
            raise InvalidCallbackRequest(
                "invalid_scope", f"scope must be one of {', '.join(sorted(SCOPES))}."
            )
        output = params.get("format", "")
        element_id = params.get("id") or DEFAULT_WXLOGIN_ID
        if output not in FORMATS or not _ELEMENT_ID.fullmatch(element_id):
            raise InvalidCallbackRequest(
                "invalid_query", "format may only be wxlogin, and id an HTML element id."
            )
        return LoginQuery(
            scope=asked,
            next=validate_next(params["next"]) if params.get("next") else None,
            retried=params.get("retry") == "1",
            format=output,
            element_id=element_id,
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

    def start(self, scope: Scope, query: LoginQuery, route: LoginRoute) -> LoginStart:
        """Sign a state for ``route`` and build its authorize URL and cookie. Raises a 400
        error for an unusable ``Host``."""
        redirect_uri = self.redirect_uri or self.own_url(scope, self.callback_path)
        state, value = self.signer.issue(
            query.next, scope=route.scope, retried=query.retried, website_app=route.website_app
        )
        location = authorize_url(
            route.appid,
            redirect_uri,
            scope=route.scope,
            state=state,
            connect_redirect=self.connect_redirect,
            base_url=self.authorize_base_url,
        )
        cookie = (
            f"{self.cookie_name}={value}; Path={_path_of(redirect_uri)}; "
            f"Max-Age={int(self.signer.max_age) + COOKIE_GRACE}; HttpOnly; SameSite=Lax"
        )
        if redirect_uri.startswith("https://"):
            cookie += "; Secure"
        return LoginStart(location, cookie, route, redirect_uri, state)

    def link(self, scope: Scope, query: LoginQuery) -> str:
        """This login's own absolute URL (under ``root_path``, with its scope and ``next``), for
        a phone to open in WeChat: on the ``redirect_uri``'s origin when that is set."""
        params = {"next": query.next} if query.next else {}
        if query.scope:
            params["scope"] = query.scope
        if self.redirect_uri is not None:
            origin = "/".join(self.redirect_uri.split("/", 3)[:3])
            url = f"{origin}{scope.get('root_path', '')}{self.login_path}"
        else:
            url = self.own_url(scope, self.login_path)
        return f"{url}?{urlencode(params)}" if params else url

    def own_url(self, scope: Scope, path: str) -> str:
        """``path`` (under ``root_path``) on the host this request was sent to."""
        headers = {name: value.decode("latin-1") for name, value in scope.get("headers", ())}
        scheme = scope.get("scheme", "http")
        host = headers.get(b"host", "")
        if self.trust_forwarded:
            scheme = _first(headers.get(b"x-forwarded-proto")) or scheme
            host = _first(headers.get(b"x-forwarded-host")) or host
        if scheme not in ("http", "https") or not _HOST.fullmatch(host):
            raise InvalidCallbackRequest(
                "invalid_host", "The request's Host header cannot form the callback URL."
            )
        return f"{scheme}://{host}{scope.get('root_path', '')}{path}"


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


def _first(value: str | None) -> str | None:
    return value.split(",")[0].strip() if value else None


def _path_of(url: str) -> str:
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    path = rest[slash:] if slash >= 0 else "/"
    return path.split("?", 1)[0] or "/"
