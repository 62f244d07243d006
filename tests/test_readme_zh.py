"""README.md and README.zh-CN.md stay in step: every constructor option of the public
middlewares (and of the backends, clients, collectors and config objects) and every error
``reason`` is named in both. Options and reasons are read from the code, so a new product's
options are demanded of both READMEs as soon as it lands; the READMEs' own tables are compared
in both directions too."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

from asgi_wechat_oauth.errors import WeChatOAuthError

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "asgi_wechat_oauth"
EN = (ROOT / "README.md").read_text("utf-8")
ZH = (ROOT / "README.zh-CN.md").read_text("utf-8")

#: Where public classes live, including products still to come (skipped until they exist).
PUBLIC_MODULES = [
    "asgi_wechat_oauth",
    "asgi_wechat_oauth.backends",
    "asgi_wechat_oauth.backends.redis",
    "asgi_wechat_oauth.prometheus",
    "asgi_wechat_oauth.miniprogram",
    "asgi_wechat_oauth.wecom",
    "asgi_wechat_oauth.tokens",
    "asgi_wechat_oauth.django",
    "asgi_wechat_oauth.litestar",
]
#: Classes whose constructor arguments are documented options.
OPTION_CLASSES = re.compile(r"(Middleware|Backend|Client|Collector|Config)$")
#: The errcodes README.zh-CN.md's FAQ explains.
FAQ_ERRCODES = [40029, 40163, 42003, 40125, 40013, 48001, 41008, 45011, 40226]
#: And those only WeCom answers (its 40029 and 40013 share the entries above).
WECOM_FAQ_ERRCODES = [40001, 40014, 42001, 40056, 50001, 60020]


def named(text: str) -> set[str]:
    """Every identifier written as code (inline or in a block): what a README names."""
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
    """The backticked names in one column of every table whose header row matches."""
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
            names.update(re.findall(r"^`([a-z_]+)`$", cells[column]))
    return names


EN_OPTION_TABLE = re.compile(r"\| argument \| type \| default \|")
ZH_OPTION_TABLE = re.compile(r"\| 参数 \| 类型 \| 默认值 \|")
EN_REASON_TABLE = re.compile(r"\| status \| reason \|")
ZH_REASON_TABLE = re.compile(r"\| 状态码 \| reason \|")


def test_the_readmes_link_to_each_other():
    assert "中文文档: [README.zh-CN.md](README.zh-CN.md)" in EN.split("\n## ")[0]
    assert "English: [README.md](README.md)" in ZH.split("\n## ")[0]


def test_options_are_found():
    found = options()
    assert "appid" in found["WeChatOAuthMiddleware"]
    assert "lease_ttl" in found["RedisBackend"]


OPTIONS = sorted((cls, option) for cls, names in options().items() for option in names)


@pytest.mark.parametrize(("cls", "option"), OPTIONS)
def test_every_option_is_named_in_both_readmes(cls, option):
    readmes = {"README.md": EN, "README.zh-CN.md": ZH}
    missing = [readme for readme, text in readmes.items() if option not in named(text)]
    assert not missing, f"{cls}({option}=...) is not named in {', '.join(missing)}"


def test_option_tables_match():
    en, zh = table_column(EN, EN_OPTION_TABLE, 0), table_column(ZH, ZH_OPTION_TABLE, 0)
    assert en, "README.md has no option table"
    assert en == zh


def test_every_reason_is_named_in_both_readmes():
    in_code = reasons_in_code()
    assert {"code_used", "configuration_error", "upstream_busy"} <= in_code
    for readme, text in (("README.md", EN), ("README.zh-CN.md", ZH)):
        missing = sorted(in_code - named(text))
        assert not missing, f"reasons not named in {readme}: {missing}"


def test_reason_tables_match():
    en, zh = table_column(EN, EN_REASON_TABLE, 1), table_column(ZH, ZH_REASON_TABLE, 1)
    assert en, "README.md has no reason table"
    assert en == zh


@pytest.mark.parametrize("errcode", FAQ_ERRCODES + WECOM_FAQ_ERRCODES)
def test_the_faq_explains_each_errcode(errcode):
    faq = ZH.split("\n## 常见 errcode\n", 1)[1].split("\n## ", 1)[0]
    (entry,) = re.findall(rf"^### {errcode}[:\uff1a](.+?)(?=^### |\Z)", faq, re.S | re.M)
    for part in ("**含义**", "**原因**", "**处理**"):
        assert part in entry, f"errcode {errcode}: no {part}"
