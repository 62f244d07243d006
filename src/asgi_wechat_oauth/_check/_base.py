"""What ``check`` and the metrics need to know of a product: one :class:`Product` each."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from .._core.counters import Counters
from .._core.oauth_options import OAuthOptions
from ..backends import Backend
from ..errors import InvalidConfig

C = TypeVar("C")
#: One line of ``--online``: whether it is fine, and what was learnt.
Verdict = tuple[bool, str]


async def _no_app(scope: object, receive: object, send: object) -> None:
    """What a middleware built only to read its options wraps: it is never called."""


class Product(Generic[C]):
    """A product as the command line and the metrics see it; ``C`` is its config's type.

    A product part sets the class attributes and implements the methods that have no default.
    """

    #: Its name: the ``product`` label of the metrics, the key of ``check --prefix NAME=...``.
    name: ClassVar[str]
    #: What a user calls it: the class they put in the app.
    title: ClassVar[str]
    #: The classes of the objects in an app that are this product.
    kinds: ClassVar[tuple[type, ...]]
    #: The environment prefix of its config; None when it is not configured from there.
    env_prefix: ClassVar[str | None] = None
    #: The counter sets one object of it keeps, by metrics label (see :meth:`counters`);
    #: empty means one, labelled :attr:`name`.
    labels: ClassVar[tuple[str, ...]] = ()

    def from_env(self, prefix: str, environ: Mapping[str, str], ignore: Iterable[str]) -> C:
        """The config from the environment; raises :class:`InvalidConfig`."""
        raise NotImplementedError(f"{self.title} is not configured from the environment")

    def from_options(self, kind: type, args: Sequence[Any], kwargs: Mapping[str, Any]) -> C:
        """The config of what ``add_middleware(kind, *args, **kwargs)`` builds at start-up,
        built the same way now; every mistake raises :class:`InvalidConfig`."""
        try:
            return self.config_of(kind(_no_app, *args, **kwargs))
        except InvalidConfig:
            raise
        except TypeError as exc:
            raise InvalidConfig([_explain(kind, kwargs, exc)]) from None
        except ValueError as exc:
            raise InvalidConfig([str(exc)]) from None

    def config_of(self, found: Any) -> C:
        """The config of an object of :attr:`kinds`."""
        raise NotImplementedError

    def summary(self, config: C) -> dict[str, object]:
        """What ``check`` prints: every option, secrets masked."""
        raise NotImplementedError

    def warnings(self, config: C) -> list[str]:
        """What in a valid config will not work, though the config cannot know it (an AppID
        that is not of WeChat's form, when the config talks to WeChat itself)."""
        return []

    def notes(self, config: C) -> list[str]:
        """What must be set up elsewhere for an option to work (WeChat's console, say)."""
        return []

    def backend(self, config: C) -> Backend | None:
        """The backend ``check --online`` pings, if the config names one."""
        backend: Backend | None = getattr(config, "backend", None)
        return backend

    async def probe(self, config: C) -> list[Verdict]:
        """Try the credentials on the real service, once; a verdict per app."""
        return []

    def counters(self, found: Any) -> list[tuple[str, Counters]]:
        """The counter sets of an object of :attr:`kinds`, by their metrics label (as many
        as :attr:`labels`, in that order)."""
        return [(self.name, found.counters)]

    def __repr__(self) -> str:
        return f"<product {self.name}: {self.title}>"


def _explain(kind: type, given: Mapping[str, Any], exc: TypeError) -> str:
    """A ``TypeError`` from building ``kind`` as one line: a misspelt keyword gets the option
    it was probably meant to be."""
    try:
        known = [
            name
            for name, parameter in inspect.signature(kind).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
            or parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        ]
    except (TypeError, ValueError):  # pragma: no cover - a class without a signature
        known = []
    unknown = [name for name in given if known and name not in known]
    if not unknown:
        return f"{kind.__name__}: {exc}"
    lines = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"unknown option {name}{hint}")
    return "; ".join(lines)


def oauth_summary(config: OAuthOptions) -> dict[str, object]:
    """What ``check`` prints of a product with a callback and a login page: every option,
    and ``verify_state`` and ``on_invalid_code`` as their defaults resolve them."""
    shown = config.summary()
    shown["verify_state"] = config.resolved_verify_state
    shown["on_invalid_code"] = config.resolved_on_invalid_code
    return shown
