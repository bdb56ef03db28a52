"""The distributed demo without a browser: DemoServer and BarPage in CPython.

The server runs its real relay on 127.0.0.1, and each page connects over a
real WebSocket with the token, exactly as the browser page does, but in this
process. Waits are bounded by WAIT_SECONDS, so a missing event fails the test
instead of hanging it; no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import asyncmachine as am
from asyncmachine import rpc
from asyncmachine.demo import BAR_SCHEMA, new_page_id
from asyncmachine.demo.page import BarPage
from asyncmachine.demo.page_view import RecordingView
from asyncmachine.demo.server import DemoServer, MessageLog, ServerConfig
from asyncmachine.demo.transcript import Transcript

TOKEN = "demo-test-token"
WAIT_SECONDS = 20.0


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, WAIT_SECONDS * 3))


def make_config(tmp_path: Path, **changes: Any) -> ServerConfig:
    values: dict[str, Any] = {
        "site_dir": None,
        "repl_dir": tmp_path / "repl",
        "token": TOKEN,
        "port": 0,
        "hello_every": 0.2,
        "hello_limit": 20,
        "bored_after": 60.0,
    }
    values.update(changes)
    return ServerConfig(**values)


@contextlib.asynccontextmanager
async def running_server(config: ServerConfig) -> AsyncIterator[DemoServer]:
    server = DemoServer(config, Transcript(io.StringIO()))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def open_page(
    server: DemoServer, *, repl: bool = False
) -> AsyncIterator[tuple[BarPage, RecordingView]]:
    bar = am.Machine(BAR_SCHEMA, id=new_page_id())
    bar.add("Start")
    view = RecordingView()
    page = BarPage(bar, relay_url=server.url, token=TOKEN, view=view, repl=repl)
    page.start()
    try:
        await asyncio.wait_for(page.wait_connected(), WAIT_SECONDS)
        await asyncio.wait_for(server.wait_page(bar.id), WAIT_SECONDS)
        yield page, view
    finally:
        await page.close()


async def wait(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, WAIT_SECONDS)


def test_page_message_printed_with_author(tmp_path):
    async def scenario():
        async with running_server(make_config(tmp_path)) as server:
            async with open_page(server) as (page, view):
                view.type_message("hi foo")
                author, text = await wait(
                    server.messages.wait_for(lambda a, t: t == "hi foo")
                )
                await wait(
                    view.wait_for(lambda v: f"[{page.bar.id}] hi foo" in v.messages)
                )
                return page.bar.id, author, text, server.transcript.text()

    bar_id, author, text, transcript = run(scenario())

    assert author == bar_id
    assert text == "hi foo"
    assert f"> [{bar_id}] hi foo" in transcript


def test_empty_message_not_sent(tmp_path):
    async def scenario():
        async with running_server(make_config(tmp_path)) as server:
            async with open_page(server) as (page, view):
                result = view.type_message("   ")
                view.type_message("real")
                await wait(server.messages.wait_for(lambda a, t: t == "real"))
                return result, [text for _author, text in server.messages.items]

    result, texts = run(scenario())

    assert result.canceled
    assert "   " not in texts


def test_hellos_stop_at_limit(tmp_path):
    config = make_config(tmp_path, hello_every=0.05, hello_limit=6, bored_after=1.0)

    async def scenario():
        async with running_server(config) as server:
            async with open_page(server) as (page, view):
                assert server.foo is not None
                await wait(server.foo.when("Bored"))
                link = server.pages[page.bar.id]
                hellos = view.messages.count("[server-foo] hello")
                await wait(view.wait_for(lambda v: "foo is bored" in v.messages))
                assert link.mirror is not None
                return (
                    hellos,
                    link.hellos,
                    link.mirror.tick("Msg"),
                    page.bar.tick("Msg"),
                )

    page_hellos, server_hellos, mirror_tick, bar_tick = run(scenario())

    # Msg is Multi and stays active, so each hello after the first adds 2 to
    # its tick. The server stops once its view of the tick reaches 6.
    assert server_hellos >= 3
    assert page_hellos == server_hellos
    assert mirror_tick >= 6
    assert bar_tick == mirror_tick


def test_bored_shows_on_page(tmp_path):
    config = make_config(tmp_path, hello_limit=0, bored_after=0.3)

    async def scenario():
        async with running_server(config) as server:
            async with open_page(server) as (page, view):
                view.type_message("wake up")
                await wait(server.messages.wait_for(lambda a, t: t == "wake up"))
                assert server.foo is not None
                await wait(server.foo.when("Bored"))
                after_message = view.messages.index(f"[{page.bar.id}] wake up")
                await wait(
                    view.wait_for(
                        lambda v: "foo is bored" in v.messages[after_message:]
                    )
                )
                return view.bored, page.foo.is_active("Bored")

    page_bored, mirror_bored = run(scenario())

    assert page_bored is True
    assert mirror_bored is True


def test_two_pages_have_own_mirrors(tmp_path):
    async def scenario():
        async with running_server(make_config(tmp_path)) as server:
            async with open_page(server) as (first, first_view):
                async with open_page(server) as (second, second_view):
                    for view in (first_view, second_view):
                        await wait(
                            view.wait_for(lambda v: "[server-foo] hello" in v.messages)
                        )
                    mirrors = {
                        bar_id: link.mirror_id for bar_id, link in server.pages.items()
                    }
                    return first.bar.id, second.bar.id, mirrors

    first_id, second_id, mirrors = run(scenario())

    assert set(mirrors) == {first_id, second_id}
    assert mirrors[first_id] == "server-bar-" + first_id.removeprefix("browser-bar-")
    assert mirrors[second_id] == "server-bar-" + second_id.removeprefix("browser-bar-")


def test_page_reconnects_after_server_restart(tmp_path):
    async def scenario():
        first = DemoServer(make_config(tmp_path), Transcript(io.StringIO()))
        await first.start()
        port = first.relay.port
        async with open_page(first) as (page, view):
            connections = page.connections
            await first.stop()
            await wait(view.wait_for(lambda v: not v.connected))
            config = make_config(tmp_path, port=port)
            async with running_server(config) as second:
                await wait(page.wait_connected())
                await wait(second.wait_page(page.bar.id))
                view.type_message("still here")
                author, _text = await wait(
                    second.messages.wait_for(lambda a, t: t == "still here")
                )
                return page.bar.id, author, connections, page.connections

    bar_id, author, connections_before, connections_after = run(scenario())

    assert author == bar_id
    assert connections_after == connections_before + 1


def test_repl_tunnel_writes_address_file(tmp_path):
    async def scenario():
        async with running_server(make_config(tmp_path)) as server:
            async with open_page(server, repl=True) as (page, _view):
                address = await wait(page.tunnel.wait_listening())
                files = sorted(path.name for path in (tmp_path / "repl").iterdir())
            files_after_page = sorted(
                path.name for path in (tmp_path / "repl").iterdir()
            )
        files_after_server = sorted(path.name for path in (tmp_path / "repl").iterdir())
        return page.bar.id, address, files, files_after_page, files_after_server

    bar_id, address, files, after_page, after_server = run(scenario())

    assert address.startswith("127.0.0.1:")
    assert files == sorted([f"{bar_id}.addr", "server-foo.addr"])
    assert after_page == ["server-foo.addr"]
    assert after_server == []


def test_mirror_with_other_id_rejected(tmp_path):
    async def scenario():
        async with running_server(make_config(tmp_path)) as server:
            with pytest.raises(rpc.AccessDeniedError) as caught:
                await rpc.connect_mirror(
                    server.url.replace("http://", "ws://") + "/rpc",
                    id="not-a-page",
                    origin=server.url,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    retry=rpc.RetryPolicy(attempts=0),
                )
            return str(caught.value)

    message = run(scenario())

    assert "not a page id" in message


def test_rpc_route_requires_token(tmp_path):
    async def scenario():
        async with running_server(make_config(tmp_path)) as server:
            url = server.url.replace("http://", "ws://") + "/rpc"
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                    await session.ws_connect(url, origin=server.url)
            return caught.value.status

    assert run(scenario()) == 403


def test_stop_removes_server_address_file(tmp_path):
    async def scenario():
        async with running_server(make_config(tmp_path)) as server:
            assert server.repl is not None
            path = server.repl.address_file
            existed = path is not None and path.exists()
        return path, existed

    path, existed = run(scenario())

    assert existed
    assert path is not None
    assert not path.exists()


def test_stale_address_file_removed_at_start(tmp_path):
    repl_dir = tmp_path / "repl"
    repl_dir.mkdir()
    # Port 9 (discard) has no listener on 127.0.0.1 in the test environment.
    (repl_dir / "browser-bar-old000.addr").write_text("127.0.0.1:9\n")

    async def scenario():
        async with running_server(make_config(tmp_path)):
            return sorted(path.name for path in repl_dir.iterdir())

    assert run(scenario()) == ["server-foo.addr"]


def test_dump_written_at_stop(tmp_path):
    dump = tmp_path / "dump.jsonl.gz"

    async def scenario():
        server = DemoServer(make_config(tmp_path), Transcript(io.StringIO()))
        await server.start()
        async with open_page(server) as (_page, view):
            view.type_message("for the debugger")
            await wait(server.messages.wait_for(lambda a, t: t == "for the debugger"))
        await server.stop(dump_path=dump)

    run(scenario())

    from asyncmachine.history import read_dump

    machines = {machine.schema.id for machine in read_dump(dump).machines}
    assert "server-foo" in machines


def test_message_log_keeps_last_items():
    async def scenario():
        log = MessageLog(max_items=3)
        for number in range(5):
            log.append("a", str(number))
        waiter = asyncio.ensure_future(log.wait_for(lambda a, t: t == "new"))
        await asyncio.sleep(0)
        log.append("b", "new")
        return log.items, await wait(waiter)

    items, found = run(scenario())

    assert items == [("a", "3"), ("a", "4"), ("b", "new")]
    assert found == ("b", "new")
