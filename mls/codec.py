"""TLS presentation-language codec with MLS variable-length integers (RFC 9420 section 2.1.2).

``Writer`` and ``Reader`` are the paired primitives every struct's ``encode``/``decode`` uses.
Decoding is strict: varints must use the minimal of the 1/2/4-byte forms, every length is
bounded by the bytes actually present, and ``Reader.finish()`` rejects trailing bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from mls.errors import DecodeError

__all__ = ["MAX_VARINT", "Reader", "Writer", "decode_exact", "encode_varint"]

MAX_VARINT = (1 << 30) - 1
T = TypeVar("T")


def encode_varint(value: int) -> bytes:
    if value < 0 or value > MAX_VARINT:
        raise ValueError(f"varint out of range: {value}")
    if value < 1 << 6:
        return bytes((value,))
    if value < 1 << 14:
        return (value | 0x4000).to_bytes(2, "big")
    return (value | 0x8000_0000).to_bytes(4, "big")


class Writer:
    """Append-only encoder."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def uint8(self, v: int) -> Writer:
        self._buf += v.to_bytes(1, "big")
        return self

    def uint16(self, v: int) -> Writer:
        self._buf += v.to_bytes(2, "big")
        return self

    def uint32(self, v: int) -> Writer:
        self._buf += v.to_bytes(4, "big")
        return self

    def uint64(self, v: int) -> Writer:
        self._buf += v.to_bytes(8, "big")
        return self

    def varint(self, v: int) -> Writer:
        self._buf += encode_varint(v)
        return self

    def raw(self, data: bytes) -> Writer:
        self._buf += data
        return self

    def opaque(self, data: bytes) -> Writer:
        """``opaque data<V>``: varint length then the bytes."""
        self._buf += encode_varint(len(data))
        self._buf += data
        return self

    def optional(self, value: T | None, write: Callable[[Writer, T], object]) -> Writer:
        if value is None:
            self._buf.append(0)
        else:
            self._buf.append(1)
            write(self, value)
        return self

    def vector(
        self, items: list[T] | tuple[T, ...], write: Callable[[Writer, T], object]
    ) -> Writer:
        """``T items<V>``: varint byte length then the concatenated encodings."""
        inner = Writer()
        for item in items:
            write(inner, item)
        return self.opaque(bytes(inner._buf))

    def getvalue(self) -> bytes:
        return bytes(self._buf)


class Reader:
    """Bounds-checked decoder over untrusted bytes. Every failure is a ``DecodeError``.

    Tree and message decoding call these methods hundreds of thousands of times, so the hot
    ones (``uint8``, ``varint``, ``opaque``, ``optional``) read ``_data`` directly instead of
    going through ``_take``; every path still checks bounds and minimal varints."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(
        self, data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
    ) -> None:
        # Slices of ``bytes`` are ``bytes``: with this, ``_take`` never needs another copy.
        self._data: bytes = data if type(data) is bytes else bytes(data)
        self._pos = start
        self._end = len(self._data) if end is None else end
        if not 0 <= start <= self._end <= len(self._data):
            raise ValueError("reader window outside the data")

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    @property
    def position(self) -> int:
        return self._pos

    def _short(self, n: int) -> DecodeError:
        return DecodeError(f"need {n} bytes, {self._end - self._pos} left")

    def _take(self, n: int) -> bytes:
        pos = self._pos
        stop = pos + n
        if n < 0 or stop > self._end:
            raise self._short(n)
        self._pos = stop
        return self._data[pos:stop]

    def uint8(self) -> int:
        pos = self._pos
        if pos >= self._end:
            raise self._short(1)
        self._pos = pos + 1
        return self._data[pos]

    def uint16(self) -> int:
        return int.from_bytes(self._take(2), "big")

    def uint32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def uint64(self) -> int:
        return int.from_bytes(self._take(8), "big")

    def varint(self) -> int:
        pos = self._pos
        if pos >= self._end:
            raise self._short(1)
        first = self._data[pos]
        if first < 0x40:  # 1-byte form: the common case for every length in a tree
            self._pos = pos + 1
            return first
        return self._long_varint()

    def _long_varint(self) -> int:
        first = self._data[self._pos]
        prefix = first >> 6
        if prefix == 1:
            value = int.from_bytes(self._take(2), "big") & 0x3FFF
            if value < 1 << 6:
                raise DecodeError("non-minimal varint")
            return value
        if prefix == 2:
            value = int.from_bytes(self._take(4), "big") & 0x3FFF_FFFF
            if value < 1 << 14:
                raise DecodeError("non-minimal varint")
            return value
        raise DecodeError("invalid varint prefix 0b11")

    def raw(self, n: int) -> bytes:
        return self._take(n)

    def opaque(self, max_len: int = MAX_VARINT) -> bytes:
        pos = self._pos
        end = self._end
        if pos < end and (n := self._data[pos]) < 0x40:
            pos += 1  # 1-byte length, read inline
        else:
            n = self.varint()
            pos = self._pos
        if n > max_len:
            raise DecodeError(f"opaque length {n} exceeds limit {max_len}")
        stop = pos + n
        if stop > end:
            raise DecodeError(f"need {n} bytes, {end - pos} left")
        self._pos = stop
        return self._data[pos:stop]

    def optional(self, read: Callable[[Reader], T]) -> T | None:
        flag = self.uint8()
        if flag == 0:
            return None
        if flag == 1:
            return read(self)
        raise DecodeError(f"invalid optional flag {flag}")

    def vector(self, read: Callable[[Reader], T], max_len: int = MAX_VARINT) -> list[T]:
        n = self.varint()
        if n > max_len:
            raise DecodeError(f"vector length {n} exceeds limit {max_len}")
        start = self._pos
        stop = start + n
        if stop > self._end:
            raise DecodeError(f"vector needs {n} bytes, {self._end - start} left")
        sub = Reader.__new__(Reader)  # skips __init__: _data is already bytes
        sub._data, sub._pos, sub._end = self._data, start, stop
        items: list[T] = []
        append = items.append
        while sub._pos < stop:
            before = sub._pos
            append(read(sub))
            if sub._pos == before:
                # An item that consumes nothing would loop forever on attacker input.
                raise DecodeError("vector item consumed no bytes")
        self._pos = stop
        return items

    def finish(self) -> None:
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing bytes")


def decode_exact(data: bytes, read: Callable[[Reader], T]) -> T:
    """Decode one value that must span all of ``data``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    r = Reader(bytes(data))
    value = read(r)
    r.finish()
    return value
