"""The desktop QR page for any ``next`` the login endpoint accepts (issue 26, item 3).

An outside audit: a login link holding a ``next`` of about 760 non-ASCII bytes (each one
percent-encoded into three characters) is more than a QR code holds at error level M, and the
page answered 500; well before that, the code grows too dense to scan off a screen. Now a long
``next`` is kept by the backend and the QR code holds a short link naming it by id: the phone
(another browser, in WeChat) follows that link, logs in, and comes back with that exact
``next``. On the memory backend (asyncio and trio) and on a real Redis, with the desktop page
and the phone served by two middlewares sharing it. An unknown or expired id is 400
``qr_link_expired``; a ``next`` planted in the store is checked again; a backend that cannot
keep the ``next`` leaves the long link, shown as text when no QR code holds it.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import uuid
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx
import pytest
import segno
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from _servers import free_port
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.backends._codec import dump_outcome
from asgi_wechat_oauth.web._kept import MAX_INLINE_LINK, KeptNext
from support import APP_URL

pytestmark = pytest.mark.anyio

LOGIN = "/wechat/login"
DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
WECHAT_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI "
    "Language/zh_CN"
)
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

#: The audit's case: about 760 bytes of non-ASCII, 2,298 characters once encoded, beyond what
#: the old page's QR code held (it answered 500).
AUDIT_NEXT = "/搜索?q=" + "微信" * 126
#: The longest ``next`` the login endpoint accepts, in ASCII and in Chinese.
LONGEST_ASCII = "/search?q=" + "a%20b&c=d" * 221 + "x"
LONGEST_CHINESE = "/文章/" + "公众号登录" * 132 + "微信" * 2
LONG_NEXTS = [
    pytest.param(AUDIT_NEXT, id="audit-760-bytes-chinese"),
    pytest.param(LONGEST_ASCII, id="2000-bytes-ascii"),
    pytest.param(LONGEST_CHINESE, id="2000-bytes-chinese"),
]
#: A QR code of this version at most (57 modules at level M) reads easily off a screen.
MAX_VERSION = 10


@pytest.fixture
def flow(flow):
    """The page that moves the login to the phone (``desktop_login="phone"``): its link holds
    the ``next`` (the handoff's keeps it in the backend and its link holds only an id)."""

    async def make(**options):
        return await flow(desktop_login="phone", **options)

    return make


def test_the_cases_are_what_they_claim():
    assert 760 <= len(AUDIT_NEXT.encode()) <= 770
    assert len(LONGEST_ASCII.encode()) == len(LONGEST_CHINESE.encode()) == 2000


def _link_on(page: str) -> str:
    match = re.search(r'<code id="login-link">([^<]*)</code>', page)
    assert match is not None, page[:500]
    return html.unescape(match.group(1))


async def _qr_link(desktop: httpx.AsyncClient, next_path: str, **params: str) -> str:
    """The desktop browser's QR page: 200, a QR code of a short link (returned)."""
    page = await desktop.get(
        LOGIN, params={"next": next_path, **params}, headers={"user-agent": DESKTOP, "accept": HTML}
    )
    assert page.status_code == 200, page.text
    link = _link_on(page.text)
    assert len(link) <= MAX_INLINE_LINK and "next=" not in link
    qr = segno.make(link, error="m", micro=False)
    assert qr.version <= MAX_VERSION
    svg = qr.svg_inline(scale=4, border=2, title="QR", omitsize=True)
    assert svg in page.text  # the QR code says exactly that short link
    return link


async def _phone_follows(phone: httpx.AsyncClient, link: str) -> httpx.Response:
    """The phone scans the code: WeChat opens the link, login, consent, callback."""
    assert not phone.cookies  # another browser: nothing of the desktop's reaches it
    return await phone.get(
        link, headers={"user-agent": WECHAT_IOS, "accept": HTML}, follow_redirects=True
    )


def _kept_key(appid: str, next_id: str) -> str:
    """The backend key a QR link's id names (a hash, as every key is)."""
    return "next:" + hashlib.sha256(f"{appid}:{next_id}".encode()).hexdigest()


def _next_id(link: str) -> str:
    return dict(parse_qsl(urlsplit(link).query))["next_id"]


# --- the memory backend (asyncio and trio) -------------------------------------------------


@pytest.mark.parametrize("next_path", LONG_NEXTS)
async def test_a_long_next_gets_a_short_qr_link_and_the_phone_lands_on_it(
    flow, browser_factory, emulator, next_path
):
    middleware, desktop = await flow()
    link = await _qr_link(desktop, next_path)
    assert link.startswith(f"{APP_URL}{LOGIN}?next_id=")
    response = await _phone_follows(browser_factory(middleware), link)
    assert response.status_code == 200, response.text
    assert response.json()["next"] == next_path
    assert response.json()["openid"] == emulator.user.openid
    assert emulator.total_exchanges == 1
    # Scanned again (the link is not used up): the same next again.
    again = await _phone_follows(browser_factory(middleware), link)
    assert again.status_code == 200 and again.json()["next"] == next_path
    # Opened on the desktop itself: the same QR page, of the same short link.
    page = await desktop.get(link, headers={"user-agent": DESKTOP, "accept": HTML})
    assert page.status_code == 200 and _link_on(page.text) == link


async def test_the_short_link_keeps_the_scope_and_json_gets_it_too(flow, browser_factory):
    middleware, desktop = await flow()
    link = await _qr_link(desktop, LONGEST_CHINESE, scope="snsapi_userinfo")
    assert dict(parse_qsl(urlsplit(link).query))["scope"] == "snsapi_userinfo"
    response = await _phone_follows(browser_factory(middleware), link)
    assert response.json()["scope"] == "snsapi_userinfo"
    assert response.json()["next"] == LONGEST_CHINESE
    answer = await desktop.get(
        LOGIN,
        params={"next": AUDIT_NEXT},
        headers={"user-agent": DESKTOP, "accept": "application/json"},
    )
    assert answer.status_code == 200
    login_url = answer.json()["login_url"]
    assert len(login_url) <= MAX_INLINE_LINK and "next_id=" in login_url
    phone = await _phone_follows(browser_factory(middleware), login_url)
    assert phone.json()["next"] == AUDIT_NEXT


async def test_a_short_next_stays_in_the_link_and_nothing_is_stored(flow, browser_factory):
    backend = MemoryBackend()
    middleware, desktop = await flow(backend=backend)
    page = await desktop.get(
        LOGIN, params={"next": "/文章/1?tab=评论"}, headers={"user-agent": DESKTOP, "accept": HTML}
    )
    link = _link_on(page.text)
    assert link == f"{APP_URL}{LOGIN}?next=%2F%E6%96%87%E7%AB%A0%2F1%3Ftab%3D%E8%AF%84%E8%AE%BA"
    assert backend.is_empty()
    response = await _phone_follows(browser_factory(middleware), link)
    assert response.json()["next"] == "/文章/1?tab=评论"


async def test_an_id_never_issued_is_400_and_a_broken_one_is_invalid_query(flow, browser_factory):
    middleware, _ = await flow()
    phone = browser_factory(middleware)
    unknown = f"{LOGIN}?next_id={'A' * 22}"
    program = await phone.get(unknown, headers={"user-agent": WECHAT_IOS})
    assert program.status_code == 400
    assert program.json()["error"] == "qr_link_expired"
    page = await phone.get(unknown, headers={"user-agent": WECHAT_IOS, "accept": HTML})
    assert page.status_code == 400 and f'href="{LOGIN}"' in page.text  # log in again, here
    assert middleware.backend.is_empty()  # the look-up left no lease behind
    for query in ("next_id=short", f"next_id={'A' * 22}&next=/me", "next_id=" + "A" * 23):
        broken = await phone.get(f"{LOGIN}?{query}", headers={"user-agent": WECHAT_IOS})
        assert broken.status_code == 400 and broken.json()["error"] == "invalid_query"
    assert middleware.counters.errors == {"qr_link_expired": 2, "invalid_query": 3}


async def test_an_expired_id_is_400_not_a_login_without_its_next(flow, browser_factory):
    middleware, desktop = await flow(state_max_age=1)
    link = await _qr_link(desktop, AUDIT_NEXT)
    await anyio.sleep(1.1)  # past the state's max age, the id's lifetime
    response = await browser_factory(middleware).get(link, headers={"user-agent": WECHAT_IOS})
    assert response.status_code == 400
    assert response.json()["error"] == "qr_link_expired"


async def test_on_error_answers_an_expired_link_and_can_read_the_request(flow, browser_factory):
    seen = []

    async def body_and_reason(scope, receive, send):
        seen.append(await Request(scope, receive).body())
        await PlainTextResponse(scope["path"], status_code=410)(scope, receive, send)

    def on_error(scope, error):
        return body_and_reason if error.reason == "qr_link_expired" else None

    middleware, _ = await flow(on_error=on_error)
    response = await browser_factory(middleware).get(
        f"{LOGIN}?next_id={'B' * 22}", headers={"user-agent": WECHAT_IOS}
    )
    assert (response.status_code, response.text, seen) == (410, LOGIN, [b""])


async def test_a_next_planted_in_the_backend_is_checked_again(flow, browser_factory, emulator):
    """Whoever can write to the store cannot turn the login into an open redirect."""
    backend = MemoryBackend()
    middleware, _ = await flow(backend=backend)
    key = _kept_key(emulator.appid, "C" * 22)
    claim = await backend.claim(key)
    assert claim.lease is not None
    await backend.complete(key, claim.lease, KeptNext("//evil.example/"), ttl=60)
    response = await browser_factory(middleware).get(
        f"{LOGIN}?next_id={'C' * 22}", headers={"user-agent": WECHAT_IOS}
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_next"
    assert emulator.total_exchanges == 0


async def test_a_bad_next_is_refused_before_anything_is_kept(flow):
    backend = MemoryBackend()
    middleware, desktop = await flow(backend=backend)
    for bad in ("//evil.example/" + "文" * 300, "/" + "文" * 667):
        page = await desktop.get(
            LOGIN, params={"next": bad}, headers={"user-agent": DESKTOP, "accept": "*/*"}
        )
        assert page.status_code == 400 and page.json()["error"] == "invalid_next"
    assert backend.is_empty()


# --- a real Redis: two workers --------------------------------------------------------------


def _redis_backend(url: str, prefix: str, **options):
    from asgi_wechat_oauth.backends.redis import RedisBackend

    return RedisBackend(url, prefix=prefix, **options)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the Redis client is asyncio-only
@pytest.mark.parametrize("sealed", [False, True], ids=["clear", "encrypted"])
@pytest.mark.parametrize("next_path", LONG_NEXTS)
async def test_two_workers_on_redis_the_page_on_one_the_phone_on_the_other(
    flow, browser_factory, emulator, redis_server, next_path, sealed
):
    import redis.asyncio as aioredis

    prefix = f"qr-{uuid.uuid4().hex}"
    options = {"encryption_key": b"k" * 32} if sealed else {}
    first, desktop = await flow(backend=_redis_backend(redis_server.url, prefix, **options))
    second, _ = await flow(backend=_redis_backend(redis_server.url, prefix, **options))
    link = await _qr_link(desktop, next_path)
    response = await _phone_follows(browser_factory(second), link)
    assert response.status_code == 200, response.text
    assert response.json()["next"] == next_path
    assert emulator.total_exchanges == 1
    # In Redis under a hash, for no longer than the state's max age, and no lease left.
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        keys = sorted(await client.keys(f"{prefix}:{{next:*"))
        assert [key.rsplit(b":", 1)[1] for key in keys] == [b"result"]
        assert _next_id(link).encode() not in keys[0]
        assert 0 < await client.pttl(keys[0]) <= 600_000
    finally:
        await client.aclose()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_redis_a_planted_next_is_refused_and_an_unknown_id_is_400(
    flow, browser_factory, emulator, redis_server
):
    import redis.asyncio as aioredis

    prefix = f"qr-{uuid.uuid4().hex}"
    middleware, _ = await flow(backend=_redis_backend(redis_server.url, prefix))
    phone = browser_factory(middleware)
    key = _kept_key(emulator.appid, "D" * 22)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.set(f"{prefix}:{{{key}}}:result", dump_outcome(KeptNext("/\\evil.example")))
        planted = await phone.get(f"{LOGIN}?next_id={'D' * 22}", headers={"user-agent": WECHAT_IOS})
        assert planted.status_code == 400 and planted.json()["error"] == "invalid_next"
        unknown = await phone.get(f"{LOGIN}?next_id={'E' * 22}", headers={"user-agent": WECHAT_IOS})
        assert unknown.status_code == 400 and unknown.json()["error"] == "qr_link_expired"
        assert await client.keys(f"{prefix}:{{{_kept_key(emulator.appid, 'E' * 22)}}}*") == []
    finally:
        await client.aclose()
    assert emulator.total_exchanges == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_backend_that_cannot_keep_the_next_leaves_the_long_link_as_text(
    flow, browser_factory, caplog
):
    """Redis unreachable, ``on_unavailable="fail"``: the page still answers 200, with the link
    holding ``next`` (as text: no QR code holds it); a phone's id is 503, never 500."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    backend = _redis_backend(dead, "qr-dead", on_unavailable="fail", redis_timeout=1.0)
    middleware, desktop = await flow(backend=backend)
    with caplog.at_level(logging.WARNING, logger="asgi_wechat_oauth"):
        page = await desktop.get(
            LOGIN,
            params={"next": LONGEST_CHINESE},
            headers={"user-agent": DESKTOP, "accept": HTML, "accept-language": "en"},
        )
    assert page.status_code == 200
    assert "<svg" not in page.text and "asgi-wechat-oauth[qr]" not in page.text
    assert "Copy the link below and open it in WeChat." in page.text
    link = _link_on(page.text)
    assert dict(parse_qsl(urlsplit(link).query)) == {"next": LONGEST_CHINESE}
    assert "wechat_oauth.qr_next_not_kept reason=backend_unavailable" in caplog.text
    phone = await browser_factory(middleware).get(
        f"{LOGIN}?next_id={'F' * 22}", headers={"user-agent": WECHAT_IOS}
    )
    assert phone.status_code == 503 and phone.json()["error"] == "backend_unavailable"


def test_the_page_shows_a_link_no_qr_code_holds_as_text():
    from asgi_wechat_oauth.web._qrpage import render_qr_page

    link = f"{APP_URL}{LOGIN}?next=" + "%E6%96%87" * 1000
    page = render_qr_page(link, "zh").decode()
    assert "<svg" not in page and html.escape(link) in page
    assert "请复制下面的链接，在微信里打开。" in page
