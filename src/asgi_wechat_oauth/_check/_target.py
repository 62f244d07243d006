"""``--app module:attr``: the object to check, imported as uvicorn imports it, every mistake
said in one line."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from types import ModuleType

from ..errors import InvalidConfig


class CannotCheck(Exception):
    """Nothing can be checked: ``lines`` say why (one line, or a heading and its problems)."""

    def __init__(self, *lines: str) -> None:
        super().__init__(lines[0])
        self.lines = lines


def load(target: str) -> tuple[object, ModuleType]:
    """``module:attr`` (``attr`` may be dotted; default ``app``), imported from the current
    directory as uvicorn does; the object and its module."""
    module_name, _, attribute = target.partition(":")
    names = [*module_name.split("."), *(attribute or "app").split(".")]
    if not all(name.isidentifier() for name in names) or module_name.endswith(".py"):
        raise CannotCheck(
            "--app takes module:attr, as uvicorn does (a module, not a file: main:app); "
            f"got {target!r}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = _import(module_name)
    node: object = module
    for name in (attribute or "app").split("."):
        try:
            node = getattr(node, name)
        except AttributeError:
            raise CannotCheck(
                f"--app {target}: module {module_name} has no attribute {attribute or 'app'}"
            ) from None
    return node, module


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except InvalidConfig as exc:  # a config built at import, as it should be, and invalid
        raise CannotCheck(
            f"Invalid configuration in {name} (raised while importing it{_where(exc)}):",
            *(f"  - {problem}" for problem in exc.problems),
        ) from None
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise CannotCheck(
                f"--app: no module named {name} (looked in {os.getcwd()} and sys.path; "
                "run check where you run uvicorn)"
            ) from None
        raise _failed(name, exc) from None
    except (Exception, SystemExit) as exc:
        raise _failed(name, exc) from None


def _failed(name: str, exc: BaseException) -> CannotCheck:
    return CannotCheck(f"Importing {name} failed: {type(exc).__name__}: {exc}{_where(exc)}")


def _where(exc: BaseException) -> str:
    """Where in the user's code the import failed: the last frame under the current directory
    (a library's own frames say little about the mistake), else the last one."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<")
    ]
    here = os.getcwd() + os.sep
    mine = [
        frame
        for frame in frames
        if frame.filename.startswith(here) and "site-packages" not in frame.filename
    ]
    if not (mine or frames):
        return ""
    frame = (mine or frames)[-1]
    return f", at {os.path.relpath(frame.filename)} line {frame.lineno}"
