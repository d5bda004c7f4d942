"""Length-prefixed framing of Noise messages on a byte stream (sans-I/O).

Each frame on the TCP stream is a 2-byte big-endian length ``L`` then ``L`` bytes, one whole
Noise message (handshake or transport). ``1 <= L <= max_frame``; ``max_frame`` defaults to
65535, the Noise message limit, and a link may configure a lower hard limit. A zero length or
an over-limit length is a protocol error: the decoder raises and stays failed, because the
stream can no longer be trusted to be in sync.

The decoder copies each payload once and keeps at most one partial frame
(``< 2 + max_frame`` bytes) buffered between calls, so feeding is linear in the input.
"""

from __future__ import annotations

from typing import NoReturn

from node.core.errors import DecodeError, FrameTooLarge

__all__ = [
    "FRAME_HEADER_LEN",
    "MAX_FRAME",
    "FrameDecoder",
    "encode_frame",
    "encode_frames",
    "frame_header",
]

FRAME_HEADER_LEN = 2
MAX_FRAME = 65535

_Buffer = bytes | bytearray | memoryview


def _check_payload(payload: _Buffer, max_frame: int) -> int:
    n = len(payload)
    if not 1 <= n <= max_frame:
        # Our own caller's mistake (it must chunk before framing), hence not a wire error.
        raise ValueError(f"frame payload must be 1..{max_frame} bytes, got {n}")
    return n


def frame_header(length: int, *, max_frame: int = MAX_FRAME) -> bytes:
    """The 2-byte prefix for a frame of ``length`` bytes (so callers can avoid a copy)."""
    if not 1 <= length <= max_frame:
        raise ValueError(f"frame payload must be 1..{max_frame} bytes, got {length}")
    return length.to_bytes(2, "big")


def encode_frame(payload: _Buffer, *, max_frame: int = MAX_FRAME) -> bytes:
    """``payload`` with its 2-byte length prefix. ``ValueError`` if empty or too long."""
    n = _check_payload(payload, max_frame)
    return n.to_bytes(2, "big") + bytes(payload)


def encode_frames(payloads: list[bytes], *, max_frame: int = MAX_FRAME) -> bytes:
    """Several frames in one buffer (one write, one syscall)."""
    parts: list[bytes] = []
    for p in payloads:
        parts.append(_check_payload(p, max_frame).to_bytes(2, "big"))
        parts.append(p)
    return b"".join(parts)


class FrameDecoder:
    """Turns arbitrary chunks of a stream into whole frame payloads."""

    __slots__ = ("_buf", "_failed", "_max")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if not 1 <= max_frame <= MAX_FRAME:
            raise ValueError(f"max_frame must be 1..{MAX_FRAME}")
        self._max = max_frame
        self._buf = bytearray()  # only ever holds an incomplete frame
        self._failed: DecodeError | None = None

    @property
    def max_frame(self) -> int:
        return self._max

    @property
    def pending_length(self) -> int | None:
        """Declared length of the incomplete frame being buffered, once its header is in."""
        if len(self._buf) < FRAME_HEADER_LEN:
            return None
        return (self._buf[0] << 8) | self._buf[1]

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (always < 2 + max_frame)."""
        return len(self._buf)

    def feed(self, data: _Buffer) -> list[bytes]:
        """Consume ``data``; return every frame it completes, in order.

        Raises ``FrameTooLarge`` for a length over the limit and ``DecodeError`` for a zero
        length, as soon as the 2 length bytes arrive; after that every call raises again.
        """
        if self._failed is not None:
            raise type(self._failed)(f"frame decoder already failed: {self._failed}")
        frames: list[bytes] = []
        limit = self._max
        buf = self._buf
        with memoryview(data) as mv:
            n = len(mv)
            off = 0
            if buf:
                # Finish the pending partial frame with just the bytes it still needs.
                if len(buf) < FRAME_HEADER_LEN:
                    off = min(FRAME_HEADER_LEN - len(buf), n)
                    buf += mv[:off]
                    if len(buf) < FRAME_HEADER_LEN:
                        return frames
                    length = (buf[0] << 8) | buf[1]
                    if length == 0 or length > limit:
                        self._fail(length)
                else:
                    length = (buf[0] << 8) | buf[1]
                take = min(FRAME_HEADER_LEN + length - len(buf), n - off)
                buf += mv[off : off + take]
                off += take
                if len(buf) < FRAME_HEADER_LEN + length:
                    return frames
                with memoryview(buf) as bv:
                    frames.append(bytes(bv[FRAME_HEADER_LEN:]))
                buf.clear()
            # Then parse the caller's buffer in place; keep only an incomplete tail.
            while n - off >= FRAME_HEADER_LEN:
                length = (mv[off] << 8) | mv[off + 1]
                if length == 0 or length > limit:
                    self._fail(length)
                end = off + FRAME_HEADER_LEN + length
                if end > n:
                    break
                frames.append(bytes(mv[off + FRAME_HEADER_LEN : end]))
                off = end
            if off < n:
                buf += mv[off:]
        return frames

    def _fail(self, length: int) -> NoReturn:
        err: DecodeError
        if length == 0:
            err = DecodeError("zero-length frame")
        else:
            err = FrameTooLarge(f"frame of {length} bytes exceeds the {self._max}-byte limit")
        self._failed = err
        self._buf = bytearray()
        raise err
