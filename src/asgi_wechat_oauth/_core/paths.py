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


#: A middleware remembers the app's first this many paths, each at most this long: a flood of
#: distinct paths costs a bounded amount of memory, and no more work once the memory is full.
REMEMBERED_PATHS = 512
REMEMBERED_PATH_LENGTH = 256


def remember(paths: set[str], path: str, own: tuple[str, ...]) -> bool:
    """Add ``path``, a path of the app's, to ``paths`` unless it ends with one of ``own``
    (under a ``root_path`` it would be ours); whether there is room for more.

    A path in ``paths`` is then passed on after one set look-up, without the ``root_path``
    test (nor, under a ``root_path``, the suffix test). Paths requested often are among the
    first seen; the first ones are kept for good, so that paths never seen again (ids in
    paths, scanners) cost no work to forget."""
    if len(path) <= REMEMBERED_PATH_LENGTH and not path.endswith(own):
        paths.add(path)
    return len(paths) < REMEMBERED_PATHS


def matches(scope: Mapping[str, Any], spelled: tuple[str, ...]) -> bool:
    """Whether the request is for one of ``spelled``. Servers differ on whether
    ``scope["path"]`` includes ``root_path``, so both forms match."""
    path: str = scope["path"]
    if path in spelled:
        return True
    root_path: str = scope.get("root_path", "")
    return bool(root_path) and path.startswith(root_path) and path[len(root_path) :] in spelled
