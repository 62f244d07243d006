"""The web product: ``WeChatOAuthMiddleware`` and ``WeChatOAuthConfig`` (``WECHAT_*``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .._core.oauth_options import appid_form_warning
from ..web import WeChatOAuthClient, WeChatOAuthConfig, WeChatOAuthMiddleware
from ._base import Product, Verdict, oauth_summary
from ._online import NO_ANSWER, PROBE_CODE, made_up_code

_WRONG = {
    40013: ("the appid is wrong", "invalid appid"),
    40125: ("the secret is wrong", "invalid appsecret"),
}


class Web(Product[WeChatOAuthConfig]):
    name = "web"
    title = "WeChatOAuthMiddleware"
    kinds = (WeChatOAuthMiddleware,)
    env_prefix = "WECHAT_"
    labels = ("web",)

    def from_env(
        self, prefix: str, environ: Mapping[str, str], ignore: Iterable[str]
    ) -> WeChatOAuthConfig:
        return WeChatOAuthConfig.from_env(prefix, environ, ignore=ignore)

    def config_of(self, found: WeChatOAuthMiddleware) -> WeChatOAuthConfig:
        return found.config

    def summary(self, config: WeChatOAuthConfig) -> dict[str, object]:
        return oauth_summary(config)

    def warnings(self, config: WeChatOAuthConfig) -> list[str]:
        found = (
            appid_form_warning(name, getattr(config, name), config.api_base_url)
            for name in ("appid", "website_appid")
        )
        return [warning for warning in found if warning]

    def notes(self, config: WeChatOAuthConfig) -> list[str]:
        if not config.jssdk_path:
            return []
        return [
            f"jssdk_path ({config.jssdk_path}): in the official account's console (设置与开发 → "
            "公众号设置 → 功能设置 → JS接口安全域名), add the domain of every page that calls "
            "wx.config (without it, wx.config fails on the phone with 'invalid url domain')"
        ]

    async def probe(self, config: WeChatOAuthConfig) -> list[Verdict]:
        """The official account's appid and secret; the website app's too, when there is one
        and WeChat answered at all (the same host, the same problem, another wait)."""
        verdicts = [await _probe_app(config.appid, config.secret, config.api_base_url)]
        if (
            config.website_appid
            and config.website_secret
            and not verdicts[0][1].startswith(NO_ANSWER)
        ):
            ok, message = await _probe_app(
                config.website_appid, config.website_secret, config.api_base_url
            )
            verdicts.append((ok, f"website app: {message}"))
        return verdicts


async def _probe_app(appid: str, secret: str, api_base_url: str) -> Verdict:
    async with WeChatOAuthClient(appid, secret, api_base_url=api_base_url, timeout=10.0) as client:
        return await made_up_code(
            client.exchange_code(PROBE_CODE), service="WeChat", where=api_base_url, wrong=_WRONG
        )


PRODUCT = Web()
