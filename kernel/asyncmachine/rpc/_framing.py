"""rpyc 6.0 frames: encoding, and reassembly from bytes split anywhere.

A frame is a 4-byte big-endian payload length, a 1-byte compression flag, the
payload (zlib-compressed when the flag is 1), and one newline byte. Transports
split the stream at arbitrary points, so :class:`FrameDecoder` buffers partial
frames and enforces the size limit before a frame is complete.
"""

from __future__ import annotations

import struct
import zlib

__all__ = [
    "FRAME_OVERHEAD",
    "FrameDecoder",
    "FrameError",
    "FrameTooLargeError",
    "encode_frame",
]

_FRAME_HEADER = struct.Struct("!LB")
_FRAME_TRAILER = b"\n"
FRAME_OVERHEAD = _FRAME_HEADER.size + len(_FRAME_TRAILER)
# rpyc 6.0 compresses payloads above 3000 bytes with zlib level 1.
_COMPRESSION_THRESHOLD = 3000
_COMPRESSION_LEVEL = 1


class FrameError(ValueError):
    """Received bytes do not form a valid rpyc frame."""


class FrameTooLargeError(FrameError):
    """A frame is larger than the connection's frame size limit."""


def encode_frame(payload: bytes, *, max_frame_size: int, compress: bool) -> bytes:
    """Frame one rpyc message the way rpyc 6.0's Channel does.

    Raises:
        FrameTooLargeError: The payload is larger than max_frame_size.
    """
    if len(payload) > max_frame_size:
        raise FrameTooLargeError(
            f"outgoing frame of {len(payload)} bytes exceeds the limit of "
            f"{max_frame_size} bytes"
        )
    flag = 0
    if compress and len(payload) > _COMPRESSION_THRESHOLD:
        packed = zlib.compress(payload, _COMPRESSION_LEVEL)
        if len(packed) < len(payload):
            payload = packed
            flag = 1
    return b"".join((_FRAME_HEADER.pack(len(payload), flag), payload, _FRAME_TRAILER))


class FrameDecoder:
    """Reassembles rpyc frames from bytes split at arbitrary points.

    A frame's length is checked as soon as its header arrives, so the buffer never
    contains more than one frame of at most ``max_frame_size`` bytes plus what
    arrived after it.
    """

    def __init__(self, max_frame_size: int) -> None:
        self._max_frame_size = max_frame_size
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Number of received bytes that do not form a whole frame yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes and return the payloads of the completed frames.

        Raises:
            FrameTooLargeError: A frame announces or inflates to more than the
                limit.
            FrameError: A frame has an invalid compression flag, trailer or
                compressed body, or is empty.
        """
        buffer = self._buffer
        buffer += data
        payloads = []
        start = 0
        while len(buffer) - start >= _FRAME_HEADER.size:
            length, flag = _FRAME_HEADER.unpack_from(buffer, start)
            if flag not in (0, 1):
                raise FrameError(f"invalid compression flag {flag} in frame header")
            if length > self._max_frame_size:
                raise FrameTooLargeError(
                    f"incoming frame of {length} bytes exceeds the limit of "
                    f"{self._max_frame_size} bytes"
                )
            end = start + _FRAME_HEADER.size + length + len(_FRAME_TRAILER)
            if len(buffer) < end:
                break
            if buffer[end - 1 : end] != _FRAME_TRAILER:
                raise FrameError("frame does not end with a newline byte")
            payload = bytes(buffer[start + _FRAME_HEADER.size : end - 1])
            if flag:
                payload = self._decompress(payload)
            if not payload:
                raise FrameError("empty frame")
            payloads.append(payload)
            start = end
        del buffer[:start]
        return payloads

    def _decompress(self, payload: bytes) -> bytes:
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(payload, self._max_frame_size + 1)
        except zlib.error as exc:
            raise FrameError(f"invalid compressed frame: {exc}") from exc
        if len(data) > self._max_frame_size or inflater.unconsumed_tail:
            raise FrameTooLargeError(
                f"compressed frame inflates to more than the limit of "
                f"{self._max_frame_size} bytes"
            )
        if not inflater.eof:
            raise FrameError("truncated compressed frame")
        return data
