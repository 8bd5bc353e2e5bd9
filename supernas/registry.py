"""One registry of named entries for every kind (supernet families, search strategies, objectives).

One lookup rule, one error for an unknown name (naming the known ones), and a :class:`SupernasWarning` when a
name is registered a second time by something else (the later entry wins, as a user's override would).
"""
from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from .errors import ConfigError, warn

T = TypeVar("T")


def _what(item: object) -> str:
    target = getattr(item, "fn", None) or item
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__name__)}"


class Registry(Generic[T]):
    """Entries of one ``kind`` by name (``kind`` reads in messages: "unknown search strategy 'x'")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T, *, replaces: bool = False) -> T:
        """Register ``item`` as ``name``; a name already taken by another entry warns unless ``replaces``."""
        old = self._items.get(name)
        if old is not None and old is not item and not replaces:
            warn(f"{self.kind} {name!r} registered twice: {_what(item)} replaces {_what(old)}")
        self._items[name] = item
        return item

    def setdefault(self, name: str, item: T) -> T:
        """``item`` under ``name`` unless the name is taken (declarations that a later ``add`` fills in)."""
        return self._items.setdefault(name, item)

    def remove(self, name: str) -> None:
        """Forget ``name`` (a user's temporary entry); unknown names are ignored."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
