"""Cookie tossing in real Chromium: a sibling subdomain sets cookies for the parent domain.

Chromium maps every ``*.example.test`` host to the loopback address (``--host-resolver-rules``),
so ``app.example.test`` (the Starlette example under uvicorn, over http and over https) and
``evil.example.test`` (tests/_evil_site.py, also over both) are two sites under one parent
domain: a cookie evil sets with ``Domain=example.test`` is sent to the app too (cookies ignore
ports). The WeChat emulator (with a door for the attacker's own codes) runs under a third
uvicorn. Each test plays one attack of tests/test_cookie_tossing.py in the browser and asserts
what the browser ends up with: the page it shows, the codes the emulator traded, its cookies.

Chromium sends both copies of a name, the longer path first, then the older first, and a
cookie re-set with a new value counts as new: a copy tossed at ``Path=/`` comes after ours (at
the callback's path) every time, one tossed at the callback's path only when it was set after
the login started. Whichever comes last is the one a parser that keeps the last duplicate
trusted, as the code before the fix did.
The tests skip when Chromium or Playwright is missing (and fail in CI).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from _chromium import CHROMIUM_ARGS, playwright_and_chromium
from _evil_site import ATTACKER
from _servers import ROOT, free_port, process, uvicorn_args
from asgi_wechat_oauth.testing import WeChatEmulator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEFAULTS = WeChatEmulator()
VICTIM = DEFAULTS.user
NONCE = "wechat_oauth_nonce"
HOST_NONCE = f"__Host-{NONCE}"
LOOPS = "wechat_oauth_logins"
CALLBACK = "/wechat/callback"
PARENT = "example.test"
#: The victim browses in WeChat (a desktop browser would get the QR page): Android, as in
#: tests/test_browser.py.
WECHAT_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 "
    "MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN "
    "ABI/arm64"
)
#: How Playwright names a cookie's domain: host-only as the host, a Domain= one with a dot.
OWN, TOSSED = f"app.{PARENT}", f".{PARENT}"
BROWSER_ARGS = [
    *CHROMIUM_ARGS,
    # app.example.test and evil.example.test: two sibling sites, both on this machine.
    f"--host-resolver-rules=MAP *.{PARENT} 127.0.0.1",
    "--ignore-certificate-errors",  # the https sites' certificate is made by the test
]


# --- servers and browser -----------------------------------------------------------------------


@dataclass
class Sites:
    """Base URLs: as the browser reaches them, and (``*_direct``) as httpx does."""

    wechat: str
    app: str
    app_direct: str
    secure_app: str
    secure_app_direct: str
    evil: str
    secure_evil: str


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's ``chromium`` or ``$CHROMIUM``) through Playwright's sync
    API, as in tests/test_browser.py: skip when either is missing, fail in CI."""
    sync_api, executable = playwright_and_chromium()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for both sites: ``(key file, certificate file)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, OWN)])
    now = datetime.now(timezone.utc)
    hosts = [x509.DNSName(f"{host}.{PARENT}") for host in ("app", "evil")]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(hosts), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = directory / "key.pem", directory / "cert.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


@pytest.fixture(scope="module")
def sites(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    """The emulator, the example app over http and over https, and evil over both: five
    uvicorn processes on free ports, for the whole module (each test has a browser context
    of its own, and looks only at the codes it made)."""
    key_file, cert_file = _certificate(tmp_path_factory.mktemp("tls"))
    tls = ["--ssl-keyfile", str(key_file), "--ssl-certfile", str(cert_file)]
    port = {name: free_port() for name in ("wechat", "app", "secure_app", "evil", "secure_evil")}
    wechat = f"http://127.0.0.1:{port['wechat']}"
    urls = Sites(
        wechat=wechat,
        app=f"http://app.{PARENT}:{port['app']}",
        app_direct=f"http://127.0.0.1:{port['app']}",
        secure_app=f"https://app.{PARENT}:{port['secure_app']}",
        secure_app_direct=f"https://127.0.0.1:{port['secure_app']}",
        evil=f"http://evil.{PARENT}:{port['evil']}",
        secure_evil=f"https://evil.{PARENT}:{port['secure_evil']}",
    )

    def app_env(base_url: str) -> dict[str, str]:
        return {
            "WECHAT_APPID": DEFAULTS.appid,
            "WECHAT_SECRET": DEFAULTS.secret,
            "WECHAT_REDIS_URL": "",  # one worker, the memory backend
            "WECHAT_API_BASE_URL": wechat,
            "WECHAT_AUTHORIZE_BASE_URL": wechat,
            # WeChat's consent sends the browser back to app.example.test, not to 127.0.0.1.
            "WECHAT_REDIRECT_URI": f"{base_url}{CALLBACK}",
            "WECHAT_LOGIN_PATH": "/wechat/login",
            "WECHAT_SESSION_SECRET": secrets.token_urlsafe(32),
        }

    def ours(factory: str, port: int, *extra: str) -> list[str]:
        module = f"_evil_site:{factory}"
        return uvicorn_args(module, port, "--factory", "--app-dir", "tests", *extra)

    example = "examples.starlette_app:app"
    servers = [
        (ours("wechat_with_attacker", port["wechat"]), "wechat", None),
        (uvicorn_args(example, port["app"]), "app", app_env(urls.app)),
        (uvicorn_args(example, port["secure_app"], *tls), "secure_app", app_env(urls.secure_app)),
        (ours("evil_site", port["evil"]), "evil", None),
        (ours("evil_site", port["secure_evil"], *tls), "secure_evil", None),
    ]
    with contextlib.ExitStack() as stack:
        for args, name, env in servers:
            stack.enter_context(process(args, port[name], env))
        yield urls


# --- what the victim's browser does and shows --------------------------------------------------


@dataclass
class Shown:
    """The page a navigation ended on."""

    status: int
    path: str
    heading: str
    openid: str  # the example's home page shows the logged-in user's openid in <code>
    text: str


@pytest.fixture
def victim(browser: Any) -> Iterator[tuple[Any, list[str]]]:
    """The victim's page, in WeChat, in a browser context of its own (closed at the end, with
    its connections), and the codes of every callback it requests."""
    context = browser.new_context(user_agent=WECHAT_UA)
    page = context.new_page()
    page.set_default_timeout(15_000)
    codes: list[str] = []
    page.on(
        "request",
        lambda request: (
            codes.extend(parse_qs(urlsplit(request.url).query).get("code", []))
            if urlsplit(request.url).path == CALLBACK
            else None
        ),
    )
    yield page, codes
    context.close()


def shown(page: Any) -> Shown:
    page.wait_for_load_state()
    status, heading, openid, text = page.evaluate(
        """() => [
            performance.getEntriesByType('navigation')[0].responseStatus,
            document.querySelector('h1')?.innerText ?? '',
            document.querySelector('code')?.innerText ?? '',
            document.body.innerText,
        ]"""
    )
    return Shown(status, urlsplit(page.url).path, heading, openid, text)


def start_login(page: Any, app: str, wechat: str) -> None:
    """The victim opens a login and leaves it on WeChat's consent page: the browser holds a
    login cookie of its own, and no code was issued."""
    httpx.post(f"{wechat}/_consent/wait", params={"on": "1"}).raise_for_status()
    try:
        page.goto(f"{app}/wechat/login?next=%2F&scope=snsapi_userinfo")
    finally:
        httpx.post(f"{wechat}/_consent/wait", params={"on": "0"}).raise_for_status()
    assert urlsplit(page.url).path == "/connect/oauth2/authorize"


def log_in(page: Any, app: str) -> Shown:
    """The victim taps the example's login link and WeChat's consent: where it ends."""
    page.goto(f"{app}/")
    page.click("#login")
    return shown(page)


def toss(page: Any, evil: str, *cookies: str, to: str | None = None) -> None:
    """The victim visits evil, which sets ``cookies`` (Set-Cookie values) and sends the
    browser on ``to``."""
    query = [("cookie", cookie) for cookie in cookies] + ([("to", to)] if to else [])
    page.goto(f"{evil}/toss?{urlencode(query)}")


def jar(page: Any, name: str) -> list[tuple[str, str, str]]:
    """The browser's cookies called ``name``: ``(domain, path, value)`` each."""
    found = [c for c in page.context.cookies() if c["name"] == name]
    return sorted((c["domain"], c["path"], c["value"]) for c in found)


def exchanges(sites: Sites) -> dict[str, int]:
    """How many times the emulator was asked to trade each code."""
    response = httpx.get(f"{sites.wechat}/_emulator/stats")
    response.raise_for_status()
    counts: dict[str, int] = response.json()["exchanges"]
    return counts


def attacker_login(sites: Sites, app_direct: str) -> tuple[str, str, str]:
    """Outside the browser, the attacker starts a login of their own at the app and consents
    with their own WeChat account: ``(state, login cookie value, code)``."""
    with httpx.Client(verify=False) as client:  # noqa: S501 - the test's own certificate
        login = client.get(f"{app_direct}/wechat/login?next=%2F&scope=snsapi_userinfo")
        assert login.status_code == 302, login.text
        state = parse_qs(urlsplit(login.headers["location"]).query)["state"][0]
        (nonce,) = (v for k, v in login.cookies.items() if k.endswith(NONCE))
        code = client.post(f"{sites.wechat}/_attacker/code").json()["code"]
    return state, nonce, code


def screenshot(page: Any, name: str) -> None:
    path = ROOT / "artifacts" / f"cookie-tossing-{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def assert_logged_in_as_victim(page: Shown) -> None:
    assert (page.status, page.path) == (200, "/"), page.text
    assert page.heading == f"Hello, {VICTIM.nickname}", page.text
    assert page.openid == VICTIM.openid


def assert_traded_once(codes: list[str], traded: dict[str, int]) -> None:
    """Of the victim's callbacks' codes, the last one, and only it, was traded, once."""
    assert codes, "the browser requested no callback"
    assert {code: traded[code] for code in codes if code in traded} == {codes[-1]: 1}


# --- A. http: a junk nonce tossed by a sibling ------------------------------------------------


@pytest.mark.parametrize("path", ["/", CALLBACK])
def test_a_tossed_junk_nonce_does_not_lock_the_victim_out(victim, sites, path):
    """At ``Path=/`` the junk copy is sent after the victim's own (at the callback's path) on
    every callback, and locked the victim out before the fix: each trip through login failed.
    At the callback's path it came first once the next login re-set the victim's cookie, so
    the victim got in with one more trip, but kept the junk copy for good."""
    page, codes = victim
    start_login(page, sites.app, sites.wechat)
    toss(page, sites.evil, f"{NONCE}=junk; Domain={PARENT}; Path={path}")
    (own,) = (c for c in jar(page, NONCE) if c[0] == OWN)
    assert jar(page, NONCE) == sorted([own, (TOSSED, path, "junk")])  # the toss landed
    try:
        ended = log_in(page, sites.app)
    finally:
        screenshot(page, f"a-junk-nonce-at-{path.strip('/').replace('/', '-') or 'root'}")
    # The callback with both copies trusted neither and sent the browser through login once
    # more, expiring the tossed copy; that second trip logged the victim in.
    assert_logged_in_as_victim(ended)
    assert_traded_once(codes, exchanges(sites))
    assert [domain for domain, _, _ in jar(page, NONCE)] == [OWN]


# --- B. http: login CSRF with the attacker's own nonce, code and state -----------------------


def test_b_a_tossed_attacker_nonce_does_not_log_the_victim_in_as_the_attacker(victim, sites):
    page, codes = victim
    start_login(page, sites.app, sites.wechat)
    state, nonce, code = attacker_login(sites, sites.app_direct)
    callback = f"{sites.app}{CALLBACK}?{urlencode({'code': code, 'state': state})}"
    try:
        toss(page, sites.evil, f"{NONCE}={nonce}; Domain={PARENT}; Path={CALLBACK}", to=callback)
        ended = shown(page)
    finally:
        screenshot(page, "b-login-csrf")
    assert ATTACKER.openid not in ended.text and ATTACKER.nickname not in ended.text
    assert code in codes and exchanges(sites).get(code, 0) == 0  # never traded
    # The callback trusted neither copy; the attacker's state only sent the victim through
    # a login of their own, and the tossed copy was expired on the way.
    assert_logged_in_as_victim(ended)
    assert [domain for domain, _, _ in jar(page, NONCE)] == [OWN]


# --- C. https: __Host- cookies, which no sibling can set ---------------------------------------


def test_c_over_https_the_login_cookie_is_host_prefixed_and_cannot_be_tossed(victim, sites):
    """The victim has no login cookie at all here: over http the attacker's tossed nonce
    would then be the only copy, and trusted; over https it is not even read."""
    page, codes = victim
    state, nonce, code = attacker_login(sites, sites.secure_app_direct)
    # Evil tries both names, Secure, over https: Chromium refuses the __Host- one (it has a
    # Domain), and keeps the plain one, which the app over https never reads.
    tossed = [
        f"{HOST_NONCE}={nonce}; Domain={PARENT}; Path=/; Secure",
        f"{NONCE}={nonce}; Domain={PARENT}; Path=/; Secure",
    ]
    toss(page, sites.secure_evil, *tossed)
    assert jar(page, HOST_NONCE) == []
    assert jar(page, NONCE) == [(TOSSED, "/", nonce)]
    # Evil's login CSRF: the attacker's code and state, with the attacker's nonce tossed.
    callback = f"{sites.secure_app}{CALLBACK}?{urlencode({'code': code, 'state': state})}"
    try:
        toss(page, sites.secure_evil, to=callback)
        ended = shown(page)
    finally:
        screenshot(page, "c-https-host-prefix")
    assert ATTACKER.openid not in ended.text and ATTACKER.nickname not in ended.text
    assert code in codes and exchanges(sites).get(code, 0) == 0
    # Without a __Host- cookie the callback sent the victim through a login of their own,
    # whose cookie is host-only, Secure, at Path=/; the tossed plain copy changed nothing.
    assert_logged_in_as_victim(ended)
    assert_traded_once(codes, exchanges(sites))
    (own,) = (c for c in page.context.cookies() if c["name"] == HOST_NONCE)
    assert (own["domain"], own["path"], own["secure"]) == (OWN, "/", True)
    assert jar(page, NONCE) == [(TOSSED, "/", nonce)]
    # And the victim logs out and in again, the plain copy still there.
    page.click("text=Log out")
    assert_logged_in_as_victim(log_in(page, sites.secure_app))


# --- D. a forged login counter -----------------------------------------------------------------


def test_d_a_tossed_forged_login_counter_does_not_answer_429(victim, sites):
    page, codes = victim
    forged = f"99.{int(time.time())}.deadbeef"  # 99 logins, past any limit, unsigned
    toss(page, sites.evil, f"{LOOPS}={forged}; Domain={PARENT}; Path=/")
    assert jar(page, LOOPS) == [(TOSSED, "/", forged)]
    first = log_in(page, sites.app)
    assert first.status != 429, first.text
    assert_logged_in_as_victim(first)
    # The browser now holds its own counter beside the forged one: the login endpoint trusts
    # neither and expires the forged copy; the callback then finds only its own, and counts 2.
    page.click("text=Log out")
    try:
        second = log_in(page, sites.app)
    finally:
        screenshot(page, "d-forged-counter")
    assert_logged_in_as_victim(second)
    (counter,) = jar(page, LOOPS)
    assert counter[:2] == (OWN, "/") and counter[2].startswith("2.")
    assert len(codes) == 2 and all(exchanges(sites)[code] == 1 for code in codes)
