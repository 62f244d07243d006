"""Links to the login endpoint, built from the request so that they cannot be built wrong."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from ._authorize import SCOPES

#: The scope key under which the middleware tells the app its ``login_path``.
LOGIN_PATH_KEY = "wechat_oauth.login_path"


class HasScope(Protocol):
    """A framework's request object (Starlette, FastAPI, Django, Litestar, Quart)."""

    @property
    def scope(self) -> Any: ...


def login_url(
    request_or_scope: HasScope | Mapping[str, Any],
    next: str | None = None,
    scope: str | None = None,
) -> str:
    """The link to the middleware's login endpoint for this request: ``root_path`` (the
    prefix a proxy or mount serves the app under) + ``login_path``, with ``next`` and ``scope``
    URL-encoded. A ``next`` without the ``root_path`` prefix is resolved under it, so that the
    user comes back to the page behind the same prefix.

    Raises ``LookupError`` when no :class:`WeChatOAuthMiddleware` with a ``login_path`` is in
    front of the request, and ``ValueError`` for a ``next`` that is not a path or an unknown
    ``scope``."""
    asgi_scope: Mapping[str, Any] = (
        request_or_scope if isinstance(request_or_scope, Mapping) else request_or_scope.scope
    )
    login_path = asgi_scope.get(LOGIN_PATH_KEY)
    if login_path is None:
        raise LookupError(
            "login_url() needs WeChatOAuthMiddleware with login_path in front of this request"
        )
    root_path: str = asgi_scope.get("root_path", "")
    query: dict[str, str] = {}
    if next is not None:
        if not next.startswith("/") or next.startswith("//"):
            raise ValueError(f"next must be a path on this site, such as /profile, got {next!r}")
        if root_path and next != root_path and not next.startswith(root_path + "/"):
            next = root_path + next
        query["next"] = next
    if scope is not None:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {sorted(SCOPES)}, got {scope!r}")
        query["scope"] = scope
    url = f"{root_path}{login_path}"
    return f"{url}?{urlencode(query, quote_via=quote, safe='/')}" if query else url
