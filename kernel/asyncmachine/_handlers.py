"""Handler groups: finding the methods named after states on handler objects.

A handler group is any object. Its methods named by the asyncmachine convention
(``FooEnter``, ``FooExit``, ``FooState``, ``FooEnd``, ``FooBar``, ``AnyEnter``,
``AnyState``) are called during transitions with one argument, the event.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any

__all__ = ["HandlerGroup", "DispatchTable", "is_final_name"]

_FINAL_SUFFIXES = ("State", "End")
# Weak keys, so classes made at run time (one per handler set) can be freed.
_class_index_cache: weakref.WeakKeyDictionary[type, dict[str, tuple[Any, bool]]] = (
    weakref.WeakKeyDictionary()
)


def is_final_name(name: str) -> bool:
    """Whether a handler name is a final handler (it ends in ``State`` or ``End``)."""
    return name.endswith(_FINAL_SUFFIXES)


def _class_index(cls: type) -> dict[str, tuple[Any, bool]]:
    """Map every public callable attribute of a class to (function, is_async).

    Built once per class, because scanning a class is slow.
    """
    index = _class_index_cache.get(cls)
    if index is not None:
        return index
    index = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        value = inspect.getattr_static(cls, name)
        if isinstance(value, staticmethod | classmethod):
            # Bound through getattr at call time; rare for handlers.
            continue
        if inspect.isfunction(value):
            index[name] = (value, inspect.iscoroutinefunction(value))
    _class_index_cache[cls] = index
    return index


class HandlerGroup:
    """One bound handler object, with an optional state-name prefix."""

    __slots__ = ("id", "obj", "prefix", "class_index", "instance_index")

    def __init__(self, group_id: str, obj: Any, prefix: str | None) -> None:
        self.id = group_id
        self.obj = obj
        self.prefix = prefix or ""
        self.class_index = _class_index(type(obj))
        # Callables stored on the instance itself (not methods) are called as is.
        instance_index: dict[str, tuple[Any, bool]] = {}
        for name, value in getattr(obj, "__dict__", {}).items():
            if not name.startswith("_") and callable(value):
                instance_index[name] = (value, inspect.iscoroutinefunction(value))
        self.instance_index = instance_index

    def lookup(self, name: str) -> tuple[Any, bool, bool] | None:
        """Find the handler for an event name: (callable, is_async, is_method)."""
        if self.prefix:
            if not name.startswith(self.prefix):
                return None
            name = name[len(self.prefix) :]
        found = self.instance_index.get(name)
        if found is not None:
            return found[0], found[1], False
        found = self.class_index.get(name)
        if found is not None:
            return found[0], found[1], True
        return None

    def names(self) -> set[str]:
        """Return every event name this group can receive."""
        names = set(self.class_index) | set(self.instance_index)
        if self.prefix:
            names = {self.prefix + n for n in names}
        return names


class DispatchTable:
    """Handlers per event name over all bound groups, resolved lazily and cached.

    Each entry is a tuple of (handler object or None, callable, is_async); a
    method is called as ``callable(obj, event)``, an instance callable as
    ``callable(event)``.
    """

    __slots__ = ("groups", "cache", "names", "pair_names", "_pairs_for")

    def __init__(self, groups: list[HandlerGroup]) -> None:
        self.groups = groups
        self.cache: dict[str, tuple[tuple[Any, Any, bool], ...]] = {}
        names: set[str] = set()
        for group in groups:
            names |= group.names()
        self.names = frozenset(names)
        self.pair_names: dict[str, dict[str, str]] = {}
        # (state names, whether any handler name is two state names joined).
        self._pairs_for: tuple[Any, bool] | None = None

    def get(self, name: str) -> tuple[tuple[Any, Any, bool], ...]:
        """Return the handlers for one event name, in binding order."""
        entries = self.cache.get(name)
        if entries is not None:
            return entries
        found = []
        if name in self.names:
            for group in self.groups:
                hit = group.lookup(name)
                if hit is not None:
                    func, is_async, is_method = hit
                    found.append((group.obj if is_method else None, func, is_async))
        entries = tuple(found)
        self.cache[name] = entries
        return entries

    def has_pairs(self, state_names: tuple[str, ...]) -> bool:
        """Whether some handler is a state-state or self handler ("XY", "XX")."""
        cached = self._pairs_for
        if cached is not None and cached[0] is state_names:
            return cached[1]
        known = set(state_names)
        found = any(
            name[:i] in known and name[i:] in known
            for name in self.names
            for i in range(1, len(name))
        )
        self._pairs_for = (state_names, found)
        return found

    def pair_row(self, x: str, state_names: tuple[str, ...]) -> dict[str, str]:
        """Map each state Y to "XY" where a state-state handler "XY" exists."""
        pairs = self.pair_names
        row = pairs.get(x)
        if row is None:
            handler_names = self.names
            row = {}
            if any(n.startswith(x) for n in handler_names):
                for y in state_names:
                    if x + y in handler_names:
                        row[y] = x + y
            pairs[x] = row
        return row
