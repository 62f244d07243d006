"""Issue 26, item 4, for the mini-program login.

4. The documented handler works for every body the middleware accepts: the body's fields reach
   the app parsed, in ``scope["wechat_fields"]``, whether the mini-program sent JSON or a form.
   ``examples/miniprogram_app.py`` and the READMEs' handler are run end to end against the
   emulator with each body shape, and none answers 500 (which would spend the code for good).
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from _apps import load_example, running
from asgi_wechat_oauth.miniprogram import MiniProgramLoginMiddleware
from asgi_wechat_oauth.testing import double_login
from support import APP_URL, WECHAT_URL

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = load_example("miniprogram_app")
LOGIN = EXAMPLE.LOGIN
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


# --- item 4: every body the middleware accepts reaches a handler that can read it -------------


def _chunks(data: bytes) -> Callable[[], AsyncIterator[bytes]]:
    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 7):
            yield data[start : start + 7]

    return stream


def _request(shape: str, code: str) -> tuple[dict[str, Any], Any]:
    """The keywords for ``client.post`` sending ``code`` as ``shape``, and the ``scene`` the
    handler should read back (JSON keeps its types; a form's values are text)."""
    if shape == "json":
        return {"json": {"code": code, "scene": 1001}}, 1001
    if shape == "json-code-only":
        return {"json": {"code": code}}, None
    if shape == "json-charset-and-case":
        body = json.dumps({"scene": 1001, "code": code}).encode()
        headers = {"content-type": "Application/JSON; charset=utf-8"}
        return {"content": body, "headers": headers}, 1001
    if shape == "json-nested-unicode":
        payload = {"scene": 1001, "user": {"nickName": "小明", "tags": [1, 2]}, "code": code}
        body = json.dumps(payload, ensure_ascii=False).encode()
        return {"content": body, "headers": {"content-type": JSON}}, 1001
    if shape == "json-chunked":
        body = json.dumps({"code": code, "scene": 1001}).encode()
        return {"content": _chunks(body)(), "headers": {"content-type": JSON}}, 1001
    if shape == "form":
        return {"data": {"code": code, "scene": "1001"}}, "1001"
    if shape == "form-code-only":
        return {"data": {"code": code}}, None
    if shape == "form-charset-as-wx-request":
        body = f"scene=1001&code={code}".encode()
        headers = {"content-type": f"{FORM}; charset=UTF-8"}
        return {"content": body, "headers": headers}, "1001"
    if shape == "form-repeated-and-encoded":
        body = f"scene=1&code={code}&note=hello+world%21&scene=1001&empty=".encode()
        return {"content": body, "headers": {"content-type": FORM}}, "1001"
    if shape == "form-chunked":
        body = f"code={code}&scene=1001".encode()
        return {"content": _chunks(body)(), "headers": {"content-type": FORM}}, "1001"
    raise AssertionError(shape)


SHAPES = [
    "json",
    "json-code-only",
    "json-charset-and-case",
    "json-nested-unicode",
    "json-chunked",
    "form",
    "form-code-only",
    "form-charset-as-wx-request",
    "form-repeated-and-encoded",
    "form-chunked",
]

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def example(emulator, upstream) -> AsyncIterator[MakeClient]:
    """``await example(**options)``: a client of the example's app (lifespan running), which
    answers a 500 as a server would instead of raising it into the test."""
    async with AsyncExitStack() as stack:

        async def factory(**options: Any) -> httpx.AsyncClient:
            app = EXAMPLE.create_app(
                token_secret=b"t" * 32, api_base_url=WECHAT_URL, http_client=upstream, **options
            )
            await stack.enter_async_context(running(app))
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            client = httpx.AsyncClient(transport=transport, base_url=APP_URL)
            stack.push_async_callback(client.aclose)
            return client

        yield factory


@pytest.mark.parametrize("shape", SHAPES)
async def test_example_login_answers_every_body_the_middleware_accepts(
    emulator, example, shape
) -> None:
    client = await example()
    code = emulator.issue_miniprogram_code()
    options, scene = _request(shape, code)
    response = await client.post(LOGIN, **options)
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["openid"], data["scene"]) == (emulator.user.openid, scene)
    me = await client.get("/me", headers={"authorization": f"Bearer {data['token']}"})
    assert me.json() == {"openid": emulator.user.openid}
    assert emulator.exchange_count(code) == 1


async def test_example_form_login_then_its_json_retry_both_get_the_session(
    emulator, example
) -> None:
    """The audit's case: a form login used to spend the code and answer 500, and every retry
    then got 500 too. Now the form login and its retries (as a form, as JSON, doubled) get the
    one session."""
    client = await example()
    code = emulator.issue_miniprogram_code()
    form = await client.post(LOGIN, data={"code": code})
    retried = await client.post(LOGIN, json={"code": code, "scene": 1001})
    doubled = await double_login(client, code)
    assert [r.status_code for r in (form, retried, doubled)] == [200, 200, 200]
    assert {r.json()["token"] for r in (form, retried, doubled)} == {form.json()["token"]}
    assert retried.json()["scene"] == 1001
    assert emulator.exchange_count(code) == 1


async def _fields_route(request: Request) -> JSONResponse:
    fields = request.scope["wechat_fields"]
    nested = [type(value).__name__ for value in fields.values() if not isinstance(value, str)]
    return JSONResponse(
        {"fields": fields, "types": nested, "body": (await request.body()).decode()}
    )


async def test_each_request_gets_its_own_bodys_fields_without_the_code(emulator, make_app) -> None:
    """JSON values keep their types (nested objects as plain dicts), a form's are text, a
    name given twice keeps its last value; the code is not among them; a late duplicate gets
    its own body's fields, not the first request's; the body itself is still replayed."""
    app = Starlette(routes=[Route(LOGIN, _fields_route, methods=["POST"])])
    middleware, client = await make_app(middleware=MiniProgramLoginMiddleware, app=app)
    code = emulator.issue_miniprogram_code()
    body = f'{{"scene": 1, "code": "{code}", "user": {{"a": [1, {{"b": null}}]}}, "scene": 2}}'
    first = await client.post(LOGIN, content=body, headers={"content-type": JSON})
    late = await client.post(
        LOGIN, content=f"a=1&code={code}&a=2&b=x+y", headers={"content-type": FORM}
    )
    assert first.status_code == late.status_code == 200
    assert first.json()["fields"] == {"scene": 2, "user": {"a": [1, {"b": None}]}}
    assert first.json()["types"] == ["int", "dict"] and first.json()["body"] == body
    assert late.json()["fields"] == {"a": "2", "b": "x y"}
    assert code not in json.dumps([first.json()["fields"], late.json()["fields"]])
    assert emulator.exchange_count(code) == 1


def readme_login_block(readme: str) -> str:
    """The Python block of the README's mini-program section that builds the app."""
    text = (ROOT / readme).read_text("utf-8")
    for block in re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M):
        if "add_middleware(\n    MiniProgramLoginMiddleware" in block:
            return str(block)
    raise AssertionError(f"{readme} has no mini-program login block")


@pytest.mark.parametrize("readme", ["README.md", "README.zh-CN.md"])
@pytest.mark.parametrize("shape", SHAPES)
async def test_readme_handler_answers_every_body_the_middleware_accepts(
    emulator, upstream, readme, shape
) -> None:
    """The README's block as written, run as a module, its middleware's options pointed at
    the emulator (``appid="wx..."`` is a placeholder), and its own placeholder for the app's
    session (``issue_my_own_session``) defined."""
    module = types.ModuleType("readme_miniprogram")
    module.issue_my_own_session = lambda openid: f"token-for-{openid}"  # type: ignore[attr-defined]
    source = compile(readme_login_block(readme), readme, "exec")
    exec(source, module.__dict__)  # noqa: S102 - the README's own code, as test_readme.py runs it
    app = module.app
    (middleware,) = app.user_middleware
    middleware.kwargs.update(
        appid=emulator.appid, secret=emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )
    code = emulator.issue_miniprogram_code()
    options, _ = _request(shape, code)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with running(app), httpx.AsyncClient(transport=transport, base_url=APP_URL) as client:
        response = await client.post("/wechat/miniprogram/login", **options)
    assert response.status_code == 200, response.text
    assert response.json()["token"] == f"token-for-{emulator.user.openid}"
    assert emulator.exchange_count(code) == 1

