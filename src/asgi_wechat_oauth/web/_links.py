"""Links to the login endpoint, built from the request so that they cannot be built wrong."""

from __future__ import annotations

import os
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
    front of the request (a WSGI request never has one: the error says how to serve the app
    over ASGI), and ``ValueError`` for a ``next`` that is not a path or an unknown
    ``scope``."""
    asgi_scope = _asgi_scope(request_or_scope)
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


def _asgi_scope(request_or_scope: object) -> Mapping[str, Any]:
    """The request's ASGI scope. A WSGI request has none (Django's ``manage.py runserver``,
    gunicorn's sync workers): it went around the middleware, which only an ASGI server runs."""
    if isinstance(request_or_scope, Mapping):
        return request_or_scope
    scope = getattr(request_or_scope, "scope", None)
    if isinstance(scope, Mapping):
        return scope
    environ = getattr(request_or_scope, "environ", None)
    if isinstance(environ, Mapping) and "wsgi.version" in environ:
        raise LookupError(
            "login_url() got a WSGI request: this app is served by a WSGI server (Django's "
            "manage.py runserver, or gunicorn without an ASGI worker), which never runs "
            "WeChatOAuthMiddleware. Serve the ASGI application with an ASGI server instead, "
            f"such as uvicorn: {_serve_command()}"
        )
    raise TypeError(
        "login_url() takes a request with an ASGI scope (Starlette, FastAPI, Django under "
        f"ASGI, Litestar, Quart) or the scope itself, not {type(request_or_scope).__name__}"
    )


def _serve_command() -> str:
    """``uvicorn <project>.asgi:application``, with Django's project when its settings say it."""
    settings = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    project, _, name = settings.rpartition(".")
    if name == "settings" and project:
        return f"uvicorn {project}.asgi:application"
    return "uvicorn mysite.asgi:application (your project's asgi.py, with its application)"
