"""WebSocket access checks: Origin, token, upgrade, and the token kept out of logs."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from asyncmachine.relay import Relay
from tests.relay.helpers import TOKEN, running_relay, ws_url


async def echo_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(message.data)
    return ws


async def try_upgrade(url, *, origin=None, headers=None):
    """Return "open" when the WebSocket opens, else the HTTP status and body."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, origin=origin, headers=headers) as ws:
                await ws.send_str("ping")
                reply = await ws.receive_str()
                return "open", reply
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, exc.message


def run_upgrades(cases, **relay_kwargs):
    """Start a relay with an echo rpc route and try each (path, origin, headers)."""

    async def scenario():
        async with running_relay(**relay_kwargs) as relay:
            relay.add_rpc_route("/echo", echo_handler)
            results = []
            for query, origin, headers in cases:
                url = ws_url(relay, "/echo", **query)
                origin = origin.replace("PORT", str(relay.port)) if origin else None
                results.append(await try_upgrade(url, origin=origin, headers=headers))
            return results

    return asyncio.run(scenario())


OWN_ORIGIN = "http://127.0.0.1:PORT"


def test_upgrade_with_token_and_own_origin_opens():
    results = run_upgrades(
        [
            ({"token": TOKEN}, OWN_ORIGIN, None),
            ({"token": TOKEN}, "http://localhost:PORT", None),
            ({}, OWN_ORIGIN, {"Authorization": f"Bearer {TOKEN}"}),
        ]
    )
    assert results == [("open", "ping")] * 3


def test_upgrade_rejected_for_wrong_origin():
    [(status, message)] = run_upgrades(
        [({"token": TOKEN}, "http://evil.example:PORT", None)]
    )
    assert status == 403


def test_upgrade_rejected_without_origin():
    [(status, _message)] = run_upgrades([({"token": TOKEN}, None, None)])
    assert status == 403


def test_upgrade_without_origin_allowed_explicitly():
    [result] = run_upgrades([({"token": TOKEN}, None, None)], allow_no_origin=True)
    assert result == ("open", "ping")


def test_upgrade_rejected_without_token():
    [(status, _message)] = run_upgrades([({}, OWN_ORIGIN, None)])
    assert status == 403


def test_upgrade_rejected_for_wrong_token():
    results = run_upgrades(
        [
            ({"token": TOKEN + "x"}, OWN_ORIGIN, None),
            ({"token": ""}, OWN_ORIGIN, None),
            ({"token": "tökén"}, OWN_ORIGIN, None),
            ({}, OWN_ORIGIN, {"Authorization": "Bearer wrong"}),
        ]
    )
    assert [status for status, _message in results] == [403, 403, 403, 403]


def test_upgrade_without_relay_token_needs_origin_only():
    results = run_upgrades([({}, OWN_ORIGIN, None), ({}, None, None)], token=None)
    assert results[0] == ("open", "ping")
    assert results[1][0] == 403


def test_allowed_origins_replace_the_defaults():
    results = run_upgrades(
        [
            ({"token": TOKEN}, "http://page.example", None),
            ({"token": TOKEN}, OWN_ORIGIN, None),
        ],
        allowed_origins=["http://page.example"],
    )
    assert results[0] == ("open", "ping")
    assert results[1][0] == 403


def test_plain_get_on_websocket_route_is_400():
    async def scenario():
        async with running_relay() as relay:
            async with aiohttp.ClientSession() as session:
                async with session.get(
                    f"{relay.url}/tunnel/listen?token={TOKEN}"
                ) as response:
                    return response.status

    assert asyncio.run(scenario()) == 400


def test_token_required_off_loopback():
    with pytest.raises(ValueError, match="token is required"):
        Relay(host="0.0.0.0")
    with pytest.raises(ValueError, match="token is required"):
        Relay(host="192.168.1.5")
    with pytest.raises(ValueError, match="must not be empty"):
        Relay(token="")
    Relay(host="0.0.0.0", token=TOKEN)
    Relay(host="localhost")
    Relay(host="::1")


def test_relay_rejects_invalid_settings():
    with pytest.raises(ValueError, match="invalid address"):
        Relay(dial_allowlist=["no-port"])
    with pytest.raises(ValueError, match="max_message_size"):
        Relay(max_message_size=10)


def test_rpc_route_must_be_new():
    relay = Relay()
    relay.add_rpc_route("/rpc", echo_handler)
    with pytest.raises(ValueError, match="already in use"):
        relay.add_rpc_route("/rpc", echo_handler)
    with pytest.raises(ValueError, match="already in use"):
        relay.add_rpc_route("/tunnel/dial", echo_handler)
    with pytest.raises(ValueError, match="must start with"):
        relay.add_rpc_route("rpc", echo_handler)


def test_token_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    run_upgrades(
        [
            ({"token": TOKEN}, OWN_ORIGIN, None),
            ({"token": TOKEN}, "http://evil.example", None),
            ({"token": TOKEN + "x"}, OWN_ORIGIN, None),
        ]
    )
    assert "rejected with 403" in caplog.text
    assert TOKEN not in caplog.text
