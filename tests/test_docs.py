"""The documentation site (docs/, mkdocs.yml): every page in both languages, every ```python
block on it runs, the configuration tables come from the config classes, the two languages
name the same options, reasons and errcodes, the chart is the one RESULTS.md makes, and
``mkdocs build --strict`` passes.

The checks about the whole documentation wait (skip, saying which pages) while a page is still
the one-line stub it started as; once written, every page is held to them.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import io
import re
import sys
import tokenize
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from _blocks import Block, markdown_blocks, run_block
from _site import build
from asgi_wechat_oauth import WeChatOAuthConfig
from asgi_wechat_oauth.errors import ErrorReason, WeChatOAuthError
from asgi_wechat_oauth.miniprogram import MiniProgramConfig
from asgi_wechat_oauth.platform import PlatformOAuthConfig
from asgi_wechat_oauth.wecom import WeComOAuthConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "asgi_wechat_oauth"
LANGUAGES = ("en", "zh")

#: The pages the site has (the layout decided for issue 28), each in docs/en/ and docs/zh/.
PAGES = [
    "index.md",
    "getting-started/fastapi.md",
    "getting-started/starlette.md",
    "getting-started/django.md",
    "getting-started/litestar.md",
    "getting-started/quart.md",
    "products/official-account.md",
    "products/miniprogram.md",
    "products/wecom.md",
    "products/tokens.md",
    "products/jssdk.md",
    "products/platform.md",
    "backends.md",
    "deployment.md",
    "testing.md",
    "errors.md",
    "configuration.md",
    "how-it-works.md",
    "guarantees.md",
    "security.md",
    "performance.md",
    "observability.md",
    "reference.md",
]
CONFIG_CLASSES = [WeChatOAuthConfig, WeComOAuthConfig, MiniProgramConfig, PlatformOAuthConfig]
#: Each config's secret credential, the row the table must show as required.
SECRET_FIELDS = {PlatformOAuthConfig: "component_secret"}


def load_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_file("docs_hooks", DOCS / "hooks.py")


def pages(language: str) -> list[Path]:
    return sorted((DOCS / language).rglob("*.md"))


def page_name(path: Path) -> str:
    return path.relative_to(DOCS).as_posix()


def is_stub(path: Path) -> bool:
    """A page as the skeleton made it: a heading and one line (images, comments, markers and
    mkdocstrings directives aside)."""
    lines = path.read_text("utf-8").splitlines()
    prose = [
        line
        for line in lines
        if line.strip() and not line.lstrip().startswith(("#", "![", "<!--", ":::"))
    ]
    return len(prose) <= 1


def stubs(*names: str) -> list[str]:
    """The pages (all, or those named, in both languages) still stubs; the reference is made
    of directives and is never one."""
    found = []
    for language in LANGUAGES:
        for path in pages(language):
            relative = path.relative_to(DOCS / language).as_posix()
            if relative == "reference.md" or (names and relative not in names):
                continue
            if is_stub(path):
                found.append(page_name(path))
    return found


def skip_while_stubs(*names: str) -> None:
    waiting = stubs(*names)
    if waiting:
        pytest.skip(f"pages still stubs, to be written: {', '.join(waiting)}")


@cache
def expanded(path: Path) -> str:
    """A page as the site shows its text: the options markers replaced by their tables."""
    return hooks.expand(path.read_text("utf-8"), hooks.page_language(page_name(path)))


def whole(language: str) -> str:
    return "\n\n".join(expanded(path) for path in pages(language))


# --- the pages -------------------------------------------------------------------------------


def test_every_page_is_in_both_languages():
    en = {path.relative_to(DOCS / "en").as_posix() for path in pages("en")}
    zh = {path.relative_to(DOCS / "zh").as_posix() for path in pages("zh")}
    assert not set(PAGES) - en, f"missing in docs/en: {sorted(set(PAGES) - en)}"
    assert en == zh, f"only in docs/en: {sorted(en - zh)}; only in docs/zh: {sorted(zh - en)}"


class _Loader(yaml.SafeLoader):
    """mkdocs.yml's YAML, its ``!!python/name:`` tags read as nothing."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda *_: None)


def nav_pages(items: object) -> list[str]:
    if isinstance(items, str):
        return [items]
    if isinstance(items, dict):
        return [page for value in items.values() for page in nav_pages(value)]
    if isinstance(items, list):
        return [page for item in items for page in nav_pages(item)]
    return []


def nav_titles(items: object) -> list[str]:
    """Every title the navigation gives (sections and pages)."""
    titles: list[str] = []
    if isinstance(items, dict):
        for title, value in items.items():
            titles.append(title)
            titles += nav_titles(value)
    elif isinstance(items, list):
        for item in items:
            titles += nav_titles(item)
    return titles


def test_every_page_is_in_the_navigation_and_translated():
    config = yaml.load((ROOT / "mkdocs.yml").read_text("utf-8"), Loader=_Loader)  # noqa: S506
    in_nav = nav_pages(config["nav"])
    en = sorted(path.relative_to(DOCS / "en").as_posix() for path in pages("en"))
    assert sorted(in_nav) == en
    titles = nav_titles(config["nav"])
    (i18n,) = [p["i18n"] for p in config["plugins"] if isinstance(p, dict) and "i18n" in p]
    assert i18n["docs_structure"] == "folder"
    (zh,) = [language for language in i18n["languages"] if language["locale"] == "zh"]
    untranslated = sorted(set(titles) - set(zh["nav_translations"]))
    assert not untranslated, (
        f"navigation titles with no Chinese in nav_translations: {untranslated}"
    )


# --- the configuration tables -----------------------------------------------------------------


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda cls: cls.__name__)
def test_every_config_field_has_its_meaning_in_both_languages(cls):
    missing = [
        f"{spec.name} ({key})"
        for spec in dataclasses.fields(cls)
        for key in ("doc", "doc_zh")
        if not str(spec.metadata.get(key, "")).strip()
    ]
    assert not missing, f"{cls.__name__} fields without metadata: {', '.join(missing)}"


@pytest.mark.parametrize("name", ["MemoryBackend", "RedisBackend"])
def test_every_backend_option_has_its_meaning_in_both_languages(name):
    rows = hooks.rows(name)
    assert rows
    missing = [f"{row.name}" for row in rows if not (row.doc.strip() and row.doc_zh.strip())]
    assert not missing, f"{name}: add to BACKEND_DOCS in docs/hooks.py: {', '.join(missing)}"


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda cls: cls.__name__)
def test_the_marker_becomes_the_table_of_every_option(cls):
    marker = f"before\n\n<!-- options: {cls.__name__} -->\n\nafter\n"
    for language, header in (
        ("en", "| option / environment variable | type | default | meaning |"),
        ("zh", "| 选项 / 环境变量 | 类型 | 默认值 | 含义 |"),
    ):
        text = hooks.expand(marker, language)
        opening = '<div class="options-table" markdown>\n\n'
        assert text.startswith(f"before\n\n{opening}{header}")
        assert text.endswith("\n\n</div>\n\nafter\n")
        rows = [line for line in text.splitlines() if line.startswith("| `")]
        names = [re.match(r"\| `(\w+)`", row).group(1) for row in rows]
        assert sorted(names) == sorted(spec.name for spec in dataclasses.fields(cls))
        key = "doc_zh" if language == "zh" else "doc"
        for spec in dataclasses.fields(cls):
            (row,) = [row for row, name in zip(rows, names, strict=True) if name == spec.name]
            assert spec.metadata[key].replace("|", "\\|") in row
        name = SECRET_FIELDS.get(cls, "secret")
        (secret,) = [row for row in rows if row.startswith(f"| `{name}`<br>")]
        required = "必填" if language == "zh" else "required"
        variable = f"{cls.env_prefix}{name.upper()}"
        assert secret.startswith(f"| `{name}`<br>`{variable}` | `str` | {required} |")


def test_the_table_spells_types_and_defaults_as_written():
    table = hooks.table("WeChatOAuthConfig", "en")
    scope = next(line for line in table.splitlines() if line.startswith("| `default_scope`"))
    assert '`"snsapi_base" \\| "snsapi_userinfo" \\| "snsapi_login"`' in scope
    assert scope.startswith("| `default_scope`<br>`WECHAT_DEFAULT_SCOPE` | ")
    assert '\\| "snsapi_login"` | `"snsapi_base"` |' in scope
    pages_row = next(line for line in table.splitlines() if line.startswith("| `error_pages`"))
    assert "`ErrorPages()`" in pages_row
    wecom = hooks.table("WeComOAuthConfig", "zh")
    assert "`ErrorPages(texts=WECOM_TEXTS)`" in wecom
    assert "| `corpid`<br>`WECOM_CORPID` | `str` | 必填 | 企业 ID" in wecom


def test_a_pipe_in_a_table_s_code_reads_right_on_the_site_and_on_a_code_host():
    # GitHub needs `int \| None` in a table cell; Python-Markdown would show the backslash.
    row = "| `int \\| None` | either \\| or |"
    assert hooks.code_pipes(row) == "| `int | None` | either \\| or |"
    fenced = "```text\n| `x \\| y` |\n```"
    assert hooks.code_pipes(fenced) == fenced


def test_an_unknown_marker_fails_the_build():
    with pytest.raises(ValueError, match="NoSuchConfig"):
        hooks.expand("<!-- options: NoSuchConfig -->\n", "en")


# --- every python block on the site runs -------------------------------------------------------


def program(source: str) -> object:
    """A block's code without its comments: the Chinese page's copy of an English block is the
    same program, run once."""
    try:
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        return tuple(
            (token.type, token.string)
            for token in tokens
            if token.type not in (tokenize.COMMENT, tokenize.NL)
        )
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return source


def site_blocks() -> list[tuple[str, Block]]:
    found: list[tuple[str, Block]] = []
    seen: set[object] = set()
    for language in LANGUAGES:
        for path in pages(language):
            for block in markdown_blocks(path):
                key = (program(block.source), block.skip is None)
                if key in seen:
                    continue  # the same program on the other language's page
                seen.add(key)
                found.append((f"{page_name(path)}:{block.line}", block))
    return found


BLOCKS = site_blocks()


@pytest.mark.parametrize(("where", "block"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_docs_block_runs(where, block, tmp_path):
    if block.skip:
        pytest.skip(block.skip)
    proc = run_block(block, f"docs/{where.rsplit(':', 1)[0]}", tmp_path)
    assert proc.returncode == 0, f"docs/{where} failed:\n{block.source}\n{proc.stderr}"


# --- the two languages say the same (from the READMEs' checks, over the whole site) ---------

#: Where public classes live, including products still to come (skipped until they exist).
PUBLIC_MODULES = [
    "asgi_wechat_oauth",
    "asgi_wechat_oauth.backends",
    "asgi_wechat_oauth.backends.redis",
    "asgi_wechat_oauth.prometheus",
    "asgi_wechat_oauth.miniprogram",
    "asgi_wechat_oauth.wecom",
    "asgi_wechat_oauth.tokens",
    "asgi_wechat_oauth.platform",
    "asgi_wechat_oauth.django",
    "asgi_wechat_oauth.litestar",
]
#: Classes whose constructor arguments are documented options.
OPTION_CLASSES = re.compile(r"(Middleware|Backend|Client|Collector|Config)$")
#: The errcodes the errors page's FAQ explains, WeChat's and those only WeCom answers.
FAQ_ERRCODES = [40029, 40163, 42003, 40125, 40013, 48001, 41008, 45011, 40226]
WECOM_FAQ_ERRCODES = [40001, 40014, 42001, 40056, 50001, 60020]

OPTION_TABLES = {
    "en": re.compile(r"\| (?:argument|option)\b[^|]*\| type \| default \|"),
    "zh": re.compile(r"\| (?:参数|选项)[^|]*\| 类型 \| 默认值 \|"),
}
REASON_TABLES = {
    "en": re.compile(r"\| status \| reason \|"),
    "zh": re.compile(r"\| 状态码 \| reason \|"),
}


def named(text: str) -> set[str]:
    """Every identifier written as code (inline or in a block): what a page names."""
    spans = re.findall(r"```.*?```|`[^`\n]+`", text, re.S)
    return {word for span in spans for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}


def public_modules() -> list[ModuleType]:
    modules = []
    for name in PUBLIC_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise  # the module exists and a dependency is missing: a real failure
    return modules


def options() -> dict[str, set[str]]:
    """Class name → its constructor's keyword options (``app`` and ``*args`` aside)."""
    found: dict[str, set[str]] = {}
    for module in public_modules():
        for name in getattr(module, "__all__", dir(module)):
            cls = getattr(module, name, None)
            if not inspect.isclass(cls) or not OPTION_CLASSES.search(name):
                continue
            if getattr(cls, "_is_protocol", False):
                continue  # the Backend protocol has no constructor of its own
            parameters = inspect.signature(cls).parameters.values()
            found[name] = {
                p.name
                for p in parameters
                if p.name != "app" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            }
    return found


def reasons_in_code() -> set[str]:
    """Every ``reason`` the package raises: the first argument of a ``WeChatOAuthError``
    subclass, or the reason in an errcode table (``40029: ("code_invalid", ...)``)."""

    def family(cls: type) -> set[str]:
        return {cls.__name__}.union(*(family(sub) for sub in cls.__subclasses__()))

    names = "|".join(sorted(family(WeChatOAuthError)))
    pattern = re.compile(
        rf"\b(?:{names})\(\s*\"([a-z_]+)\""  # UpstreamError("upstream_busy", ...)
        rf"|\(\s*(?:{names}),\s*\"([a-z_]+)\""  # (RateLimited, "rate_limited", ...)
        r"|^\s*-?\d+: \(\s*\"([a-z_]+)\"",  # 40029: ("code_invalid", ...)
        re.M,
    )
    found = set()
    for path in SRC.rglob("*.py"):
        for match in pattern.finditer(path.read_text("utf-8")):
            found.add(next(group for group in match.groups() if group))
    return found


def table_column(text: str, header: re.Pattern[str], column: int) -> set[str]:
    """The backticked name opening one column's cells in every table whose header row
    matches (the options tables write the environment variable after it)."""
    names: set[str] = set()
    in_table = False
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header.match(line.strip()):
            in_table = True
        elif in_table and len(cells) > column:
            names.update(re.findall(r"^`([a-z_]+)`(?:$|<br>)", cells[column]))
    return names


def test_options_and_reasons_are_found():
    found = options()
    assert "appid" in found["WeChatOAuthMiddleware"]
    assert "lease_ttl" in found["RedisBackend"]
    assert {"code_used", "configuration_error", "upstream_busy"} <= reasons_in_code()


OPTIONS = sorted((cls, option) for cls, names in options().items() for option in names)


@pytest.mark.parametrize(("cls", "option"), OPTIONS)
def test_every_option_is_named_in_both_languages(cls, option):
    skip_while_stubs()
    missing = [f"docs/{language}" for language in LANGUAGES if option not in named(whole(language))]
    assert not missing, f"{cls}({option}=...) is not named in {', '.join(missing)}"


@pytest.mark.parametrize("page", PAGES)
def test_each_page_has_the_same_option_tables_in_both_languages(page):
    skip_while_stubs(page)
    en, zh = (DOCS / "en" / page), (DOCS / "zh" / page)
    assert hooks.MARKER.findall(en.read_text("utf-8")) == hooks.MARKER.findall(
        zh.read_text("utf-8")
    ), "the options markers differ"
    assert table_column(expanded(en), OPTION_TABLES["en"], 0) == table_column(
        expanded(zh), OPTION_TABLES["zh"], 0
    )


def test_every_reason_is_named_in_both_languages():
    skip_while_stubs()
    in_code = reasons_in_code() | {reason.value for reason in ErrorReason}
    for language in LANGUAGES:
        missing = sorted(in_code - named(whole(language)))
        assert not missing, f"reasons not named in docs/{language}: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_each_page_has_the_same_reason_tables_in_both_languages(page):
    skip_while_stubs(page)
    en = table_column(expanded(DOCS / "en" / page), REASON_TABLES["en"], 1)
    zh = table_column(expanded(DOCS / "zh" / page), REASON_TABLES["zh"], 1)
    assert en == zh


def test_the_errors_page_has_the_reason_table():
    skip_while_stubs("errors.md")
    for language in LANGUAGES:
        reasons = table_column(expanded(DOCS / language / "errors.md"), REASON_TABLES[language], 1)
        assert {"invalid_state", "code_used", "upstream_busy"} <= reasons, language


def faq_entry(text: str, errcode: int) -> str:
    """The text under the heading ``### {errcode}: ...`` (or ``：``) up to the next heading."""
    entries = re.findall(
        rf"^#{{2,4}} {errcode}\b[:\uff1a ]?(.+?)(?=^#{{1,4}} |\Z)", text, re.S | re.M
    )
    assert len(entries) == 1, f"errcode {errcode}: {len(entries)} headings, not 1"
    return entries[0]


@pytest.mark.parametrize("errcode", FAQ_ERRCODES + WECOM_FAQ_ERRCODES)
def test_the_faq_explains_each_errcode_in_both_languages(errcode):
    skip_while_stubs("errors.md")
    zh = faq_entry(expanded(DOCS / "zh" / "errors.md"), errcode)
    for part in ("**含义**", "**原因**", "**处理**"):
        assert part in zh, f"errcode {errcode}: no {part} in docs/zh/errors.md"
    en = faq_entry(expanded(DOCS / "en" / "errors.md"), errcode)
    for part in (r"\*\*Meaning\*\*", r"\*\*Causes?\*\*", r"\*\*Fix\*\*"):
        assert re.search(part, en), f"errcode {errcode}: no {part} in docs/en/errors.md"


# --- the performance chart --------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_chart_is_what_the_script_makes_of_the_results(language):
    chart = load_file("benchmarks_chart", ROOT / "benchmarks" / "chart.py")
    committed = chart.path(language).read_text("utf-8")
    assert committed == chart.render(chart.RESULTS.read_text("utf-8"), language), (
        "stale: run python benchmarks/chart.py"
    )
    page = (DOCS / language / "performance.md").read_text("utf-8")
    assert f"](../assets/{chart.path(language).name})" in page


def test_the_chart_reads_the_tables_it_draws():
    chart = load_file("benchmarks_chart", ROOT / "benchmarks" / "chart.py")
    data = chart.read(chart.RESULTS.read_text("utf-8"))
    kept = {(variant, latency): share for variant, latency, share in data["kept"]}
    assert kept[("middleware, memory", 20)] == 100.0 and kept[("naive", 20)] == 0.0
    assert dict(data["costs"])["bare httpx exchange"] > 0


# --- the build ---------------------------------------------------------------------------------


def test_mkdocs_build_strict_passes():
    result = build()
    assert result.returncode == 0, result.output
    assert "WARNING" not in result.output, result.output
    site = result.site
    assert '<html lang="en"' in (site / "index.html").read_text("utf-8")
    assert '<html lang="zh"' in (site / "zh" / "index.html").read_text("utf-8")
    for page in PAGES:
        built = page.removesuffix(".md").removesuffix("index")
        assert (site / built / "index.html").exists(), page
        assert (site / "zh" / built / "index.html").exists(), page
    reference = (site / "zh" / "reference" / "index.html").read_text("utf-8")
    assert 'id="asgi_wechat_oauth.WeChatOAuthConfig"' in reference
    assert 'id="asgi_wechat_oauth.platform.PlatformOAuthConfig"' in reference
    assert ":class:" not in reference  # the Sphinx roles became links or code
    assert (site / "assets" / "performance-zh.svg").exists()
    for html in site.rglob("*.html"):
        shown = re.findall(r"<code>[^<]*\\\|", html.read_text("utf-8"))
        assert not shown, f"{html.relative_to(site)} shows a backslash before a pipe: {shown}"
