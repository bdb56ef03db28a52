"""rpyc frame encoding and reassembly."""

from __future__ import annotations

import os
import zlib

import pytest
from rpyc.core.channel import Channel

from asyncmachine.rpc import FrameError, FrameTooLargeError
from asyncmachine.rpc._framing import FRAME_OVERHEAD, FrameDecoder, encode_frame

LIMIT = 1 << 16


class _RecordingStream:
    """Minimal rpyc stream that records what rpyc's own Channel writes."""

    MAX_IO_CHUNK = 64000

    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data


def rpyc_channel_bytes(payload: bytes) -> bytes:
    stream = _RecordingStream()
    Channel(stream).send(payload)
    return stream.written


@pytest.mark.parametrize("payload", [b"x", b"abc" * 10, b"tick " * 2000])
def test_encode_matches_rpyc_channel(payload):
    encoded = encode_frame(payload, max_frame_size=LIMIT, compress=True)
    assert encoded == rpyc_channel_bytes(payload)


def test_encode_skips_compression_that_grows():
    payload = os.urandom(5000)
    encoded = encode_frame(payload, max_frame_size=LIMIT, compress=True)
    assert encoded[4] == 0
    assert len(encoded) == len(payload) + FRAME_OVERHEAD


def test_encode_rejects_oversized_payload():
    with pytest.raises(FrameTooLargeError, match="outgoing frame of 11 bytes"):
        encode_frame(b"x" * 11, max_frame_size=10, compress=False)


def test_decoder_handles_any_split_point():
    payloads = [b"first", b"second" * 700, b"third"]
    stream = b"".join(
        encode_frame(p, max_frame_size=LIMIT, compress=True) for p in payloads
    )
    for split in range(len(stream) + 1):
        decoder = FrameDecoder(LIMIT)
        frames = decoder.feed(stream[:split]) + decoder.feed(stream[split:])
        assert frames == payloads
        assert decoder.buffered == 0


def test_decoder_byte_by_byte():
    payload = b"state" * 900
    stream = encode_frame(payload, max_frame_size=LIMIT, compress=True)
    decoder = FrameDecoder(LIMIT)
    frames = []
    for i in range(len(stream)):
        frames += decoder.feed(stream[i : i + 1])
    assert frames == [payload]


def test_decoder_rejects_announced_size_before_body():
    decoder = FrameDecoder(100)
    with pytest.raises(FrameTooLargeError, match="incoming frame of 101 bytes"):
        decoder.feed((101).to_bytes(4, "big") + b"\x00")


def test_decoder_rejects_compression_bomb():
    bomb = zlib.compress(b"\x00" * 10_000)
    frame = len(bomb).to_bytes(4, "big") + b"\x01" + bomb + b"\n"
    with pytest.raises(FrameTooLargeError, match="inflates to more than"):
        FrameDecoder(1000).feed(frame)


INVALID_FRAMES = {
    "compression flag": b"\x00\x00\x00\x01\x02a\n",
    "trailer": b"\x00\x00\x00\x01\x00aa",
    "empty": b"\x00\x00\x00\x00\x00\n",
    "compressed body": b"\x00\x00\x00\x02\x01ab\n",
    "truncated compressed body": (
        b"\x00\x00\x00\x05\x01" + zlib.compress(b"hello world")[:5] + b"\n"
    ),
}


@pytest.mark.parametrize("frame", INVALID_FRAMES.values(), ids=INVALID_FRAMES)
def test_decoder_rejects_invalid_frame(frame):
    with pytest.raises(FrameError):
        FrameDecoder(LIMIT).feed(frame)
