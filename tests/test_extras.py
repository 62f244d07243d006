"""The install commands the documentation gives are enough: each example's imports (and uvicorn,
which serves it) are provided by the extras and packages its getting-started page names, and
``[fastapi]`` brings what the README's FastAPI snippet imports (Starlette's SessionMiddleware
needs itsdangerous). Worked out from the installed package metadata, not from a list kept here."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
#: The English documentation, where each framework's page gives its example's install command.
DOCS = "\n".join(page.read_text("utf-8") for page in sorted((ROOT / "docs" / "en").rglob("*.md")))

#: Each example, the command the documentation gives to install what it needs, and what that names.
EXAMPLES = [
    ("examples/fastapi_app.py", "pip install -e '.[demo,fastapi]'", ["demo", "fastapi"], []),
    ("examples/starlette_app.py", "pip install -e '.[demo,fastapi]'", ["demo", "fastapi"], []),
    ("examples/quart_app.py", "pip install -e '.[demo,quart]'", ["demo", "quart"], []),
    (
        "examples/django_app",
        "pip install -e '.[demo]' django",
        ["demo"],
        ["django"],
    ),
    (
        "examples/litestar_app.py",
        "pip install -e '.[demo]' 'litestar[cryptography]'",
        ["demo"],
        ["litestar[cryptography]"],
    ),
]


def installed_closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution ``requirements`` install, with their dependencies."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        seen.add(name)
        try:
            dependencies = requires(name) or []
        except PackageNotFoundError:
            continue  # a marker-excluded or optional dependency that is not installed
        for text in dependencies:
            dependency = Requirement(text)
            environments = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
            if dependency.marker is None or any(
                dependency.marker.evaluate(env) for env in environments
            ):
                todo.append(dependency)
    return {key for key in seen if "[" not in key}


def imported_distributions(path: Path) -> set[str]:
    """The third-party distributions the example's modules import at module level (imports
    inside functions and ``try: ... except ImportError`` are optional features)."""
    files = sorted(path.glob("*.py")) if path.is_dir() else [path]
    modules: set[str] = set()
    for file in files:
        for node in ast.parse(file.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"__future__", "asgi_wechat_oauth"}
    owners = packages_distributions()
    return {canonicalize_name(owners[module][0]) for module in third_party}


@pytest.mark.parametrize(("example", "command", "extras", "packages"), EXAMPLES)
def test_the_readmes_install_command_covers_the_example(example, command, extras, packages):
    assert command in DOCS
    named = [Requirement(f"asgi-wechat-oauth[{','.join(extras)}]")]
    named += [Requirement(package) for package in packages]
    available = installed_closure(named)
    needed = imported_distributions(ROOT / example) | {"uvicorn"}
    assert needed <= available, f"{example} also needs {sorted(needed - available)}"


def test_the_fastapi_extra_brings_starlettes_session_middleware():
    available = installed_closure([Requirement("asgi-wechat-oauth[fastapi]")])
    assert {"fastapi", "starlette", "itsdangerous"} <= available
    # and the base install alone does not (it is the extra that brings it)
    assert "itsdangerous" not in installed_closure([Requirement("asgi-wechat-oauth")])
