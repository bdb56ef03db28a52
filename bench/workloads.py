"""Workload inputs and handler counters shared by every benchmarked engine.

Two workloads, the same input for every engine:

- flat: ``FLAT_STATES`` mutually exclusive states ``S0``..``S19``, ``S0`` active
  at the start. Each mutation activates one state that is not the active one.
- parallel: ``GROUPS`` groups of ``PER_GROUP`` states (``G0S0``..``G3S4``), every
  group active at once, ``G{g}S0`` active at the start. Each mutation activates
  one state of one group that is not that group's active state.

Per mutation, every engine calls the exit negotiation of the source state and
the enter negotiation of the target. Unless the enter negotiation rejected the
mutation, it then calls the final exit handler of the source and the final
enter handler of the target. ``Counts.enter_ok`` rejects every
``REJECT_EVERY``-th call, so every 10th mutation is canceled.

The targets come from ``random.Random(SEED)``, drawn the same way as in the
independent yardstick ``bench_peers.py``, so both produce the same sequence for
the same sizes.
"""

from __future__ import annotations

import random

SEED = 42
REJECT_EVERY = 10

FLAT_STATES = 20
GROUPS = 4
PER_GROUP = 5


class Counts:
    """Handler call counters, updated by the engine's handlers.

    The attributes and methods match what ``bench_peers.py`` reads from a
    runner's ``counts``: ``exit_neg``, ``enter_neg``, ``end``, ``state``,
    ``reset()``, ``enter_ok()`` and ``as_dict()``.
    """

    __slots__ = ("exit_neg", "enter_neg", "end", "state")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Set every counter to zero."""
        self.exit_neg = 0
        self.enter_neg = 0
        self.end = 0
        self.state = 0

    def enter_ok(self) -> bool:
        """Count one enter negotiation and return False on every 10th call."""
        self.enter_neg += 1
        return self.enter_neg % REJECT_EVERY != 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a dict keyed by attribute name."""
        return {name: getattr(self, name) for name in self.__slots__}


def expected_counts(mutations: int) -> dict[str, int]:
    """Return the counters every engine must reach after ``mutations`` mutations."""
    executed = mutations - mutations // REJECT_EVERY
    return {
        "exit_neg": mutations,
        "enter_neg": mutations,
        "end": executed,
        "state": executed,
    }


def _pick_other(rng: random.Random, size: int, active: int) -> int:
    """Draw an index in ``range(size)`` that differs from ``active``."""
    index = rng.randrange(size - 1)
    if index >= active:
        index += 1
    return index


def flat_targets(
    mutations: int, n_states: int = FLAT_STATES, seed: int = SEED
) -> tuple[list[int], list[str]]:
    """Generate the flat workload.

    Args:
        mutations: number of mutations.
        n_states: number of exclusive states.
        seed: seed of the random generator.

    Returns:
        The target index of each mutation, and the sorted names of the states
        that are active after all of them (``["S<k>"]``).
    """
    rng = random.Random(seed)
    active = 0
    targets = []
    for number in range(1, mutations + 1):
        target = _pick_other(rng, n_states, active)
        targets.append(target)
        # The enter negotiation rejects every 10th mutation, so the active
        # state stays as it was.
        if number % REJECT_EVERY != 0:
            active = target
    return targets, [f"S{active}"]


def parallel_targets(
    mutations: int,
    groups: int = GROUPS,
    per_group: int = PER_GROUP,
    seed: int = SEED,
) -> tuple[list[tuple[int, int]], list[str]]:
    """Generate the parallel workload.

    Args:
        mutations: number of mutations.
        groups: number of groups active at once.
        per_group: number of exclusive states in each group.
        seed: seed of the random generator.

    Returns:
        A ``(group, state)`` index pair for each mutation, and the sorted names
        of the states that are active after all of them (``G<g>S<k>``).
    """
    rng = random.Random(seed)
    active = [0] * groups
    targets = []
    for number in range(1, mutations + 1):
        group = rng.randrange(groups)
        target = _pick_other(rng, per_group, active[group])
        targets.append((group, target))
        if number % REJECT_EVERY != 0:
            active[group] = target
    final = [f"G{group}S{state}" for group, state in enumerate(active)]
    return targets, sorted(final)


def flat_names(n_states: int) -> list[str]:
    """Return the flat workload's state names, ``S0``..``S{n-1}``."""
    return [f"S{index}" for index in range(n_states)]


def parallel_names(groups: int, per_group: int) -> list[list[str]]:
    """Return the parallel workload's state names, one list per group."""
    return [
        [f"G{group}S{state}" for state in range(per_group)] for group in range(groups)
    ]
