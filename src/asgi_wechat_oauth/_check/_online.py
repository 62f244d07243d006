"""What every product's ``--online`` shares: a made-up code's answer read, and Redis pinged."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

from ..backends import Backend
from ..errors import WeChatOAuthError
from ._base import Verdict

#: A code no user was ever given: the answer to it tells whether the credentials work.
PROBE_CODE = "asgi-wechat-oauth-check-invalid-code"
#: How a verdict starts when the service did not answer at all.
NO_ANSWER = "could not ask"


async def made_up_code(
    trade: Awaitable[object],
    *,
    service: str,
    where: str,
    wrong: Mapping[int, tuple[str, str]],
    accepted: str = "appid and secret accepted",
) -> Verdict:
    """Await ``trade``, which trades :data:`PROBE_CODE`, and read the answer: 40029 (invalid
    code) means the credentials were accepted; ``wrong`` maps an errcode to what is wrong and
    the errcode's meaning."""
    try:
        await trade
    except WeChatOAuthError as exc:
        if exc.errcode == 40029:
            return True, f"{accepted} ({service} answered 40029 to a made-up code)"
        if exc.errcode is None:
            return False, f"{NO_ANSWER} {service} at {where}: {exc.reason}"
        if exc.errcode in wrong:
            what, meaning = wrong[exc.errcode]
            return False, f"{what} ({service} answered {exc.errcode}, {meaning})"
        return False, f"{service} answered errcode {exc.errcode}: {exc.message}"
    return False, f"{service} traded a made-up code: {where} does not look like {service}"


async def ping(backend: Backend) -> Verdict | None:
    """PING a Redis backend (nothing for any other). The caller closes it, once every product
    that may share it is done."""
    try:
        from ..backends.redis import RedisBackend
    except ImportError:
        return None
    if not isinstance(backend, RedisBackend):
        return None
    try:
        await backend.ping()
    except Exception as exc:
        return False, f"Redis did not answer PING: {type(exc).__name__}"
    return True, "Redis answered PING"
