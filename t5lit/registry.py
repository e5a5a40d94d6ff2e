"""One small registry for every name a user writes in a config (arch, objective, task, preset, ...).

A registry may *discover* its entries: the first lookup imports the modules that register into it, so a
new entry is one new file and nothing else is edited. ``discover_modules("t5lit.objectives")`` imports
every module of a package; ``discover_entry_points("t5lit.objectives")`` loads what installed
distributions declare under that entry-point group (third-party plug-ins):

    # a plug-in's pyproject.toml
    [project.entry-points."t5lit.objectives"]
    my_objective = "my_package.my_objective"     # a module whose import registers the objective

Discovery runs once per registry, before the first ``get``, ``names``, ``in`` or iteration.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A mistake a user can make in a config or on the command line; its message is one line."""


class Registry(Generic[T]):
    """Maps names to objects. ``add`` refuses duplicates; ``get`` on an unknown name lists the valid ones.

    Args:
        kind: what the names are, for messages ("objective", "task", ...).
        discover: called once before the first lookup; it imports the modules that register entries.
        sort: ``names()`` in sorted order (default) or in the order the entries were added.
    """

    def __init__(self, kind: str, *, discover: Callable[[], None] | None = None, sort: bool = True):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._discover = discover
        self._sort = sort

    def _ready(self) -> None:
        if self._discover is not None:
            discover, self._discover = self._discover, None  # once, and not again from inside discovery
            discover()

    def add(self, name: str, obj: T | None = None):
        """Register ``obj`` under ``name``; without ``obj`` it is a decorator."""
        if obj is None:
            def deco(o: T) -> T:
                self.add(name, o)
                return o
            return deco
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._items:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        self._ready()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ConfigError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        self._ready()
        return sorted(self._items) if self._sort else list(self._items)

    def __contains__(self, name: object) -> bool:
        self._ready()
        try:
            return name in self._items
        except TypeError:  # an unhashable value (a list in a config) is no name
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ready()
        return len(self._items)


def discover_modules(package: str) -> None:
    """Import every module of ``package`` (not its subpackages' modules); a module whose import fails
    raises: it is part of this installation, and its traceback is what its author needs."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("__"):
            importlib.import_module(f"{package}.{info.name}")


def discover_entry_points(group: str) -> None:
    """Load every entry point of ``group`` (importing a module registers its entries). A plug-in that fails
    to load is reported in one warning line and skipped, so one broken package never stops the others."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=group):
        try:
            ep.load()
        except Exception as err:  # noqa: BLE001 - a third-party package's failure, reported and skipped
            first = (str(err).strip().splitlines() or [""])[0]
            print(f"t5lit: warning: plug-in {ep.name!r} ({ep.value}) of {group} failed to load: "
                  f"{type(err).__name__}: {first}", file=sys.stderr)


def unknown_name_message(kind: str, name: object, valid: list[str], where: str = "") -> str:
    """``unknown objective 'spn_corruption'; did you mean 'span_corruption'? valid: a, b, c``; ``where``
    follows the name (``unknown key 'objectve' under 'pretrain'; ...``)."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown {kind} {name!r}{' ' + where if where else ''}{hint} valid: {', '.join(map(str, valid))}"


def check_choice(kind: str, value: object, valid: list[str] | tuple[str, ...]) -> None:
    """Raise a one-line ConfigError when ``value`` is not one of ``valid``."""
    try:
        ok = value in valid
    except TypeError:
        ok = False
    if not ok:
        raise ConfigError(unknown_name_message(kind, value, list(valid)))


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")


def check_name(kind: str, name: object) -> None:
    """Names that become folders or files (experiments, stages, sweep rows, studies): letters, digits and
    ``_.+-``, not starting with a symbol."""
    if not (isinstance(name, str) and name and name[0].isalnum() and set(name) <= _NAME_CHARS):
        raise ConfigError(f"{kind} {name!r} must be letters, digits and _.+- (it names a folder or file), "
                          "starting with a letter or digit")
