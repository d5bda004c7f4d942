"""Small decoding helpers shared by the wire structs (private)."""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Protocol, TypeVar, cast

from mls.codec import Reader, Writer
from mls.errors import DecodeError

E = TypeVar("E", bound=IntEnum)


def enum_value(cls: type[E], value: int) -> E:
    """Map a wire value onto a closed enum; values the RFC leaves undefined are rejected."""
    member = cls._value2member_map_.get(value)  # dict lookup: hot in tree decoding
    if member is None or value == 0:  # every RFC 9420 enum reserves 0
        raise DecodeError(f"invalid {cls.__name__} value {value}")
    return cast(E, member)


def read_u16_list(r: Reader) -> tuple[int, ...]:
    """``uint16 items<V>`` decoded in one step rather than per element."""
    data = r.opaque()
    if len(data) & 1:
        raise DecodeError("uint16 vector length is odd")
    return struct.unpack(f">{len(data) >> 1}H", data)


def write_u16_list(w: Writer, items: tuple[int, ...]) -> None:
    w.opaque(struct.pack(f">{len(items)}H", *items))


def read_u32_list(r: Reader) -> tuple[int, ...]:
    data = r.opaque()
    if len(data) & 3:
        raise DecodeError("uint32 vector length not a multiple of 4")
    return struct.unpack(f">{len(data) >> 2}I", data)


def write_u32_list(w: Writer, items: tuple[int, ...]) -> None:
    w.opaque(struct.pack(f">{len(items)}I", *items))


def read_opaque_list(r: Reader) -> tuple[bytes, ...]:
    return tuple(r.vector(Reader.opaque))


def write_opaque_list(w: Writer, items: tuple[bytes, ...]) -> None:
    w.vector(items, Writer.opaque)


class Encodable(Protocol):
    def encode(self, w: Writer) -> None: ...


def write_item(w: Writer, item: Encodable) -> None:
    """Adapter for ``Writer.vector``/``optional``, whose callbacks take (writer, item)."""
    item.encode(w)
