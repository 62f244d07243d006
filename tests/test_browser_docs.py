"""The documentation site's home page in a real browser, in English and in Chinese.

The site is built with ``mkdocs build --strict`` (tests/_site.py), served from its folder by
``python -m http.server`` on a loopback port, and opened by headless Chromium (Debian's
``chromium`` through Playwright, as in tests/test_browser.py) on a desktop and on a phone. The
screenshots go to artifacts/docs-home-*.png. The test skips when Chromium or Playwright is
missing (and fails in CI, where ``.ci/run`` installs Chromium).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from _chromium import CHROMIUM_ARGS, playwright_and_chromium
from _servers import ROOT, free_port, process
from _site import build

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
HOMES = {"en": "/", "zh": "/zh/"}
LOCALES = {"en": "en-US", "zh": "zh-CN"}
#: A navigation section's title in each language (mkdocs.yml's nav and nav_translations).
SECTION = {"en": "Getting started", "zh": "快速上手"}


def heading(language: str) -> str:
    """The home page's title as docs/<language>/index.md writes it."""
    text = (ROOT / "docs" / language / "index.md").read_text("utf-8")
    return next(line[2:].strip() for line in text.splitlines() if line.startswith("# "))


def visit(browser: Any, url: str, language: str, screen: dict[str, int], name: str) -> dict:
    """Open ``url`` in a fresh context; what the page shows, and what went wrong on the way."""
    phone = screen is PHONE
    context = browser.new_context(
        viewport=screen,
        locale=LOCALES[language],
        device_scale_factor=2 if phone else 1,
        is_mobile=phone,
        has_touch=phone,
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "requestfailed",
        lambda request: problems.append(f"failed: {request.url} ({request.failure})"),
    )
    outside: list[str] = []
    origin = url.split("/", 3)[:3]

    def note(request: Any) -> None:
        if request.url.split("/", 3)[:3] != origin:
            outside.append(request.url)

    page.on("request", note)
    response = page.goto(url)
    page.wait_for_load_state("networkidle")
    path = ROOT / "artifacts" / f"docs-home-{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    shown = {
        "status": response.status if response else None,
        "lang": page.get_attribute("html", "lang"),
        "h1": page.eval_on_selector("article h1", "h => h.firstChild.textContent"),  # not ¶
        "languages": {
            link.get_attribute("hreflang"): link.get_attribute("href")
            for link in page.locator("a.md-select__link").all()
        },
        "nav": page.locator("nav.md-nav--primary").first.text_content() or "",
        "overflow": page.evaluate("document.documentElement.scrollWidth - window.innerWidth"),
        "problems": problems,
        "outside": outside,
        "screenshot": path,
    }
    context.close()
    return shown


@pytest.mark.browser
@pytest.mark.slow
def test_real_browser_shows_the_docs_home_in_english_and_chinese(capsys):
    sync_api, executable = playwright_and_chromium()
    built = build()
    assert built.returncode == 0, built.output
    port = free_port()
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    shown: dict[str, dict] = {}
    with (
        process([*server, "--directory", str(built.site)], port) as site,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            for language, home in HOMES.items():
                url = f"{site.url}{home}"
                shown[language] = visit(browser, url, language, DESKTOP, language)
                shown[f"{language}-phone"] = visit(
                    browser, url, language, PHONE, f"{language}-phone"
                )
        finally:
            browser.close()
    with capsys.disabled():
        print(f"\nscreenshots: {', '.join(str(s['screenshot']) for s in shown.values())}")

    for name, page in shown.items():
        language = name.split("-")[0]
        assert page["status"] == 200, name
        assert page["lang"] == language, name
        assert page["h1"] == heading(language), name
        # The language switcher leads to both homes, from either.
        assert page["languages"] == HOMES, name
        assert SECTION[language] in page["nav"], name
        # Everything comes from the site itself (no web fonts or scripts from elsewhere, which
        # a reader in China may not reach), and loads.
        assert page["outside"] == [], name
        assert page["problems"] == [], name
        assert page["overflow"] <= 0, f"{name}: wider than the screen"
