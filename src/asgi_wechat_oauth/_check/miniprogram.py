"""The mini-program: ``MiniProgramMiddleware`` and ``MiniProgramConfig``
(``WECHAT_MINIPROGRAM_*``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .._core.oauth_options import appid_form_warning
from ..miniprogram import MiniProgramClient, MiniProgramConfig, MiniProgramMiddleware
from ._base import Product, Verdict
from ._online import PROBE_CODE, made_up_code

_WRONG = {
    40013: ("the appid is wrong", "invalid appid"),
    40125: ("the secret is wrong", "invalid appsecret"),
}


class MiniProgram(Product[MiniProgramConfig]):
    name = "miniprogram"
    title = "MiniProgramMiddleware"
    kinds = (MiniProgramMiddleware,)
    env_prefix = "WECHAT_MINIPROGRAM_"
    labels = ("miniprogram",)

    def from_env(
        self, prefix: str, environ: Mapping[str, str], ignore: Iterable[str]
    ) -> MiniProgramConfig:
        return MiniProgramConfig.from_env(prefix, environ, ignore=ignore)

    def config_of(self, found: MiniProgramMiddleware) -> MiniProgramConfig:
        config: MiniProgramConfig = found.config
        return config

    def summary(self, config: MiniProgramConfig) -> dict[str, object]:
        return config.summary()

    def warnings(self, config: MiniProgramConfig) -> list[str]:
        warning = appid_form_warning("appid", config.appid, config.api_base_url)
        return [warning] if warning else []

    async def probe(self, config: MiniProgramConfig) -> list[Verdict]:
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
