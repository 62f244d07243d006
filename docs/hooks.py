"""The site's build machinery, listed under ``hooks:`` in mkdocs.yml (and its Griffe extension
under mkdocstrings' ``extensions:``).

- ``<!-- options: WeChatOAuthConfig -->`` on a line of its own becomes the table of that
  class's options: name and environment variable, type, default and meaning, the meaning from the
  field's metadata (``doc``, or ``doc_zh`` on a Chinese page). The config classes are the one
  source of truth; a field without both is a failing test (tests/test_docs.py). The backends'
  constructors (``<!-- options: RedisBackend -->``, ``MemoryBackend``) are read from their
  signatures, their meanings from :data:`BACKEND_DOCS` below.
- The docstrings are written with Sphinx roles (``:class:`~asgi_wechat_oauth.errors.X```);
  :class:`SphinxRoles` turns them into cross-references of the API reference (or into code
  where the object has no page there), so the reference reads as text, not as markup.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MARKER = re.compile(r"^<!-- options: (?P<name>[A-Za-z_][A-Za-z0-9_]*) -->[ \t]*$", re.M)

#: The classes a marker may name: config classes (dataclasses) and backend constructors.
CLASSES = {
    "WeChatOAuthConfig": "asgi_wechat_oauth:WeChatOAuthConfig",
    "WeComOAuthConfig": "asgi_wechat_oauth.wecom:WeComOAuthConfig",
    "MiniProgramConfig": "asgi_wechat_oauth.miniprogram:MiniProgramConfig",
    "PlatformOAuthConfig": "asgi_wechat_oauth.platform:PlatformOAuthConfig",
    "MemoryBackend": "asgi_wechat_oauth.backends:MemoryBackend",
    "RedisBackend": "asgi_wechat_oauth.backends.redis:RedisBackend",
}

#: Four columns, the environment variable under the option's name: a fifth column leaves the
#: meaning too little room on a page of the site.
HEADERS = {
    "en": ("option / environment variable", "type", "default", "meaning"),
    "zh": ("选项 / 环境变量", "类型", "默认值", "含义"),
}
REQUIRED = {"en": "required", "zh": "必填"}

#: What each backend constructor option means (the backends are classes, not dataclasses: their
#: options are their signatures, read by :func:`table`; a parameter missing here fails
#: tests/test_docs.py). English, then Chinese.
BACKEND_DOCS: dict[str, dict[str, tuple[str, str]]] = {
    "MemoryBackend": {
        "max_entries": (
            "Bounds the stored results (least recently used first out) and the codes in flight "
            "(a new code beyond it is answered 503 `overloaded`; in-flight entries are never "
            "evicted).",
            "限制保存的结果数（最久未用的先淘汰）和进行中的 code 数（超出后新的 code 得到 503 "
            "`overloaded`；进行中的条目从不淘汰）。",
        ),
        "max_errors": (
            "Bounds the errors kept for late duplicates (a code WeChat called invalid, used or "
            "expired), so a flood of made-up codes cannot push out real logins' results. "
            "Default: a tenth of `max_entries`.",
            "为迟到的重复请求保留的错误（微信说无效、已使用或已过期的 code）的上限，"
            "这样大量编造的 code 挤不掉真实登录的结果。默认是 `max_entries` 的十分之一。",
        ),
    },
    "RedisBackend": {
        "url_or_client": (
            "A `redis://`, `rediss://` or `unix://` URL, or a `redis.asyncio.Redis` or "
            "`RedisCluster` client you already have (the backend does not close a client you "
            "pass).",
            "`redis://`、`rediss://` 或 `unix://` 地址，或者你已有的 `redis.asyncio.Redis`、"
            "`RedisCluster` 客户端（传入的客户端由你负责关闭）。",
        ),
        "cluster": (
            "Read the URL as one node of a Redis Cluster.",
            "把地址当作 Redis Cluster 的一个节点。",
        ),
        "prefix": (
            "The prefix of every key; every worker must use the same one.",
            "所有键的前缀；所有 worker 必须用同一个。",
        ),
        "lease_ttl": (
            "How long a lease lasts: when its leader dies, a waiter takes over after that. At "
            "least `exchange_timeout` + 1 s.",
            "租约的时长：持有者挂掉后，等待者过这么久接手。至少为 `exchange_timeout` + 1 秒。",
        ),
        "on_unavailable": (
            '`"local"`: while Redis is down, dedupe within the process and go back to Redis by '
            'itself; `"fail"`: answer 503 `backend_unavailable`.',
            '`"local"`：Redis 不可用期间在进程内去重，恢复后自动回到 Redis；`"fail"`：返回 503 '
            "`backend_unavailable`。",
        ),
        "redis_timeout": (
            "Bound on each attempt of a Redis call, in seconds. An attempt that timed out may "
            "have run: it is sent again, not taken for an outage.",
            "每次 Redis 调用尝试的时限（秒）。超时的调用可能已经执行了：会重发，不会被当作故障。",
        ),
        "retry_interval": (
            "While Redis is down, how often (seconds) a probe checks it; the backend goes back "
            "once one finds every master answering (no sooner than this after it went down).",
            "Redis 故障期间多久（秒）探测一次；探测到所有主节点都应答后才切回"
            "（切走后至少过这么久）。",
        ),
        "encryption_key": (
            "16, 24 or 32 random bytes, the same on every worker: results are sealed with "
            "AES-GCM, so Redis never holds a token or an openid in clear (extra `encryption`).",
            "16、24 或 32 个随机字节，每个 worker 相同：结果用 AES-GCM 加密，Redis 里不会有明文的 "
            "token 或 openid（需要 `encryption` 扩展）。",
        ),
        "max_connections": (
            "Redis calls of one worker in flight at most (one Redis: a blocking pool of that "
            "size, one connection being the subscription's; a cluster: in all, across the "
            "nodes' pools of that size). A burst beyond it waits its turn, first come first "
            "served.",
            "一个 worker 同时进行的 Redis 调用上限（单个 Redis：这么大的阻塞连接池，其中一个连接"
            "给订阅用；集群：所有节点合计，每个节点的池也是这么大）。超出的突发请求按先来后到排队。",
        ),
        "max_queued": (
            "Calls of one worker waiting for a connection at most; one beyond is answered 503 "
            "`overloaded` with `Retry-After: 5`, before anything ran.",
            "一个 worker 里等待连接的调用上限；再多一个就直接返回 503 `overloaded`，带 "
            "`Retry-After: 5`，什么都没执行。",
        ),
        "failover_timeout": (
            "Seconds (0 to 120) a call that timed out, or whose cluster slot has no master, is "
            "sent again before the worker takes it for an outage and falls back (or fails). "
            "`0`: at once.",
            "超时的调用、或集群槽位暂时没有主节点的调用，重发多少秒后才被当作故障（该 worker "
            "降级或报错），0 到 120。`0`：立即。",
        ),
    },
}
#: The variables ``from_env`` reads for a ``RedisBackend`` (the product's prefix in front).
BACKEND_VARIABLES = {
    "url_or_client": "REDIS_URL",
    "prefix": "REDIS_PREFIX",
    "lease_ttl": "LEASE_TTL",
    "cluster": "REDIS_CLUSTER",
    "redis_timeout": "REDIS_TIMEOUT",
    "max_connections": "REDIS_MAX_CONNECTIONS",
    "max_queued": "REDIS_MAX_QUEUED",
    "failover_timeout": "REDIS_FAILOVER_TIMEOUT",
}


@dataclasses.dataclass
class Row:
    """One option: what the table shows of it."""

    name: str
    type: str
    default: str  # a Python expression, or "" when required
    variable: str
    doc: str
    doc_zh: str


def load(name: str) -> type:
    module, attr = CLASSES[name].split(":")
    __import__(module)
    cls: type = getattr(sys.modules[module], attr)
    return cls


def rows(name: str) -> list[Row]:
    """The options of class ``name``: a config's fields, or a backend's constructor keywords."""
    cls = load(name)
    if dataclasses.is_dataclass(cls):
        return [_field_row(cls, spec) for spec in _ordered_fields(cls)]
    return _signature_rows(name, cls)


def _ordered_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields in the order ``check`` and ``repr`` show them (credentials first)."""
    from asgi_wechat_oauth._core.options import _ordered

    return _ordered(cls)  # type: ignore[arg-type]


def _field_row(cls: type, spec: dataclasses.Field[Any]) -> Row:
    prefix = getattr(cls, "env_prefix", "")
    if spec.metadata.get("env") is not None:
        variable = prefix + spec.name.upper()
    elif spec.name == "backend":
        variable = f"{prefix}REDIS_URL"  # from_env makes a RedisBackend of it
    else:
        variable = ""
    if spec.metadata.get("required"):
        default = ""  # a credential: its empty default only lets the config name it missing
    elif spec.default is not dataclasses.MISSING:
        default = _expression(spec.default)
    elif spec.default_factory is not dataclasses.MISSING:
        default = _expression(spec.default_factory())
    else:
        default = ""
    return Row(
        name=spec.name,
        type=_annotation(cls, spec.name, spec.type),
        default=default,
        variable=variable,
        doc=spec.metadata.get("doc", ""),
        doc_zh=spec.metadata.get("doc_zh", ""),
    )


def _signature_rows(name: str, cls: type) -> list[Row]:
    docs = BACKEND_DOCS.get(name, {})
    hints = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    found = []
    for parameter in hints.values():
        if parameter.name == "self" or parameter.kind in (
            parameter.VAR_POSITIONAL,
            parameter.VAR_KEYWORD,
        ):
            continue
        empty = parameter.default is inspect.Parameter.empty
        variable = BACKEND_VARIABLES.get(parameter.name, "") if name == "RedisBackend" else ""
        doc, doc_zh = docs.get(parameter.name, ("", ""))
        found.append(
            Row(
                name=parameter.name,
                type=_annotation(cls.__init__, parameter.name, parameter.annotation),  # type: ignore[misc]
                default="" if empty else _expression(parameter.default),
                variable=f"WECHAT_{variable}" if variable else "",
                doc=doc,
                doc_zh=doc_zh,
            )
        )
    return found


# --- rendering types and defaults --------------------------------------------------------------


def _namespaces(owner: Any, name: str) -> list[dict[str, Any]]:
    """The module namespaces an annotation of ``owner``'s ``name`` is written in: for a
    dataclass field, the module of the class in its MRO that declares it (a subclass may
    redeclare it with another type)."""
    if inspect.isclass(owner):
        for klass in owner.__mro__:
            if name in vars(klass).get("__annotations__", {}):
                return [vars(sys.modules[klass.__module__])]
    module = sys.modules.get(getattr(owner, "__module__", ""), None)
    return [vars(module)] if module else []


#: Type aliases whose runtime value says less than their name: spelt as written for readers.
SPELLED = {
    "OnError": "Callable[[Scope, WeChatOAuthError], ASGIApp | None]",
    "Authorizer": "str | Callable[[Scope], str | None]",
    "AppResolver": "Callable[[Scope], str | None]",
}


def _annotation(owner: Any, name: str, annotation: Any) -> str:
    """An annotation as written, ``Literal`` types and aliases of them spelt out
    (``WeChatScope`` → ``"snsapi_base" | "snsapi_userinfo" | ...``) and modules by their
    names (``aioredis.Redis`` → ``redis.asyncio.Redis``)."""
    if annotation is inspect.Parameter.empty:
        return ""
    if not isinstance(annotation, str):
        return inspect.formatannotation(annotation)
    namespaces = _namespaces(owner, name)

    def literal(match: re.Match[str]) -> str:
        values = [value.strip() for value in match.group(1).split(",")]
        return " | ".join(_expression(eval(value, {})) for value in values)  # noqa: S307

    def spell(match: re.Match[str]) -> str:
        word = match.group(0)
        first, dot, rest = word.partition(".")
        if word in SPELLED:
            return SPELLED[word]
        for namespace in namespaces:
            value = namespace.get(first)
            if dot and inspect.ismodule(value):
                return f"{value.__name__}.{rest}"
            if not dot and typing.get_origin(value) is typing.Literal:
                return " | ".join(_expression(arg) for arg in typing.get_args(value))
        return word

    spelt = re.sub(r"\bLiteral\[([^\]]*)\]", literal, annotation)
    return re.sub(r"\b[A-Za-z_][A-Za-z0-9_.]*\b", spell, spelt)


def _expression(value: object) -> str:
    """A default as Python would write it (strings in double quotes, as black does); an object
    made of its defaults as ``Type()``, of others as ``Type(field=NAME)`` with the public name
    of the value (``ErrorPages(texts=WECOM_TEXTS)``)."""
    if isinstance(value, str) and '"' not in value and "\\" not in value:
        return f'"{value}"'
    if value is None or isinstance(value, (bool, str, bytes, float)):
        return repr(value)
    if isinstance(value, int):
        return f"{value:_}" if abs(value) >= 10_000 else repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        given = []
        for spec in dataclasses.fields(value):
            if not spec.init:
                continue
            if spec.default is not dataclasses.MISSING:
                default = spec.default
            elif spec.default_factory is not dataclasses.MISSING:
                default = spec.default_factory()
            else:
                default = dataclasses.MISSING
            mine = getattr(value, spec.name)
            if mine != default:
                given.append(f"{spec.name}={_public_name(mine) or '…'}")
        return f"{type(value).__name__}({', '.join(given)})"
    return f"{type(value).__name__}(…)"


def _public_name(value: object) -> str | None:
    """The name a public module of the package gives ``value``, if one does."""
    for module_name, module in sorted(sys.modules.items()):
        if not module_name.startswith("asgi_wechat_oauth") or "._" in module_name:
            continue
        for name in getattr(module, "__all__", ()):
            if getattr(module, name, None) is value:
                return name
    return None


# --- the markdown table ------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text for a table cell: a ``|`` escaped (as GitHub wants it, in code spans too; the
    site unescapes those, see :func:`code_pipes`)."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{_cell(text)}`" if text else "—"


def table(name: str, language: str) -> str:
    """The markdown table of class ``name``'s options in ``language`` (``en`` or ``zh``)."""
    language = "zh" if language.startswith("zh") else "en"
    lines = [
        "| " + " | ".join(HEADERS[language]) + " |",
        "|" + "---|" * len(HEADERS[language]),
    ]
    for row in rows(name):
        default = _code(row.default) if row.default else REQUIRED[language]
        doc = row.doc_zh if language == "zh" else row.doc
        name = _code(row.name) + (f"<br>{_code(row.variable)}" if row.variable else "")
        cells = [name, _code(row.type), default, _cell(doc)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def expand(markdown: str, language: str) -> str:
    """``markdown`` with each options marker replaced by its table (in a ``div`` of class
    ``options-table``, which docs/assets/extra.css lays out)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in CLASSES:
            raise ValueError(f"<!-- options: {name} -->: no such class (known: {sorted(CLASSES)})")
        return f'<div class="options-table" markdown>\n\n{table(name, language)}\n\n</div>'

    return MARKER.sub(replace, markdown)


def page_language(src_uri: str) -> str:
    """A page's language from its place under docs/ (``zh/...`` is Chinese)."""
    return "zh" if Path(src_uri).parts[:1] == ("zh",) else "en"


# --- mkdocs hooks ------------------------------------------------------------------------------


def on_config(config: Any, **_: Any) -> Any:
    """The package is imported from src/ (the checkout), as mkdocstrings reads it."""
    src = str(Path(config["config_file_path"]).parent / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return config


def on_page_markdown(markdown: str, *, page: Any, **_: Any) -> str:
    return code_pipes(expand(markdown, page_language(page.file.src_uri)))


FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`[^`\n]+`")


def code_pipes(markdown: str) -> str:
    """``\\|`` inside a code span of a table row becomes ``|``: a code host (GitHub's
    Markdown) needs the escape there to keep the cell, and Python-Markdown, which never splits
    a cell inside a code span, would show the backslash. So a page's tables read right in
    both places."""
    lines = markdown.split("\n")
    fenced = False
    for index, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and line.lstrip().startswith("|") and "\\|" in line:
            lines[index] = CODE_SPAN.sub(lambda span: span.group(0).replace("\\|", "|"), line)
    return "\n".join(lines)


# --- Griffe: the docstrings' Sphinx roles as cross-references ---------------------------------

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|exc|data|obj|const):`(~?)([^`<>]+)`")

try:
    import griffe
except ImportError:  # only mkdocstrings loads the extension; the hook needs no Griffe
    griffe = None  # type: ignore[assignment]


def _objects(obj: Any) -> Iterator[Any]:
    """``obj`` and every object defined inside it (aliases, which are imports, left out)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def cross_reference(target: str, shown: str) -> str:
    """HTML that mkdocs-autorefs makes a link when ``target`` has a place on the site, and
    leaves as code otherwise (``optional``: no warning either way)."""
    return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'


def resolve(name: str, where: Any, paths: set[str]) -> str | None:
    """The path of the object a role names in ``where``'s docstring: a full path, or a name
    looked up as Python would from there (the class's own and inherited members, then the
    module's names and imports), or else the one object whose path ends with it."""
    name = name.strip().removesuffix("()").lstrip(".")
    if name in paths:
        return name
    first, _, rest = name.partition(".")
    scope = where
    while scope is not None:
        members = scope.all_members if scope.is_class else scope.members
        member = members.get(first)
        if member is not None:
            if member.is_alias and not getattr(member, "inherited", False):
                base = member.target_path  # an import: the object imported
            else:
                base = member.path
            return f"{base}.{rest}" if rest else base
        scope = scope.parent
    found = [path for path in paths if path.endswith("." + name)]
    return found[0] if len(found) == 1 else None


def rewrite(text: str, where: Any, paths: set[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        tilde, name = match.groups()
        written = name.strip().lstrip(".")
        shown = written.rsplit(".", 1)[-1] if tilde else written
        target = resolve(name, where, paths)
        return cross_reference(target, shown) if target else f"`{shown}`"

    return ROLE.sub(replace, text)


if griffe is not None:

    class SphinxRoles(griffe.Extension):
        """Rewrite ``:class:`X``` and its kin, once the package is loaded."""

        def on_package(self, *, pkg: Any, **_: Any) -> None:
            objects = list(_objects(pkg))
            paths = {obj.path for obj in objects}
            for obj in objects:
                if obj.docstring is not None:
                    obj.docstring.value = rewrite(obj.docstring.value, obj, paths)
