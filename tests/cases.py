"""Run the reference behaviour cases against the core machine.

A case file (format ``asyncmachine-cases``, version 1) contains schemas, handler
behaviour written in a small action language, steps and expected facts, all recorded
from the Go reference implementation. This runner builds each case's machine through
the public ``asyncmachine`` API only, binds one handler object that defines every
handler name, runs the steps and compares every expectation. It uses only the standard
library and no threads, so it also runs inside Pyodide.

Usage::

    python -m tests.cases tests/data/cases.json [--verbose] [--only ID ...]

Each failing case prints ``FAIL <case id>: <step index or 'expect'>: <mismatch>``.
The last line is ``N passed, M failed``, followed by ``, K skipped`` when cases were
skipped. The exit status is 1 when a case failed or the file is invalid, else 0.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncmachine as am

__all__ = [
    "CaseFileError",
    "Outcome",
    "format_summary",
    "load_cases",
    "main",
    "run_case",
    "run_cases",
]

FILE_FORMAT = "asyncmachine-cases"
FILE_VERSION = 1

CASE_KEYS = frozenset(
    {
        "id",
        "category",
        "source",
        "description",
        "schema",
        "state_order",
        "opts",
        "handlers",
        "record_only",
        "steps",
        "expect",
        "flags",
    }
)
REQUIRED_CASE_KEYS = ("id", "category", "source", "description", "schema", "steps")
OPTION_KEYS = frozenset(
    {
        "id",
        "handler_timeout_ms",
        "queue_limit",
        "dont_panic_to_exception",
        "no_handlers",
    }
)
STATE_KEYS = frozenset({"auto", "multi", "add", "remove", "require", "after", "tags"})
ACTION_KEYS = frozenset(
    {"do", "states", "args", "value", "error", "state", "if_called"}
)

# Step fields that carry arguments of an op, as opposed to expectations.
STEP_FIELDS = frozenset(
    {
        "op",
        "states",
        "args",
        "state",
        "groups",
        "id",
        "fn",
        "expect",
        "expect_null",
        "kind",
        "times",
        "ticks",
        "queue_tick",
        "error",
        "from",
        "ms",
    }
)

DEFAULT_MACHINE_ID = "case"
DEFAULT_HANDLER_TIMEOUT_MS = 2000
DEFAULT_QUEUE_LIMIT = 1000

MUTATION_OPS = ("add", "remove", "set", "toggle", "can_add", "can_remove")
MUTATION_ACTIONS = MUTATION_OPS
RECORD_ACTIONS = (
    "record_active",
    "record_string",
    "record_target",
    "record_called",
    "record_before",
    "record_args",
    "record_is",
    "record_queue_tick",
    "record_queue_len",
    "record_will_be",
    "record_ctx_done",
)
CONTROL_ACTIONS = (
    "return",
    "raise",
    "raise_once",
    "sleep_ms",
    "set_arg",
    "new_state_ctx",
)
ERROR_ACTIONS = ("add_err", "add_err_state")
KNOWN_ACTIONS = frozenset(
    MUTATION_ACTIONS + RECORD_ACTIONS + CONTROL_ACTIONS + ERROR_ACTIONS
)


class CaseFileError(Exception):
    """The case file cannot be read or is not a valid case file."""


class CaseFailure(Exception):
    """A mismatch or an invalid case, found at ``where`` (a step index or a phase)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class CaseSkipped(Exception):
    """The implementation under test cannot run this case."""


class HandlerPanic(Exception):
    """The exception raised by the ``raise`` and ``raise_once`` handler actions."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The result of one case: ``status`` is ``passed``, ``failed`` or ``skipped``."""

    case_id: str
    status: str
    where: str = ""
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def describe(self) -> str:
        """Return the report line of this outcome."""
        if self.status == "failed":
            return f"FAIL {self.case_id}: {self.where}: {self.message}"
        if self.status == "skipped":
            return f"SKIP {self.case_id}: {self.message}"
        return f"ok {self.case_id}"


# -- values and comparison ----------------------------------------------------------


def _plain(value: Any) -> Any:
    """Convert tuples, lists and mappings into JSON-like lists and dicts."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _json_equal(expected: Any, actual: Any) -> bool:
    """Compare like JSON values: ``true`` differs from ``1``, ``1`` equals ``1.0``."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return (
            isinstance(expected, bool)
            and isinstance(actual, bool)
            and expected == actual
        )
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return expected == actual
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_json_equal(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_json_equal(expected[key], actual[key]) for key in expected)
        )
    return type(expected) is type(actual) and expected == actual


def _show(value: Any) -> str:
    """Format a value for a mismatch message, as JSON where possible."""
    try:
        return json.dumps(_plain(value), ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _mismatch(label: str, expected: Any, actual: Any) -> str:
    return f"{label}: expected {_show(expected)}, got {_show(actual)}"


def _result_text(result: Any) -> str:
    """Format a mutation result as ``executed``, ``canceled`` or ``queued:N``."""
    number = int(result)
    if number == 0:
        return "executed"
    if number == 1:
        return "canceled"
    return f"queued:{number}"


def _result_class(result: Any) -> str:
    return _result_text(result).split(":")[0]


def _arg_text(value: Any) -> str | None:
    """Format an args value like Go's ``%v``; return None for non-scalar values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        return value
    return None


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _is_subsequence(needle: Sequence[str], haystack: Sequence[str]) -> bool:
    remaining = iter(haystack)
    return all(any(item == candidate for candidate in remaining) for item in needle)


# -- the handler action language ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Action:
    """One parsed handler action; ``text`` is the action as written, for log lines."""

    name: str
    text: str
    states: tuple[str, ...] = ()
    args: dict[str, Any] | None = None
    value: Any = None
    message: str | None = None
    state: str = ""
    if_called: tuple[str, ...] = ()


def _parse_bool(word: str, handler: str) -> bool:
    if word == "true":
        return True
    if word == "false":
        return False
    raise CaseFailure("setup", f"handler {handler}: invalid return value {word!r}")


def _parse_text_action(text: str, handler: str) -> Action:
    """Parse the string form: the first word is the action, the rest its arguments."""
    words = text.split()
    if not words:
        raise CaseFailure("setup", f"handler {handler}: empty action")
    name = words[0]
    rest = text.strip().split(None, 1)[1] if len(words) > 1 else ""
    if name not in KNOWN_ACTIONS:
        raise CaseFailure("setup", f"handler {handler}: unknown action {name!r}")

    if name == "return":
        if len(words) != 2:
            raise CaseFailure("setup", f"handler {handler}: invalid action {text!r}")
        return Action(name, text, value=_parse_bool(words[1], handler))
    if name in ("raise", "raise_once", "add_err"):
        return Action(name, text, message=rest or None)
    if name == "add_err_state":
        parts = rest.split(None, 1)
        if len(parts) != 2:
            raise CaseFailure("setup", f"handler {handler}: invalid action {text!r}")
        return Action(name, text, state=parts[0], message=parts[1])
    if name == "set_arg":
        parts = rest.split(None, 1)
        if not parts:
            raise CaseFailure("setup", f"handler {handler}: invalid action {text!r}")
        value = parts[1] if len(parts) > 1 else ""
        return Action(name, text, args={parts[0]: value})
    if name == "sleep_ms":
        if len(words) != 2 or not words[1].isdigit():
            raise CaseFailure("setup", f"handler {handler}: invalid action {text!r}")
        return Action(name, text, value=int(words[1]))
    if name in ("new_state_ctx", "record_ctx_done"):
        if len(words) != 2:
            raise CaseFailure("setup", f"handler {handler}: invalid action {text!r}")
        return Action(name, text, state=words[1])
    return Action(name, text, states=tuple(words[1:]))


def _parse_object_action(spec: dict[str, Any], handler: str) -> Action:
    """Parse the object form ``{do, states, args, value, error, state, if_called}``."""
    unknown = sorted(set(spec) - ACTION_KEYS)
    if unknown:
        raise CaseFailure(
            "setup", f"handler {handler}: unknown action key {unknown[0]!r}"
        )
    name = spec.get("do")
    if name not in KNOWN_ACTIONS:
        raise CaseFailure("setup", f"handler {handler}: unknown action {name!r}")

    states = tuple(spec.get("states") or ())
    state = spec.get("state")
    message = spec.get("error")
    words = [name, *states]
    if state is not None:
        words.append(state)
    if message is not None:
        words.append(message)
    value = spec.get("value")
    if name == "return" and not isinstance(value, bool):
        raise CaseFailure(
            "setup", f"handler {handler}: return needs a boolean value, got {value!r}"
        )
    if name == "sleep_ms" and (isinstance(value, bool) or not isinstance(value, int)):
        raise CaseFailure(
            "setup", f"handler {handler}: sleep_ms needs an integer value"
        )
    if name in ("new_state_ctx", "record_ctx_done", "add_err_state") and not state:
        raise CaseFailure("setup", f"handler {handler}: {name} needs 'state'")
    args = spec.get("args")
    if args is not None and not isinstance(args, dict):
        raise CaseFailure("setup", f"handler {handler}: args must be an object")

    return Action(
        name=name,
        text=" ".join(words),
        states=states,
        args=args,
        value=value,
        message=message,
        state=state or "",
        if_called=tuple(spec.get("if_called") or ()),
    )


def parse_handler_actions(handler: str, spec: Any) -> list[Action]:
    """Parse a handler value: one action string, a list of actions, or an object."""
    items = spec if isinstance(spec, list) else [spec]
    actions = []
    for item in items:
        if isinstance(item, str):
            actions.append(_parse_text_action(item, handler))
        elif isinstance(item, dict):
            actions.append(_parse_object_action(item, handler))
        else:
            raise CaseFailure(
                "setup", f"handler {handler}: invalid action {_show(item)}"
            )
    return actions


def handler_names(states: Iterable[str]) -> list[str]:
    """List every handler name of a machine with these states, without duplicates."""
    states = list(states)
    names = ["AnyEnter", "AnyState"]
    for state in states:
        names += [f"{state}Enter", f"{state}Exit", f"{state}State", f"{state}End"]
    for source in states:
        names += [f"{source}{target}" for target in states]
    return list(dict.fromkeys(names))


def _is_final(name: str) -> bool:
    return name.endswith("State") or name.endswith("End")


# -- one case -----------------------------------------------------------------------


class _CaseRun:
    """The state of one running case: its machine, records and remembered objects."""

    def __init__(self, case: dict[str, Any]) -> None:
        self.case = case
        self.opts: dict[str, Any] = case.get("opts") or {}
        self.where = "setup"
        self.calls: list[str] = []
        self.step_calls: list[str] = []
        self.log: list[str] = []
        self.step_log: list[str] = []
        self.invocations: dict[str, int] = {}
        self.waiters: dict[str, Any] = {}
        self.contexts: dict[str, Any] = {}
        self.records: dict[str, Any] = {}
        # Failures of the runner itself inside handlers, where the machine catches
        # every exception as a handler panic. Checked after each step.
        self.runner_errors: list[CaseFailure | CaseSkipped] = []
        self.actions: dict[str, list[Action]] = {}
        self.record_only: set[str] | None = None
        self.mach: Any = None

    # -- setup ---------------------------------------------------------------------

    def validate(self) -> None:
        case = self.case
        unknown = sorted(set(case) - CASE_KEYS)
        if unknown:
            raise CaseFailure("setup", f"unknown case key {unknown[0]!r}")
        for key in REQUIRED_CASE_KEYS:
            if key not in case:
                raise CaseFailure("setup", f"missing case key {key!r}")
        if not isinstance(case["schema"], dict):
            raise CaseFailure("setup", "schema must be an object")
        if not isinstance(case["steps"], list):
            raise CaseFailure("setup", "steps must be a list")
        if not isinstance(case.get("expect", {}), dict):
            raise CaseFailure("setup", "expect must be an object")
        if not isinstance(self.opts, dict):
            raise CaseFailure("setup", "opts must be an object")
        unknown = sorted(set(self.opts) - OPTION_KEYS)
        if unknown:
            raise CaseFailure("setup", f"unknown option {unknown[0]!r}")
        for name, spec in case["schema"].items():
            if not isinstance(spec, dict):
                raise CaseFailure(
                    "setup", f"state {name}: definition must be an object"
                )
            unknown = sorted(set(spec) - STATE_KEYS)
            if unknown:
                raise CaseFailure("setup", f"state {name}: unknown key {unknown[0]!r}")

        handlers = case.get("handlers") or {}
        if not isinstance(handlers, dict):
            raise CaseFailure("setup", "handlers must be an object")
        for name, spec in handlers.items():
            self.actions[name] = parse_handler_actions(name, spec)
        if "record_only" in case:
            self.record_only = set(case["record_only"])

    def state_order(self) -> list[str]:
        order = self.case.get("state_order")
        if order is not None:
            return list(order)
        return sorted(set(self.case["schema"]) | {"Exception"})

    def build_schema(self) -> dict[str, Any]:
        schema = {}
        for name, spec in self.case["schema"].items():
            schema[name] = am.State(
                auto=bool(spec.get("auto", False)),
                multi=bool(spec.get("multi", False)),
                require=tuple(spec.get("require") or ()),
                add=tuple(spec.get("add") or ()),
                remove=tuple(spec.get("remove") or ()),
                after=tuple(spec.get("after") or ()),
                tags=tuple(spec.get("tags") or ()),
            )
        return schema

    def new_machine(self, machine_id: str) -> Any:
        timeout_ms = self.opts.get("handler_timeout_ms", DEFAULT_HANDLER_TIMEOUT_MS)
        mach = am.Machine(
            self.build_schema(),
            id=machine_id,
            state_order=self.state_order(),
            queue_limit=self.opts.get("queue_limit", DEFAULT_QUEUE_LIMIT),
            handler_timeout=timeout_ms / 1000,
            catch_panics=not self.opts.get("dont_panic_to_exception", False),
            # The cases pin the reference's schema parsing, which drops relation
            # targets that name unknown states instead of raising SchemaError.
            strict=False,
        )
        if not self.opts.get("no_handlers", False):
            mach.bind_handlers(self.new_handler_group())
        return mach

    def new_handler_group(self) -> Any:
        """Build one handler object that defines every handler name of the machine."""
        states = dict.fromkeys(self.state_order() + list(self.case["schema"]))
        names = handler_names(states)
        methods = {name: self.make_handler(name) for name in names}
        return type("CaseHandlers", (), methods)()

    def make_handler(self, name: str) -> Callable[[Any, Any], Any]:
        final = _is_final(name)

        def handler(_self: Any, event: Any) -> bool | None:
            returned = self.dispatch(name, event)
            if final:
                return None
            return True if returned is None else returned

        handler.__name__ = name
        handler.__qualname__ = f"CaseHandlers.{name}"
        return handler

    # -- handlers ------------------------------------------------------------------

    def dispatch(self, name: str, event: Any) -> bool | None:
        """Record a handler call, run its actions and return the first return value."""
        self.invocations[name] = self.invocations.get(name, 0) + 1
        if self.record_only is None or name in self.record_only:
            self.calls.append(name)
            self.step_calls.append(name)

        returned = None
        for action in self.actions.get(name, ()):
            try:
                if action.if_called and not self.all_called(event, action.if_called):
                    continue
                if action.name == "return":
                    if returned is None:
                        returned = action.value
                    continue
                self.run_action(name, action, event)
            except (HandlerPanic, am.StateError):
                raise
            except CaseSkipped as skip:
                self.runner_errors.append(skip)
                raise
            except Exception as error:
                message = (
                    f"handler {name}, action {action.text!r} failed: "
                    f"{type(error).__name__}: {error}"
                )
                self.runner_errors.append(CaseFailure(self.where, message))
                raise
        return returned

    @staticmethod
    def all_called(event: Any, states: Sequence[str]) -> bool:
        called = set(event.transition.called_states())
        return all(state in called for state in states)

    def write_log(self, line: str) -> None:
        self.log.append(line)
        self.step_log.append(line)

    def run_action(self, handler: str, action: Action, event: Any) -> None:
        mach = event.machine
        name = action.name

        if name in ("raise", "raise_once"):
            if name == "raise_once" and self.invocations[handler] > 1:
                return
            raise HandlerPanic(action.message or f"{handler} panic")
        if name == "sleep_ms":
            _sleep(action.value)
            return
        if name == "set_arg":
            event.args.update(action.args or {})
            return
        if name == "new_state_ctx":
            self.contexts[action.state] = mach.state_ctx(action.state)
            return

        if name in MUTATION_ACTIONS:
            method = getattr(mach, name)
            args = copy.deepcopy(action.args) if action.args is not None else None
            result = method(list(action.states), args)
        elif name == "add_err":
            result = mach.add_err(_error(action.message))
        elif name == "add_err_state":
            result = mach.add_err_state(action.state, _error(action.message))
        else:
            self.write_log(f"{handler}: {self.record_line(action, event)}")
            return
        self.write_log(f"{handler}: {action.text} -> {_result_text(result)}")

    def record_line(self, action: Action, event: Any) -> str:
        mach = event.machine
        name = action.name
        states = list(action.states)

        if name == "record_active":
            return "active=" + " ".join(self.index_order(mach, mach.active_states()))
        if name == "record_string":
            return mach.string_all()
        if name == "record_target":
            targets = event.transition.target_states()
            return "target=" + " ".join(self.index_order(mach, targets))
        if name == "record_called":
            return "called=" + " ".join(event.transition.called_states())
        if name == "record_before":
            before = event.transition.before_states()
            return "before=" + " ".join(self.index_order(mach, before))
        if name == "record_args":
            pairs = []
            for key in sorted(event.args):
                text = _arg_text(event.args[key])
                if text is not None:
                    pairs.append(f"{key}={text}")
            return "args=" + ",".join(pairs)
        if name == "record_is":
            joined = " ".join(states)
            return f"is({joined})={_bool_text(mach.is_active(*states))}"
        if name == "record_queue_tick":
            return f"queue_tick={mach.queue_tick()}"
        if name == "record_queue_len":
            return f"queue_len={mach.queue_len()}"
        if name == "record_will_be":
            joined = " ".join(states)
            return f"will_be({joined})={_bool_text(mach.will_be(*states))}"
        if name == "record_ctx_done":
            context = self.contexts.get(action.state)
            if context is None:
                raise KeyError(f"no state context with id {action.state!r}")
            return f"ctx_done({action.state})={_bool_text(context.done())}"
        raise AssertionError(f"action {name!r} has no implementation")

    @staticmethod
    def index_order(mach: Any, states: Iterable[str]) -> list[str]:
        members = set(states)
        return [name for name in mach.state_names() if name in members]

    # -- steps ---------------------------------------------------------------------

    def run(self) -> None:
        self.validate()
        self.mach = self.new_machine(self.opts.get("id", DEFAULT_MACHINE_ID))
        self.raise_runner_errors()

        for index, step in enumerate(self.case["steps"]):
            self.where = str(index)
            self.run_step(index, step)

        self.where = "expect"
        self.check_expectations(self.case.get("expect", {}), final=True)

    def raise_runner_errors(self) -> None:
        if not self.runner_errors:
            return
        raise self.runner_errors[0]

    def run_step(self, index: int, step: dict[str, Any]) -> None:
        """Run one step and check its expectations; ``where`` names it in failures."""
        if not isinstance(step, dict):
            raise CaseFailure(self.where, f"invalid step {_show(step)}")
        op = step.get("op")
        if op not in STEP_OPS:
            raise CaseFailure(self.where, f"unknown op {op!r}")
        for key in step:
            if key not in STEP_FIELDS and key not in STEP_EXPECTATIONS:
                if key.startswith("expect_"):
                    raise CaseFailure(self.where, f"unknown expectation key {key!r}")
                raise CaseFailure(self.where, f"unknown step key {key!r}")

        self.step_calls = []
        self.step_log = []
        label = op if op != "check" else f"check {step.get('fn')}"
        self.where = f"{index}: {label}"

        if step.get("expect_panic"):
            result = self.run_panicking_step(op, step)
        else:
            try:
                result = STEP_OPS[op](self, step)
            except (CaseFailure, CaseSkipped):
                raise
            except Exception as error:
                self.raise_runner_errors()
                raise CaseFailure(
                    self.where, f"step raised {type(error).__name__}: {error}"
                ) from error
        self.raise_runner_errors()
        self.check_expectations(step, final=False, result=result)

    def run_panicking_step(self, op: str, step: dict[str, Any]) -> Any:
        """Run a step that must raise and must leave the machine unchanged."""
        mach = self.mach
        before = (mach.string_all(), mach.queue_tick())
        try:
            result = STEP_OPS[op](self, step)
        except (am.StateError, TypeError):
            pass
        except (CaseFailure, CaseSkipped):
            raise
        except Exception as error:
            raise CaseFailure(
                self.where,
                "expected the step to raise StateError or TypeError, "
                f"got {type(error).__name__}: {error}",
            ) from error
        else:
            raise CaseFailure(
                self.where,
                "expected the step to raise StateError or TypeError, "
                f"got {_show(_plain_result(result))}",
            )
        after = (mach.string_all(), mach.queue_tick())
        if before[0] != after[0]:
            raise CaseFailure(
                self.where, _mismatch("machine after the raise", before[0], after[0])
            )
        if before[1] != after[1]:
            raise CaseFailure(
                self.where, _mismatch("queue tick after the raise", before[1], after[1])
            )
        return None

    def check_expectations(
        self, expect: dict[str, Any], *, final: bool, result: Any = None
    ) -> None:
        if final:
            for key in expect:
                if key not in FINAL_EXPECTATIONS:
                    raise CaseFailure(self.where, f"unknown expectation key {key!r}")
            calls, log = self.calls, self.log
            items = [(key, key, value) for key, value in expect.items()]
        else:
            calls, log = self.step_calls, self.step_log
            items = [
                (key, key.removeprefix("expect_"), value)
                for key, value in expect.items()
                if key in STEP_EXPECTATIONS
            ]

        for key, name, expected in items:
            if name == "panic":
                continue
            if name in ("result", "result_value"):
                self.check_result(key, expected, result)
                continue
            actual = self.observe(name, expected, calls, log)
            if not EXPECTATION_MATCHERS[name](expected, actual):
                raise CaseFailure(self.where, _mismatch(key, expected, actual))

    def check_result(self, key: str, expected: Any, result: Any) -> None:
        if result is None:
            raise CaseFailure(self.where, f"{key}: the op returns no result")
        if key.endswith("value"):
            actual: Any = int(result)
        else:
            if expected not in ("executed", "canceled", "queued"):
                raise CaseFailure(self.where, f"{key}: invalid value {expected!r}")
            actual = _result_class(result)
        if not _json_equal(expected, actual):
            raise CaseFailure(self.where, _mismatch(key, expected, actual))

    def observe(
        self, name: str, expected: Any, calls: list[str], log: list[str]
    ) -> Any:
        """Return the observed value that expectation ``name`` is compared with."""
        mach = self.mach
        if name == "active":
            return mach.active_states()
        if name == "clock":
            return {state: mach.tick(state) for state in expected}
        if name == "string_all":
            return mach.string_all()
        if name == "string":
            return str(mach)
        if name in ("handler_calls", "handler_calls_subsequences"):
            return list(calls)
        if name == "handler_calls_exclude":
            return list(calls)
        if name == "handler_log":
            return list(log)
        if name == "queue_tick":
            return mach.queue_tick()
        if name == "is_err":
            return mach.is_err()
        if name == "err":
            error = mach.err()
            return None if error is None else str(error)
        raise AssertionError(f"expectation {name!r} has no implementation")

    def waiter(self, step: dict[str, Any]) -> Any:
        waiter_id = _field(step, "id")
        if waiter_id not in self.waiters:
            raise CaseFailure(self.where, f"no subscription with id {waiter_id!r}")
        return self.waiters[waiter_id]

    def context(self, step: dict[str, Any]) -> Any:
        context_id = _field(step, "id")
        if context_id not in self.contexts:
            raise CaseFailure(self.where, f"no state context with id {context_id!r}")
        return self.contexts[context_id]


def _plain_result(result: Any) -> Any:
    if result is None:
        return None
    if isinstance(result, int) and not isinstance(result, bool):
        return _result_text(result)
    return _plain(result)


def _error(message: str | None) -> Exception | None:
    return None if message is None else Exception(message)


def _sleep(milliseconds: int) -> None:
    try:
        time.sleep(milliseconds / 1000)
    except (NotImplementedError, OSError) as error:
        raise CaseSkipped(f"time.sleep is not available: {error}") from error


def _field(step: dict[str, Any], key: str) -> Any:
    if key not in step:
        raise CaseFailure("step", f"missing field {key!r}")
    return step[key]


def _states(step: dict[str, Any]) -> list[str]:
    states = _field(step, "states")
    if not isinstance(states, list):
        raise CaseFailure("step", "'states' must be a list")
    return states


def _first_state(step: dict[str, Any]) -> str:
    states = _states(step)
    if not states:
        raise CaseFailure("step", "'states' must name a state")
    return states[0]


# -- step ops -----------------------------------------------------------------------


def _op_mutation(run: _CaseRun, step: dict[str, Any]) -> Any:
    method = getattr(run.mach, step["op"])
    return method(_states(step), step.get("args"))


def _op_add_err(run: _CaseRun, step: dict[str, Any]) -> Any:
    error = _error(_field(step, "error"))
    if "state" in step:
        return run.mach.add_err_state(step["state"], error, step.get("args"))
    return run.mach.add_err(error, step.get("args"))


def _op_check(run: _CaseRun, step: dict[str, Any]) -> None:
    fn = step.get("fn")
    if fn not in CHECK_FUNCTIONS:
        raise CaseFailure(run.where, f"unknown check fn {fn!r}")
    expected = step.get("expect")
    if expected is None and not step.get("expect_null"):
        raise CaseFailure(run.where, "check step with expect null needs expect_null")
    actual = _plain(CHECK_FUNCTIONS[fn](run, step))
    if not _json_equal(expected, actual):
        raise CaseFailure(run.where, _mismatch("expect", expected, actual))


def _op_when(run: _CaseRun, step: dict[str, Any]) -> None:
    kind = step.get("kind")
    if kind not in WHEN_KINDS:
        raise CaseFailure(run.where, f"unknown when kind {kind!r}")
    waiter_id = _field(step, "id")
    run.waiters[waiter_id] = WHEN_KINDS[kind](run.mach, step)


def _op_state_ctx(run: _CaseRun, step: dict[str, Any]) -> None:
    context_id = _field(step, "id")
    run.contexts[context_id] = run.mach.state_ctx(_field(step, "state"))


def _op_export(run: _CaseRun, step: dict[str, Any]) -> None:
    record = run.mach.export()
    run.records[_field(step, "id")] = copy.deepcopy(record)
    if "expect" in step:
        actual = _plain(record)
        if not _json_equal(step["expect"], actual):
            raise CaseFailure(run.where, _mismatch("export", step["expect"], actual))


def _op_import_new(run: _CaseRun, step: dict[str, Any]) -> None:
    record_id = _field(step, "from")
    if record_id not in run.records:
        raise CaseFailure(run.where, f"no exported record with id {record_id!r}")
    record = copy.deepcopy(run.records[record_id])
    mach = run.new_machine(record["id"])
    mach.import_(record)
    run.mach = mach


def _op_dispose(run: _CaseRun, step: dict[str, Any]) -> None:
    run.mach.dispose()


def _op_sleep_ms(run: _CaseRun, step: dict[str, Any]) -> None:
    _sleep(_field(step, "ms"))


STEP_OPS: dict[str, Callable[[_CaseRun, dict[str, Any]], Any]] = {
    **{op: _op_mutation for op in MUTATION_OPS},
    "add_err": _op_add_err,
    "check": _op_check,
    "when": _op_when,
    "state_ctx": _op_state_ctx,
    "export": _op_export,
    "import_new": _op_import_new,
    "dispose": _op_dispose,
    "sleep_ms": _op_sleep_ms,
}


# -- check functions and subscriptions ----------------------------------------------


def _check_inspect(run: _CaseRun, step: dict[str, Any]) -> str:
    if "states" in step:
        return run.mach.inspect(step["states"])
    return run.mach.inspect()


def _check_time(run: _CaseRun, step: dict[str, Any]) -> list[int]:
    if "states" in step:
        return run.mach.time(step["states"])
    return run.mach.time()


def _check_clock(run: _CaseRun, step: dict[str, Any]) -> dict[str, int]:
    if "states" in step:
        return run.mach.clock(step["states"])
    return run.mach.clock()


def _check_switch(run: _CaseRun, step: dict[str, Any]) -> str:
    found = run.mach.switch(*_field(step, "groups"))
    return "" if found is None else found


def _check_err(run: _CaseRun, step: dict[str, Any]) -> str | None:
    error = run.mach.err()
    return None if error is None else str(error)


def _check_schema_state(run: _CaseRun, step: dict[str, Any]) -> dict[str, Any]:
    state = _field(step, "state")
    schema = run.mach.schema()
    if state not in schema:
        raise CaseFailure(run.where, f"state {state!r} not found in the schema")
    return schema[state].to_dict()


CHECK_FUNCTIONS: dict[str, Callable[[_CaseRun, dict[str, Any]], Any]] = {
    "is": lambda run, step: run.mach.is_active(*_states(step)),
    "is1": lambda run, step: run.mach.is_active(_first_state(step)),
    "not": lambda run, step: run.mach.is_inactive(*_states(step)),
    "has": lambda run, step: run.mach.has(*_states(step)),
    "any1": lambda run, step: run.mach.any_active(*_states(step)),
    "any": lambda run, step: run.mach.any_active(*_field(step, "groups")),
    "switch": _check_switch,
    "string": lambda run, step: str(run.mach),
    "string_all": lambda run, step: run.mach.string_all(),
    "inspect": _check_inspect,
    "tick": lambda run, step: run.mach.tick(_field(step, "state")),
    "time": _check_time,
    "clock": _check_clock,
    "queue_tick": lambda run, step: run.mach.queue_tick(),
    "state_names": lambda run, step: run.mach.state_names(),
    "resolved": lambda run, step: run.waiter(step).done(),
    "ctx_done": lambda run, step: run.context(step).done(),
    "is_err": lambda run, step: run.mach.is_err(),
    "err": _check_err,
    "schema_state": _check_schema_state,
    "is_disposed": lambda run, step: run.mach.is_disposed(),
}

WHEN_KINDS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "when": lambda mach, step: mach.when(_states(step)),
    "when_not": lambda mach, step: mach.when_not(_states(step)),
    "when_time": lambda mach, step: mach.when_time(
        _states(step), _field(step, "times")
    ),
    "when_ticks": lambda mach, step: mach.when_ticks(
        _first_state(step), _field(step, "ticks")
    ),
    "when_next_active": lambda mach, step: mach.when_next_active(_first_state(step)),
    "when_args": lambda mach, step: mach.when_args(
        _first_state(step), _field(step, "args")
    ),
    "when_err": lambda mach, step: mach.when_err(),
    "when_queue": lambda mach, step: mach.when_queue(_field(step, "queue_tick")),
    "when_queue_ends": lambda mach, step: mach.when_queue_ends(),
}


# -- expectations -------------------------------------------------------------------


def _match_active(expected: Any, actual: Any) -> bool:
    return isinstance(expected, list) and sorted(expected) == sorted(actual)


def _match_subsequences(expected: Any, actual: list[str]) -> bool:
    return all(_is_subsequence(needle, actual) for needle in expected)


def _match_exclude(expected: Any, actual: list[str]) -> bool:
    return not set(expected) & set(actual)


def _match_err(expected: Any, actual: str | None) -> bool:
    if expected is None:
        return actual is None
    return actual is not None and expected in actual


EXPECTATION_MATCHERS: dict[str, Callable[[Any, Any], bool]] = {
    "active": _match_active,
    "clock": lambda expected, actual: _json_equal(expected, actual),
    "string_all": _json_equal,
    "string": _json_equal,
    "handler_calls": _json_equal,
    "handler_calls_subsequences": _match_subsequences,
    "handler_calls_exclude": _match_exclude,
    "handler_log": _json_equal,
    "queue_tick": _json_equal,
    "is_err": _json_equal,
    "err": _match_err,
}
FINAL_EXPECTATIONS = frozenset(EXPECTATION_MATCHERS)
STEP_EXPECTATIONS = frozenset(
    {f"expect_{name}" for name in EXPECTATION_MATCHERS}
    | {"expect_result", "expect_result_value", "expect_panic"}
)


# -- running files ------------------------------------------------------------------


def run_case(case: dict[str, Any]) -> Outcome:
    """Run one case on a fresh machine and return its outcome.

    Args:
        case: a case object of the case file; it is copied, never modified.

    Returns:
        The outcome. A failure names the step index (or ``setup`` / ``expect``) and
        the first mismatch. An exception raised by the machine fails the case.
    """
    case_id = str(case.get("id", "<no id>")) if isinstance(case, dict) else "<no id>"
    if not isinstance(case, dict):
        return Outcome(case_id, "failed", "setup", "case must be an object")
    run = _CaseRun(copy.deepcopy(case))
    try:
        run.run()
    except CaseFailure as failure:
        where = failure.where if failure.where != "step" else run.where
        return Outcome(case_id, "failed", where, failure.message)
    except CaseSkipped as skip:
        return Outcome(case_id, "skipped", run.where, str(skip))
    except NotImplementedError as error:
        if "timing" not in (case.get("flags") or ()):
            return Outcome(
                case_id, "failed", run.where, f"NotImplementedError: {error}"
            )
        reason = f"handler timeouts are not supported: {error}"
        return Outcome(case_id, "skipped", run.where, reason)
    except Exception as error:
        message = f"{type(error).__name__}: {error}"
        return Outcome(case_id, "failed", run.where, message)
    return Outcome(case_id, "passed")


def load_cases(path: str) -> list[dict[str, Any]]:
    """Read and validate a case file; return its cases.

    Raises:
        CaseFileError: the file is unreadable, not JSON, of another format or
            version, or has cases without unique ids.
    """
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except OSError as error:
        raise CaseFileError(f"cannot read {path}: {error}") from error
    except ValueError as error:
        raise CaseFileError(f"{path} is not valid JSON: {error}") from error

    if not isinstance(data, dict):
        raise CaseFileError(f"{path}: the top level must be an object")
    if data.get("format") != FILE_FORMAT:
        raise CaseFileError(
            f"{path}: format must be {FILE_FORMAT!r}, got {data.get('format')!r}"
        )
    if data.get("version") != FILE_VERSION:
        raise CaseFileError(
            f"{path}: version must be {FILE_VERSION}, got {data.get('version')!r}"
        )
    cases = data.get("cases")
    if not isinstance(cases, list):
        raise CaseFileError(f"{path}: 'cases' must be a list")

    seen: set[str] = set()
    for index, case in enumerate(cases):
        if not isinstance(case, dict) or not isinstance(case.get("id"), str):
            raise CaseFileError(f"{path}: case {index} has no string 'id'")
        if case["id"] in seen:
            raise CaseFileError(f"{path}: duplicate case id {case['id']!r}")
        seen.add(case["id"])
    return cases


def format_summary(passed: int, failed: int, skipped: int = 0) -> str:
    """Return the summary line, which names skipped cases only when there are some."""
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    return line


def run_cases(
    cases: Sequence[dict[str, Any]], *, verbose: bool = False, out: Any = None
) -> int:
    """Run cases, print a line per failed or skipped case and the summary line.

    Returns:
        The exit status: 1 if a case failed, else 0.
    """
    out = sys.stdout if out is None else out
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in cases:
        outcome = run_case(case)
        counts[outcome.status] += 1
        if outcome.status != "passed" or verbose:
            print(outcome.describe(), file=out)
    print(
        format_summary(counts["passed"], counts["failed"], counts["skipped"]),
        file=out,
    )
    return 1 if counts["failed"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cases",
        description="Run asyncmachine behaviour cases against the core machine.",
    )
    parser.add_argument("path", help="case file in the asyncmachine-cases format")
    parser.add_argument(
        "--verbose", action="store_true", help="also print a line per passed case"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ID",
        help="run only the case with this id (repeatable)",
    )
    options = parser.parse_args(argv)

    try:
        cases = load_cases(options.path)
    except CaseFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if options.only:
        known = {case["id"] for case in cases}
        missing = [case_id for case_id in options.only if case_id not in known]
        if missing:
            print(f"error: no case with id {missing[0]!r}", file=sys.stderr)
            return 1
        selected = set(options.only)
        cases = [case for case in cases if case["id"] in selected]
    return run_cases(cases, verbose=options.verbose)


if __name__ == "__main__":
    sys.exit(main())
