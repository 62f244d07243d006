"""The WeChat emulator's control surface, for tests that run it in another process:
``GET /_emulator/stats``, ``POST /_emulator/settings``, ``POST /_emulator/reset`` and
``POST /_emulator/miniprogram_code`` do over HTTP what a test in the same process calls."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ._base import EmulatorBase
from ._faults import Fault
from ._users import EmulatedUser


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
        ``snapshot=1`` (or ``0``) to log the user in in snapshot mode."""
        params = request.query_params
        try:
            if "latency" in params:
                self.latency = max(0.0, float(params["latency"]))
            if "double_navigation" in params:
                self.double_navigation = flag(params["double_navigation"])
            if "snapshot" in params:
                self.user = replace(self.user, snapshot=flag(params["snapshot"]))
            if "fault" in params:
                self.inject_fault(
                    params["fault"],
                    count=int(params.get("count", "1")),
                    endpoint=params.get("endpoint", "access_token"),
                )
        except ValueError:
            return PlainTextResponse("bad settings", status_code=400)
        return JSONResponse({"latency": self.latency, "double_navigation": self.double_navigation})

    async def _reset(self, request: Request) -> Response:
        """``POST /_emulator/reset``: forget codes, tokens, counts and faults."""
        self.reset()
        return JSONResponse({"ok": True})

    async def _miniprogram_code_route(self, request: Request) -> Response:
        """``POST /_emulator/miniprogram_code``: ``{"code": ...}``, as ``wx.login()`` gives."""
        return JSONResponse({"code": self.issue_miniprogram_code()})


def flag(value: str) -> bool:
    """A boolean control parameter: ``1``/``true``/``on`` or ``0``/``false``/``off``."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "on", "yes"):
        return True
    if lowered in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"not a boolean: {value!r}")
