"""rpcudp datagram framing over msgpack's C codec, decoded strictly (sans-I/O).

A datagram is ``0x00`` (request) or ``0x01`` (response), a 20-byte message id, then one msgpack
value; a request's value is ``[name: str, args: array]``. rpcudp decodes with ``umsgpack`` and
lets every error escape into a task; here every problem is a :class:`WireError` with a short
``reason`` the protocol counts.

Decoding uses PyPI ``msgpack`` (C) with every length bounded by the datagram's own size
(an element takes at least one byte, so a larger count is a lie and nothing is allocated for
it), strings decoded as UTF-8 (``raw=False``), map keys limited to str/bytes and unique, and
no trailing bytes. The decoded value is then checked in one pass over its containers: only
nil, bool, int, str, bin, array and map, nested at most :data:`MAX_DEPTH` deep, so floats
and ext types (timestamps included) are refused, as the hand-written reader did.

Encoding (:func:`pack`) is ``msgpack.packb(use_bin_type=True)``: bytes as bin, str as str,
smallest forms, byte-identical to what ``umsgpack.packb`` (rpcudp, kademlia) writes for the
types the wire carries (tested), so peers running upstream see no change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]

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
_SCALARS = frozenset({bytes, str, int, bool, type(None)})


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


def _unique_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate map key")
    return out


def _check(value: Any, depth: int) -> None:
    """Only the wire's types in this container's items, which sit at ``depth`` (the top value
    is at 0; nothing may sit deeper than MAX_DEPTH). Only containers recurse."""
    if depth > MAX_DEPTH and value:
        raise WireError("too_deep")
    items = value.values() if type(value) is dict else value
    for item in items:
        kind = type(item)
        if kind is list or kind is dict:
            _check(item, depth + 1)
        elif kind not in _SCALARS:
            raise WireError("bad_msgpack", f"type {kind.__name__} not allowed")


def unpack(data: bytes | memoryview) -> Any:
    """Decode exactly one msgpack value from ``data`` (no trailing bytes); strict as above."""
    n = len(data)
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            object_pairs_hook=_unique_pairs,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n // 2,
            max_ext_len=0,
        )
    except msgpack.StackError:
        raise WireError("too_deep") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # ExtraData, FormatError, truncation, bad UTF-8, limits and bad keys are all here.
        raise WireError("bad_msgpack", type(exc).__name__) from None
    kind = type(value)
    if kind is list or kind is dict:
        _check(value, 1)
    elif kind not in _SCALARS:
        raise WireError("bad_msgpack", f"type {kind.__name__} not allowed")
    return value


_packer = msgpack.Packer(use_bin_type=True)


def pack(value: Any) -> bytes:
    """msgpack-encode ``value`` (None, bool, int, str, bytes, list/tuple, dict) as
    ``umsgpack.packb`` does."""
    try:
        data: bytes = _packer.pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        _packer.reset()
        raise DhtError(f"cannot encode on the DHT wire: {exc}") from None
    return data


def parse_datagram(data: bytes, max_size: int) -> Datagram:
    """Split and decode one datagram; requests are checked to be ``[str, list]``."""
    if len(data) > max_size:
        raise WireError("oversized")
    if len(data) <= _HEADER:
        raise WireError("too_short")
    kind = data[0]
    if kind != REQUEST and kind != RESPONSE:
        raise WireError("bad_kind")
    body = unpack(memoryview(data)[_HEADER:])
    if kind == REQUEST and (
        type(body) is not list
        or len(body) != 2
        or type(body[0]) is not str
        or type(body[1]) is not list
    ):
        raise WireError("bad_arity", "request must be [name, args]")
    return Datagram(kind, data[1:_HEADER], body, len(data))


def encode_request(msg_id: bytes, name: str, args: list[Any]) -> bytes:
    return b"\x00" + msg_id + pack([name, args])


def encode_response(msg_id: bytes, result: Any) -> bytes:
    return b"\x01" + msg_id + pack(result)
