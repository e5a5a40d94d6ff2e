"""One small registry for every name a user writes in a config (arch, objective, task, preset, ...)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A mistake a user can make in a config or on the command line; its message is one line."""


class Registry(Generic[T]):
    """Maps names to objects. ``add`` refuses duplicates; ``get`` on an unknown name lists the valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T | None = None):
        """Register ``obj`` under ``name``; without ``obj`` it is a decorator."""
        if obj is None:
            def deco(o: T) -> T:
                self.add(name, o)
                return o
            return deco
        if name in self._items:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def unknown_name_message(kind: str, name: object, valid: list[str]) -> str:
    """``unknown objective 'spn_corruption'; did you mean 'span_corruption'? valid: a, b, c``."""
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} valid: {', '.join(valid)}"


def check_choice(kind: str, value: object, valid: list[str] | tuple[str, ...]) -> None:
    """Raise a one-line ConfigError when ``value`` is not one of ``valid``."""
    if value not in valid:
        raise ConfigError(unknown_name_message(kind, value, list(valid)))


LazyFactory = Callable[..., T]
