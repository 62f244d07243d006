"""The cookies the middleware trusts, and why a tossed one never wins.

A sibling subdomain (user content, a compromised marketing site) can set a cookie for the
parent domain under the name of one of ours: "cookie tossing". The browser then sends both, and
nothing in the ``Cookie`` header says which one this site set (a parser that keeps the last
duplicate, as most do, trusts whichever the browser happened to send last). Three rules:

- **On https every cookie is named with the** ``__Host-`` **prefix** (``Secure``, ``Path=/``,
  no ``Domain``): browsers refuse such a cookie from any other host, so it cannot be tossed.
  Plain http has no such defence, which is one more reason to serve logins over https.
- **A name sent more than once is not trusted at all**: the request is treated as carrying
  none, so neither copy can log anyone in, and the answer expires the tossed copies (on every
  parent domain, at every path that reaches the request), so that the user's next login works.
- **Every value is authenticated**: the login nonce by the signed state's hash of it, the
  login counter by an HMAC of its own. A forged value is worth nothing.
"""

from __future__ import annotations

import ipaddress
import logging

from .asgi import Scope

logger = logging.getLogger("asgi_wechat_oauth")

#: Browsers accept a cookie whose name starts with this only if it is ``Secure``, ``Path=/``
#: and has no ``Domain``: set by this very host over https, and by no other.
HOST_PREFIX = "__Host-"


def check_cookie_name(option: str, name: object) -> str | None:
    """The problem with cookie name ``name`` given as ``option`` (None when it is fine): a
    plain ASCII identifier, with or without the ``__Host-`` prefix."""
    base = base_name(name) if isinstance(name, str) else ""
    if not (base.isascii() and base.isidentifier()):
        return f"{option} must be a plain ASCII name (the __Host- prefix is allowed)"
    return None


def base_name(name: str) -> str:
    """``name`` without the ``__Host-`` prefix: the prefix follows the scheme, not the option."""
    return name[len(HOST_PREFIX) :] if name.startswith(HOST_PREFIX) else name


def cookie_name(base: str, *, https: bool) -> str:
    """The name a cookie goes by: ``__Host-`` + ``base`` over https, ``base`` otherwise."""
    return HOST_PREFIX + base if https else base


def cookie_values(scope: Scope, name: str) -> list[str]:
    """Every value of cookie ``name`` the request carries, in the order sent (every ``Cookie``
    header, every pair), parsed as leniently as Starlette parses cookies."""
    values = []
    for header, raw in scope.get("headers", ()):
        if header != b"cookie":
            continue
        for pair in raw.decode("latin-1").split(";"):
            key, sep, value = pair.partition("=")
            if not sep:
                key, value = "", key
            if key.strip() == name:
                values.append(value.strip())
    return values


def read_trusted(scope: Scope, name: str) -> tuple[str | None, bool]:
    """``(value, tossed)``: the value of cookie ``name`` when the request carries exactly one
    (and it is not empty); with several, ``(None, True)``: no copy is trusted."""
    values = cookie_values(scope, name)
    if len(values) > 1:
        logger.warning(
            "asgi_wechat_oauth.cookie_tossed name=%s copies=%d: another site under the same "
            "parent domain set a cookie of this name; none of the copies is trusted",
            name,
            len(values),
        )
        return None, True
    return (values[0] or None) if values else None, False


def set_cookie(name: str, value: str, *, path: str, max_age: int, https: bool) -> str:
    """A ``Set-Cookie`` value for one of ours: HttpOnly, SameSite=Lax (the callback is a
    cross-site navigation from WeChat), and over https ``__Host-`` rules: Secure, ``Path=/``."""
    if https:
        path = "/"
    cookie = f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    return cookie + "; Secure" if https else cookie


def expire_tossed(name: str, host: str, path: str) -> list[str]:
    """``Set-Cookie`` values that expire copies of cookie ``name`` tossed from a parent domain
    of ``host`` at any path that reaches ``path``. This site never sets ``Domain``, so no copy
    with one is its own; its own (host-only) copy is replaced by the next login."""
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else ""
    try:
        ipaddress.ip_address(hostname)
        return []  # an address has no parent domains
    except ValueError:
        pass
    labels = hostname.lower().rstrip(".").split(".")
    # Every parent but the top-level domain (browsers refuse public suffixes by themselves).
    domains = [".".join(labels[index:]) for index in range(1, len(labels) - 1)]
    paths = ["/"]
    for index, char in enumerate(path):
        if char == "/" and index:
            paths += [path[:index], path[: index + 1]]
    if path != "/":
        paths.append(path)
    return [
        f"{name}=; Domain={domain}; Path={cookie_path}; Max-Age=0; HttpOnly; SameSite=Lax"
        for domain in domains
        for cookie_path in dict.fromkeys(paths)
    ]
