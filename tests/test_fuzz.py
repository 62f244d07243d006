"""Fuzzed input (Hypothesis): query strings, methods, headers and paths that no WeChat redirect
would produce, sent through the middleware over ``httpx.ASGITransport``.

Every example must get the status the README documents for it, never a 500, and invalid input
must never reach WeChat. The expected answer is worked out from the README's rules by the
oracles below, on the query string and path the middleware actually received (httpx normalizes
some of what it is given; a few examples also swap in raw bytes, as a server could pass them).

How the callback path matches (documented in the README's configuration table, tested by the
path property and the examples at the end): ``scope["path"]`` (already percent-decoded by the
server, as the app's router sees it) must equal ``callback_path``, or ``root_path +
callback_path`` when the app is mounted (servers differ on whether ``path`` includes
``root_path``), each with or without one trailing slash (so a framework's slash redirect comes
back to the middleware). Nothing else: no case folding, no double slashes. So the handler routed
at ``callback_path`` never runs without ``scope["wechat"]``.

Each property runs on asyncio and on trio (one ``anyio.run`` per example).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, unquote_to_bytes, urlsplit

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.testing import WeChatEmulator
from support import APP_URL, CALLBACK, WECHAT_URL

BACKENDS = ["asyncio", "trio"]
LOGIN = "/wechat/login"
AUTHORIZE_URL = "http://open.wechat.test"
#: Stands in for a code the emulator issued: replaced in the URL by a fresh one per example.
ISSUED = "ISSUEDCODE"

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    database=None,  # no .hypothesis/ directory in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- the README's rules, as oracles --------------------------------------------------------------

_CODE = re.compile(r"[A-Za-z0-9_-]{1,128}")  # "longer than 128 characters or outside [A-Za-z0-9_-]"
_STATE = re.compile(
    r"[\x21-\x7e]{0,128}"
)  # "longer than 128 characters or outside printable ASCII"
#: A path on this site: one slash first, no backslash, no ASCII controls.
_SAFE_NEXT = re.compile(r"/(?![/\\])[^\\\x00-\x1f\x7f]*")
_NO_BACKSLASH = re.compile(r"[^\\]*")


def _form_decode(text: str) -> str:
    """``application/x-www-form-urlencoded`` decoding: ``+`` is a space, ``%XX`` a byte (a
    malformed escape stays as it is), the bytes must be UTF-8 (else UnicodeDecodeError)."""
    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8")


def form_fields(query: bytes) -> list[tuple[str, str]] | None:
    """The query's fields, or None when it does not decode: non-ASCII bytes, bad UTF-8, or more
    than 64 fields (counted by their separators, empty ones included)."""
    try:
        text = query.decode("ascii")
        if text and text.count("&") + 1 > 64:
            return None
        fields = []
        for piece in text.split("&"):
            if piece:
                name, _, value = piece.partition("=")
                fields.append((_form_decode(name), _form_decode(value)))
    except UnicodeDecodeError:
        return None
    return fields


def callback_reasons(query: bytes) -> set[str]:
    """Every 400 reason of the README's table that applies to this callback query; empty when
    the query is valid (the middleware may pick any one that applies)."""
    fields = form_fields(query)
    if fields is None:
        return {"invalid_query"}
    codes = [value for name, value in fields if name == "code"]
    states = [value for name, value in fields if name == "state"]
    reasons = set()
    if len(codes) > 1 or len(states) > 1:
        reasons.add("duplicate_parameter")
    if not codes or "" in codes:
        reasons.add("missing_code")
    if any(code and not _CODE.fullmatch(code) for code in codes):
        reasons.add("malformed_code")
    if any(not _STATE.fullmatch(state) for state in states):
        reasons.add("malformed_state")
    return reasons


def is_callback(scope: dict[str, Any]) -> bool:
    """The documented path rule (see the module docstring)."""
    root = scope.get("root_path", "")
    spellings = (CALLBACK, CALLBACK + "/")
    path = scope["path"]
    if path in spellings:
        return True
    return bool(root) and path.startswith(root) and path[len(root) :] in spellings


# --- strategies ----------------------------------------------------------------------------------

PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))
NAMES = st.one_of(
    st.sampled_from(
        [
            "code",
            "code",
            "code",
            "state",
            "state",
            "Code",
            "CODE",
            "%63ode",
            "c%6Fde",
            "code ",
            "+code",
            "code[]",
            "%73tate",
            "scope",
            "next",
            "x",
            "",
            "%",
            "%ff",
            "%00",
        ]
    ),  # fmt: skip
    st.text(max_size=8),
)
VALUES = st.one_of(
    st.just(ISSUED),
    st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True),
    st.integers(120, 140).map(lambda n: "a" * n),  # around the 128 limit
    st.integers(1_000, 20_000).map(lambda n: "x" * n),  # huge
    st.text(max_size=30),  # any Unicode, NUL and controls included
    st.text(alphabet=PRINTABLE, max_size=140),
    st.sampled_from(
        [
            "",
            "%00",
            "%ff",
            "%fe%ff",
            "%zz",
            "%",
            "%2",
            "%E4%BD%A0",
            "%C3%28",
            "a+b",
            "a%20b",
            "%2B",
            "%26code%3Dx",
            "&",
            "=",
            "==",
            "\x00",
            "\u4f60\u597d",
            "\U0001f43c",
            "\ud7ff",
        ]
    ),  # fmt: skip
)


def _raw(text: str) -> str:
    """Text inserted in a URL as it is, except what httpx refuses (controls) or would take for
    the fragment (``#``)."""
    return "".join(quote(c, safe="") if ord(c) < 0x20 or c in "\x7f#" else c for c in text)


@st.composite
def query_fields(draw: st.DrawFn) -> str:
    """A query string built from fields, each percent-encoded properly or inserted raw, with
    the odd empty field and stray separator."""
    pieces = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["quoted", "raw", "bare", "junk"]))
        name, value = draw(NAMES), draw(VALUES)
        if kind == "quoted":
            pieces.append(f"{quote(name, safe='%')}={quote(value, safe='')}")
        elif kind == "raw":
            pieces.append(f"{_raw(name)}={_raw(value)}")
        elif kind == "bare":
            pieces.append(_raw(name))
        else:
            pieces.append(_raw(draw(st.text(alphabet="&=%+;?/aZ09 _-.~!*'()", max_size=12))))
    separator = draw(st.sampled_from(["&", "&", "&", "&&", ";"]))
    return separator.join(pieces)


CODE_VALUES = st.one_of(
    st.just(ISSUED),
    st.just(ISSUED),
    st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True),
    st.integers(127, 130).map(lambda n: "c" * n),
    st.sampled_from(["", "a b", "a+b", "a.b", "a/b", "%00", "a%00", "\u4f60", "a\nb", "%ff"]),
)
STATE_VALUES = st.one_of(
    st.text(alphabet=PRINTABLE, max_size=130),
    st.integers(127, 130).map(lambda n: "s" * n),
    st.integers(1_000, 20_000).map(lambda n: "s" * n),
    st.sampled_from(["", " ", "a b", "%20", "\t", "%00", "\u00e9", "%E4%BD%A0", "%C3%28"]),
)


@st.composite
def callback_like(draw: st.DrawFn) -> str:
    """Close to what WeChat sends: ``code``, ``state`` and extras in any order, some of them
    missing, repeated or malformed."""
    fields = [("code", draw(CODE_VALUES)) for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2])))]
    fields += [("state", draw(STATE_VALUES)) for _ in range(draw(st.sampled_from([1, 1, 0, 2])))]
    fields += [(draw(NAMES), draw(VALUES)) for _ in range(draw(st.integers(0, 2)))]
    fields = draw(st.permutations(fields))
    quoted = draw(st.booleans())
    return "&".join(
        f"{quote(n, safe='%')}={quote(v, safe='')}" if quoted else f"{_raw(n)}={_raw(v)}"
        for n, v in fields
    )


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, bytes | None]:
    """``(query for the URL, raw bytes a server passed instead or None)``."""
    kind = draw(st.sampled_from(["callback_like"] * 5 + ["fields"] * 3 + ["raw", "many"]))
    if kind == "raw":
        raw = draw(
            st.one_of(
                st.binary(max_size=200),
                st.binary(max_size=40).map(lambda b: b"code=" + ISSUED.encode() + b"&state=" + b),
                st.binary(max_size=40).map(lambda b: b"code=" + b),
            )
        )
        return "", raw
    if kind == "many":
        count = draw(st.integers(60, 66))
        return "&".join(["x=1"] * count + [f"code={ISSUED}"]), None
    if kind == "callback_like":
        return draw(callback_like()), None
    return draw(query_fields()), None


METHODS = st.sampled_from(
    ["GET"] * 16 + ["HEAD"] * 4
    + ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "BREW", "M-SEARCH"]
)  # fmt: skip
HEADER_VALUES = st.one_of(
    st.binary(max_size=60).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F)),
    st.integers(1_000, 16_000).map(lambda n: b"v" * n),
    st.sampled_from([b"", b" ", b"app.test", b"evil.example/path", b"[::1]:8080", b"a b"]),
)
HEADERS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                b"cookie",
                b"cookie",
                b"host",
                b"x-forwarded-host",
                b"x-forwarded-proto",
                b"user-agent",
                b"referer",
                b"content-length",
                b"transfer-encoding",
                b"x-odd",
            ]
        ),  # fmt: skip
        st.one_of(
            HEADER_VALUES,
            HEADER_VALUES.map(lambda v: b"wechat_oauth_nonce=" + v),
            HEADER_VALUES.map(lambda v: b"a=1; wechat_oauth_nonce=" + v + b"; b=2"),
        ),
    ),
    max_size=5,
)


# --- the app under test --------------------------------------------------------------------------


@dataclass
class Seen:
    """What the middleware received, and what the app behind it saw."""

    scopes: list[dict[str, Any]] = field(default_factory=list)
    handler_calls: list[tuple[str, bool]] = field(default_factory=list)


def downstream(seen: Seen) -> Starlette:
    async def callback(request: Request) -> JSONResponse:
        me = request.scope.get("wechat")
        seen.handler_calls.append(("callback", me is not None))
        assert me is not None, "the callback handler ran without an identity"
        return JSONResponse({"openid": me.openid, "state": me.state})

    async def other(request: Request) -> PlainTextResponse:
        seen.handler_calls.append(("other", "wechat" in request.scope))
        return PlainTextResponse("other")

    return Starlette(routes=[Route(CALLBACK, callback), Route("/{rest:path}", other)])


def recording(app: Any, seen: Seen, raw_query: bytes | None) -> Any:
    """The server side of the transport: optionally swaps in a raw query string, records the
    scope the middleware gets."""

    async def server(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if raw_query is not None and scope["type"] == "http":
            scope = {**scope, "query_string": raw_query}
        seen.scopes.append(scope)
        await app(scope, receive, send)

    return server


@dataclass
class Outcome:
    response: httpx.Response
    seen: Seen
    emulator: WeChatEmulator
    code: str


async def send_through_middleware(
    *,
    path: str,
    query: str,
    raw_query: bytes | None = None,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    root_path: str = "",
    **options: Any,
) -> Outcome:
    emulator = WeChatEmulator()
    code = emulator.issue_code("snsapi_base")
    seen = Seen()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator), base_url=WECHAT_URL
    ) as upstream:
        middleware = WeChatOAuthMiddleware(
            downstream(seen),
            appid=emulator.appid,
            secret=emulator.secret,
            api_base_url=WECHAT_URL,
            authorize_base_url=AUTHORIZE_URL,
            http_client=upstream,
            **options,
        )
        if raw_query is not None:
            raw_query = raw_query.replace(ISSUED.encode(), code.encode())
        transport = httpx.ASGITransport(
            app=recording(middleware, seen, raw_query), root_path=root_path
        )
        try:
            async with httpx.AsyncClient(transport=transport, base_url=APP_URL) as client:
                url = APP_URL + path + ("?" + query.replace(ISSUED, code) if query else "")
                with anyio.fail_after(30):
                    response = await client.request(method, url, headers=headers)
        finally:
            await middleware.aclose()
    return Outcome(response, seen, emulator, code)


def no_upstream_call(outcome: Outcome) -> bool:
    return outcome.emulator.total_exchanges == 0 and not outcome.emulator.calls


# --- 1. the callback's query string, method and headers ------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@FUZZ
@given(query=queries(), method=METHODS, headers=HEADERS, verify=st.booleans())
def test_fuzzed_callbacks_get_the_documented_answer(backend, query, method, headers, verify):
    text, raw = query

    async def main() -> Outcome:
        return await send_through_middleware(
            path=CALLBACK,
            query=text,
            raw_query=raw,
            method=method,
            headers=headers,
            login_path=LOGIN if verify else None,
        )

    outcome = anyio.run(main, backend=backend)
    response = outcome.response
    received: bytes = outcome.seen.scopes[0]["query_string"]
    reasons = callback_reasons(received)
    status = response.status_code
    error = response.json()["error"] if status >= 400 and response.content else None
    event(f"{status} {error or ''}".strip())
    assert status != 500
    if method not in ("GET", "HEAD"):
        assert (status, response.headers.get("allow")) == (405, "GET, HEAD")
        assert error in (None, "method_not_allowed")
        assert no_upstream_call(outcome)
    elif reasons:
        assert status == 400, (received, response.text)
        assert method == "HEAD" or error in reasons, (received, error, reasons)
        assert no_upstream_call(outcome)
    elif verify:  # a state no login of ours issued: refused before WeChat
        assert status == 403, (received, response.text)
        assert method == "HEAD" or error == "invalid_state"
        assert no_upstream_call(outcome)
    else:
        fields = dict(form_fields(received) or [])
        if fields["code"] == outcome.code:
            assert status == 200, (received, response.text)
            if method == "GET":
                assert response.json() == {
                    "openid": outcome.emulator.user.openid,
                    "state": fields.get("state"),
                }
        else:  # well formed, but WeChat never issued it
            assert status == 400, (received, response.text)
            assert method == "HEAD" or error == "code_invalid"
        assert outcome.emulator.exchange_count(fields["code"]) == 1
        assert outcome.emulator.total_exchanges == 1
    assert ("callback", False) not in outcome.seen.handler_calls
    assert ("other", True) not in outcome.seen.handler_calls


# --- 2. variants of the callback path, mounted or not --------------------------------------------


@st.composite
def path_variants(draw: st.DrawFn) -> tuple[str, str]:
    """``(root_path, request path)``: the callback path, under the root path or not, mutated."""
    root = draw(st.sampled_from(["", "", "/app", "/app/", "/a/b", "/wechat"]))
    path = draw(st.sampled_from([CALLBACK, root + CALLBACK, "/other" + CALLBACK]))
    for _ in range(draw(st.integers(0, 3))):
        mutation = draw(
            st.sampled_from(
                ["slash", "double", "inner_double", "encode", "case", "suffix", "dot", "nul"]
            )
        )
        if mutation == "slash":
            path += "/"
        elif mutation == "double":
            path = "/" + path
        elif mutation == "inner_double" and "/" in path:
            at = draw(st.sampled_from([i for i, c in enumerate(path) if c == "/"]))
            path = path[:at] + "/" + path[at:]
        elif mutation == "encode":
            at = draw(st.integers(0, len(path) - 1))
            if path[at] != "%":
                path = path[:at] + f"%{ord(path[at]):02X}" + path[at + 1 :]
        elif mutation == "case":
            at = draw(st.integers(0, len(path) - 1))
            path = path[:at] + path[at].swapcase() + path[at + 1 :]
        elif mutation == "suffix":
            path += draw(st.sampled_from([";x", "%20", "%2F", "x", ".json", "%3Fcode=1"]))
        elif mutation == "dot":
            path = path.replace("/callback", "/./callback").replace("//", "/")
        elif mutation == "nul":
            path += "%00"
    return root, path


@pytest.mark.parametrize("backend", BACKENDS)
@FUZZ
@given(variant=path_variants(), method=st.sampled_from(["GET", "GET", "HEAD", "POST"]))
def test_fuzzed_paths_are_the_callback_exactly_when_documented(backend, variant, method):
    root_path, path = variant

    async def main() -> Outcome:
        return await send_through_middleware(
            path=path, query=f"code={ISSUED}&state=p", method=method, root_path=root_path
        )

    outcome = anyio.run(main, backend=backend)
    scope = outcome.seen.scopes[0]
    status = outcome.response.status_code
    event(f"{'callback' if is_callback(scope) else 'not the callback'}: {status}")
    assert status != 500
    if is_callback(scope):
        if method == "POST":
            assert status == 405
            assert no_upstream_call(outcome)
        else:
            assert status == 200, (scope["path"], outcome.response.text)
            assert outcome.emulator.exchange_count(outcome.code) == 1
            # Normally the callback handler. The one limit of the rule: when callback_path
            # itself starts with root_path + "/" (root "/wechat"), a request for exactly
            # callback_path is intercepted while Starlette, stripping root_path, routes it to
            # "/callback": that handler then also sees the identity.
            assert [seen_identity for _, seen_identity in outcome.seen.handler_calls] == [True]
            if outcome.seen.handler_calls != [("callback", True)]:
                event("the limit: intercepted, routed by Starlette to another handler")
    else:
        assert no_upstream_call(outcome), scope["path"]
        assert all(name == "other" for name, _ in outcome.seen.handler_calls), scope["path"]
        assert ("other", True) not in outcome.seen.handler_calls


# --- 3. the login endpoint -----------------------------------------------------------------------

LOGIN_NAMES = st.sampled_from(["scope", "next", "next", "retry", "x", "Next", "%6Eext", ""])
NEXT_VALUES = st.sampled_from(
    ["/", "/profile", "/a?b=c", "//evil.example", "/\\evil.example", "\\\\evil.example",
     "https://evil.example/", "javascript:alert(1)", "/%2F/evil.example", "/ok%0d%0aSet-Cookie:x",
     "/" + "p" * 66, "/" + "p" * 67, "/\u00e9", "profile", " /x", "/x y", "/x\ty",
     "/%5Cevil.example", "/%252F%252Fevil.example", "/%2F%5Cevil.example", "/\u6587/1?a=%E6",
     "/" + "p" * 1999, "/" + "p" * 2000]
)  # fmt: skip


@st.composite
def login_queries(draw: st.DrawFn) -> str:
    pieces = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(LOGIN_NAMES)
        value = draw(
            st.one_of(
                NEXT_VALUES,
                st.sampled_from(["snsapi_base", "snsapi_userinfo", "snsapi_login", "SNSAPI_BASE"]),
                VALUES,
            )
        )
        quoted = draw(st.booleans())
        pieces.append(f"{name}={quote(value, safe='') if quoted else _raw(value)}")
    return "&".join(pieces)


@pytest.mark.parametrize("backend", BACKENDS)
@FUZZ
@given(query=login_queries(), method=METHODS, headers=HEADERS, forwarded=st.booleans())
def test_fuzzed_logins_redirect_only_to_safe_places(backend, query, method, headers, forwarded):
    async def main() -> Outcome:
        return await send_through_middleware(
            path=LOGIN,
            query=query,
            method=method,
            headers=headers,
            login_path=LOGIN,
            trust_forwarded=forwarded,
        )

    outcome = anyio.run(main, backend=backend)
    response = outcome.response
    status = response.status_code
    event(
        str(status) + (f" {response.json()['error']}" if status == 400 and method == "GET" else "")
    )
    assert status != 500
    assert no_upstream_call(outcome)
    assert outcome.seen.handler_calls == []
    if method not in ("GET", "HEAD"):
        assert (status, response.headers.get("allow")) == (405, "GET, HEAD")
        return
    if status == 400:
        documented = {"invalid_query", "invalid_next", "invalid_scope", "invalid_host"}
        assert method == "HEAD" or response.json()["error"] in documented
        return
    assert status == 302, response.text
    received: bytes = outcome.seen.scopes[0]["query_string"]
    fields = dict(form_fields(received) or [])  # the last of repeated fields counts
    if fields.get("next"):
        next_path = fields["next"]
        assert len(next_path.encode()) <= 2000
        for _ in range(4):  # and so is every form an app or proxy may decode it to
            assert _SAFE_NEXT.fullmatch(next_path), fields["next"]
            next_path = unquote(next_path)
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == AUTHORIZE_URL
    redirect_uri = urlsplit(parse_qs(location.query)["redirect_uri"][0])
    assert redirect_uri.scheme in ("http", "https")
    assert redirect_uri.path == CALLBACK
    assert not redirect_uri.query and not redirect_uri.fragment
    assert "@" not in redirect_uri.netloc and _NO_BACKSLASH.fullmatch(redirect_uri.netloc)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("wechat_oauth_nonce=") and "HttpOnly" in cookie


# --- the root_path decision, by example ----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("root_path", "path", "intercepted"),
    [
        pytest.param("", CALLBACK, True, id="plain"),
        pytest.param("/app", "/app" + CALLBACK, True, id="root-path-in-path"),
        pytest.param("/app", CALLBACK, True, id="root-path-stripped-from-path"),
        pytest.param("", "/app" + CALLBACK, False, id="prefix-that-is-no-root-path"),
        pytest.param("/app", "/other" + CALLBACK, False, id="another-prefix"),
        pytest.param("", CALLBACK + "/", True, id="trailing-slash"),
        pytest.param("/app", "/app" + CALLBACK + "/", True, id="root-path-and-trailing-slash"),
        pytest.param("", CALLBACK + "//", False, id="two-trailing-slashes"),
        pytest.param("", "/" + CALLBACK, False, id="double-slash"),
        pytest.param("", "/wechat/%63allback", True, id="percent-encoded-is-decoded-first"),
        pytest.param("", "/wechat%2Fcallback", True, id="encoded-slash-is-decoded-first"),
        pytest.param("", "/WeChat/callback", False, id="case-differs"),
        # The limit: root_path "/wechat" is a prefix of callback_path, so "/wechat/callback"
        # matches exactly although a router stripping root_path sees "/callback".
        pytest.param("/wechat", CALLBACK, True, id="limit-root-path-prefixes-callback-path"),
    ],
)
def test_callback_path_matching(backend, root_path, path, intercepted):
    async def main() -> Outcome:
        return await send_through_middleware(path=path, query=f"code={ISSUED}", root_path=root_path)

    outcome = anyio.run(main, backend=backend)
    print(f"\n{root_path or '-'} {path}: {outcome.response.status_code}")
    assert is_callback(outcome.seen.scopes[0]) is intercepted
    assert outcome.emulator.total_exchanges == (1 if intercepted else 0)
    if intercepted:
        assert outcome.response.status_code == 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_middleware_inside_a_starlette_mount(backend):
    """A sub-application mounted at ``/app``: Starlette passes ``root_path="/app"`` and the full
    path, so the callback is ``/app/wechat/callback``, and the login link builds that URL."""

    async def main() -> tuple[list[int], str, int]:
        emulator = WeChatEmulator()
        seen = Seen()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=emulator), base_url=WECHAT_URL
        ) as upstream:
            inner = WeChatOAuthMiddleware(
                downstream(seen),
                appid=emulator.appid,
                secret=emulator.secret,
                api_base_url=WECHAT_URL,
                http_client=upstream,
                login_path=LOGIN,
                verify_state=False,
            )
            outer = Starlette(routes=[Mount("/app", app=inner)])
            transport = httpx.ASGITransport(app=outer)
            async with httpx.AsyncClient(transport=transport, base_url=APP_URL) as client:
                code = emulator.issue_code()
                statuses = [
                    (await client.get(f"/app{CALLBACK}?code={code}")).status_code,
                    (await client.get(f"{CALLBACK}?code={code}")).status_code,  # not mounted
                ]
                login = await client.get(f"/app{LOGIN}")
            await inner.aclose()
        redirect_uri = parse_qs(urlsplit(login.headers["location"]).query)["redirect_uri"][0]
        return statuses, redirect_uri, emulator.total_exchanges

    statuses, redirect_uri, exchanges = anyio.run(main, backend=backend)
    assert statuses == [200, 404]
    assert redirect_uri == f"{APP_URL}/app{CALLBACK}"
    assert exchanges == 1
