"""rpcudp datagram framing with a strict, bounded msgpack reader (sans-I/O).

A datagram is ``0x00`` (request) or ``0x01`` (response), a 20-byte message id, then one msgpack
value; a request's value is ``[name: str, args: array]``. rpcudp decodes with ``umsgpack`` and
lets every error escape into a task; here every problem is a :class:`WireError` with a short
``reason`` the protocol counts. The reader accepts only nil, bool, int, str, bin, array and
map, bounds nesting depth, and checks every length against the bytes left before allocating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import umsgpack

from dht.errors import DhtError

__all__ = [
    "MSG_ID_LEN",
    "REQUEST",
    "RESPONSE",
    "Datagram",
    "WireError",
    "encode_request",
    "encode_response",
    "parse_datagram",
    "unpack",
]

REQUEST = 0x00
RESPONSE = 0x01
MSG_ID_LEN = 20
_HEADER = 1 + MSG_ID_LEN
MAX_DEPTH = 6


class WireError(DhtError):
    """A datagram that does not parse; ``reason`` is a short counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Datagram:
    kind: int
    msg_id: bytes
    body: Any
    size: int


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise WireError("bad_msgpack", "truncated")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def count(self, n: int) -> int:
        # Every element takes at least one byte, so a count beyond what is left is a lie.
        if n > len(self.data) - self.pos:
            raise WireError("bad_msgpack", "length exceeds datagram")
        return n

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError("too_deep")
        b = self.take(1)[0]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return self.map(b & 0x0F, depth)
        if 0x90 <= b <= 0x9F:
            return self.array(b & 0x0F, depth)
        if 0xA0 <= b <= 0xBF:
            return self.text(b & 0x1F)
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if b in (0xC4, 0xC5, 0xC6):
            return self.take(self.count(self.uint(1 << (b - 0xC4))))
        if 0xCC <= b <= 0xCF:
            return self.uint(1 << (b - 0xCC))
        if 0xD0 <= b <= 0xD3:
            n = 1 << (b - 0xD0)
            return int.from_bytes(self.take(n), "big", signed=True)
        if b in (0xD9, 0xDA, 0xDB):
            return self.text(self.uint(1 << (b - 0xD9)))
        if b in (0xDC, 0xDD):
            return self.array(self.uint(2 if b == 0xDC else 4), depth)
        if b in (0xDE, 0xDF):
            return self.map(self.uint(2 if b == 0xDE else 4), depth)
        raise WireError("bad_msgpack", f"unsupported type byte {b:#x}")

    def text(self, n: int) -> str:
        try:
            return self.take(self.count(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("bad_msgpack", "invalid utf-8") from None

    def array(self, n: int, depth: int) -> list[Any]:
        return [self.value(depth + 1) for _ in range(self.count(n))]

    def map(self, n: int, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for _ in range(self.count(n)):
            key = self.value(depth + 1)
            if not isinstance(key, (str, bytes, int)) or key in out:
                raise WireError("bad_msgpack", "bad or duplicate map key")
            out[key] = self.value(depth + 1)
        return out


def unpack(data: bytes) -> Any:
    """Decode exactly one msgpack value from ``data`` (no trailing bytes)."""
    reader = _Reader(data)
    value = reader.value(0)
    if reader.pos != len(data):
        raise WireError("bad_msgpack", "trailing bytes")
    return value


def parse_datagram(data: bytes, max_size: int) -> Datagram:
    """Split and decode one datagram; requests are checked to be ``[str, list]``."""
    if len(data) > max_size:
        raise WireError("oversized")
    if len(data) <= _HEADER:
        raise WireError("too_short")
    kind = data[0]
    if kind not in (REQUEST, RESPONSE):
        raise WireError("bad_kind")
    body = unpack(data[_HEADER:])
    if kind == REQUEST and (
        not isinstance(body, list)
        or len(body) != 2
        or not isinstance(body[0], str)
        or not isinstance(body[1], list)
    ):
        raise WireError("bad_arity", "request must be [name, args]")
    return Datagram(kind, data[1:_HEADER], body, len(data))


def encode_request(msg_id: bytes, name: str, args: list[Any]) -> bytes:
    return bytes((REQUEST,)) + msg_id + bytes(umsgpack.packb([name, args]))


def encode_response(msg_id: bytes, result: Any) -> bytes:
    return bytes((RESPONSE,)) + msg_id + bytes(umsgpack.packb(result))
