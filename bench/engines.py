"""Peer engines for ``bench.core``: transitions and python-statemachine.

Each adapter maps the workloads of ``bench.workloads`` onto the engine's own
model: one transition per (source, target) pair, guarded first by the source's
exit negotiation and then by the target's enter negotiation, with the engine's
state entry and exit callbacks as the final handlers. The protocol is the one
``bench.peers.AsyncmachineAdapter`` follows.

In the parallel workload asyncmachine checks ``Require Start`` in its relation
resolver. The peers have no such relation, so they get a ``Start`` region and
a guard that returns True. The guard is exact for these workloads because no
mutation deactivates ``Start``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from bench.workloads import Counts, flat_names, parallel_names


def _exit_negotiation() -> Callable[[Any], bool]:
    def guard(self: Any) -> bool:
        self.counts.exit_neg += 1
        return True

    return guard


def _enter_negotiation() -> Callable[[Any], bool]:
    def guard(self: Any) -> bool:
        return self.counts.enter_ok()

    return guard


def _end() -> Callable[[Any], None]:
    def callback(self: Any) -> None:
        self.counts.end += 1

    return callback


def _state() -> Callable[[Any], None]:
    def callback(self: Any) -> None:
        self.counts.state += 1

    return callback


def _start_required(self: Any) -> bool:
    return True


def _callbacks(names: Sequence[str], enter_prefix: str, exit_prefix: str) -> dict:
    """Build one guard and callback function object per state and role.

    Guards are named ``exit_ok_<state>`` and ``enter_ok_<state>``; the final
    callbacks ``<enter_prefix><state>`` and ``<exit_prefix><state>``.
    """
    methods: dict[str, Any] = {"start_required": _start_required}
    for name in names:
        methods["exit_ok_" + name] = _exit_negotiation()
        methods["enter_ok_" + name] = _enter_negotiation()
        methods[enter_prefix + name] = _state()
        methods[exit_prefix + name] = _end()
    return methods


class _TriggerRunner:
    """Calls one pre-bound trigger per mutation."""

    def __init__(
        self,
        triggers: list,
        counts: Counts,
        active: Callable[[], list[str]],
        parallel: bool,
    ):
        self.triggers = triggers
        self.counts = counts
        self.parallel = parallel
        self._active = active

    def run(self, targets: Sequence) -> None:
        triggers = self.triggers
        if self.parallel:
            for group, target in targets:
                triggers[group][target]()
        else:
            for target in targets:
                triggers[target]()

    def active(self) -> list[str]:
        return sorted(self._active())


class TransitionsAdapter:
    """transitions: ``Machine`` for flat, ``HierarchicalMachine`` for parallel.

    Every model gets its own machine (the plain setup; transitions can also
    share one machine between models, which builds faster and takes less
    memory). The parallel workload needs parallel states, which only the
    hierarchical machine supports.
    """

    name = "transitions"
    note = "transitions.Machine per model; HierarchicalMachine for parallel"
    is_async = False

    def __init__(self) -> None:
        self._flat: dict[int, tuple] = {}

    def _flat_spec(self, n: int) -> tuple:
        spec = self._flat.get(n)
        if spec is None:
            names = flat_names(n)
            methods = _callbacks(names, "state_", "end_")
            methods["__init__"] = _set_counts
            model_class = type(f"TransitionsFlat{n}", (), methods)
            states = [
                {"name": name, "on_enter": "state_" + name, "on_exit": "end_" + name}
                for name in names
            ]
            transitions = [
                {
                    "trigger": "activate_" + target,
                    "source": source,
                    "dest": target,
                    "conditions": ["exit_ok_" + source, "enter_ok_" + target],
                }
                for target in names
                for source in names
                if source != target
            ]
            spec = self._flat[n] = (names, model_class, states, transitions)
        return spec

    def build_flat(self, n: int) -> _TriggerRunner:
        """Build a flat machine with ``S0`` active."""
        from transitions import Machine

        names, model_class, states, transitions = self._flat_spec(n)
        counts = Counts()
        model = model_class(counts)
        Machine(
            model=model,
            states=states,
            transitions=transitions,
            initial=names[0],
            auto_transitions=False,
        )
        triggers = [getattr(model, "activate_" + name) for name in names]
        counts.reset()
        return _TriggerRunner(triggers, counts, lambda: [model.state], False)

    def build_parallel(self, groups: int, per_group: int) -> _TriggerRunner:
        """Build a machine with one parallel region per group plus ``Start``."""
        from transitions.extensions import HierarchicalMachine

        names = parallel_names(groups, per_group)
        flat = [name for group in names for name in group]
        methods = _callbacks(flat, "state_", "end_")
        methods["__init__"] = _set_counts
        counts = Counts()
        model = type("TransitionsParallel", (), methods)(counts)

        # Leaf state "P_G1_S2" is the workload's "G1S2".
        regions = []
        transitions = []
        for group_index, group in enumerate(names):
            region = f"G{group_index}"
            children = []
            for state_index, name in enumerate(group):
                children.append(
                    {
                        "name": f"S{state_index}",
                        "on_enter": "state_" + name,
                        "on_exit": "end_" + name,
                    }
                )
                for source_index, source in enumerate(group):
                    if source == name:
                        continue
                    transitions.append(
                        {
                            "trigger": "activate_" + name,
                            "source": f"P_{region}_S{source_index}",
                            "dest": f"P_{region}_S{state_index}",
                            "conditions": [
                                "start_required",
                                "exit_ok_" + source,
                                "enter_ok_" + name,
                            ],
                        }
                    )
            regions.append({"name": region, "children": children, "initial": "S0"})
        regions.append({"name": "Start", "children": ["on"], "initial": "on"})

        HierarchicalMachine(
            model=model,
            states=[{"name": "P", "parallel": regions}],
            transitions=transitions,
            initial="P",
            auto_transitions=False,
        )
        triggers = [
            [getattr(model, "activate_" + name) for name in group] for group in names
        ]

        def active() -> list[str]:
            return [
                leaf.replace("P_", "").replace("_", "")
                for leaf in _flatten(model.state)
                if not leaf.startswith("P_Start")
            ]

        counts.reset()
        return _TriggerRunner(triggers, counts, active, True)


def _set_counts(self: Any, counts: Counts) -> None:
    self.counts = counts


def _flatten(value: Any) -> list[str]:
    """Flatten transitions' nested state lists into leaf names."""
    if isinstance(value, str):
        return [value]
    leaves = []
    for item in value:
        leaves.extend(_flatten(item))
    return leaves


class StatemachineAdapter:
    """python-statemachine, sync engine: ``StateMachine`` and ``StateChart``.

    Flat: a ``StateMachine`` with one event per target state. Parallel: a
    ``StateChart`` with one parallel state holding a compound state per group
    and one for ``Start``. Rejected guards must not raise, so the flat class
    sets ``allow_event_without_transition``.
    """

    name = "python-statemachine"
    note = "python-statemachine StateMachine (flat) / StateChart (parallel), sync"
    is_async = False

    def __init__(self) -> None:
        self._flat: dict[int, tuple] = {}
        self._parallel: dict[tuple[int, int], tuple] = {}

    def _flat_spec(self, n: int) -> tuple:
        spec = self._flat.get(n)
        if spec is None:
            from statemachine import State, StateMachine

            names = flat_names(n)
            attributes = _callbacks(names, "on_enter_", "on_exit_")
            states = {
                name: State(initial=(index == 0)) for index, name in enumerate(names)
            }
            attributes.update(states)
            for name in names:
                attributes["activate_" + name] = _event(states, names, name, [])
            attributes["__init__"] = _statechart_init(StateMachine)
            attributes["allow_event_without_transition"] = True
            machine_class = type(f"StatemachineFlat{n}", (StateMachine,), attributes)
            spec = self._flat[n] = (names, machine_class)
        return spec

    def build_flat(self, n: int) -> _TriggerRunner:
        """Build a flat machine with ``S0`` active."""
        names, machine_class = self._flat_spec(n)
        counts = Counts()
        machine = machine_class(counts)
        events = [getattr(machine, "activate_" + name) for name in names]
        counts.reset()
        return _TriggerRunner(
            events, counts, lambda: list(machine.configuration_values), False
        )

    def _parallel_spec(self, groups: int, per_group: int) -> tuple:
        key = (groups, per_group)
        spec = self._parallel.get(key)
        if spec is None:
            from statemachine import State, StateChart

            names = parallel_names(groups, per_group)
            regions: dict[str, Any] = {}
            for group_index, group in enumerate(names):
                states = {
                    name: State(initial=(index == 0))
                    for index, name in enumerate(group)
                }
                region = dict(states)
                for name in group:
                    region["activate_" + name] = _event(
                        states, group, name, ["start_required"]
                    )
                regions[f"g{group_index}"] = type(
                    f"g{group_index}", (State.Compound,), region
                )
            regions["start"] = type(
                "start", (State.Compound,), {"on": State(initial=True)}
            )
            flat = [name for group in names for name in group]
            attributes = _callbacks(flat, "on_enter_", "on_exit_")
            attributes["p"] = type("p", (State.Parallel,), regions)
            attributes["__init__"] = _statechart_init(StateChart)
            machine_class = type(
                f"StatemachineParallel{groups}x{per_group}", (StateChart,), attributes
            )
            spec = self._parallel[key] = (names, set(flat), machine_class)
        return spec

    def build_parallel(self, groups: int, per_group: int) -> _TriggerRunner:
        """Build a chart with every group active and ``G{g}S0`` in each."""
        names, leaves, machine_class = self._parallel_spec(groups, per_group)
        counts = Counts()
        machine = machine_class(counts)
        events = [
            [getattr(machine, "activate_" + name) for name in group] for group in names
        ]

        def active() -> list[str]:
            return [value for value in machine.configuration_values if value in leaves]

        counts.reset()
        return _TriggerRunner(events, counts, active, True)


def _event(states: dict, names: Sequence[str], target: str, guards: list[str]) -> Any:
    """Join the transitions from every other state into ``target`` as one event."""
    event = None
    for source in names:
        if source == target:
            continue
        conditions = [*guards, "exit_ok_" + source, "enter_ok_" + target]
        transition = states[source].to(states[target], cond=conditions)
        event = transition if event is None else event | transition
    return event


def _statechart_init(base: type) -> Callable[..., None]:
    """Return an ``__init__`` that sets the counters before the initial entry.

    The initial state's entry callback runs inside the base constructor and
    already needs ``self.counts``.
    """

    def __init__(self: Any, counts: Counts) -> None:
        self.counts = counts
        base.__init__(self)

    return __init__


# Adapter classes by engine name, as "module:class" so that a worker imports
# only the engine it measures.
ENGINES: dict[str, str] = {
    "asyncmachine": "bench.peers:AsyncmachineAdapter",
    "transitions": "bench.engines:TransitionsAdapter",
    "python-statemachine": "bench.engines:StatemachineAdapter",
}


def load_engine(name: str) -> Any:
    """Import the adapter class of engine ``name`` and return an instance.

    Raises:
        KeyError: ``name`` is not in ``ENGINES``.
    """
    module_name, class_name = ENGINES[name].split(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)()
