"""asyncmachine adapter for the peer benchmarks.

``ADAPTERS`` maps engine names to adapter classes. ``bench.core`` uses it, and
so does the independent yardstick ``bench_peers.py`` (kept outside this
repository) through its plugin option, run from the repository root::

    PYTHONPATH=.:kernel python bench_peers.py --plugin bench.peers:ADAPTERS \\
        --impls transitions,asyncmachine

An adapter has ``name``, ``note``, ``is_async``, and two builders:
``build_flat(n)`` and ``build_parallel(groups, per_group)``. Each builder
returns a runner with ``run(targets)``, ``active()`` (the sorted active states
without ``Start``) and ``counts`` (a ``bench.workloads.Counts``, reset after
the build).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncmachine as am
from bench.workloads import Counts, flat_names, parallel_names


def _exit_negotiation() -> Callable[[Any, Any], bool]:
    def handler(self: Any, e: Any) -> bool:
        self.counts.exit_neg += 1
        return True

    return handler


def _enter_negotiation() -> Callable[[Any, Any], bool]:
    def handler(self: Any, e: Any) -> bool:
        return self.counts.enter_ok()

    return handler


def _end() -> Callable[[Any, Any], None]:
    def handler(self: Any, e: Any) -> None:
        self.counts.end += 1

    return handler


def _state() -> Callable[[Any, Any], None]:
    def handler(self: Any, e: Any) -> None:
        self.counts.state += 1

    return handler


def _handler_class(class_name: str, names: Sequence[str]) -> type:
    """Build a handler class with Exit, Enter, End and State methods per state.

    Each method is its own function object made by a factory, as
    hand-written handlers would be.
    The methods update ``self.counts``, so one class serves every machine of a
    workload and each instance carries its own counters.
    """
    methods: dict[str, Any] = {"__slots__": ("counts",)}
    factories = (
        ("Exit", _exit_negotiation),
        ("Enter", _enter_negotiation),
        ("End", _end),
        ("State", _state),
    )
    for name in names:
        for suffix, factory in factories:
            method = factory()
            method.__name__ = method.__qualname__ = name + suffix
            methods[name + suffix] = method

    def __init__(self: Any, counts: Counts) -> None:
        self.counts = counts

    methods["__init__"] = __init__
    return type(class_name, (), methods)


class _FlatRunner:
    """Activates ``S{t}`` for each index ``t`` of the targets."""

    def __init__(self, machine: am.Machine, names: list[str], counts: Counts):
        self.machine = machine
        self.names = names
        self.counts = counts

    def run(self, targets: Sequence[int]) -> None:
        add = self.machine.add
        names = self.names
        for target in targets:
            add(names[target])

    def active(self) -> list[str]:
        return sorted(s for s in self.machine.active_states() if s != "Start")


class _ParallelRunner(_FlatRunner):
    """Activates ``G{g}S{k}`` for each ``(g, k)`` pair of the targets."""

    def __init__(self, machine: am.Machine, groups: list[list[str]], counts: Counts):
        super().__init__(machine, [], counts)
        self.groups = groups

    def run(self, targets: Sequence[tuple[int, int]]) -> None:
        add = self.machine.add
        groups = self.groups
        for group, target in targets:
            add(groups[group][target])


class AsyncmachineAdapter:
    """Builds the benchmark machines with ``asyncmachine.Machine``.

    Flat: ``Start`` plus ``S0``..``S{n-1}``, each removing all ``S`` states and
    requiring ``Start``. Parallel: ``Start`` plus ``G{g}S{k}``, each removing
    its group's states and requiring ``Start``. A mutation is ``add`` of the
    target state, which deactivates the rest of its group through the Remove
    relation. Schemas and handler classes are built once per size.
    """

    name = "asyncmachine"
    note = "asyncmachine.Machine, Remove groups + Require Start, one handler object"
    is_async = False

    def __init__(self) -> None:
        self._flat: dict[int, tuple[list[str], dict, type]] = {}
        self._parallel: dict[tuple[int, int], tuple[list[list[str]], dict, type]] = {}

    def _flat_spec(self, n: int) -> tuple[list[str], dict, type]:
        spec = self._flat.get(n)
        if spec is None:
            names = flat_names(n)
            schema = {"Start": am.State()}
            for name in names:
                schema[name] = am.State(remove=names, require=["Start"])
            handlers = _handler_class(f"Flat{n}Handlers", names)
            spec = self._flat[n] = (names, schema, handlers)
        return spec

    def _parallel_spec(
        self, groups: int, per_group: int
    ) -> tuple[list[list[str]], dict, type]:
        key = (groups, per_group)
        spec = self._parallel.get(key)
        if spec is None:
            names = parallel_names(groups, per_group)
            schema = {"Start": am.State()}
            for group in names:
                for name in group:
                    schema[name] = am.State(remove=group, require=["Start"])
            flat = [name for group in names for name in group]
            handlers = _handler_class(f"Parallel{groups}x{per_group}Handlers", flat)
            spec = self._parallel[key] = (names, schema, handlers)
        return spec

    def build_flat(self, n: int) -> _FlatRunner:
        """Build a flat machine with ``Start`` and ``S0`` active."""
        names, schema, handler_class = self._flat_spec(n)
        counts = Counts()
        machine = am.Machine(schema, handlers=handler_class(counts))
        machine.add("Start")
        machine.add(names[0])
        counts.reset()
        return _FlatRunner(machine, names, counts)

    def build_parallel(self, groups: int, per_group: int) -> _ParallelRunner:
        """Build a parallel machine with ``Start`` and every ``G{g}S0`` active."""
        names, schema, handler_class = self._parallel_spec(groups, per_group)
        counts = Counts()
        machine = am.Machine(schema, handlers=handler_class(counts))
        machine.add("Start")
        for group in names:
            machine.add(group[0])
        counts.reset()
        return _ParallelRunner(machine, names, counts)


ADAPTERS = {"asyncmachine": AsyncmachineAdapter}
