"""Pipes between local machines and mirrors."""

from __future__ import annotations

import asyncio

import pytest

import asyncmachine as am
from asyncmachine import rpc

FOO_SCHEMA = {
    "Start": am.State(),
    "Msg": am.State(multi=True),
    "Bored": am.State(),
}
BAR_SCHEMA = {
    "SubmitMsg": am.State(multi=True),
    "FooBored": am.State(),
    "ErrFoo": am.State(require=["Exception"]),
    "Idle": am.State(),
}


def test_pipe_copies_current_state_then_follows():
    foo = am.Machine(FOO_SCHEMA, id="foo")
    bar = am.Machine(BAR_SCHEMA, id="bar")
    foo.add("Bored")
    piped = rpc.pipe(foo, "Bored", bar, "FooBored", mode="both")
    assert bar.is_active("FooBored")
    foo.remove("Bored")
    assert not bar.is_active("FooBored")
    foo.add("Bored")
    assert bar.is_active("FooBored")
    piped.close()
    assert piped.closed
    foo.remove("Bored")
    assert bar.is_active("FooBored")


def test_pipe_modes_add_and_remove():
    foo = am.Machine(FOO_SCHEMA, id="foo")
    bar = am.Machine(BAR_SCHEMA, id="bar")
    rpc.pipe(foo, "Bored", bar, "FooBored", mode="add")
    rpc.pipe(foo, "Start", bar, "Idle", mode="remove")
    bar.add("Idle")
    foo.add("Bored")
    foo.add("Start")
    foo.remove("Bored")
    assert bar.is_active("FooBored")
    assert bar.is_active("Idle")
    foo.remove("Start")
    assert not bar.is_active("Idle")


def test_pipe_to_error_state_adds_exception():
    foo = am.Machine(FOO_SCHEMA, id="foo")
    bar = am.Machine(BAR_SCHEMA, id="bar")
    rpc.pipe(foo, "Bored", bar, "ErrFoo")
    foo.add("Bored")
    assert bar.is_active("ErrFoo", "Exception")


def test_pipe_forwards_args():
    seen: list[dict] = []

    class Handlers:
        def SubmitMsgState(self, e: am.Event) -> None:
            seen.append(dict(e.args))

    foo = am.Machine(FOO_SCHEMA, id="foo")
    bar = am.Machine(BAR_SCHEMA, id="bar", handlers=Handlers())
    rpc.pipe(foo, "Msg", bar, "SubmitMsg")
    foo.add("Msg", {"msg": "hi"})
    assert seen == [{"msg": "hi"}]


def test_pipe_rejects_unknown_states_and_modes():
    foo = am.Machine(FOO_SCHEMA, id="foo")
    bar = am.Machine(BAR_SCHEMA, id="bar")
    with pytest.raises(am.StateError):
        rpc.pipe(foo, "Nope", bar, "Idle")
    with pytest.raises(am.StateError):
        rpc.pipe(foo, "Bored", bar)
    with pytest.raises(ValueError):
        rpc.pipe(foo, "Bored", bar, "Idle", mode="sideways")


def test_pipe_ends_when_machine_disposed():
    foo = am.Machine(FOO_SCHEMA, id="foo")
    bar = am.Machine(BAR_SCHEMA, id="bar")
    piped = rpc.pipe(foo, "Bored", bar, "FooBored")
    bar.dispose()
    assert piped.closed
    foo.add("Bored")


def test_pipe_from_mirror_and_to_mirror():
    async def scenario():
        foo = am.Machine(FOO_SCHEMA, id="server-foo")
        bar = am.Machine(BAR_SCHEMA, id="browser-bar")
        server = await rpc.serve_source(foo, push_interval=0, plain_service=None)
        foo_mirror = await rpc.connect_mirror(server.addr, id="browser-bar")
        try:
            foo.add("Bored")
            await foo_mirror.when("Bored")
            rpc.pipe(foo_mirror, "Bored", bar, "FooBored", mode="both")
            assert bar.is_active("FooBored")
            foo.remove("Bored")
            await bar.when_not("FooBored")

            rpc.pipe(bar, "SubmitMsg", foo_mirror, "Msg")
            bar.add("SubmitMsg", {"msg": "hi", "obj": object()})
            await foo.when("Msg")
            await foo_mirror.when("Msg")
            assert foo_mirror.clock() == foo.clock()
        finally:
            await foo_mirror.close()
            await server.close()

    asyncio.run(scenario())
