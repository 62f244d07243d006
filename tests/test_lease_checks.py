"""A Redis lease shorter than the work it guards is refused where it is written (issue 26,
item 7): a slow leader would lose its lease to another worker, which would trade the code (or
fetch the token) a second time."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette

from asgi_wechat_oauth import WeChatOAuthConfig, WeChatOAuthMiddleware
from asgi_wechat_oauth.backends.redis import RedisBackend
from asgi_wechat_oauth.miniprogram import MiniProgramMiddleware
from asgi_wechat_oauth.wecom import WeComOAuthMiddleware

APP = Starlette()
SHORT = "lease_ttl=5.0.*exchange_timeout=10"


def backend(lease_ttl: float) -> RedisBackend:
    return RedisBackend("redis://127.0.0.1:1/0", lease_ttl=lease_ttl)  # never connected


def test_web_config_refuses_a_lease_shorter_than_the_exchange():
    with pytest.raises(ValueError, match=SHORT):
        WeChatOAuthConfig(appid="wx1", secret="s", backend=backend(5.0), exchange_timeout=10)
    with pytest.raises(ValueError, match=SHORT):
        WeChatOAuthMiddleware(APP, appid="wx1", secret="s", backend=backend(5.0))


def test_wecom_and_miniprogram_refuse_it_too():
    with pytest.raises(ValueError, match=SHORT):
        WeComOAuthMiddleware(APP, corpid="ww1", agentid="1", secret="s", backend=backend(5.0))
    with pytest.raises(ValueError, match=SHORT):
        MiniProgramMiddleware(APP, appid="wx1", secret="s", backend=backend(5.0))


def test_a_lease_that_outlasts_the_exchange_is_accepted():
    for lease_ttl, timeout in ((11.0, 10.0), (15.0, 10.0), (3.0, 2.0)):
        WeChatOAuthConfig(
            appid="wx1", secret="s", backend=backend(lease_ttl), exchange_timeout=timeout
        )
        MiniProgramMiddleware(
            APP, appid="wx1", secret="s", backend=backend(lease_ttl), exchange_timeout=timeout
        )
