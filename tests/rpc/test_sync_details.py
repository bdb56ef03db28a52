"""Sync details: pushes, debouncing, checksums, selective and per-mutation sync."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

import asyncmachine as am
from asyncmachine import rpc
from asyncmachine.rpc.wire import SetClock, WireError

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "Msg": am.State(multi=True),
    "Bored": am.State(remove=["Flash"]),
    "Flash": am.State(),
    "Secret": am.State(),
    "ErrOnClient": am.State(require=["Exception"]),
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def synced(
    source: am.Machine | None = None,
    *,
    push_interval: float | None = 0,
    server_kwargs: dict[str, Any] | None = None,
    **mirror_kwargs: Any,
) -> AsyncIterator[tuple[am.Machine, rpc.SourceServer, rpc.Mirror]]:
    """Serve a source on TCP and connect one mirror with the client id "bar"."""
    source = source or am.Machine(SCHEMA, id="foo")
    server = await rpc.serve_source(
        source, push_interval=push_interval, plain_service=None, **(server_kwargs or {})
    )
    mirror_kwargs.setdefault("id", "bar")
    mirror = await rpc.connect_mirror(server.addr, **mirror_kwargs)
    try:
        yield source, server, mirror
    finally:
        await mirror.close()
        await server.close()


class PushCounter:
    """A push filter that counts the diffs a source sends and may alter one."""

    def __init__(self, change: Any = None) -> None:
        self.diffs: list[Any] = []
        self.change = change

    def __call__(self, session: Any, update: Any) -> Any:
        self.diffs.append(update)
        if self.change is not None:
            change, self.change = self.change, None
            return change(update)
        return update


class SyncCounter(am.Tracer):
    """Counts the sync transitions a mirror runs."""

    def __init__(self) -> None:
        self.transitions: list[am.Transition] = []

    def transition_end(self, tx: am.Transition, result: Any) -> None:
        self.transitions.append(tx)


# -- the mirror as a machine -----------------------------------------------------------


def test_mirror_is_machine_with_source_schema():
    async def scenario():
        async with synced() as (source, _server, mirror):
            assert isinstance(mirror, am.Machine)
            assert isinstance(mirror, rpc.Mirror)
            assert mirror.id == "rnm-bar"
            assert mirror.client.id == "rc-bar"
            assert mirror.remote_id == "foo"
            assert mirror.state_names() == source.state_names()
            assert mirror.schema() == source.schema()
            assert mirror.inspect() == source.inspect()
            assert not mirror.is_partial()

    run(scenario())


def test_mirror_reflects_mutation_before_await_returns():
    async def scenario():
        async with synced(push_interval=None) as (source, _server, mirror):
            result = await mirror.add("Start")
            assert result == am.Result.EXECUTED
            assert mirror.is_active("Start", "Ready")
            assert str(mirror) == str(source) == "(Start:1 Ready:1)"
            assert mirror.queue_tick() == source.queue_tick()

    run(scenario())


def test_mirror_mutations_return_source_results():
    async def scenario():
        async with synced(push_interval=None) as (source, _server, mirror):
            assert await mirror.add("Ready") == am.Result.CANCELED
            assert await mirror.set(["Start", "Msg"]) == am.Result.EXECUTED
            assert await mirror.remove("Msg") == am.Result.EXECUTED
            assert await mirror.toggle("Bored") == am.Result.EXECUTED
            assert await mirror.toggle("Bored") == am.Result.EXECUTED
            assert mirror.clock() == source.clock()
            assert mirror.string_all() == source.string_all()

    run(scenario())


def test_mirror_args_reach_source_handlers():
    seen: list[dict[str, Any]] = []

    class Handlers:
        def MsgState(self, e: am.Event) -> None:
            seen.append(dict(e.args))

    async def scenario():
        source = am.Machine(SCHEMA, id="foo", handlers=Handlers())
        async with synced(source) as (_source, _server, mirror):
            await mirror.add("Msg", {"msg": "hi", "n": [1, 2]})

    run(scenario())
    assert seen == [{"msg": "hi", "n": [1, 2]}]


def test_mirror_event_becomes_mutation_source():
    sources: list[am.Source | None] = []

    class SourceHandlers:
        def MsgState(self, e: am.Event) -> None:
            sources.append(e.transition.mutation.source)

    async def scenario():
        source = am.Machine(SCHEMA, id="foo", handlers=SourceHandlers())
        async with synced(source) as (_source, _server, mirror):
            local = am.Machine({"Submit": am.State()}, id="browser-bar")
            sent: list[asyncio.Future[am.Result]] = []

            class LocalHandlers:
                def SubmitState(self, e: am.Event) -> None:
                    sent.append(mirror.add("Msg", event=e))

            local.bind_handlers(LocalHandlers())
            local.add("Submit")
            await sent[0]

    run(scenario())
    assert sources[0] is not None
    assert sources[0].mach_id == "browser-bar"


def test_mirror_rejects_args_that_are_not_json():
    async def scenario():
        async with synced() as (_source, _server, mirror):
            with pytest.raises(TypeError, match="'bad'"):
                mirror.add("Msg", {"ok": 1, "bad": {1, 2}})
            with pytest.raises(am.StateError, match="Nope"):
                mirror.add("Nope")

    run(scenario())


def test_mirror_add_err_sends_message_to_source():
    async def scenario():
        async with synced(push_interval=None) as (source, _server, mirror):
            result = await mirror.add_err(ValueError("boom"))
            assert result == am.Result.EXECUTED
            assert source.is_active("Exception", "ErrOnClient")
            assert isinstance(source.err(), rpc.RemoteError)
            assert str(source.err()) == "ValueError: boom"
            assert mirror.is_err()
            assert isinstance(mirror.err(), ValueError)
            assert await mirror.add_err(None) == am.Result.CANCELED

    run(scenario())


def test_mirror_without_negotiation_raises():
    async def scenario():
        async with synced() as (_source, _server, mirror):
            with pytest.raises(NotImplementedError):
                mirror.can_add("Start")
            with pytest.raises(NotImplementedError):
                mirror.when_args("Msg", {"msg": "hi"})
            with pytest.raises(TypeError):
                mirror.import_(mirror.export())

    run(scenario())


def test_rpc_parts_states_after_handshake():
    async def scenario():
        async with synced() as (_source, server, mirror):
            client = mirror.client
            assert client.is_active("Start", "Connected", "HandshakeDone", "Ready")
            assert not client.is_err()
            (session,) = server.sessions
            assert session.client_id == "bar"
            assert session.machine.is_active(
                "Start", "RpcReady", "ClientConnected", "HandshakeDone", "Ready"
            )
            assert server.machine.is_active("Start", "Ready", "HasClients")

    run(scenario())


# -- pushes ----------------------------------------------------------------------------


def test_push_delivers_source_change():
    async def scenario():
        async with synced() as (source, _server, mirror):
            source.add("Bored")
            await mirror.when("Bored")
            assert mirror.clock() == source.clock()
            assert mirror.queue_tick() == source.queue_tick()

    run(scenario())


def test_debounce_merges_mutations_into_one_push():
    async def scenario():
        counter = PushCounter()
        async with synced(push_interval=0.01) as (source, server, mirror):
            server.source.push_filter = counter
            tracer = SyncCounter()
            mirror.add_tracer(tracer)
            for _ in range(5):
                source.add("Msg")
            source.add("Bored")
            await mirror.when_time(["Msg", "Bored"], [9, 1])
            assert mirror.clock() == source.clock()
        return counter.diffs, tracer.transitions

    diffs, transitions = run(scenario())
    assert len(diffs) == 1
    assert len(transitions) == 1
    msg_index = list(SCHEMA).index("Msg")
    assert dict(zip(diffs[0].idxs, diffs[0].deltas, strict=True))[msg_index] == 9


def test_push_interval_none_disables_pushes():
    async def scenario():
        counter = PushCounter()
        async with synced(push_interval=None) as (source, server, mirror):
            server.source.push_filter = counter
            source.add("Bored")
            # A round trip lets a push that was wrongly scheduled arrive first.
            await mirror.add("Start")
            assert mirror.is_active("Bored")
        return counter.diffs

    diffs = run(scenario())
    # The only diff was the mutation's reply, which carried Bored along.
    assert len(diffs) == 1


def test_add_ns_is_seen_through_push():
    async def scenario():
        async with synced() as (source, _server, mirror):
            assert mirror.add_ns("Bored") is None
            await mirror.when("Bored")
            assert source.is_active("Bored")

    run(scenario())


def test_when_queue_resolves_from_synced_queue_tick():
    async def scenario():
        async with synced() as (source, _server, mirror):
            waiter = mirror.when_queue(mirror.queue_tick() + 2)
            source.add("Msg")
            source.add("Msg")
            await waiter
            assert mirror.queue_tick() == source.queue_tick()

    run(scenario())


# -- checksums and resync --------------------------------------------------------------


def corrupt_checksum(update: SetClock) -> SetClock:
    return dataclasses.replace(update, checksum=update.checksum ^ 1)


def corrupt_delta(update: SetClock) -> SetClock:
    deltas = (update.deltas[0] + 2, *update.deltas[1:])
    return dataclasses.replace(update, deltas=deltas)


@pytest.mark.parametrize("change", [corrupt_checksum, corrupt_delta])
def test_push_checksum_mismatch_resyncs(change):
    async def scenario():
        async with synced() as (source, server, mirror):
            server.source.push_filter = PushCounter(change)
            source.add("Bored")
            await mirror.when("Bored")
            assert mirror.clock() == source.clock()
            (session,) = server.sessions
            return session.machine.tick("MetricSync"), mirror.client.tick("MetricSync")

    session_resyncs, client_resyncs = run(scenario())
    assert session_resyncs == 1
    assert client_resyncs == 1


def test_reply_checksum_mismatch_resyncs():
    async def scenario():
        async with synced(push_interval=None) as (source, server, mirror):
            server.source.push_filter = PushCounter(corrupt_checksum)
            assert await mirror.add("Bored") == am.Result.EXECUTED
            await mirror.when("Bored")
            assert mirror.clock() == source.clock()
            return mirror.client.tick("MetricSync")

    assert run(scenario()) == 1


def test_manual_sync_fetches_whole_clock():
    async def scenario():
        async with synced(push_interval=None) as (source, _server, mirror):
            source.add("Bored")
            await mirror.sync()
            assert mirror.clock() == source.clock()

    run(scenario())


# -- selective sync --------------------------------------------------------------------


def test_allowed_states_sync_only_those():
    async def scenario():
        async with synced(allowed=["Start", "Ready"]) as (source, _server, mirror):
            assert mirror.is_partial()
            source.add(["Start", "Msg"])
            await mirror.when("Ready")
            assert mirror.state_names() == source.state_names()
            assert mirror.tick("Msg") == 0
            assert source.tick("Msg") == 1

    run(scenario())


def test_skipped_states_read_inactive():
    async def scenario():
        async with synced(skipped=["Secret"]) as (source, _server, mirror):
            source.add(["Secret", "Bored"])
            await mirror.when("Bored")
            assert mirror.tick("Secret") == 0
            assert not mirror.is_active("Secret")

    run(scenario())


def test_no_schema_mirror_has_only_tracked_states():
    async def scenario():
        async with synced(sync_schema=False, allowed=["Start", "Msg"]) as (
            source,
            _server,
            mirror,
        ):
            assert mirror.state_names() == ("Start", "Msg", "Exception")
            assert mirror.schema()["Start"] == am.State()
            assert await mirror.add("Start") == am.Result.EXECUTED
            assert source.is_active("Start", "Ready")
            source.add("Msg")
            await mirror.when("Msg")
            assert mirror.clock() == {"Start": 1, "Msg": 1, "Exception": 0}
            with pytest.raises(am.StateError):
                mirror.add("Bored")

    run(scenario())


def test_shallow_clocks_keep_parity():
    async def scenario():
        async with synced(shallow=True) as (source, _server, mirror):
            source.add("Msg")
            source.add("Msg")
            source.add("Msg")
            await mirror.when("Msg")
            assert source.tick("Msg") == 5
            assert mirror.tick("Msg") == 1
            source.remove("Msg")
            await mirror.when_not("Msg")
            assert mirror.tick("Msg") == 2
            assert mirror.active_states() == source.active_states()

    run(scenario())


def test_unknown_allowed_state_is_rejected():
    async def scenario():
        async with synced() as (_source, server, _mirror):
            with pytest.raises(rpc.HandshakeError) as raised:
                await rpc.connect_mirror(server.addr, id="baz", allowed=["Nope"])
            return raised.value.code

    assert run(scenario()) == "invalid_options"


# -- per-mutation sync and network handlers --------------------------------------------


class NetworkHandlers:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def MsgState(self, e: am.Event) -> None:
        self.calls.append("MsgState")

    def FlashState(self, e: am.Event) -> None:
        self.calls.append("FlashState")

    def FlashEnd(self, e: am.Event) -> None:
        self.calls.append("FlashEnd")

    def StartState(self, e: am.Event) -> None:
        self.calls.append("StartState")

    def BoredState(self, e: am.Event) -> None:
        self.calls.append("BoredState")

    def BoredEnd(self, e: am.Event) -> None:
        self.calls.append("BoredEnd")


def burst(source: am.Machine) -> None:
    """Three Msg activations and a short-lived Flash, all before any push."""
    source.add("Msg")
    source.add("Msg")
    source.add("Flash")
    source.add("Bored")
    source.add("Msg")


@pytest.mark.parametrize("per_mutation", [True, False])
def test_per_mutation_sync_keeps_every_activation(per_mutation):
    async def scenario():
        handlers = NetworkHandlers()
        async with synced(per_mutation=per_mutation, handlers=handlers) as (
            source,
            _server,
            mirror,
        ):
            burst(source)
            await mirror.when_time(["Msg", "Bored"], [5, 1])
            assert mirror.clock() == source.clock()
        return handlers.calls

    calls = run(scenario())
    if per_mutation:
        assert calls == [
            "MsgState",
            "MsgState",
            "FlashState",
            "FlashEnd",
            "BoredState",
            "MsgState",
        ]
    else:
        assert calls.count("MsgState") == 1
        assert "FlashState" not in calls


def test_per_mutation_reply_carries_each_transition():
    async def scenario():
        handlers = NetworkHandlers()
        async with synced(push_interval=None, per_mutation=True, handlers=handlers) as (
            source,
            _server,
            mirror,
        ):
            source.add("Msg")
            source.add("Msg")
            await mirror.add("Msg")
            assert mirror.clock() == source.clock()
        return handlers.calls

    assert run(scenario()) == ["MsgState", "MsgState", "MsgState"]


def test_network_handlers_see_initial_and_pushed_changes():
    async def scenario():
        handlers = NetworkHandlers()
        source = am.Machine(SCHEMA, id="foo")
        source.add("Start")
        async with synced(source, handlers=handlers) as (_source, _server, mirror):
            assert handlers.calls == ["StartState"]
            source.add("Bored")
            await mirror.when("Bored")
            source.remove("Bored")
            await mirror.when_not("Bored")
        return handlers.calls

    assert run(scenario()) == ["StartState", "BoredState", "BoredEnd"]


# -- payloads --------------------------------------------------------------------------


def test_payload_reaches_mirror_and_consumer():
    async def scenario():
        consumer = am.Machine(rpc.CONSUMER_SCHEMA, id="consumer")
        received: list[Any] = []
        async with synced(consumer=consumer) as (_source, server, mirror):
            mirror.on_payload(received.append)
            waiter = mirror.when_payload("greeting")
            delivered = await server.send_payload("bar", "greeting", {"text": "hi"})
            payload = await waiter
            assert delivered == 1
            assert payload.data == {"text": "hi"}
            assert payload.source == "foo"
            assert mirror.client.tick("ServerPayload") == 1
            assert consumer.tick("ServerPayload") == 1
            assert await server.send_payload("nobody", "greeting", 1) == 0
            with pytest.raises(WireError):
                await server.send_payload("bar", "greeting", {1, 2})
        return received

    received = run(scenario())
    assert [payload.name for payload in received] == ["greeting"]


# -- schema changes and closing --------------------------------------------------------


def test_schema_change_reaches_mirror():
    async def scenario():
        async with synced() as (source, server, mirror):
            grown = {**SCHEMA, "New": am.State()}
            source.set_schema(grown, [*source.state_names(), "New"])
            source.add("New")
            # The payload follows the schema change on the same connection.
            waiter = mirror.when_payload()
            await server.send_payload("bar", "marker")
            await waiter
            assert mirror.has("New")
            await mirror.when("New")
            assert mirror.clock() == source.clock()

    run(scenario())


def test_mirror_close_ends_source_session():
    async def scenario():
        async with synced() as (_source, server, mirror):
            (session,) = server.sessions
            await mirror.close()
            await session.machine.when_disposed()
            assert server.sessions == ()
            assert not mirror.client.is_active("Start")
            with pytest.raises(rpc.ConnectionClosedError):
                await mirror.add("Start")

    run(scenario())


def test_source_close_stops_mirror_without_retries():
    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, plain_service=None)
        mirror = await rpc.connect_mirror(
            server.addr, id="bar", retry=rpc.RetryPolicy(attempts=0)
        )
        await server.close()
        await mirror.client.when("ConnRetryFailed")
        assert mirror.client.is_active("ErrNetwork") or mirror.client.tick("ErrNetwork")
        with pytest.raises(ConnectionError):
            await mirror.add("Start")
        await mirror.close()

    run(scenario())


def test_mirror_served_as_source_relays_pushes():
    async def scenario():
        async with synced() as (source, _server, first):
            relay = await rpc.serve_source(first, push_interval=0, plain_service=None)
            second = await rpc.connect_mirror(relay.addr, id="baz")
            try:
                source.add("Bored")
                await second.when("Bored")
                assert second.clock() == source.clock()
                with pytest.raises(rpc.RemoteMutationError, match="mirror of foo"):
                    await second.add("Start")
            finally:
                await second.close()
                await relay.close()

    run(scenario())
