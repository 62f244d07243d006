"""Defects found by the second outside-style review (issue 18), each pinned by the request or
upstream answer that exposed it; on asyncio and trio."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from asgi_wechat_oauth.miniprogram import MiniProgramLoginMiddleware
from support import call_asgi, http_scope

pytestmark = pytest.mark.anyio

UPSTREAM = "http://upstream.test"


def answering(answers: dict[str, bytes]) -> httpx.AsyncClient:
    """An HTTP client whose upstream answers each path with fixed bytes (200, JSON), as a
    broken or hostile WeChat might."""

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        body = answers.get(scope["path"], b"{}")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=upstream))


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


# --- the mini-program's Content-Length --------------------------------------------------------


@pytest.mark.parametrize("length", ["\u00b2", "\u00b9\u00b3"])
async def test_a_content_length_of_superscript_digits_is_a_400_not_a_500(length):
    """Header values arrive as latin-1: ``"²".isdigit()`` is true, but ``int("²")`` raises."""
    middleware = MiniProgramLoginMiddleware(_ok, appid="wxaudit", secret="audit-secret")
    scope = http_scope("/wechat/miniprogram/login", method="POST")
    scope["headers"] += [
        (b"content-type", b"application/json"),
        (b"content-length", length.encode("latin-1")),
    ]
    response = await call_asgi(middleware, scope)
    assert response.status == 400
    assert b'"invalid_body"' in response.body
    await middleware.aclose()
