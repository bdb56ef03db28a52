"""History stores (memory and SQLite), their queries, and dump files."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import asyncmachine as am
from asyncmachine import history
from asyncmachine.history import HistoryTracer, record_from_transition

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "Busy": am.State(remove=["Idle"]),
    "Idle": am.State(remove=["Busy"]),
    "Msg": am.State(multi=True),
}

BACKENDS = ["memory", "sqlite"]


class _TimedTracer(am.Tracer):
    """Appends records stamped with the next value of `times`."""

    def __init__(self, store: history.History, times: Iterator[float]) -> None:
        self.store = store
        self.times = times

    def transition_end(self, tx: am.Transition, result: object) -> None:
        if not tx.is_check:
            self.store.append(record_from_transition(tx, result, next(self.times)))


def _store(
    backend: str,
    schema: history.MachineSchema,
    tmp_path: Path,
    now: Callable[[], float] = lambda: 1000.0,
    **limits: object,
) -> history.History:
    if backend == "memory":
        return history.MemoryHistory(schema, clock=now, **limits)  # type: ignore[arg-type]
    return history.SQLiteHistory(
        tmp_path / "history.db",
        schema,
        clock=now,
        **limits,  # type: ignore[arg-type]
    )


def _timed_machine(
    backend: str, tmp_path: Path, **limits: object
) -> tuple[am.Machine, history.History]:
    """A machine whose transitions get times 1, 2, 3, ... seconds."""
    mach = am.Machine(SCHEMA, id="timed")
    store = _store(backend, history.schema_from_machine(mach), tmp_path, **limits)
    mach.add_tracer(_TimedTracer(store, iter(range(1, 10_000))))
    return mach, store


@pytest.mark.parametrize("backend", BACKENDS)
def test_activation_queries(backend: str, tmp_path: Path) -> None:
    mach, store = _timed_machine(backend, tmp_path, max_records=None)
    mach.add("Start")  # t=1, Start and Ready
    mach.add("Busy")  # t=2
    mach.add("Idle")  # t=3, removes Busy
    mach.remove("Start")  # t=4, Ready goes too
    mach.add("Msg")  # t=5
    mach.add("Msg")  # t=6, a Multi re-entry

    assert [r.time for r in store.activations("Busy")] == [2]
    assert [r.time for r in store.deactivations("Busy")] == [3]
    assert [r.time for r in store.activations("Msg")] == [5, 6]
    assert store.activated_between("Ready", 1, 1)
    assert not store.activated_between("Ready", 2, 6)
    assert store.deactivated_between("Ready", 4, 4)
    assert store.active_between("Busy", 2.5, 2.6)
    assert not store.active_between("Busy", 3.5, 10)
    assert store.active_between("Start", 0, 0.5) is False
    assert [r.time for r in store.touching("Busy")] == [2, 3]
    assert [r.time for r in store.touching("Ready")] == [1, 4]
    assert [r.time for r in store.last(2)] == [5, 6]
    assert [r.time for r in store.records(2, 4)] == [2, 3, 4]
    assert [r.time for r in store.touching("Msg", limit=1)] == [6]
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_activated_recently_uses_clock(backend: str, tmp_path: Path) -> None:
    now = [100.0]
    mach = am.Machine(SCHEMA, id="recent")
    store = _store(backend, history.schema_from_machine(mach), tmp_path, lambda: now[0])
    mach.add_tracer(_TimedTracer(store, iter([95.0, 99.0])))
    mach.add("Busy")
    mach.add("Idle")
    assert store.activated_recently("Idle", within=2)
    assert not store.activated_recently("Busy", within=2)
    assert store.activated_recently("Busy", within=10)
    now[0] = 200.0
    assert not store.activated_recently("Idle", within=10)
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_records_drops_oldest(backend: str, tmp_path: Path) -> None:
    mach, store = _timed_machine(backend, tmp_path, max_records=10)
    for _ in range(50):
        mach.add("Msg")
    records = store.records()
    assert len(store) == 10
    assert [r.time for r in records] == list(range(41, 51))
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_age_drops_old(backend: str, tmp_path: Path) -> None:
    now = [10.0]
    mach = am.Machine(SCHEMA, id="aged")
    store = _store(
        backend,
        history.schema_from_machine(mach),
        tmp_path,
        lambda: now[0],
        max_records=None,
        max_age=5.0,
    )
    mach.add_tracer(_TimedTracer(store, iter(range(1, 100))))
    for _ in range(10):
        mach.add("Msg")
    assert [r.time for r in store.records()] == [5, 6, 7, 8, 9, 10]
    now[0] = 13.0
    assert [r.time for r in store.records()] == [8, 9, 10]
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_state_raises(backend: str, tmp_path: Path) -> None:
    _mach, store = _timed_machine(backend, tmp_path)
    with pytest.raises(am.StateError, match="Nope"):
        store.touching("Nope")
    with pytest.raises(am.StateError, match="Nope"):
        store.activated_recently("Nope", 1)
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_schema_change_keeps_old_records(backend: str, tmp_path: Path) -> None:
    mach, store = _timed_machine(backend, tmp_path, max_records=None)
    tracer = [t for t in mach.tracers() if isinstance(t, _TimedTracer)][0]
    mach.add_tracer(HistoryTracer(store))
    mach.remove_tracer(mach.tracers()[-1])
    mach.add("Busy")
    mach.set_schema({**SCHEMA, "New": am.State()}, [*mach.state_names(), "New"])
    store.set_schema(history.schema_from_machine(mach))
    mach.add("New")
    assert tracer.store is store
    assert [r.called for r in store.touching("New")] == [("New",)]
    assert store.records()[0].tick_after(store.schema.index["New"]) == 0
    store.close()


def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "persist.db"
    mach = am.Machine(SCHEMA, id="kept")
    first = history.track(mach, max_records=None, database=path)
    mach.add("Start")
    mach.add("Busy")
    first.close()

    reopened = history.SQLiteHistory(path, "kept", max_records=None)
    assert reopened.schema.states == mach.state_names()
    assert [r.called for r in reopened.records()] == [("Start",), ("Busy",)]
    assert reopened.activated_between("Busy", 0, 1e12)
    reopened.close()
    with pytest.raises(KeyError, match="no history of machine"):
        history.SQLiteHistory(path, "other")


def test_track_records_checks_only_when_asked() -> None:
    mach = am.Machine(SCHEMA, id="checks")
    plain = history.track(mach)
    with_checks = history.track(mach, checks=True)
    mach.can_add("Busy")
    mach.add("Busy")
    assert len(plain) == 1
    assert len(with_checks) == 2
    assert with_checks.records()[0].check


def test_record_before_matches_clock_parity() -> None:
    mach = am.Machine(SCHEMA, id="parity")
    store = history.track(mach, max_records=None)
    mach.add("Start")
    mach.add(["Busy", "Msg"])
    mach.set("Idle")
    for record in store.records():
        odd = tuple(
            n
            for n, t in zip(mach.state_names(), record.clock_before, strict=True)
            if t % 2
        )
        assert record.before == odd


# Dumps


def _random_machines(seed: int, machines: int, mutations: int) -> list[history.History]:
    rng = random.Random(seed)
    histories = []
    for n in range(machines):
        names = [f"S{i}" for i in range(rng.randint(2, 8))]
        schema = {}
        for name in names:
            others = [o for o in names if o != name]
            schema[name] = am.State(
                multi=rng.random() < 0.2,
                add=rng.sample(others, k=min(len(others), rng.randint(0, 1))),
                remove=rng.sample(others, k=min(len(others), rng.randint(0, 1))),
            )
        mach = am.Machine(
            schema,
            id=f"m{n}",
            parent_id=f"m{n - 1}" if n else None,
            tags=("rnd",),
            log_level=rng.choice([0, 2, 3]),
            strict=False,
        )
        store = history.track(mach, max_records=None, checks=True)
        for _ in range(mutations):
            state = rng.choice(names)
            kind = rng.random()
            if kind < 0.5:
                mach.add(state, {"k": 1})
            elif kind < 0.8:
                mach.remove(state)
            elif kind < 0.9:
                mach.can_add(state)
            else:
                mach.set(state)
        histories.append(store)
    return histories


def test_dump_round_trip_exact(tmp_path: Path) -> None:
    histories = _random_machines(seed=7, machines=12, mutations=200)
    path = tmp_path / "dump.jsonl.gz"
    history.write_dump(path, histories, created="2026-01-01T00:00:00.000Z")
    dump = history.read_dump(path)

    assert dump.created == "2026-01-01T00:00:00.000Z"
    assert [m.schema.id for m in dump.machines] == [h.mach_id for h in histories]
    for machine, store in zip(dump.machines, histories, strict=True):
        assert machine.schema == store.schema
        assert machine.records == store.records()

    again = tmp_path / "again.jsonl.gz"
    history.write_dump(again, dump.machines, created=dump.created)
    assert again.read_bytes() == path.read_bytes()


def test_dump_header_first(tmp_path: Path) -> None:
    path = tmp_path / "dump.jsonl.gz"
    history.write_dump(path, _random_machines(seed=1, machines=2, mutations=5))
    lines = gzip.decompress(path.read_bytes()).splitlines()
    header = json.loads(lines[0])
    assert header["format"] == history.DUMP_FORMAT
    assert header["version"] == history.DUMP_VERSION
    assert header["created"].endswith("Z")
    assert json.loads(lines[1])["kind"] == "schema"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([b"{}"], "not an asyncmachine dump"),
        (
            [b'{"format":"asyncmachine-dbg-dump","version":99,"created":"x"}'],
            "newer than this reader",
        ),
        (
            [
                b'{"format":"asyncmachine-dbg-dump","version":1,"created":"x"}',
                b'{"kind":"tx","mach":"a"}',
            ],
            "line 2: transition of machine 'a' before its schema",
        ),
        (
            [
                b'{"format":"asyncmachine-dbg-dump","version":1,"created":"x"}',
                b'{"kind":"what"}',
            ],
            "unknown record kind",
        ),
    ],
)
def test_invalid_dump_rejected(
    tmp_path: Path, lines: list[bytes], message: str
) -> None:
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    with pytest.raises(history.DumpError, match=message):
        history.read_dump(path)


def test_not_gzip_rejected(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text("hello\n")
    with pytest.raises(history.DumpError, match="not a gzip-compressed dump"):
        history.read_dump(path)
