"""The reference cases, run through a mirror: the source executes, the mirror agrees.

Every case of ``tests/data/cases.json`` without handler behaviour runs on a source
machine while its mutations are sent through a mirror over TCP. After every
step the mirror's clock, queue tick and string form must equal the source's, and
the step's expectations (results, active states, clocks, checks, waits) must
hold on the mirror. Pushes are off, so the mutation replies alone carry the
diffs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import asyncmachine as am
from asyncmachine import rpc
from tests.cases import CHECK_FUNCTIONS, WHEN_KINDS, _CaseRun, load_cases

CASES_PATH = Path(__file__).resolve().parents[1] / "data" / "cases.json"

# Steps a mirror can send or evaluate locally.
MIRROR_OPS = {"add", "remove", "set", "toggle", "add_err", "check", "when", "state_ctx"}
# Checks whose result must be the same on a mirror. The last error and the
# disposal belong to the source alone.
MIRROR_CHECKS = set(CHECK_FUNCTIONS) - {"err", "is_disposed"}
MIRROR_WAITS = set(WHEN_KINDS) - {"when_args", "when_queue_ends"}
# Expectations about the source's handlers or its error object.
SOURCE_ONLY_EXPECTATIONS = {
    "expect_handler_calls",
    "expect_handler_calls_subsequences",
    "expect_handler_calls_exclude",
    "expect_handler_log",
    "expect_err",
    "expect_panic",
}


def mirrored_cases() -> list[dict[str, Any]]:
    cases = []
    for case in load_cases(str(CASES_PATH)):
        if "handlers" in case or (case.get("opts") or {}).get("no_handlers"):
            continue
        ops = {step["op"] for step in case["steps"]}
        if not ops <= MIRROR_OPS | {"can_add", "can_remove"}:
            continue
        cases.append(case)
    return cases


CASES = mirrored_cases()


def test_most_cases_without_handlers_run_through_a_mirror():
    assert len(CASES) >= 60


class MirrorRun:
    """Stands in for the case runner's state so its check functions read the mirror."""

    def __init__(self, mirror: rpc.Mirror) -> None:
        self.mach = mirror
        self.waiters: dict[str, Any] = {}
        self.contexts: dict[str, Any] = {}
        self.where = "setup"

    def waiter(self, step: dict[str, Any]) -> Any:
        return self.waiters[step["id"]]

    def context(self, step: dict[str, Any]) -> Any:
        return self.contexts[step["id"]]


def result_class(result: am.Result) -> str:
    return "queued" if result.queued else str(result)


async def send_step(mirror: rpc.Mirror, step: dict[str, Any]) -> am.Result | None:
    op = step["op"]
    if op == "add_err":
        error = step.get("error")
        err = Exception(error) if error is not None else None
        if "state" in step:
            return await mirror.add_err_state(step["state"], err)
        return await mirror.add_err(err)
    method = getattr(mirror, op)
    return await method(step["states"], step.get("args"))


def assert_same_clock(source: am.Machine, mirror: rpc.Mirror, where: str) -> None:
    assert mirror.clock() == source.clock(), where
    assert mirror.queue_tick() == source.queue_tick(), where
    assert mirror.string_all() == source.string_all(), where


def check_expectations(
    run: MirrorRun, step: dict[str, Any], result: Any, where: str
) -> None:
    mirror = run.mach
    if "expect_result" in step and result is not None:
        assert result_class(result) == step["expect_result"], where
    if "expect_active" in step:
        assert sorted(mirror.active_states()) == sorted(step["expect_active"]), where
    if "expect_clock" in step:
        for state, tick in step["expect_clock"].items():
            assert mirror.tick(state) == tick, f"{where}: tick of {state}"
    if "expect_string_all" in step:
        assert mirror.string_all() == step["expect_string_all"], where
    if "expect_string" in step:
        assert str(mirror) == step["expect_string"], where
    if "expect_queue_tick" in step:
        assert mirror.queue_tick() == step["expect_queue_tick"], where
    if "expect_is_err" in step:
        assert mirror.is_err() == step["expect_is_err"], where


async def run_case_through_mirror(case: dict[str, Any]) -> None:
    # The case runner's own machine, with its recording handlers bound as in
    # the reference runs.
    case_run = _CaseRun(case)
    case_run.validate()
    source = case_run.new_machine((case.get("opts") or {}).get("id", "case"))
    server = await rpc.serve_source(source, push_interval=None, plain_service=None)
    mirror = await rpc.connect_mirror(server.addr, id=f"mirror-of-{case['id']}")
    run = MirrorRun(mirror)
    try:
        assert_same_clock(source, mirror, "after the handshake")
        for index, step in enumerate(case["steps"]):
            where = f"{case['id']} step {index} ({step['op']})"
            op = step["op"]
            if op in ("can_add", "can_remove") or "expect_panic" in step:
                continue
            result = None
            if op in ("add", "remove", "set", "toggle", "add_err"):
                result = await send_step(mirror, step)
            elif op == "check":
                if step["fn"] not in MIRROR_CHECKS:
                    continue
                if step["fn"] == "resolved" and step["id"] not in run.waiters:
                    continue
                if step["fn"] == "resolved" and "quirk" in case.get("flags", ()):
                    # when_queue.canceled_quirk: the source resolves queue waits
                    # only after an accepted transition, but the mirror learns
                    # the queue tick of a canceled one from an accepted sync.
                    continue
                expected = None if step.get("expect_null") else step["expect"]
                actual = CHECK_FUNCTIONS[step["fn"]](run, step)
                if isinstance(actual, tuple):
                    actual = list(actual)
                assert actual == expected, where
            elif op == "when":
                if step["kind"] in MIRROR_WAITS:
                    run.waiters[step["id"]] = WHEN_KINDS[step["kind"]](mirror, step)
            elif op == "state_ctx":
                run.contexts[step["id"]] = mirror.state_ctx(step["state"])
            assert_same_clock(source, mirror, where)
            check_expectations(run, step, result, where)

        expect = case.get("expect", {})
        if "active" in expect:
            assert sorted(mirror.active_states()) == sorted(expect["active"])
        if "clock" in expect:
            assert mirror.clock() == expect["clock"]
    finally:
        await mirror.close()
        await server.close()


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_case_through_mirror(case):
    asyncio.run(run_case_through_mirror(case))
