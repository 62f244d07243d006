"""The login endpoint: a redirect to WeChat's consent page with a signed state and its cookie."""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qsl

from starlette.requests import cookie_parser

from .._core.asgi import Scope
from .._core.errors import InvalidCallbackRequest
from .._core.state import StateSigner
from ._authorize import SCOPES, authorize_url

#: ``host`` or ``host:port``, a bracketed IPv6 address allowed; nothing that could smuggle a path.
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
#: A same-site path: one leading slash, printable ASCII, no backslash anywhere.
_NEXT = re.compile(r"/(?![/\\])[\x21-\x5b\x5d-\x7e]*")


def validate_next(next_path: str) -> str:
    """Accept only a relative path on this site: no ``//host``, ``/\\host``, scheme or controls
    (an open redirect is what a ``next`` parameter is usually abused for)."""
    if not _NEXT.fullmatch(next_path):
        raise InvalidCallbackRequest(
            "invalid_next", "The next parameter must be a path on this site, such as /profile."
        )
    return next_path


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
                    scope["query_string"].decode("ascii"),
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
        state, nonce = self.signer.issue(next_path, scope=wechat_scope, retried=retried)
        location = authorize_url(
            self.appid,
            redirect_uri,
            scope=wechat_scope,
            state=state,
            connect_redirect=self.connect_redirect,
            base_url=self.authorize_base_url,
        )
        cookie = (
            f"{self.cookie_name}={nonce}; Path={_path_of(redirect_uri)}; "
            f"Max-Age={math.ceil(self.signer.max_age)}; HttpOnly; SameSite=Lax"
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
