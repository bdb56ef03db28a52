"""Log level of a mirror's lost connection: INFO when accepted, else WARNING.

A mirror on a connection that the other end opened ends normally when that end
leaves, as a session on a source does.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

import asyncmachine as am
from asyncmachine import rpc

SCHEMA = {"Start": am.State()}


def disconnect_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if ": disconnected: " in r.getMessage()]


def test_client_leaving_logs_info_on_server(caplog: pytest.LogCaptureFixture):
    async def scenario():
        mirrors: list[rpc.Mirror] = []
        tasks: list[asyncio.Task] = []

        async def mirror_client(peer: rpc.Peer) -> None:
            mirrors.append(await peer.mirror(id="server-view", source_id="client"))

        def on_peer(peer: rpc.Peer) -> None:
            tasks.append(asyncio.get_running_loop().create_task(mirror_client(peer)))

        server = await rpc.serve_source(
            am.Machine(SCHEMA, id="server"), plain_service=None, on_peer=on_peer
        )
        try:
            client = am.Machine(SCHEMA, id="client")
            peer = await rpc.open_peer(server.addr, sources=[rpc.StateSource(client)])
            while not mirrors:
                await asyncio.sleep(0.01)
            await peer.close()
            while not disconnect_records(caplog):
                await asyncio.sleep(0.01)
        finally:
            await server.close()
            for task in tasks:
                task.cancel()

    with caplog.at_level(logging.INFO, logger="asyncmachine.rpc"):
        asyncio.run(asyncio.wait_for(scenario(), 10))
    records = disconnect_records(caplog)
    assert records
    assert {record.levelno for record in records} == {logging.INFO}


def test_server_leaving_warns_on_client(caplog: pytest.LogCaptureFixture):
    async def scenario():
        server = await rpc.serve_source(
            am.Machine(SCHEMA, id="server"), plain_service=None
        )
        mirror = await rpc.connect_mirror(
            server.addr, id="client", retry=rpc.RetryPolicy(attempts=0)
        )
        await server.close()
        while not disconnect_records(caplog):
            await asyncio.sleep(0.01)
        await mirror.close()

    with caplog.at_level(logging.INFO, logger="asyncmachine.rpc"):
        asyncio.run(asyncio.wait_for(scenario(), 10))
    records = disconnect_records(caplog)
    assert [record.levelno for record in records] == [logging.WARNING]
