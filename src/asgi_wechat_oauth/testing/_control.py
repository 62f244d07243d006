"""The WeChat emulator's control surface, for tests that run it in another process:
``GET /_emulator/stats``, ``POST /_emulator/settings``, ``POST /_emulator/reset``,
``POST /_emulator/miniprogram_code`` and ``POST /_emulator/push_ticket?url=`` (a third-party
platform's ticket push, in ``_platform``) do over HTTP what a test in the same process calls.
The platform's counters are in ``stats``: ``calls["ticket_push"]``,
``calls["api_component_token"]``, ``calls["component_access_token"]``, and its codes in
``exchanges``."""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._base import EmulatorBase
from ._faults import Fault
from ._users import EmulatedUser

_T = TypeVar("_T")

#: The endpoints whose answers a fault can spoil (``endpoint=``).
FAULT_ENDPOINTS = (
    "access_token",
    "refresh_token",
    "userinfo",
    "auth",
    "token",
    "stable_token",
    "jscode2session",
    "api_component_token",
    "component_access_token",
    "getticket",
)
#: What ``POST /_emulator/settings`` takes, and what each setting is.
SETTINGS = {
    "latency": "seconds before each answer, such as 0.5",
    "double_navigation": "1 or 0: the consent page navigates to the callback twice, as "
    "WeChat's browser does",
    "snapshot": "1 or 0: the user logs in in snapshot (preview) mode",
    "fault": f"spoils the next answers: one of {', '.join(f.value for f in Fault)}",
    "count": "how many answers the fault spoils (1)",
    "endpoint": f"whose answers the fault spoils: one of {', '.join(FAULT_ENDPOINTS)} "
    "(access_token)",
}


class ControlSurface(EmulatorBase):
    """The ``/_emulator/*`` routes of :class:`~asgi_wechat_oauth.testing.WeChatEmulator`."""

    # What the control surface uses of the emulator.
    latency: float
    double_navigation: bool
    user: EmulatedUser
    calls: Counter[str]

    def inject_fault(
        self, fault: Fault | str, *, count: int = 1, endpoint: str = "access_token"
    ) -> None:
        raise NotImplementedError

    def issue_miniprogram_code(self) -> str:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    async def _stats(self, request: Request) -> Response:
        """``GET /_emulator/stats``: exchanges per code, calls per endpoint."""
        return JSONResponse(
            {
                "exchanges": dict(self.exchanges),
                "calls": dict(self.calls),
                "total_exchanges": self.total_exchanges,
                "double_navigation": self.double_navigation,
            }
        )

    async def _settings(self, request: Request) -> Response:
        """``POST /_emulator/settings?latency=0.5&fault=busy&count=1&endpoint=access_token``,
        ``double_navigation=1`` (or ``0``) to switch the WeChat browser's behaviour, and
        ``snapshot=1`` (or ``0``) to log the user in in snapshot mode. A name or value it does
        not know: 400, saying which, with every setting listed (:data:`SETTINGS`)."""
        params = request.query_params
        try:
            known_names(params, SETTINGS)
            latency = setting(params, "latency", seconds)
            double = setting(params, "double_navigation", flag)
            snapshot = setting(params, "snapshot", flag)
            fault = setting(params, "fault", fault_named)
            count = setting(params, "count", positive_count) or 1
            endpoint = setting(params, "endpoint", one_of(FAULT_ENDPOINTS)) or "access_token"
        except BadSettings as exc:
            return bad_settings(exc, SETTINGS)
        if latency is not None:
            self.latency = latency
        if double is not None:
            self.double_navigation = double
        if snapshot is not None:
            self.user = replace(self.user, snapshot=snapshot)
        if fault is not None:
            self.inject_fault(fault, count=count, endpoint=endpoint)
        return JSONResponse({"latency": self.latency, "double_navigation": self.double_navigation})

    async def _reset(self, request: Request) -> Response:
        """``POST /_emulator/reset``: forget codes, tokens, counts and faults."""
        self.reset()
        return JSONResponse({"ok": True})

    async def _miniprogram_code_route(self, request: Request) -> Response:
        """``POST /_emulator/miniprogram_code``: ``{"code": ...}``, as ``wx.login()`` gives."""
        return JSONResponse({"code": self.issue_miniprogram_code()})


class BadSettings(ValueError):
    """A setting the control surface does not know, or a value it cannot take."""


def known_names(params: Mapping[str, str], settings: Mapping[str, str]) -> None:
    """Refuse a setting not in ``settings``, with the one probably meant."""
    for name in params:
        if name not in settings:
            close = difflib.get_close_matches(name, list(settings), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise BadSettings(f"unknown setting {name!r}{hint}")


def setting(params: Mapping[str, str], name: str, parse: Callable[[str], _T]) -> _T | None:
    """Setting ``name`` parsed, None when not given; :class:`BadSettings` names it and its
    value when ``parse`` refuses it."""
    if name not in params:
        return None
    try:
        return parse(params[name])
    except ValueError as exc:
        raise BadSettings(f"{name}={params[name]!r}: {exc}") from None


def bad_settings(exc: BadSettings, settings: Mapping[str, str]) -> JSONResponse:
    """400: what was wrong, and every setting with what it takes."""
    body = {"error": "bad_settings", "message": str(exc), "settings": dict(settings)}
    return JSONResponse(body, status_code=400)


def seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ValueError("not a number of seconds (0 or more)")
    return number


def positive_count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError("not a whole number of at least 1")
    return number


def one_of(choices: Collection[str]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"not one of {', '.join(choices)}")
        return value

    return parse


def fault_named(value: str) -> Fault:
    try:
        return Fault(value)
    except ValueError:
        raise ValueError(f"not one of {', '.join(f.value for f in Fault)}") from None


def errcode(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError("not an errcode (a whole number, such as 60020)") from None


def flag(value: str) -> bool:
    """A boolean control parameter: ``1``/``true``/``on`` or ``0``/``false``/``off``."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "on", "yes"):
        return True
    if lowered in ("0", "false", "off", "no"):
        return False
    raise ValueError("not a boolean (1/0, true/false, on/off, yes/no)")
