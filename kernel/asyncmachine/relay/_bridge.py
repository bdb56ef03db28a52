"""Copying bytes both ways between a WebSocket and a TCP stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import aiohttp
from aiohttp import web

__all__ = ["BridgeResult", "bridge", "websocket_max_msg_size"]

logger = logging.getLogger("asyncmachine.relay")


def websocket_max_msg_size(max_message_size: int) -> int:
    """Return aiohttp's ``max_msg_size`` that accepts messages of exactly the size.

    aiohttp 3.14 rejects a frame whose length equals ``max_msg_size``, although
    it names the value a limit; :func:`bridge` enforces the exact limit itself.
    """
    return max_message_size + 1


@dataclass
class BridgeResult:
    """Outcome of a bridge.

    Attributes:
        reason: Which side ended it and why.
        bytes_to_tcp: Bytes copied from the WebSocket to the TCP stream.
        bytes_to_websocket: Bytes copied from the TCP stream to the WebSocket.
    """

    reason: str = "not started"
    bytes_to_tcp: int = 0
    bytes_to_websocket: int = 0


async def bridge(
    ws: web.WebSocketResponse,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    chunk_size: int,
    max_message_size: int,
) -> BridgeResult:
    """Copy bytes both ways until either side closes, then close both.

    Each binary WebSocket message is written to the TCP stream as it is, and
    each TCP read of at most chunk_size bytes becomes one binary message. A
    text message is a protocol error and closes both sides. A message larger
    than max_message_size closes the WebSocket with code 1009 and the TCP
    stream too.

    Args:
        ws: A prepared server-side WebSocket.
        reader: The TCP stream's reader.
        writer: The TCP stream's writer.
        chunk_size: Largest TCP read, and so the largest message sent, in bytes.
        max_message_size: Largest message accepted, in bytes. Create the
            WebSocket with :func:`websocket_max_msg_size` of it, so that aiohttp
            stops reading larger messages early.
    """
    result = BridgeResult()
    to_tcp = asyncio.create_task(
        _copy_websocket_to_tcp(ws, writer, max_message_size, result)
    )
    to_websocket = asyncio.create_task(
        _copy_tcp_to_websocket(reader, ws, chunk_size, result)
    )
    try:
        await asyncio.wait({to_tcp, to_websocket}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_tcp, to_websocket):
            if not task.done():
                task.cancel()
        await asyncio.gather(to_tcp, to_websocket, return_exceptions=True)
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await ws.close()
    return result


async def _copy_websocket_to_tcp(
    ws: web.WebSocketResponse,
    writer: asyncio.StreamWriter,
    max_message_size: int,
    result: BridgeResult,
) -> None:
    try:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.BINARY:
                if len(message.data) > max_message_size:
                    result.reason = (
                        f"message of {len(message.data)} bytes exceeds the limit of "
                        f"{max_message_size} bytes"
                    )
                    await ws.close(
                        code=aiohttp.WSCloseCode.MESSAGE_TOO_BIG,
                        message=b"message too big",
                    )
                    return
                writer.write(message.data)
                result.bytes_to_tcp += len(message.data)
                await writer.drain()
            elif message.type is aiohttp.WSMsgType.TEXT:
                result.reason = "text message received on a binary tunnel"
                await ws.close(
                    code=aiohttp.WSCloseCode.UNSUPPORTED_DATA,
                    message=b"binary messages only",
                )
                return
            elif message.type is aiohttp.WSMsgType.ERROR:
                result.reason = f"WebSocket error: {ws.exception()!r}"
                return
    except (ConnectionError, OSError) as exc:
        result.reason = f"TCP write failed: {exc!r}"
        return
    result.reason = f"WebSocket closed with code {ws.close_code}"


async def _copy_tcp_to_websocket(
    reader: asyncio.StreamReader,
    ws: web.WebSocketResponse,
    chunk_size: int,
    result: BridgeResult,
) -> None:
    try:
        while data := await reader.read(chunk_size):
            await ws.send_bytes(data)
            result.bytes_to_websocket += len(data)
    except (ConnectionError, OSError) as exc:
        result.reason = f"TCP stream failed: {exc!r}"
        return
    result.reason = "TCP peer closed the connection"
