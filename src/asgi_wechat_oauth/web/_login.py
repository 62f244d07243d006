"""The login endpoint: a redirect to WeChat's consent page with a signed state and its cookie."""

from __future__ import annotations

import math
import re
import unicodedata
from urllib.parse import parse_qsl, unquote

from starlette.requests import cookie_parser

from .._core.asgi import Scope
from .._core.errors import InvalidCallbackRequest
from .._core.state import MAX_NEXT_BYTES, StateSigner
from ._authorize import SCOPES, authorize_url

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


class LoginEndpoint:
    """Builds the answer to ``GET login_path?scope=...&next=...``."""

    def __init__(
        self,
        *,
        appid: str,
        signer: StateSigner,
        callback_path: str,
        redirect_uri: str | None,
        default_scope: str,
        trust_forwarded: bool,
        authorize_base_url: str,
        cookie_name: str,
        connect_redirect: bool,
    ) -> None:
        self.appid = appid
        self.signer = signer
        self.callback_path = callback_path
        self.redirect_uri = redirect_uri
        self.default_scope = default_scope
        self.trust_forwarded = trust_forwarded
        self.authorize_base_url = authorize_base_url
        self.cookie_name = cookie_name
        self.connect_redirect = connect_redirect

    def redirect(self, scope: Scope) -> tuple[str, str]:
        """The 302's ``Location`` and its ``Set-Cookie`` (the nonce). Raises a 400 error for a
        bad ``scope``/``next`` parameter or an unusable ``Host``."""
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
        wechat_scope = params.get("scope") or self.default_scope
        if wechat_scope not in SCOPES:
            raise InvalidCallbackRequest(
                "invalid_scope", f"scope must be one of {', '.join(sorted(SCOPES))}."
            )
        next_path = validate_next(params["next"]) if params.get("next") else None
        redirect_uri = self.redirect_uri or self._own_callback_url(scope)
        retried = params.get("retry") == "1"
        state, value = self.signer.issue(next_path, scope=wechat_scope, retried=retried)
        location = authorize_url(
            self.appid,
            redirect_uri,
            scope=wechat_scope,
            state=state,
            connect_redirect=self.connect_redirect,
            base_url=self.authorize_base_url,
        )
        cookie = (
            f"{self.cookie_name}={value}; Path={_path_of(redirect_uri)}; "
            f"Max-Age={math.ceil(self.signer.max_age) + COOKIE_GRACE}; HttpOnly; SameSite=Lax"
        )
        if redirect_uri.startswith("https://"):
            cookie += "; Secure"
        return location, cookie

    def _own_callback_url(self, scope: Scope) -> str:
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
        return f"{scheme}://{host}{scope.get('root_path', '')}{self.callback_path}"


def _first(value: str | None) -> str | None:
    return value.split(",")[0].strip() if value else None


def _path_of(url: str) -> str:
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    path = rest[slash:] if slash >= 0 else "/"
    return path.split("?", 1)[0] or "/"
