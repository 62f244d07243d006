"""The app a request logs in with, when one middleware serves several.

A site that serves several official accounts (one per host, say), or a third-party platform
that logs users in on behalf of many, picks the app per request. Each app gets a
:class:`Site` of its own: its state signer (a key derived for that appid, so a state issued
for one app never verifies at another), its login endpoint (its appid in the consent link) and
its key prefix (its codes never share a flight with another app's). :class:`Sites` resolves
the request's appid once and keeps the sites it built, a bounded number of them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ErrorReason, UnknownApp
from .asgi import Scope
from .state import StateSigner

#: Picks the request's appid (``None``: this site has no app for the request).
AppResolver = Callable[[Scope], "str | None"]
#: Sites kept by a middleware whose apps are not listed up front (a platform's authorizers).
MAX_SITES = 4096
#: The longest appid a resolver may name (WeChat's are 18 characters).
_MAX_APPID = 64


@dataclass(frozen=True)
class Site:
    """One app the middleware logs in with."""

    appid: str
    signer: StateSigner
    #: The product's login endpoint for this app.
    login: Any
    #: Prepended to a code before it is hashed into a flight key.
    key_prefix: bytes


def signer_for(key: bytes, appid: str, *, max_age: float) -> StateSigner:
    """The state signer of ``appid``, its key derived from the middleware's ``key``."""
    derived = hmac.new(key, b"asgi-wechat-oauth/site/v1:" + appid.encode(), hashlib.sha256)
    return StateSigner(derived.digest(), max_age=max_age)


def is_appid(value: object) -> bool:
    """Whether a resolver's answer can name an app: letters and digits, as WeChat's are
    (nothing that could change a key, a link or a log line)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_APPID
        and value.isascii()
        and value.isalnum()
    )


class Sites:
    """The request's :class:`Site`: ``resolve(scope)`` names its appid, ``build(appid)`` makes
    the site the first time (``None``: no such app here). A name no app has is a 404
    ``unknown_app``, before anything else happens."""

    def __init__(
        self,
        resolve: AppResolver,
        build: Callable[[str], Site | None],
        *,
        limit: int = MAX_SITES,
    ) -> None:
        self._resolve = resolve
        self._build = build
        self._limit = limit
        self._sites: OrderedDict[str, Site] = OrderedDict()

    def for_request(self, scope: Scope) -> Site:
        appid = self._resolve(scope)
        site = self._sites.get(appid) if isinstance(appid, str) else None
        if site is not None:
            return site
        if is_appid(appid):
            assert isinstance(appid, str)
            site = self._build(appid)
        if site is None:
            raise UnknownApp(
                ErrorReason.UNKNOWN_APP, "This site has no WeChat login for this address."
            )
        self._sites[appid] = site  # type: ignore[index]
        if len(self._sites) > self._limit:
            self._sites.popitem(last=False)
        return site


def one_app(appid: str) -> AppResolver:
    """The resolver of a middleware with one app."""

    def resolve(scope: Scope) -> str:
        return appid

    return resolve
