"""The mini-program: ``MiniProgramMiddleware`` and ``MiniProgramConfig``
(``WECHAT_MINIPROGRAM_*``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..miniprogram import MiniProgramClient, MiniProgramMiddleware
from ._base import Product, Verdict
from ._online import PROBE_CODE, made_up_code

_WRONG = {
    40013: ("the appid is wrong", "invalid appid"),
    40125: ("the secret is wrong", "invalid appsecret"),
}


class MiniProgram(Product[Any]):
    name = "miniprogram"
    title = "MiniProgramMiddleware"
    kinds = (MiniProgramMiddleware,)
    env_prefix = "WECHAT_MINIPROGRAM_"
    labels = ("miniprogram",)

    def from_env(self, prefix: str, environ: Mapping[str, str], ignore: Iterable[str]) -> Any:
        from ..miniprogram import MiniProgramConfig  # type: ignore[attr-defined]

        return MiniProgramConfig.from_env(prefix, environ, ignore=ignore)

    def config_of(self, found: MiniProgramMiddleware) -> Any:
        return found.config  # type: ignore[attr-defined]

    def summary(self, config: Any) -> dict[str, object]:
        shown: dict[str, object] = config.summary()
        return shown

    async def probe(self, config: Any) -> list[Verdict]:
        """``jscode2session`` with a code that cannot exist: without a user's ``wx.login()``
        code, WeChat's answer still tells bad credentials (40013, 40125) from a bad code
        (40029)."""
        client = MiniProgramClient(
            config.appid, config.secret, api_base_url=config.api_base_url, timeout=10.0
        )
        async with client:
            verdict = await made_up_code(
                client.code2session(PROBE_CODE),
                service="WeChat",
                where=config.api_base_url,
                wrong=_WRONG,
            )
        return [verdict]


PRODUCT = MiniProgram()
