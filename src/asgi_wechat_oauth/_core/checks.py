"""What an option's value may be, and how the environment spells it: the checks and parsers
the products' configs name in their fields' metadata (see :mod:`.options`). A check returns
the problem, naming the option, or None; a parser raises ``ValueError`` saying what the
variable must be."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from .cookies import check_cookie_name
from .pages import ErrorPages

#: The problem with ``value`` given as option ``name``, or None.
Check = Callable[[str, Any], "str | None"]
#: Reads an option from an environment variable (``ValueError`` saying what it must be).
Parse = Callable[[str], object]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


# --- reading the environment ------------------------------------------------------------------


def text(value: str) -> str:
    return value


def number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"must be a number, got {value!r}") from None


def integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be a whole number, got {value!r}") from None


def optional_integer(value: str) -> int | None:
    return None if value.lower() in ("none", "off") else integer(value)


def boolean(value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


# --- checks: each says what is wrong, naming the option -----------------------------------------


def _finite(value: object) -> TypeGuard[float]:
    # Written so that NaN fails (every comparison with it is false); bools are not numbers here.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return -math.inf < value < math.inf


def is_path(name: str, value: object) -> str | None:
    """A path of this site: one leading ``/`` (``//host`` is another site), no query or
    fragment (the path is matched as it is, never with a query)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return f"{name} must be a path starting with '/', got {value!r}"
    if "?" in value or "#" in value:
        return f"{name} must be a path without a query or fragment ('?', '#'), got {value!r}"
    return None


def is_url(name: str, value: object) -> str | None:
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        host = value.split("://", 1)[1].split("/", 1)[0]
        if host and value.isprintable() and " " not in value:
            return None
    return f"{name} must be an absolute http(s) URL"


def non_negative(name: str, value: object) -> str | None:
    return None if _finite(value) and value >= 0 else f"{name} must not be negative (and finite)"


def positive(name: str, value: object) -> str | None:
    return None if _finite(value) and value > 0 else f"{name} must be positive (and finite)"


def at_least_a_second(name: str, value: object) -> str | None:
    # States carry their issue time in whole seconds: under a second, one may be expired as it
    # is issued (and a cookie's whole-second Max-Age would be 0).
    if _finite(value) and value >= 1:
        return None
    return f"{name} must be at least 1 second (and finite)"


def whole_at_least(minimum: int, *, or_none: bool = False) -> Check:
    def check(name: str, value: object) -> str | None:
        if or_none and value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return None
        return f"{name} must be an int of at least {minimum}" + (", or None" if or_none else "")

    return check


def one_of(*choices: str) -> Check:
    said = " or ".join(map(repr, choices)) if len(choices) <= 2 else f"one of {sorted(choices)}"

    def check(name: str, value: object) -> str | None:
        return None if value in choices else f"{name} must be {said}, got {value!r}"

    return check


def cookie_name(name: str, value: object) -> str | None:
    return check_cookie_name(name, value)


def long_secret(name: str, value: object) -> str | None:
    raw = value.encode() if isinstance(value, str) else value
    if isinstance(raw, bytes) and len(raw) >= 16:
        return None
    return f"{name} must be at least 16 bytes"


def app_secrets(name: str, value: object) -> str | None:
    """AppIDs mapped to their secrets: at least one, each secret non-empty text."""
    if not isinstance(value, Mapping) or not value:
        return f"{name} must map AppIDs to their secrets, at least one"
    for appid, secret in value.items():
        if not (isinstance(appid, str) and appid and isinstance(secret, str) and secret):
            return f"{name} must map AppIDs (text) to secrets (non-empty text)"
    return None


def error_pages(name: str, value: object) -> str | None:
    if value is None or isinstance(value, ErrorPages):
        return None
    return f"{name} must be an ErrorPages or None"


def option(
    env: Parse | None = None, check: Check | None = None, *, secret: bool = False
) -> dict[str, Any]:
    """A field's metadata: read from ``{prefix}{NAME}`` with ``env`` (None: not from the
    environment), checked by ``check`` (skipped for ``None`` when ``None`` is the default),
    shown masked when ``secret``."""
    return {"env": env, "check": check, "secret": secret}


def required(*, secret: bool = False) -> dict[str, Any]:
    """A credential: text that must not be empty ("appid is required")."""
    return {"env": text, "check": None, "secret": secret, "required": True}
