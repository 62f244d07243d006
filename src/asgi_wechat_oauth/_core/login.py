"""The login endpoint every product shares: a 302 to the provider's consent page, carrying a
signed state bound to the browser by a cookie (its nonce and ``next``).

A product says only which scopes it offers and how its authorize URL is built
(:meth:`LoginEndpoint.authorize`); parsing the query, ``next``, the callback URL and the
cookie are the same everywhere.
"""

from __future__ import annotations

import math
import re
import unicodedata
from urllib.parse import parse_qsl, unquote

from ..errors import ErrorReason, InvalidCallbackRequest
from .asgi import Scope
from .cookies import (
    base_name,
    cookie_name,
    expire_tossed,
    read_trusted,
    set_cookie,
)
from .state import MAX_NEXT_BYTES, StateSigner

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
            ErrorReason.INVALID_NEXT, f"The next path is longer than {MAX_NEXT_BYTES} bytes."
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
        ErrorReason.INVALID_NEXT,
        "The next parameter must be a path on this site, such as /profile.",
    )


def _is_local(path: str) -> bool:
    return (
        path.startswith("/")
        and not path.startswith(("//", "/\\"))
        and not any(unicodedata.category(char) in _FORBIDDEN for char in path)
    )


class LoginEndpoint:
    """Builds the answer to ``GET login_path?scope=...&next=...``; subclasses build the
    authorize URL."""

    #: The scopes ``?scope=`` may ask for.
    scopes: frozenset[str] = frozenset()

    def __init__(
        self,
        *,
        signer: StateSigner,
        callback_path: str,
        redirect_uri: str | None,
        default_scope: str,
        trust_forwarded: bool,
        cookie_name: str,
    ) -> None:
        self.signer = signer
        self.callback_path = callback_path
        self.redirect_uri = redirect_uri
        self.default_scope = default_scope
        self.trust_forwarded = trust_forwarded
        #: The login cookie's name without ``__Host-``, which it carries over https.
        self.cookie_name = base_name(cookie_name)

    def authorize(self, scope: Scope, redirect_uri: str, oauth_scope: str, state: str) -> str:
        """The provider's authorize URL for this request."""
        raise NotImplementedError

    def redirect(self, scope: Scope) -> tuple[str, str]:
        """The 302's ``Location`` and its ``Set-Cookie`` (the nonce). Raises a 400 error for a
        bad ``scope``/``next`` parameter or an unusable ``Host``."""
        params = self.params(scope)
        oauth_scope = params.get("scope") or self.default_scope
        if oauth_scope not in self.scopes:
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_SCOPE, f"scope must be one of {', '.join(sorted(self.scopes))}."
            )
        next_path = validate_next(params["next"]) if params.get("next") else None
        redirect_uri = self.redirect_uri or self.own_url(scope, self.callback_path)
        retried = params.get("retry") == "1"
        state, value = self.signer.issue(next_path, scope=oauth_scope, retried=retried)
        location = self.authorize(scope, redirect_uri, oauth_scope, state)
        return location, self.cookie(value, redirect_uri)

    def params(self, scope: Scope) -> dict[str, str]:
        """The login query (400 ``invalid_query`` when it does not decode)."""
        try:
            return dict(
                parse_qsl(
                    scope["query_string"].decode("utf-8"),
                    keep_blank_values=True,
                    errors="strict",
                    max_num_fields=16,
                )
            )
        except ValueError:
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_QUERY, "The login query string could not be read."
            ) from None

    def cookie(self, value: str, redirect_uri: str) -> str:
        """The ``Set-Cookie`` of the login cookie ``value``: over https a ``__Host-`` cookie,
        over http scoped to the callback."""
        https = redirect_uri.startswith("https://")
        return set_cookie(
            cookie_name(self.cookie_name, https=https),
            value,
            path=_path_of(redirect_uri),
            max_age=math.ceil(self.signer.max_age) + COOKIE_GRACE,
            https=https,
        )

    def is_https(self, scope: Scope) -> bool:
        """Whether this site's callback URL is https, which decides the cookies' names: the
        ``redirect_uri`` when set, else the scheme this request came by."""
        if self.redirect_uri is not None:
            return self.redirect_uri.startswith("https://")
        scheme: str = scope.get("scheme", "http")
        if self.trust_forwarded:
            for name, value in scope.get("headers", ()):
                if name == b"x-forwarded-proto":
                    scheme = _first(value.decode("latin-1")) or scheme
                    break
        return scheme == "https"

    def read_cookie(self, scope: Scope, base: str, path: str) -> tuple[str | None, list[str]]:
        """``(value, expiries)``: cookie ``base`` (``__Host-`` + ``base`` over https) when the
        request carries exactly one; with several, no value, and the ``Set-Cookie`` values
        that expire the tossed copies reaching ``path`` (this site's, under ``root_path``)."""
        https = self.is_https(scope)
        name = cookie_name(base, https=https)
        value, tossed = read_trusted(scope, name)
        if not tossed or https:
            return value, []
        if self.redirect_uri is None:
            try:
                url = self.own_url(scope, path)
            except InvalidCallbackRequest:
                return None, []
        elif path == self.callback_path:
            url = self.redirect_uri
        else:
            origin = "/".join(self.redirect_uri.split("/", 3)[:3])
            url = f"{origin}{scope.get('root_path', '')}{path}"
        host = url.split("://", 1)[-1].split("/", 1)[0]
        return None, expire_tossed(name, host, _path_of(url))

    def read_nonce(self, scope: Scope) -> tuple[str | None, list[str]]:
        """The login cookie at the callback: see :meth:`read_cookie`."""
        return self.read_cookie(scope, self.cookie_name, self.callback_path)

    def own_url(self, scope: Scope, path: str) -> str:
        """``path`` (under ``root_path``) on the scheme and host this request was sent to."""
        return f"{self.own_origin(scope)}{scope.get('root_path', '')}{path}"

    def own_origin(self, scope: Scope) -> str:
        """``scheme://host`` this request was sent to (``X-Forwarded-*`` with
        ``trust_forwarded``); a 400 ``invalid_host`` error when they cannot form one."""
        headers = {name: value.decode("latin-1") for name, value in scope.get("headers", ())}
        scheme = scope.get("scheme", "http")
        host = headers.get(b"host", "")
        if self.trust_forwarded:
            scheme = _first(headers.get(b"x-forwarded-proto")) or scheme
            host = _first(headers.get(b"x-forwarded-host")) or host
        if scheme not in ("http", "https") or not _HOST.fullmatch(host):
            raise InvalidCallbackRequest(
                ErrorReason.INVALID_HOST, "The request's Host header cannot form the callback URL."
            )
        return f"{scheme}://{host}"


def _first(value: str | None) -> str | None:
    return value.split(",")[0].strip() if value else None


def _path_of(url: str) -> str:
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    path = rest[slash:] if slash >= 0 else "/"
    return path.split("?", 1)[0] or "/"
