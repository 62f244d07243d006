"""The command: find the products' configs, print them, and with ``--online`` try them.

Exit status: 0 when all is well; 1 when ``--online`` found a problem, or an app holds no
product; 2 when a config is invalid or the app cannot be loaded (the app would not start).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..backends import Backend
from ..errors import InvalidConfig
from ._base import Product, Verdict
from ._online import ping
from ._stack import find
from ._target import CannotCheck, load

#: How many characters of a value's ``repr`` are shown.
_WIDE = 100


@dataclass
class Entry:
    """One product's config as found: valid, or the problems that make it invalid."""

    product: Product[Any]
    where: str
    config: Any = None
    problems: list[str] = field(default_factory=list)


def env_prefixes(products: Sequence[Product[Any]], given: Sequence[str]) -> dict[str, str]:
    """Each product's environment prefix: its default, or ``--prefix [PRODUCT=]PREFIX`` (a
    bare prefix is the web flow's, as it always was)."""
    prefixes = {p.name: p.env_prefix for p in products if p.env_prefix is not None}
    for text in given:
        name, _, prefix = text.rpartition("=")
        name = name or "web"
        if name not in prefixes or not prefix:
            raise CannotCheck(
                f"--prefix takes PREFIX (the web flow's) or PRODUCT=PREFIX, with PRODUCT one of "
                f"{', '.join(prefixes)}; got {text!r}"
            )
        prefixes[name] = prefix
    return prefixes


def from_environment(
    products: Sequence[Product[Any]], prefixes: Mapping[str, str], environ: Mapping[str, str]
) -> list[Entry]:
    """The config of each product that has a variable set under its prefix. A variable under a
    longer prefix that extends this one (``WECHAT_MINIPROGRAM_`` extends ``WECHAT_``) is the
    other product's."""
    entries = []
    for product in products:
        prefix = prefixes.get(product.name)
        if prefix is None:
            continue
        others = [p for p in prefixes.values() if p != prefix and p.startswith(prefix)]
        ours = [
            name
            for name, value in environ.items()
            if name.startswith(prefix) and not name.startswith(tuple(others))
        ]
        if not any(environ[name] for name in ours):
            continue
        ignore = [name[len(prefix) :] for name in environ if name.startswith(tuple(others))]
        where = f"the environment ({prefix}*)"
        try:
            entries.append(Entry(product, where, product.from_env(prefix, environ, ignore)))
        except InvalidConfig as exc:
            entries.append(Entry(product, where, problems=list(exc.problems)))
    return entries


def from_app(products: Sequence[Product[Any]], target: str) -> list[Entry]:
    """Every product in the app's stack, outermost first; then any other held by the app's
    module (a token keeper the app's code uses, say)."""
    app, module = load(target)
    entries, seen = [], set()
    for found in find(app, products):
        seen.add(id(found.found))
        try:
            entries.append(Entry(found.product, target, found.config()))
        except InvalidConfig as exc:
            entries.append(Entry(found.product, target, problems=list(exc.problems)))
    for name, value in vars(module).items():
        product = next((p for p in products if isinstance(value, p.kinds)), None)
        if product is not None and id(value) not in seen and value is not app:
            seen.add(id(value))
            entries.append(Entry(product, f"{module.__name__}:{name}", product.config_of(value)))
    return entries


def show(entry: Entry, out: TextIO) -> None:
    title = entry.product.title
    if entry.problems:
        print(f"Invalid {title} configuration in {entry.where}:", file=out)
        for problem in entry.problems:
            print(f"  - {problem}", file=out)
        return
    print(f"{title} configuration ({entry.where}):", file=out)
    options = entry.product.summary(entry.config)
    width = max(len(name) for name in options)
    for name, value in options.items():
        print(f"  {name:<{width}}  {_shown(value)}", file=out)
    for warning in entry.product.warnings(entry.config):
        print(f"WARNING: {warning}", file=out)
    for note in entry.product.notes(entry.config):
        print(f"NOTE: {note}", file=out)


def _shown(value: object) -> str:
    """``repr(value)``, cut short when it would fill the screen (a product's default error
    pages hold every text in two languages)."""
    text = repr(value)
    return text if len(text) <= _WIDE else text[: _WIDE - 1] + "…"


async def try_online(entry: Entry, pinged: dict[int, Backend]) -> list[Verdict]:
    """The product's own probe, then a PING of its Redis backend (once per backend)."""
    try:
        verdicts = await entry.product.probe(entry.config)
    except Exception as exc:  # the probes answer WeChatOAuthError; anything else, say what
        # Only its type: an HTTP library's message may hold a URL, and URLs hold the secret.
        verdicts = [(False, f"could not try the credentials: {type(exc).__name__}")]
    backend = entry.product.backend(entry.config)
    if backend is not None and id(backend) not in pinged:
        pinged[id(backend)] = backend
        verdict = await ping(backend)
        if verdict is not None:
            verdicts.append(verdict)
    return verdicts


async def run(
    products: Sequence[Product[Any]],
    *,
    app: str | None,
    prefixes: Sequence[str],
    online: bool,
    environ: Mapping[str, str],
    out: TextIO,
    err: TextIO,
) -> int:
    """Print and check; returns the exit status."""
    try:
        if app is None:
            entries = from_environment(products, env_prefixes(products, prefixes), environ)
        else:
            entries = from_app(products, app)
    except CannotCheck as exc:
        print("\n".join(exc.lines), file=err)
        return 2
    if not entries:
        return _nothing(products, app, prefixes, out, err)
    problems = sum(len(entry.problems) for entry in entries)
    pinged: dict[int, Backend] = {}
    try:
        for entry in entries:
            show(entry, out)
            if online and not entry.problems:
                for ok, message in await try_online(entry, pinged):
                    problems += not ok
                    print(f"{'ok' if ok else 'PROBLEM'}: {message}", file=out)
    finally:
        for backend in pinged.values():
            await backend.aclose()
    warned = sum(
        len(entry.product.warnings(entry.config)) for entry in entries if not entry.problems
    )
    verdict = "OK" if not problems else f"{problems} problem(s)"
    print(f"{verdict}, {warned} warning(s)" if warned else verdict, file=out)
    if any(entry.problems for entry in entries):
        return 2
    return 1 if problems else 0


def _nothing(
    products: Sequence[Product[Any]],
    app: str | None,
    prefixes: Sequence[str],
    out: TextIO,
    err: TextIO,
) -> int:
    if app is not None:
        print(f"No {_either([p.title for p in products])} found in {app}.", file=out)
        return 1
    variables = [f"{prefix}*" for prefix in env_prefixes(products, prefixes).values()]
    print(
        f"Nothing to check: no {_either(variables)} variable is set "
        "(or check an app: --app module:attr).",
        file=err,
    )
    return 2


def _either(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
