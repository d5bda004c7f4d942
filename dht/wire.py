"""rpcudp datagram framing with a strict, bounded msgpack reader (sans-I/O).

A datagram is ``0x00`` (request) or ``0x01`` (response), a 20-byte message id, then one msgpack
value; a request's value is ``[name: str, args: array]``. rpcudp decodes with ``umsgpack`` and
lets every error escape into a task; here every problem is a :class:`WireError` with a short
``reason`` the protocol counts. The reader accepts only nil, bool, int, str, bin, array and
map, bounds nesting depth, and checks every length against the bytes left before allocating.
The writer (:func:`pack`) produces the same bytes as ``umsgpack.packb`` for those types; both
are specialised to them because packing and parsing were the DHT's largest CPU cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dht.errors import DhtError

__all__ = [
    "MSG_ID_LEN",
    "REQUEST",
    "RESPONSE",
    "Datagram",
    "WireError",
    "encode_request",
    "encode_response",
    "pack",
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


def _truncated() -> WireError:
    return WireError("bad_msgpack", "truncated")


class _Reader:
    """Recursive-descent msgpack reader; the hot cases come first and are inlined."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def length(self, width: int) -> int:
        """A ``width``-byte big-endian length that must fit in what is left."""
        pos = self.pos
        stop = pos + width
        if stop > self.end:
            raise _truncated()
        n = int.from_bytes(self.data[pos:stop], "big")
        self.pos = stop
        # Every element takes at least one byte, so a count beyond what is left is a lie.
        if n > self.end - stop:
            raise WireError("bad_msgpack", "length exceeds datagram")
        return n

    def raw(self, n: int) -> bytes:
        pos = self.pos
        stop = pos + n
        if stop > self.end:
            raise _truncated()
        self.pos = stop
        return self.data[pos:stop]

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError("too_deep")
        pos = self.pos
        if pos >= self.end:
            raise _truncated()
        b = self.data[pos]
        self.pos = pos + 1
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if b <= 0x8F:
            return self.map(b & 0x0F, depth)
        if b <= 0x9F:
            return self.array(b & 0x0F, depth)
        if b <= 0xBF:
            return self.text(b & 0x1F)
        if b == 0xC4:
            return self.raw(self.length(1))
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if b == 0xC5 or b == 0xC6:
            return self.raw(self.length(2 if b == 0xC5 else 4))
        if 0xCC <= b <= 0xCF:
            return int.from_bytes(self.raw(1 << (b - 0xCC)), "big")
        if 0xD0 <= b <= 0xD3:
            return int.from_bytes(self.raw(1 << (b - 0xD0)), "big", signed=True)
        if 0xD9 <= b <= 0xDB:
            return self.text(self.length(1 << (b - 0xD9)))
        if b == 0xDC or b == 0xDD:
            return self.array(self.length(2 if b == 0xDC else 4), depth)
        if b == 0xDE or b == 0xDF:
            return self.map(self.length(2 if b == 0xDE else 4), depth)
        raise WireError("bad_msgpack", f"unsupported type byte {b:#x}")

    def text(self, n: int) -> str:
        try:
            return self.raw(n).decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("bad_msgpack", "invalid utf-8") from None

    def array(self, n: int, depth: int) -> list[Any]:
        if n > self.end - self.pos:
            raise WireError("bad_msgpack", "length exceeds datagram")
        value = self.value
        return [value(depth + 1) for _ in range(n)]

    def map(self, n: int, depth: int) -> dict[Any, Any]:
        if n > self.end - self.pos:
            raise WireError("bad_msgpack", "length exceeds datagram")
        out: dict[Any, Any] = {}
        for _ in range(n):
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


def _head(out: bytearray, n: int, small: int, small_max: int, codes: bytes) -> None:
    """A length header: the fix form below ``small_max``, else the 1/2/4-byte forms."""
    if n < small_max:
        out.append(small | n)
    elif codes[0] and n < 256:
        out.append(codes[0])
        out.append(n)
    elif n < 65536:
        out.append(codes[1])
        out += n.to_bytes(2, "big")
    elif n < 2**32:
        out.append(codes[2])
        out += n.to_bytes(4, "big")
    else:
        raise DhtError("msgpack value too long")


_STR = bytes((0xD9, 0xDA, 0xDB))
_ARRAY = bytes((0, 0xDC, 0xDD))
_MAP = bytes((0, 0xDE, 0xDF))


def _pack(value: Any, out: bytearray) -> None:
    kind = type(value)
    if kind is bytes or kind is bytearray:
        n = len(value)
        if n < 256:
            out.append(0xC4)
            out.append(n)
        elif n < 65536:
            out.append(0xC5)
            out += n.to_bytes(2, "big")
        else:
            out.append(0xC6)
            out += n.to_bytes(4, "big")
        out += value
    elif kind is list or kind is tuple:
        _head(out, len(value), 0x90, 16, _ARRAY)
        for item in value:
            _pack(item, out)
    elif kind is str:
        raw = value.encode("utf-8")
        _head(out, len(raw), 0xA0, 32, _STR)
        out += raw
    elif kind is bool:
        out.append(0xC3 if value else 0xC2)
    elif kind is int:
        _pack_int(value, out)
    elif value is None:
        out.append(0xC0)
    elif kind is dict:
        _head(out, len(value), 0x80, 16, _MAP)
        for key, item in value.items():
            _pack(key, out)
            _pack(item, out)
    else:
        raise DhtError(f"cannot encode {kind.__name__} on the DHT wire")


def _pack_int(value: int, out: bytearray) -> None:
    if 0 <= value < 128:
        out.append(value)
    elif -32 <= value < 0:
        out.append(value & 0xFF)
    elif value > 0:
        for code, width in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if value < 1 << (8 * width):
                out.append(code)
                out += value.to_bytes(width, "big")
                return
        raise DhtError("integer too large for msgpack")
    else:
        for code, width in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
            if value >= -(1 << (8 * width - 1)):
                out.append(code)
                out += value.to_bytes(width, "big", signed=True)
                return
        raise DhtError("integer too small for msgpack")


def pack(value: Any) -> bytes:
    """msgpack-encode ``value`` (None, bool, int, str, bytes, list/tuple, dict) exactly as
    ``umsgpack.packb`` does (smallest forms), without its per-value generic dispatch."""
    out = bytearray()
    _pack(value, out)
    return bytes(out)


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
    out = bytearray((REQUEST,))
    out += msg_id
    _pack([name, args], out)
    return bytes(out)


def encode_response(msg_id: bytes, result: Any) -> bytes:
    out = bytearray((RESPONSE,))
    out += msg_id
    _pack(result, out)
    return bytes(out)
