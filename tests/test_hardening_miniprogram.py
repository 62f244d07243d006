"""Issue 26, items 4 and 10, for the mini-program login.

4. The documented handler works for every body the middleware accepts: the body's fields reach
   the app parsed, in ``scope["wechat_fields"]``, whether the mini-program sent JSON or a form.
   ``examples/miniprogram_app.py`` and the READMEs' handler are run end to end against the
   emulator with each body shape, and none answers 500 (which would spend the code for good).
10. A code is a bearer credential while its session is stored: ``duplicates="reject"`` hands
   the session to one request (and to retries that repeat its ``Idempotency-Key``); every other
   request with the code gets 400 ``code_used``, never the session. Memory backend here, on
   asyncio and trio; a real Redis in ``test_miniprogram_redis.py``; uvicorn and hypercorn in
   ``test_miniprogram_servers.py``.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from _apps import load_example, running
from _miniprogram_app import mp_app
from asgi_wechat_oauth.miniprogram import MiniProgramMiddleware
from asgi_wechat_oauth.testing import Fault, double_login
from support import APP_URL, WECHAT_URL, wait_until

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
    middleware, client = await make_app(middleware=MiniProgramMiddleware, app=app)
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


async def test_fields_no_answer_can_hold_are_refused_before_wechat(emulator, make_app) -> None:
    """A lone surrogate in another field would reach the app as text that no UTF-8 answer can
    hold: a 500 after the code is spent. It is 400 ``invalid_body`` before any exchange."""
    middleware, client = await make_app(middleware=MiniProgramMiddleware, app=mp_app())
    code = emulator.issue_miniprogram_code()
    for body in (
        f'{{"code": "{code}", "scene": "\\ud800"}}',
        f'{{"code": "{code}", "\\udfff": 1}}',
    ):
        response = await client.post(LOGIN, content=body, headers={"content-type": JSON})
        assert (response.status_code, response.json()["error"]) == (400, "invalid_body")
    assert emulator.calls["jscode2session"] == 0


def readme_login_block(readme: str) -> str:
    """The Python block of the README's mini-program section that builds the app."""
    text = (ROOT / readme).read_text("utf-8")
    for block in re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M):
        if "add_middleware(\n    MiniProgramMiddleware" in block:
            return str(block)
    raise AssertionError(f"{readme} has no mini-program login block")


@pytest.mark.parametrize(
    "readme", ["docs/en/products/miniprogram.md", "docs/zh/products/miniprogram.md"]
)
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


# --- item 10: a code is a bearer credential while its session is stored -----------------------

KEY = "5f0c1b1e-8c9a-4a52-9d0e-0b7f3c2a1d44"  # what the mini-program sends as Idempotency-Key
OTHER_KEY = "0d4c7e39-2b61-4f0e-a7d9-93c1e8b5f620"


def _refused(response: httpx.Response) -> bool:
    """400 code_used, and nothing of the session in the answer."""
    return response.status_code == 400 and response.json() == {
        "error": "code_used",
        "message": response.json()["message"],
    }


async def test_by_default_anyone_with_the_code_gets_the_session_for_result_ttl(
    emulator, make_mp
) -> None:
    """The documented risk of ``duplicates="share"`` (the default), pinned so that the docs
    stay true: a code presented again after its owner logged in is given the same session."""
    middleware, client = await make_mp()
    assert middleware.duplicates == "share"
    code = emulator.issue_miniprogram_code()
    owner = await client.post(LOGIN, json={"code": code})
    replayed = await client.post(LOGIN, json={"code": code}, headers={"idempotency-key": "x"})
    assert owner.status_code == replayed.status_code == 200  # the key is not even read
    assert replayed.json()["openid"] == emulator.user.openid


async def test_reject_refuses_a_code_replayed_after_its_owner_logged_in(
    emulator, make_mp, caplog
) -> None:
    middleware, client = await make_mp(duplicates="reject")
    code = emulator.issue_miniprogram_code()
    owner = await client.post(LOGIN, json={"code": code}, headers={"idempotency-key": KEY})
    assert owner.status_code == 200 and owner.json()["openid"] == emulator.user.openid
    replays = [
        await client.post(LOGIN, json={"code": code}),
        await client.post(LOGIN, data={"code": code}),
        await client.post(LOGIN, json={"code": code}, headers={"idempotency-key": OTHER_KEY}),
        await double_login(client, code, abort_after=10.0),
    ]
    assert all(_refused(r) for r in replays), [r.text for r in replays]
    assert emulator.user.openid not in "".join(r.text for r in replays)
    assert emulator.exchange_count(code) == 1
    assert middleware.counters.errors == {"code_used": 5}  # double_login sent two
    assert KEY not in caplog.text and OTHER_KEY not in caplog.text


@pytest.mark.parametrize("n", [2, 20])
async def test_reject_gives_one_of_concurrent_duplicates_the_session(
    n, emulator, make_mp, mp_gate, mp_gated_upstream
) -> None:
    """Duplicates that arrive while the exchange is in flight share it, as ever (one call to
    WeChat), and exactly one of them is given the session."""
    middleware, client = await make_mp(duplicates="reject", http_client=mp_gated_upstream)
    code = emulator.issue_miniprogram_code()
    results: list[httpx.Response] = []

    async def one() -> None:
        results.append(await client.post(LOGIN, json={"code": code}))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
        await wait_until(lambda: mp_gate.arrived == 1 and middleware.counters.waiting == n - 1)
        mp_gate.open()

    sessions = [r for r in results if r.status_code == 200]
    assert len(sessions) == 1 and sessions[0].json()["openid"] == emulator.user.openid
    assert sum(_refused(r) for r in results) == n - 1
    assert emulator.exchange_count(code) == 1


async def test_reject_serves_every_request_that_repeats_the_first_ones_idempotency_key(
    emulator, make_mp, mp_gate, mp_gated_upstream
) -> None:
    """Retries of the same request (the same key) and two pages sharing one ``wx.login()``
    get the session, concurrent or late; a request without the key or with another gets
    ``code_used``, concurrent or late."""
    middleware, client = await make_mp(duplicates="reject", http_client=mp_gated_upstream)
    code = emulator.issue_miniprogram_code()
    results: dict[str, list[httpx.Response]] = {"same": [], "other": []}

    async def one(kind: str, headers: dict[str, str]) -> None:
        results[kind].append(await client.post(LOGIN, json={"code": code}, headers=headers))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "same", {"idempotency-key": KEY})
        await wait_until(lambda: mp_gate.arrived == 1)  # the first request leads
        for index in range(4):
            tg.start_soon(one, "same", {"idempotency-key": KEY})
            tg.start_soon(one, "other", {"idempotency-key": OTHER_KEY} if index % 2 else {})
        await wait_until(lambda: middleware.counters.waiting == 8)
        mp_gate.open()
    late_same = await double_login(client, code, form=True, headers={"idempotency-key": KEY})
    late_other = await client.post(LOGIN, json={"code": code})

    assert [r.status_code for r in [*results["same"], late_same]] == [200] * 6
    assert {r.json()["openid"] for r in [*results["same"], late_same]} == {emulator.user.openid}
    assert all(_refused(r) for r in [*results["other"], late_other])
    assert emulator.exchange_count(code) == 1


async def test_reject_keeps_the_retry_of_an_aborted_first_request(emulator, make_mp) -> None:
    """The case sharing exists for: the first request is cut off while the exchange runs, and
    its retry (which repeats the key) gets the session."""
    emulator.latency = 0.05
    middleware, client = await make_mp(duplicates="reject")
    code = emulator.issue_miniprogram_code()
    headers = {"idempotency-key": f'"{KEY}"'}  # a structured-field string: quotes removed
    response = await double_login(client, code, abort_after=0.01, gap=0.019, headers=headers)
    assert response.status_code == 200, response.text
    late = await client.post(LOGIN, json={"code": code}, headers={"idempotency-key": KEY})
    assert late.status_code == 200 and late.json()["openid"] == emulator.user.openid
    assert emulator.exchange_count(code) == 1


async def test_reject_binds_a_session_only_not_an_error(emulator, make_mp) -> None:
    """A failure that leaves the code usable (45011) binds nothing: the next request, with
    another key, gets the session; an error stored for the code reaches everyone alike."""
    middleware, client = await make_mp(duplicates="reject")
    code = emulator.issue_miniprogram_code()
    emulator.inject_fault(Fault.RATE_LIMITED, endpoint="jscode2session")
    limited = await client.post(LOGIN, json={"code": code}, headers={"idempotency-key": KEY})
    assert (limited.status_code, limited.json()["error"]) == (429, "rate_limited")
    later = await client.post(LOGIN, json={"code": code}, headers={"idempotency-key": OTHER_KEY})
    assert later.status_code == 200 and later.json()["openid"] == emulator.user.openid

    expired = emulator.issue_miniprogram_code()
    emulator.expire_code(expired)
    answers = [
        await client.post(LOGIN, json={"code": expired}, headers={"idempotency-key": key})
        for key in (KEY, OTHER_KEY)
    ]
    assert [(r.status_code, r.json()["error"]) for r in answers] == [(400, "code_expired")] * 2


BAD_KEYS = [
    pytest.param([("idempotency-key", "short")], id="too-short"),
    pytest.param([("idempotency-key", "k" * 256)], id="too-long"),
    pytest.param([("idempotency-key", "has space in the middle")], id="space"),
    pytest.param([("idempotency-key", '""')], id="empty-quoted"),
    pytest.param([("idempotency-key", KEY), ("idempotency-key", KEY)], id="twice"),
    pytest.param([("idempotency-key", KEY.encode() + b"\xe9")], id="not-ascii"),
]


@pytest.mark.parametrize("headers", BAD_KEYS)
async def test_reject_refuses_a_bad_idempotency_key_before_wechat(
    emulator, make_mp, headers
) -> None:
    middleware, client = await make_mp(duplicates="reject")
    code = emulator.issue_miniprogram_code()
    response = await client.post(LOGIN, json={"code": code}, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_idempotency_key"
    assert emulator.calls["jscode2session"] == 0
    good = await client.post(LOGIN, json={"code": code}, headers={"idempotency-key": KEY})
    assert good.status_code == 200  # the code was not spent


async def test_example_app_with_reject_answers_a_replay_400_not_500(emulator, example) -> None:
    client = await example(duplicates="reject")
    code = emulator.issue_miniprogram_code()
    owner = await client.post(LOGIN, data={"code": code}, headers={"idempotency-key": KEY})
    retry = await client.post(LOGIN, json={"code": code}, headers={"idempotency-key": KEY})
    replay = await client.post(LOGIN, json={"code": code, "scene": 1001})
    assert (owner.status_code, retry.status_code) == (200, 200)
    assert owner.json()["token"] == retry.json()["token"]
    assert _refused(replay)


def test_duplicates_is_checked_when_the_middleware_is_built() -> None:
    with pytest.raises(ValueError, match="duplicates must be 'share' or 'reject'"):
        MiniProgramMiddleware(mp_app(), appid="wx1", secret="s", duplicates="once")  # type: ignore[arg-type]
