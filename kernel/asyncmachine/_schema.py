"""State definitions, schema helpers and the compiled form a machine runs on.

A schema is a plain dict mapping state names to :class:`State`. The dict's order is
the default state order::

    schema = {
        "Start": am.State(add=["Ready"]),
        "Ready": am.State(require=["Start"]),
        "Msg": am.State(multi=True),
    }
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, NamedTuple

from ._errors import SchemaError

__all__ = [
    "EXCEPTION",
    "State",
    "StatesBase",
    "extend_state",
    "merge_schemas",
    "set_state",
]

EXCEPTION = "Exception"
RELATIONS = ("require", "add", "remove", "after")
_COMPILED_CACHE_SIZE = 256


def _names_tuple(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if value is None:
        return ()
    if isinstance(value, tuple) and all(type(v) is str for v in value):
        return value
    try:
        names = tuple(value)
    except TypeError:
        raise TypeError(
            f"State.{field} must be a list of state names, got {value!r}"
        ) from None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(
                f"State.{field} must contain state names (str), got {name!r}"
            )
    return names


class _StateFields(NamedTuple):
    auto: bool
    multi: bool
    require: tuple[str, ...]
    add: tuple[str, ...]
    remove: tuple[str, ...]
    after: tuple[str, ...]
    tags: tuple[str, ...]


class State(_StateFields):
    """An immutable state definition: flags and relations to other states.

    Args:
        auto: activate this state after any clock-changing transition, when possible.
        multi: a call to activate the state while it is active re-enters it.
        require: states that must be active (or become active) with this one.
        add: states activated together with this one, best effort.
        remove: states deactivated by this one, which cannot be active with it.
        after: states whose handlers run before this state's handlers.
        tags: free metadata, no effect on behaviour.
    """

    __slots__ = ()

    def __new__(
        cls,
        *,
        auto: bool = False,
        multi: bool = False,
        require: Iterable[str] = (),
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        after: Iterable[str] = (),
        tags: Iterable[str] = (),
    ) -> State:
        return tuple.__new__(
            cls,
            (
                bool(auto),
                bool(multi),
                _names_tuple(require, "require"),
                _names_tuple(add, "add"),
                _names_tuple(remove, "remove"),
                _names_tuple(after, "after"),
                _names_tuple(tags, "tags"),
            ),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> State:
        """Build a state from a mapping with the keys of :meth:`to_dict`."""
        unknown = set(data) - set(cls._fields)
        if unknown:
            raise SchemaError(
                f"unknown state fields {sorted(unknown)}; "
                f"valid fields are {list(cls._fields)}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields that are set: true flags and non-empty relations."""
        out: dict[str, Any] = {}
        for field, value in zip(self._fields, self, strict=True):
            if value:
                out[field] = list(value) if isinstance(value, tuple) else value
        return out

    def __repr__(self) -> str:
        parts = []
        for field, value in zip(self._fields, self, strict=True):
            if value:
                parts.append(
                    f"{field}={list(value) if type(value) is tuple else value}"
                )
        return f"State({', '.join(parts)})"


def _union(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(first + second))


def merge_schemas(*schemas: Mapping[str, State]) -> dict[str, State]:
    """Merge schemas; a later schema replaces whole states of the same name."""
    merged: dict[str, State] = {}
    for schema in schemas:
        for name, state in schema.items():
            merged.pop(name, None)
            merged[name] = as_state(name, state)
    return merged


def extend_state(state: State, overlay: State) -> State:
    """Return `state` with the overlay's relations appended and its flags turned on."""
    return State(
        auto=state.auto or overlay.auto,
        multi=state.multi or overlay.multi,
        require=_union(state.require, overlay.require),
        add=_union(state.add, overlay.add),
        remove=_union(state.remove, overlay.remove),
        after=_union(state.after, overlay.after),
        tags=_union(state.tags, overlay.tags),
    )


def set_state(
    state: State,
    overlay: Mapping[str, Iterable[str]],
    *,
    auto: bool | None = None,
    multi: bool | None = None,
) -> State:
    """Return `state` with each relation given in `overlay` replaced.

    Flags change only when `auto` or `multi` is given.
    """
    fields: dict[str, Any] = dict(zip(State._fields, state, strict=True))
    for key, value in overlay.items():
        if key not in RELATIONS and key != "tags":
            raise SchemaError(
                f"set_state: {key!r} is not a relation; use one of {RELATIONS}"
            )
        fields[key] = value
    if auto is not None:
        fields["auto"] = auto
    if multi is not None:
        fields["multi"] = multi
    return State(**fields)


def as_state(name: Any, value: Any) -> State:
    """Check one schema entry and return it as a :class:`State`."""
    if not isinstance(name, str) or not name:
        raise SchemaError(f"state names must be non-empty strings, got {name!r}")
    if isinstance(value, State):
        return value
    if isinstance(value, Mapping):
        return State.from_dict(value)
    raise SchemaError(
        f"state {name!r}: expected am.State or a mapping, got {type(value).__name__}"
    )


class StatesBase:
    """Declare state names once and use them as attributes.

    Every class attribute annotated as ``str`` becomes a state whose value is its
    own name. Parent classes contribute their states first, and the base adds
    ``Exception``::

        class FooStates(am.StatesBase):
            Start: str
            Ready: str

        FooStates.Start        # "Start"
        FooStates.names()      # ("Exception", "Start", "Ready")
    """

    Exception: ClassVar[str] = EXCEPTION
    _names: ClassVar[tuple[str, ...]] = (EXCEPTION,)
    _groups: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [
            name
            for name, annotation in cls.__dict__.get("__annotations__", {}).items()
            if not name.startswith("_") and annotation in (str, "str")
        ]
        for name in own:
            setattr(cls, name, name)
        names: list[str] = []
        groups: dict[str, tuple[str, ...]] = {"self": tuple(own)}
        # Parents first, in MRO order from the most basic definition.
        for parent in reversed(cls.__mro__[1:]):
            if issubclass(parent, StatesBase) and parent is not cls:
                for name in parent.__dict__.get("_names", ()):
                    if name not in names:
                        names.append(name)
                if parent is not StatesBase:
                    parent_own = parent.__dict__.get("_groups", {}).get("self", ())
                    groups[parent.__name__] = parent_own
        for name in own:
            if name not in names:
                names.append(name)
        cls._names = tuple(names)
        cls._groups = groups

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Return every state name, parents' first, including ``Exception``."""
        return cls._names

    @classmethod
    def groups(cls) -> dict[str, tuple[str, ...]]:
        """Return the groups: ``self`` for own states, then one per parent class."""
        return dict(cls._groups)


class Compiled:
    """A sanitised schema with the lookup tables that transitions use.

    Machines with equal schemas and state orders share one instance, so it must
    never be changed after construction.
    """

    __slots__ = (
        "schema",
        "names",
        "index",
        "multi",
        "auto_states",
        "adds",
        "removes",
        "removed_by",
        "requires",
        "afters",
        "has_after",
        "has_adds",
        "has_removes",
        "topo_key",
        "errors",
        "enter_names",
        "exit_names",
        "state_names",
        "end_names",
        "singles",
        "plans",
        "plan_parts",
        "__weakref__",
    )

    def __init__(
        self,
        schema: dict[str, State],
        names: tuple[str, ...],
        errors: list[str],
    ) -> None:
        self.schema = schema
        self.names = names
        self.index = {name: i for i, name in enumerate(names)}
        self.errors = errors
        self.multi = frozenset(n for n, s in schema.items() if s.multi)
        self.auto_states = tuple(n for n in names if schema[n].auto)
        # An unknown Add target (kept by sanitising) can never be activated.
        adds = {n: tuple(a for a in s.add if a in schema) for n, s in schema.items()}
        self.adds = {n: a for n, a in adds.items() if a}
        self.removes = {n: frozenset(s.remove) for n, s in schema.items() if s.remove}
        removed_by: dict[str, set[str]] = {}
        for name, removes in self.removes.items():
            for target in removes:
                removed_by.setdefault(target, set()).add(name)
        self.removed_by = {n: frozenset(s) for n, s in removed_by.items()}
        self.requires = {n: s.require for n, s in schema.items() if s.require}
        self.afters = {n: frozenset(s.after) for n, s in schema.items() if s.after}
        self.has_after = bool(self.afters)
        self.has_adds = bool(self.adds)
        self.has_removes = bool(self.removes)
        self.topo_key = _require_topology(names, schema)
        self.enter_names = {n: n + "Enter" for n in names}
        self.exit_names = {n: n + "Exit" for n in names}
        self.state_names = {n: n + "State" for n in names}
        self.end_names = {n: n + "End" for n in names}
        # One shared called-states tuple per state, for mutations of one state.
        self.singles: dict[str, tuple[str, ...]] = {n: (n,) for n in names}
        # Resolution outcomes by (mutation type, called, active states). These
        # caches are the only parts that change after construction. They hold
        # values derived from the schema alone, so machines can share them.
        self.plans: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        # Equal parts of different plans, stored once (see Transition._plan).
        self.plan_parts: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def _require_topology(
    names: tuple[str, ...], schema: dict[str, State]
) -> dict[str, int] | None:
    """Order states so that required states come before the states requiring them.

    Returns a sort key per state: states outside every Require relation get -1 and
    so sort first. Returns None when there is no Require relation, or when the
    relations form a cycle (the reference then does not sort by Require).
    """
    in_graph: set[str] = set()
    for name in names:
        required = [r for r in schema[name].require if r in schema]
        if required:
            in_graph.add(name)
            in_graph.update(required)
    if not in_graph:
        return None
    order: list[str] = []
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> bool:
        if name in done:
            return True
        if name in visiting:
            return False
        visiting.add(name)
        for required in schema[name].require:
            if required in schema and not visit(required):
                return False
        visiting.discard(name)
        done.add(name)
        order.append(name)
        return True

    # Start nodes in state order, so the result is deterministic.
    for name in names:
        if name in in_graph and not visit(name):
            return None
    key = {name: -1 for name in names}
    for position, name in enumerate(order):
        key[name] = position
    return key


_compiled_cache: dict[tuple[Any, ...], Compiled] = {}


def compile_schema(
    schema: Mapping[str, Any],
    state_order: Iterable[str] | None,
    strict: bool,
) -> Compiled:
    """Sanitise `schema`, add ``Exception``, and build the lookup tables.

    Raises:
        SchemaError: a relation names an unknown state (when `strict`), the order
            misses or repeats states, or an entry is malformed.
    """
    if not isinstance(schema, Mapping):
        raise TypeError(f"schema must be a mapping of state names, got {schema!r}")
    order_key = tuple(state_order) if state_order is not None else None
    try:
        key = (tuple(schema.items()), order_key, strict)
        cached = _compiled_cache.get(key)
    except TypeError:
        key = None
        cached = None
    if cached is not None:
        return cached

    states = {name: as_state(name, value) for name, value in schema.items()}
    sanitised, errors = _sanitise(states, strict)
    if EXCEPTION not in sanitised:
        sanitised[EXCEPTION] = State(multi=True)
    names = _check_order(sanitised, order_key)
    compiled = Compiled(sanitised, names, errors)
    if key is not None:
        if len(_compiled_cache) >= _COMPILED_CACHE_SIZE:
            _compiled_cache.pop(next(iter(_compiled_cache)))
        _compiled_cache[key] = compiled
    return compiled


def _sanitise(
    states: dict[str, State], strict: bool
) -> tuple[dict[str, State], list[str]]:
    """Clean relations as the reference does before it adds ``Exception``."""
    errors: list[str] = []
    out: dict[str, State] = {}
    for name, state in states.items():
        if strict:
            for relation in RELATIONS:
                for target in getattr(state, relation):
                    if target not in states and target != EXCEPTION:
                        raise SchemaError(
                            f"state {name!r}: relation {relation!r} names unknown "
                            f"state {target!r}; declare {target!r} in the schema "
                            f"or fix the name (known: {sorted(states)})"
                        )
        remove = [r for r in dict.fromkeys(state.remove) if r != name]
        add = []
        for target in state.add:
            # A name also in remove is kept, known or not, as the reference does;
            # unknown ones are left out of the lookup tables (see Compiled).
            if target in remove:
                remove.remove(target)
                add.append(target)
            elif target in states:
                add.append(target)
        for required in state.require:
            if required in remove:
                errors.append(f"require-remove conflict for {name} to {required}")
        after = [a for a in state.after if a != name and a in states]
        remove = [r for r in remove if r in states]
        out[name] = State(
            auto=state.auto,
            multi=state.multi,
            require=state.require,
            add=tuple(dict.fromkeys(add)),
            remove=tuple(dict.fromkeys(remove)),
            after=tuple(dict.fromkeys(after)),
            tags=state.tags,
        )
    return out, errors


def _check_order(
    schema: dict[str, State], order: tuple[str, ...] | None
) -> tuple[str, ...]:
    if order is None:
        return tuple(schema)
    names = tuple(dict.fromkeys(order))
    if len(names) != len(order):
        repeated = sorted({n for n in order if order.count(n) > 1})
        raise SchemaError(f"state_order repeats states {repeated}; list each once")
    unknown = [n for n in names if n not in schema]
    if unknown:
        raise SchemaError(
            f"state_order names unknown states {unknown}; known: {list(schema)}"
        )
    missing = [n for n in schema if n not in names]
    if missing:
        raise SchemaError(
            f"state_order misses states {missing}; list every state, "
            f"{EXCEPTION!r} included"
        )
    return names
