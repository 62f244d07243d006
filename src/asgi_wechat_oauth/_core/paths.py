"""Which requests are the middleware's: its paths, spelled with or without one trailing slash,
with or without the ASGI ``root_path`` in front."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def spellings(*paths: str | None) -> tuple[str, ...]:
    """Each path with and without one trailing slash: a framework's slash redirect (Django's
    ``APPEND_SLASH``, Starlette's ``redirect_slashes``) must come back to the middleware."""
    spelled: list[str] = []
    for path in paths:
        if path is not None:
            base = path.rstrip("/")
            spelled += [base, base + "/"] if base else ["/"]
    return tuple(spelled)


def matches(scope: Mapping[str, Any], spelled: tuple[str, ...]) -> bool:
    """Whether the request is for one of ``spelled``. Servers differ on whether
    ``scope["path"]`` includes ``root_path``, so both forms match."""
    path: str = scope["path"]
    if path in spelled:
        return True
    root_path: str = scope.get("root_path", "")
    return bool(root_path) and path.startswith(root_path) and path[len(root_path) :] in spelled
