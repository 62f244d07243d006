"""httpx logs each request URL at INFO; WeChat's URLs carry the secret, the code and tokens."""

from __future__ import annotations

import logging

import pytest

from asgi_wechat_oauth import WeChatOAuthClient
from support import WECHAT_URL

pytestmark = pytest.mark.anyio


async def test_httpx_request_log_holds_no_secret_code_or_token(emulator, upstream, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    client = WeChatOAuthClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )
    code = emulator.issue_code("snsapi_userinfo")
    token = await client.exchange_code(code)
    await client.get_userinfo(token.access_token, token.openid)
    await client.refresh_access_token(token.refresh_token)
    text = "\n".join(caplog.messages)
    assert "HTTP Request: GET" in text  # httpx did log the requests...
    assert "secret=[redacted]" in text and "code=[redacted]" in text
    for value in (emulator.secret, code, token.access_token, token.refresh_token):
        assert value not in text  # ...without what they carry
    assert emulator.appid in text  # the rest of the URL is left alone
