"""Third-party platforms: ``PlatformOAuthMiddleware`` and ``PlatformOAuthConfig``
(``WECHAT_PLATFORM_*``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .._core.counters import Counters
from ..backends import MemoryBackend
from ..errors import WeChatOAuthError
from ..platform import (
    ComponentTokenFetcher,
    PlatformOAuthConfig,
    PlatformOAuthMiddleware,
    TicketStore,
)
from ..tokens import AccessTokenKeeper
from ._base import Product, Verdict, oauth_summary


class Platform(Product[PlatformOAuthConfig]):
    name = "platform"
    title = "PlatformOAuthMiddleware"
    kinds = (PlatformOAuthMiddleware,)
    env_prefix = "WECHAT_PLATFORM_"
    #: The logins, and the component token's fetches.
    labels = ("platform", "tokens")

    def from_env(
        self, prefix: str, environ: Mapping[str, str], ignore: Iterable[str]
    ) -> PlatformOAuthConfig:
        return PlatformOAuthConfig.from_env(prefix, environ, ignore=ignore)

    def config_of(self, found: PlatformOAuthMiddleware) -> PlatformOAuthConfig:
        return found.config

    def summary(self, config: PlatformOAuthConfig) -> dict[str, object]:
        return oauth_summary(config)

    def warnings(self, config: PlatformOAuthConfig) -> list[str]:
        if config.login_path is None:
            return [
                "login_path is not set: without it nothing starts a login, and a callback's "
                "state is not verified (set it, e.g. /wechat/platform/login)"
            ]
        return []

    async def probe(self, config: PlatformOAuthConfig) -> list[Verdict]:
        """The ticket the workers share, then the component token fetched with it (through
        the keeper and the backend, as the workers do: a token they keep is not replaced)."""
        backend = config.backend if config.backend is not None else MemoryBackend()
        tickets = TicketStore(backend, config.component_appid)
        try:
            ticket = await tickets.current()
        except WeChatOAuthError as exc:
            return [(False, f"could not read the ticket from the backend: {exc.reason}")]
        if ticket is None:
            if config.backend is None:
                why = (
                    "no ticket to try the credentials with: a memory backend keeps WeChat's "
                    "component_verify_ticket in the worker that received the push; give a "
                    "RedisBackend (WECHAT_PLATFORM_REDIS_URL) to check the one the workers share"
                )
            else:
                why = (
                    "no component_verify_ticket in the backend the workers share yet: WeChat "
                    f"pushes one every 10 minutes to {config.ticket_path}; the credentials can "
                    "be tried once it is there"
                )
            return [(False, why)]
        fetcher = ComponentTokenFetcher(
            config.component_appid,
            config.component_secret,
            tickets,
            api_base_url=config.api_base_url,
            timeout=10.0,
        )
        keeper = AccessTokenKeeper(fetcher, backend=backend, exchange_timeout=10.0)
        try:
            await keeper.get()
        except WeChatOAuthError as exc:
            detail = f"errcode {exc.errcode}: " if exc.errcode is not None else ""
            return [(True, "a ticket is there"), (False, f"{detail}{exc.message}")]
        finally:
            await fetcher.aclose()
        return [
            (True, "a ticket is there"),
            (True, "component_appid and component_secret accepted: the component token works"),
        ]

    def counters(self, found: PlatformOAuthMiddleware) -> list[tuple[str, Counters]]:
        return [("platform", found.counters), ("tokens", found.token_keeper.counters)]


PRODUCT = Platform()
