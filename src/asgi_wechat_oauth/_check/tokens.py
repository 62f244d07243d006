"""The token keeper: an ``AccessTokenKeeper`` the app built (not configured from the
environment: its fetcher says whose token it keeps)."""

from __future__ import annotations

from ..errors import WeChatOAuthError
from ..tokens import AccessTokenKeeper
from ._base import Product, Verdict


class Tokens(Product[AccessTokenKeeper]):
    name = "tokens"
    title = "AccessTokenKeeper"
    kinds = (AccessTokenKeeper,)
    labels = ("tokens",)

    def config_of(self, found: AccessTokenKeeper) -> AccessTokenKeeper:
        return found

    def summary(self, config: AccessTokenKeeper) -> dict[str, object]:
        # The fetcher's repr names the app, never the secret; the token is never shown.
        return {
            "fetcher": config.fetcher,
            "backend": config.backend,
            "refresh_margin": config.refresh_margin,
        }

    async def probe(self, config: AccessTokenKeeper) -> list[Verdict]:
        """One ``get()``, as the app's first call makes it: a token stored in a shared backend
        is read (another worker fetched it with these credentials), else one is fetched. Never
        a fetch beside the keeper's single flight: with ``cgi-bin/token`` that would retire the
        token the app's workers hold."""
        fetched = config.counters.exchanges
        try:
            await config.get()
        except WeChatOAuthError as exc:
            if exc.errcode is None:
                return [(False, f"the keeper could not ask for a token: {exc.reason}")]
            return [(False, f"the keeper got no token: {exc.message}")]
        except Exception as exc:  # the backend, most likely: say which error, nothing more
            return [(False, f"the keeper got no token: {type(exc).__name__}")]
        finally:
            await config.aclose()
        how = "fetched one" if config.counters.exchanges > fetched else "read the stored one"
        return [(True, f"the keeper got a token ({how})")]


PRODUCT = Tokens()
