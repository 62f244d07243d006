"""WeCom: ``WeComOAuthMiddleware`` and ``WeComOAuthConfig`` (``WECOM_*``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .._core.counters import Counters
from ..wecom import WeComOAuthClient, WeComOAuthConfig, WeComOAuthMiddleware
from ._base import Product, Verdict, oauth_summary
from ._online import PROBE_CODE, made_up_code

_WRONG = {
    40013: ("the corpid is wrong", "invalid corpid"),
    40001: ("the secret is wrong", "invalid corpsecret: use the secret of this app (agent)"),
}


class WeCom(Product[WeComOAuthConfig]):
    name = "wecom"
    title = "WeComOAuthMiddleware"
    kinds = (WeComOAuthMiddleware,)
    env_prefix = "WECOM_"
    #: The logins, and the corp token's fetches.
    labels = ("wecom", "tokens")

    def from_env(
        self, prefix: str, environ: Mapping[str, str], ignore: Iterable[str]
    ) -> WeComOAuthConfig:
        return WeComOAuthConfig.from_env(prefix, environ, ignore=ignore)

    def config_of(self, found: WeComOAuthMiddleware) -> WeComOAuthConfig:
        config: WeComOAuthConfig = found.config
        return config

    def summary(self, config: WeComOAuthConfig) -> dict[str, object]:
        return oauth_summary(config)

    async def probe(self, config: WeComOAuthConfig) -> list[Verdict]:
        """The corp token fetched with corpid and secret, then used at ``auth/getuserinfo``
        with a code that cannot exist: no user is needed."""
        client = WeComOAuthClient(
            config.corpid,
            config.agentid,
            config.secret,
            api_base_url=config.api_base_url,
            timeout=10.0,
            token_keeper=config.token_keeper,
        )
        async with client:
            verdict = await made_up_code(
                client.get_identity(PROBE_CODE),
                service="WeCom",
                where=config.api_base_url,
                wrong=_WRONG,
                accepted="corpid and secret accepted, the corp token works",
            )
        return [verdict]

    def counters(self, found: WeComOAuthMiddleware) -> list[tuple[str, Counters]]:
        return [("wecom", found.counters), ("tokens", found.token_keeper.counters)]


PRODUCT = WeCom()
