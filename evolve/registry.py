"""One table per extension point: a kind's name → its options dataclass and its factory.

Adding a brain, a workload, an objective source or a launcher is one new file and one row in its table;
nothing else in the loop knows the kinds by name. The spec names a kind and gives free-form options; the
table turns them into the kind's typed options (strictly: an unknown option is a one-line error naming
the key) before anything is created, and makes the thing when the campaign needs it. Factories import
their module lazily, so a campaign that never uses a kind never pays for its imports (torch, openai).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownKind(ValueError):
    """A kind no table row names (one line: the key, what was given, what exists)."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    # a dataclass, or "module:Class" for one whose module is heavy (openai, torch): imported when first used;
    # None for a kind that takes no options
    options_ref: type | str | None
    factory: Callable[..., T]
    summary: str  # one line for `--help` and errors

    @property
    def options(self) -> type | None:
        if isinstance(self.options_ref, str):
            module, _, name = self.options_ref.partition(":")
            return getattr(importlib.import_module(module), name)
        return self.options_ref


class Registry(Generic[T]):
    def __init__(self, key: str, what: str) -> None:
        self.key, self.what = key, what  # the spec key that names a kind (`brain.kind`), and what a kind is
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, options: type | str | None, factory: Callable[..., T], summary: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = Entry(options, factory, summary)

    def names(self) -> list[str]:
        return list(self._entries)

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise UnknownKind(f"{self.key}: {name!r} is not a {self.what}; known: {', '.join(self._entries)}")
        return self._entries[name]

    def options(self, name: str, raw: dict[str, Any] | None, parse: Callable[[type, Any, str], Any],
                prefix: str) -> Any:
        """The kind's typed options from the spec's free-form mapping, parsed by `parse(cls, raw, prefix)`
        (the spec's strict loader), or None for a kind without options (then any option is an error)."""
        entry = self.entry(name)
        if entry.options is None:
            if raw:
                first = sorted(raw)[0]
                raise UnknownKind(f"{prefix}{first}: the {self.what} {name!r} takes no options")
            return None
        return parse(entry.options, raw or {}, prefix)

    def make(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.entry(name).factory(*args, **kwargs)
