"""REPL endpoints driven by a stock synchronous rpyc client in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import time

import pytest
import rpyc
from rpyc.core import consts

import asyncmachine as am
from asyncmachine.rpc import repl as repl_module
from asyncmachine.rpc.repl import (
    address_file_name,
    expose_repl,
    maybe_expose_from_env,
    parse_address,
)
from tests.repl.helpers import (
    LOCALHOST,
    PYTHON,
    REPO_ROOT,
    STOCK_CONFIG,
    exposed,
    new_machine,
    subprocess_env,
)


def run_stock_client(mach, steps, **expose_kwargs):
    """Expose `mach`, run steps(conn) with a stock client in a thread, close."""

    async def scenario():
        async with exposed([mach], **expose_kwargs) as [endpoint]:
            return await asyncio.to_thread(connect_and_run, endpoint.port, steps)

    return asyncio.run(scenario())


def connect_and_run(port, steps):
    conn = rpyc.connect(LOCALHOST, port, config=STOCK_CONFIG)
    try:
        return steps(conn)
    finally:
        # rpyc 6.0.2 raises AttributeError when closing a connection that the
        # server already closed (its cleanup ran once and cleared the service).
        with contextlib.suppress(AttributeError):
            conn.close()


def is_by_value(value) -> bool:
    if isinstance(value, rpyc.BaseNetref):
        return False
    if type(value) is tuple:
        return all(is_by_value(item) for item in value)
    return value is None or type(value) in (bool, int, str)


def test_mutations_return_result_codes():
    mach = new_machine("m1")

    def steps(conn):
        root = conn.root
        return (
            root.add("Start"),
            root.add("Blocked"),
            root.remove("Ready"),
            root.set("Bored", "Start"),
            root.active(),
        )

    added, blocked, removed, set_result, active = run_stock_client(mach, steps)
    assert added == 0
    assert blocked == 1
    assert removed == 0
    assert set_result == 0
    assert active == tuple(mach.active_states())
    assert "Bored" in active
    assert type(added) is int


def test_views_are_builtin_values():
    mach = new_machine("m1", parent_id="parent-1", tags=("a", "b"))
    mach.add("Start")

    def steps(conn):
        root = conn.root
        return {
            "states": root.states(),
            "active": root.active(),
            "clock": root.clock(),
            "time": root.time(),
            "string_all": root.string_all(),
            "inspect": root.inspect(),
            "id": root.id(),
            "parent_id": root.parent_id(),
            "tags": root.tags(),
            "queue_tick": root.queue_tick(),
            "is_active": root.is_active("Start", "Ready"),
            "is_active_one": root.is_active("Bored"),
            "describe": root.describe(),
        }

    views = run_stock_client(mach, steps)
    for name, value in views.items():
        assert is_by_value(value), name
    assert views["states"] == tuple(mach.state_names())
    assert views["states"][:3] == ("Start", "Ready", "Msg")
    assert views["active"] == ("Start", "Ready")
    assert views["clock"][:2] == (("Start", 1), ("Ready", 1))
    assert views["time"] == (1, 1) + (0,) * (len(views["states"]) - 2)
    assert views["string_all"] == mach.string_all()
    assert views["inspect"] == mach.inspect()
    assert views["id"] == "m1"
    assert views["parent_id"] == "parent-1"
    assert views["tags"] == ("a", "b")
    assert views["queue_tick"] == mach.queue_tick()
    assert views["is_active"] is True
    assert views["is_active_one"] is False
    record = json.loads(views["describe"])
    assert record["id"] == "m1"
    assert record["states"] == list(views["states"])
    assert record["schema"]["Msg"] == {"multi": True}


def test_keyword_args_reach_handlers():
    seen = []

    class Recorder:
        def MsgState(self, e):
            seen.append(dict(e.args))

    mach = am.Machine({"Msg": am.State(multi=True)}, id="m1", handlers=Recorder())

    def steps(conn):
        conn.root.add("Msg", msg="hi", n=3, pair=(1, "x"), none=None)
        conn.root.mutate("add", ("Msg",), json.dumps({"nested": {"a": [1, 2]}}))
        return "ok"

    run_stock_client(mach, steps)
    assert seen[0] == {"msg": "hi", "n": 3, "pair": [1, "x"], "none": None}
    assert seen[1] == {"nested": {"a": [1, 2]}}


def test_invalid_calls_raise_clear_errors():
    mach = new_machine("m1")

    def steps(conn):
        root = conn.root
        errors = {}
        for name, call in {
            "unknown state": lambda: root.add("Nope"),
            "list arg": lambda: root.add("Msg", items=[1, 2]),
            "list of states": lambda: root.add(["Msg"]),
            "no states": lambda: root.add(),
            "bad kind": lambda: root.mutate("toggle", ("Msg",)),
            "bad json": lambda: root.mutate("add", ("Msg",), "{"),
            "json list": lambda: root.mutate("add", ("Msg",), "[1]"),
        }.items():
            with pytest.raises(Exception) as info:
                call()
            errors[name] = info.value
        return errors

    errors = run_stock_client(mach, steps)
    assert isinstance(errors["unknown state"], ValueError)
    assert "unknown states ['Nope']" in str(errors["unknown state"])
    assert isinstance(errors["list arg"], TypeError)
    assert "passed by reference" in str(errors["list arg"])
    assert isinstance(errors["list of states"], TypeError)
    assert isinstance(errors["no states"], ValueError)
    assert isinstance(errors["bad kind"], ValueError)
    assert isinstance(errors["bad json"], ValueError)
    assert isinstance(errors["json list"], ValueError)
    assert set(mach.time()) == {0}


HIDDEN_NAMES = ("_mach", "_endpoint", "_check_auth", "cancel_waits", "on_connect")
DUNDER_NAMES = ("__class__", "__dict__", "__init__", "__reduce_ex__")


def test_attributes_outside_exposed_methods_fail():
    mach = new_machine("m1")

    def steps(conn):
        for name in HIDDEN_NAMES:
            with pytest.raises(AttributeError):
                getattr(conn.root, name)
        # A netref resolves dunder names locally, so send the requests directly.
        for name in HIDDEN_NAMES + DUNDER_NAMES:
            with pytest.raises(AttributeError):
                conn.sync_request(consts.HANDLE_GETATTR, conn.root, name)
            with pytest.raises(AttributeError):
                conn.sync_request(consts.HANDLE_CALLATTR, conn.root, name, (), ())
        with pytest.raises(AttributeError):
            conn.root.exposed_add = None
        return conn.root.id()

    assert run_stock_client(mach, steps) == "m1"


def test_token_required_before_other_calls():
    mach = new_machine("m1")

    def steps(conn):
        root = conn.root
        for call in (
            lambda: root.add("Start"),
            lambda: root.id(),
            lambda: root.when_start("when", "Start"),
            lambda: root.get_service_name(),
        ):
            with pytest.raises(PermissionError):
                call()
        with pytest.raises(PermissionError):
            root.auth("wrong")
        with pytest.raises(PermissionError):
            root.id()
        assert root.auth("s3cret") is True
        added = root.add("Start")
        # Authentication belongs to the connection: a new one starts over.
        other = rpyc.connect(LOCALHOST, conn._channel.stream.sock.getpeername()[1])
        try:
            with pytest.raises(PermissionError):
                other.root.id()
        finally:
            other.close()
        return added

    assert run_stock_client(mach, steps, token="s3cret") == 0
    assert mach.is_active("Start")


def test_off_loopback_requires_token():
    async def scenario():
        mach = new_machine("m1")
        # Raised before binding, so no socket is opened on 0.0.0.0.
        with pytest.raises(ValueError, match="token"):
            await expose_repl(mach, "0.0.0.0:0")
        with pytest.raises(ValueError, match="token"):
            await expose_repl(mach, "example.com:0")

    asyncio.run(scenario())


def test_waits_resolve_for_stock_client():
    mach = new_machine("m1")

    def steps(conn):
        root = conn.root
        when = root.when_start("when", ("Start", "Ready"))
        when_not = root.when_start("when_not", "Bored")
        when_time = root.when_start("when_time", ("Msg",), (3,))
        cancelled = root.when_start("when", "Bored")
        pending = root.wait_result(when)
        root.add("Start")
        for _ in range(2):
            root.add("Msg")
        assert root.wait_cancel(cancelled) is True
        results = [poll(root, when), poll(root, when_not), poll(root, when_time)]
        with pytest.raises(KeyError):
            root.wait_result(when)
        with pytest.raises(KeyError):
            root.wait_result(cancelled)
        return pending, results

    pending, results = run_stock_client(mach, steps)
    assert pending is None
    assert results == [("done", (1, 1)), ("done", (0,)), ("done", (3,))]
    assert not mach._waiters


def poll(root, wait_id):
    # The outcome is recorded on the server's loop after the transition, so a
    # stock client polls; the test's timeout bounds the loop.
    while (outcome := root.wait_result(wait_id)) is None:
        time.sleep(0.01)
    return outcome


def test_wait_validation_errors():
    mach = new_machine("m1")

    def steps(conn):
        root = conn.root
        errors = []
        for call in (
            lambda: root.when_start("whenever", "Start"),
            lambda: root.when_start("when", "Nope"),
            lambda: root.when_start("when_time", ("Msg", "Start"), (1,)),
            lambda: root.when_start("when_time", ("Nope",), (1,)),
        ):
            with pytest.raises(ValueError) as info:
                call()
            errors.append(str(info.value))
        with pytest.raises(TypeError):
            root.when_start("when_time", ("Msg",), ("1",))
        return errors

    errors = run_stock_client(mach, steps)
    assert "unknown wait kind" in errors[0]
    assert "unknown states ['Nope']" in errors[1]
    assert "one tick" in errors[2]
    assert "unknown states ['Nope']" in errors[3]


def test_waits_of_two_clients_are_independent():
    mach = new_machine("m1")

    def steps(first):
        port = first._channel.stream.sock.getpeername()[1]
        second = rpyc.connect(LOCALHOST, port, config=STOCK_CONFIG)
        try:
            a = first.root.when_start("when", "Bored")
            b = second.root.when_start("when", "Bored")
            cancelled = first.root.wait_cancel(a)
            first.root.add("Bored")
            return cancelled, poll(second.root, b)
        finally:
            second.close()

    cancelled, outcome = run_stock_client(mach, steps)
    assert cancelled is True
    assert outcome == ("done", (1,))


def test_disconnect_cancels_pending_waits():
    mach = new_machine("m1")

    async def scenario():
        async with exposed([mach]) as [endpoint]:
            await asyncio.to_thread(
                connect_and_run,
                endpoint.port,
                lambda conn: conn.root.when_start("when", "Bored"),
            )
            while endpoint.client_count:
                await asyncio.sleep(0.01)
            return len(mach._waiters)

    assert asyncio.run(scenario()) == 0


def test_dispose_resolves_waits_as_disposed(tmp_path):
    mach = new_machine("m1")

    async def scenario():
        async with exposed([mach], repl_dir=tmp_path) as [endpoint]:
            # The connection stays open in the thread while the machine goes.
            disposed = asyncio.Event()
            loop = asyncio.get_running_loop()

            def steps(conn):
                wait_id = conn.root.when_start("when", "Bored")
                future = asyncio.run_coroutine_threadsafe(dispose(wait_id), loop)
                return future.result()

            async def dispose(wait_id):
                [service] = endpoint._services
                wait = service._waits[wait_id]
                mach.dispose()
                await endpoint.wait_closed()
                disposed.set()
                return wait.outcome

            outcome = await asyncio.to_thread(connect_and_run, endpoint.port, steps)
            return outcome, endpoint.closed, endpoint.address_file

    outcome, closed, address_file = asyncio.run(scenario())
    assert outcome == ("disposed", ())
    assert closed is True
    assert address_file is None
    assert list(tmp_path.iterdir()) == []


def test_address_file_written_and_removed(tmp_path):
    mach = new_machine("server-foo")

    async def scenario():
        endpoint = await expose_repl(mach, repl_dir=tmp_path / "nested")
        path = endpoint.address_file
        text = path.read_text()
        await endpoint.close()
        return endpoint.address, path, text

    address, path, text = asyncio.run(scenario())
    assert path == tmp_path / "nested" / "server-foo.addr"
    assert text == address + "\n"
    assert parse_address(text) == (LOCALHOST, int(address.rsplit(":", 1)[1]))
    assert not path.exists()
    assert list((tmp_path / "nested").iterdir()) == []


def test_address_file_removed_on_dispose(tmp_path):
    mach = new_machine("server-foo")

    async def scenario():
        endpoint = await expose_repl(mach, repl_dir=tmp_path)
        path = endpoint.address_file
        port = endpoint.port
        existed = path.exists()
        mach.dispose()
        removed_at_once = not path.exists()
        await endpoint.wait_closed()
        with pytest.raises(OSError):
            await asyncio.open_connection(LOCALHOST, port)
        return existed, removed_at_once

    existed, removed_at_once = asyncio.run(scenario())
    assert existed is True
    assert removed_at_once is True


def test_address_file_of_another_endpoint_kept(tmp_path):
    mach = new_machine("server-foo")

    async def scenario():
        endpoint = await expose_repl(mach, repl_dir=tmp_path)
        # A restarted process with the same machine id wrote its own address.
        endpoint.address_file.write_text("127.0.0.1:1\n")
        await endpoint.close()

    asyncio.run(scenario())
    assert (tmp_path / "server-foo.addr").read_text() == "127.0.0.1:1\n"


def test_address_file_names_are_escaped():
    assert address_file_name("server-foo") == "server-foo.addr"
    assert address_file_name("a/b") == "a%2Fb.addr"
    assert address_file_name("../x") == "%2E.%2Fx.addr"
    assert address_file_name("ok_1.2@x") == "ok_1.2@x.addr"


def test_address_file_removed_at_exit(tmp_path):
    # The loop ends without closing the endpoint; the atexit hook removes it.
    script = (
        "import asyncio, sys\n"
        "import asyncmachine as am\n"
        "from asyncmachine.rpc.repl import expose_repl\n"
        "async def main():\n"
        "    mach = am.Machine({'A': am.State()}, id='left-open')\n"
        "    endpoint = await expose_repl(mach, repl_dir=sys.argv[1])\n"
        "    print(endpoint.address_file.exists(), flush=True)\n"
        "asyncio.run(main())\n"
    )
    completed = subprocess.run(
        [PYTHON, "-c", script, str(tmp_path)],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "True"
    assert not (tmp_path / "left-open.addr").exists()


def test_port_in_use_is_reported():
    async def scenario():
        first = await expose_repl(new_machine("m1"))
        try:
            with pytest.raises(OSError, match="already in use") as info:
                await expose_repl(new_machine("m2"), f"{LOCALHOST}:{first.port}")
            return str(info.value)
        finally:
            await first.close()

    message = asyncio.run(scenario())
    assert "m2" in message


def test_disposed_machine_cannot_be_exposed():
    mach = new_machine("m1")
    mach.dispose()

    async def scenario():
        with pytest.raises(RuntimeError, match="disposed"):
            await expose_repl(mach)

    asyncio.run(scenario())


def test_invalid_address_rejected():
    async def scenario():
        for addr in ("127.0.0.1", "127.0.0.1:port", ":80", "127.0.0.1:70000"):
            with pytest.raises(ValueError, match="address"):
                await expose_repl(new_machine("m1"), addr)

    asyncio.run(scenario())


def test_env_exposes_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_REPL_DIR", str(tmp_path))
    monkeypatch.delenv("AM_REPL_ADDR", raising=False)
    monkeypatch.delenv("AM_REPL_TOKEN", raising=False)

    async def scenario():
        mach = new_machine("env-mach")
        task = maybe_expose_from_env(mach)
        endpoint = await task
        text = (tmp_path / "env-mach.addr").read_text()
        mach_id = await asyncio.to_thread(
            connect_and_run, endpoint.port, lambda conn: conn.root.id()
        )
        mach.dispose()
        await endpoint.wait_closed()
        return text, endpoint.address, mach_id

    text, address, mach_id = asyncio.run(scenario())
    assert text == address + "\n"
    assert mach_id == "env-mach"
    assert not (tmp_path / "env-mach.addr").exists()


def test_env_without_loop_warns(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("AM_REPL_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="asyncmachine.repl"):
        assert maybe_expose_from_env(new_machine("no-loop")) is None
    assert "running asyncio loop" in caplog.text
    assert "no-loop" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_env_unset_does_nothing(monkeypatch):
    monkeypatch.delenv("AM_REPL_DIR", raising=False)

    async def scenario():
        return maybe_expose_from_env(new_machine("m1"))

    assert asyncio.run(scenario()) is None


def test_wait_limit_per_connection(monkeypatch):
    monkeypatch.setattr(repl_module, "MAX_WAITS_PER_CONNECTION", 3)
    mach = new_machine("m1")

    def steps(conn):
        root = conn.root
        first = root.when_start("when_not", "Bored")  # resolves at once
        root.when_start("when", "Bored")
        root.when_start("when", "Msg")
        with pytest.raises(RuntimeError, match="pending or whose outcome was not read"):
            root.when_start("when", "Start")
        # Reading an outcome frees its place.
        poll(root, first)
        return root.when_start("when", "Start")

    assert run_stock_client(mach, steps) == 4
