"""Strict canonical CBOR: the only CBOR this node writes or accepts.

Encoding follows RFC 8949 section 4.2.1 (core deterministic encoding): shortest-form heads,
definite lengths only, map keys sorted by the bytewise order of their encodings. (cbor2's own
``canonical=True`` sorts keys length-first, the older RFC 7049 rule, so we encode ourselves.)

Only ``None``, ``bool``, ``int`` (-2**64 .. 2**64-1), ``bytes``, ``str``, arrays (``list`` /
``tuple``, decoded as ``list``) and maps (``dict`` keyed by ``int``, ``str`` or ``bytes``) exist.
No floats, tags, simple values or undefined.

Decoding untrusted bytes is done in three steps so that nothing hostile reaches cbor2 and
nothing non-canonical gets through:

1. an iterative header scan (no recursion, O(len) time, O(depth) memory) that bounds size,
   depth and item count and rejects everything outside the subset above;
2. cbor2's ``CBORDecoder`` builds the objects; every byte must be consumed;
3. the result is re-encoded and must equal the input, which rejects unsorted or duplicate keys
   and any other non-canonical form the scan did not already catch.

Any failure raises :class:`node.core.errors.DecodeError`.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import cbor2

from node.core.errors import DecodeError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_MAX_SIZE",
    "decode",
    "encode",
]

DEFAULT_MAX_DEPTH = 16
DEFAULT_MAX_ITEMS = 4096
# One Noise transport message carries at most 65535 bytes, so nothing we decode off the wire
# is bigger; callers decoding larger local blobs pass their own bound.
DEFAULT_MAX_SIZE = 65535

# Encoding refuses to nest deeper than this so a self-referencing structure fails cleanly.
_MAX_ENCODE_DEPTH = 64

_UINT_MAX = (1 << 64) - 1

_MAJOR_UINT = 0
_MAJOR_NEGINT = 1
_MAJOR_BYTES = 2
_MAJOR_TEXT = 3
_MAJOR_ARRAY = 4
_MAJOR_MAP = 5
_MAJOR_TAG = 6
_MAJOR_SIMPLE = 7

_FALSE = 0xF4
_TRUE = 0xF5
_NULL = 0xF6

_PACK_B = struct.Struct(">BB").pack
_PACK_H = struct.Struct(">BH").pack
_PACK_I = struct.Struct(">BI").pack
_PACK_Q = struct.Struct(">BQ").pack
_UNPACK_H = struct.Struct(">H").unpack_from
_UNPACK_I = struct.Struct(">I").unpack_from
_UNPACK_Q = struct.Struct(">Q").unpack_from


# --------------------------------------------------------------------------- encoding


def _head(major: int, arg: int) -> bytes:
    """Shortest head for ``major`` with argument ``arg`` (0 <= arg < 2**64)."""
    mt = major << 5
    if arg < 24:
        return bytes((mt | arg,))
    if arg < 0x100:
        return _PACK_B(mt | 24, arg)
    if arg < 0x10000:
        return _PACK_H(mt | 25, arg)
    if arg < 0x100000000:
        return _PACK_I(mt | 26, arg)
    return _PACK_Q(mt | 27, arg)


def _encode_int(value: int) -> bytes:
    if value >= 0:
        if value > _UINT_MAX:
            raise ValueError(f"integer {value} does not fit CBOR major type 0 (max 2**64-1)")
        return _head(_MAJOR_UINT, value)
    if value < -(1 << 64):
        raise ValueError(f"integer {value} does not fit CBOR major type 1 (min -2**64)")
    return _head(_MAJOR_NEGINT, -1 - value)


def _encode_key(key: object) -> bytes:
    # bool is an int subclass; a bool key would collide with 0/1 and is not in our subset.
    if isinstance(key, bool) or not isinstance(key, (int, str, bytes)):
        raise TypeError(f"CBOR map keys must be int, str or bytes, not {type(key).__name__}")
    return _encode_item(key, 0)


def _encode_item(obj: object, depth: int) -> bytes:
    if obj is None:
        return b"\xf6"
    if obj is True:
        return b"\xf5"
    if obj is False:
        return b"\xf4"
    if isinstance(obj, int):  # also IntEnum members; bool handled above
        return _encode_int(int(obj))
    if isinstance(obj, (bytes, bytearray)):
        return _head(_MAJOR_BYTES, len(obj)) + bytes(obj)
    if isinstance(obj, str):
        raw = obj.encode("utf-8")  # lone surrogates raise UnicodeEncodeError (a ValueError)
        return _head(_MAJOR_TEXT, len(raw)) + raw
    if depth >= _MAX_ENCODE_DEPTH:
        raise ValueError(f"CBOR nesting deeper than {_MAX_ENCODE_DEPTH}")
    if isinstance(obj, (list, tuple)):
        parts = [_head(_MAJOR_ARRAY, len(obj))]
        parts.extend(_encode_item(x, depth + 1) for x in obj)
        return b"".join(parts)
    if isinstance(obj, dict):
        pairs = [(_encode_key(k), _encode_item(v, depth + 1)) for k, v in obj.items()]
        pairs.sort(key=lambda kv: kv[0])
        parts = [_head(_MAJOR_MAP, len(pairs))]
        for k, v in pairs:
            parts.append(k)
            parts.append(v)
        return b"".join(parts)
    if isinstance(obj, float):
        raise TypeError("floats are not allowed in canonical CBOR here")
    raise TypeError(f"cannot CBOR-encode {type(obj).__name__}")


_SCALARS = (str, bytes, bool, type(None))


def _text_keyed(obj: object, depth: int) -> bool:
    """True when ``obj`` holds only plain scalars, lists and str-keyed maps.

    For those, cbor2's RFC 7049 "canonical" order (shorter key first, then bytewise) is the
    RFC 8949 bytewise order of the encoded keys: a text key's first byte grows with its
    length. So cbor2's C encoder gives our canonical bytes and the Python one is not needed.
    """
    t = type(obj)
    if t is int:
        return -_UINT_MAX - 1 <= obj <= _UINT_MAX  # type: ignore[operator]
    if t in _SCALARS:
        return True
    if depth >= _MAX_ENCODE_DEPTH:
        return False
    if t is list or t is tuple:
        return all(_text_keyed(x, depth + 1) for x in obj)  # type: ignore[attr-defined]
    if t is dict:
        return all(
            type(k) is str and _text_keyed(v, depth + 1)
            for k, v in obj.items()  # type: ignore[attr-defined]
        )
    return False


def encode(obj: Any) -> bytes:
    """Canonical CBOR encoding of ``obj``.

    Raises ``TypeError`` for a value outside the supported subset (floats included) and
    ``ValueError`` for an out-of-range integer, a lone surrogate or excessive nesting: those
    are local programming errors, not wire errors.
    """
    if _text_keyed(obj, 0):
        try:
            return cbor2.dumps(obj, canonical=True)
        except Exception:
            pass
    return _encode_item(obj, 0)


# --------------------------------------------------------------------------- decoding


def _scan(data: bytes, max_depth: int, max_items: int) -> None:
    """Validate the header structure of ``data`` without building anything.

    Checks: well-formed, shortest-form heads, definite lengths, allowed major types and simple
    values, scalar map keys, valid UTF-8, depth and item limits, no trailing bytes.
    """
    n = len(data)
    pos = 0
    items = 0
    # remaining[i]: data items still expected in open container i (a map of k pairs expects
    # 2k); is_map[i] marks maps so we know when an item is a key. Index 0 is a virtual root
    # expecting exactly one item.
    remaining = [1]
    is_map = [False]
    while remaining:
        rem = remaining[-1]
        is_key = is_map[-1] and rem % 2 == 0
        remaining[-1] = rem - 1
        if pos >= n:
            raise DecodeError("truncated CBOR")
        ib = data[pos]
        pos += 1
        major = ib >> 5
        ai = ib & 0x1F
        items += 1
        if items > max_items:
            raise DecodeError(f"CBOR has more than {max_items} items")

        if major == _MAJOR_SIMPLE:
            if ib not in (_FALSE, _TRUE, _NULL):
                if ai in (25, 26, 27):
                    raise DecodeError("CBOR floats are not allowed")
                if ai == 31:
                    raise DecodeError("unexpected CBOR break (indefinite lengths are not allowed)")
                raise DecodeError(f"CBOR simple value {ib:#04x} is not allowed")
            if is_key:
                raise DecodeError("CBOR map keys must be int, str or bytes")
        else:
            if ai < 24:
                arg = ai
            elif ai == 24:
                if pos + 1 > n:
                    raise DecodeError("truncated CBOR head")
                arg = data[pos]
                pos += 1
                if arg < 24:
                    raise DecodeError("non-minimal CBOR head")
            elif ai == 25:
                if pos + 2 > n:
                    raise DecodeError("truncated CBOR head")
                (arg,) = _UNPACK_H(data, pos)
                pos += 2
                if arg < 0x100:
                    raise DecodeError("non-minimal CBOR head")
            elif ai == 26:
                if pos + 4 > n:
                    raise DecodeError("truncated CBOR head")
                (arg,) = _UNPACK_I(data, pos)
                pos += 4
                if arg < 0x10000:
                    raise DecodeError("non-minimal CBOR head")
            elif ai == 27:
                if pos + 8 > n:
                    raise DecodeError("truncated CBOR head")
                (arg,) = _UNPACK_Q(data, pos)
                pos += 8
                if arg < 0x100000000:
                    raise DecodeError("non-minimal CBOR head")
            elif ai == 31:
                raise DecodeError("indefinite-length CBOR is not allowed")
            else:
                raise DecodeError(f"reserved CBOR additional info {ai}")

            if major == _MAJOR_TAG:
                raise DecodeError("CBOR tags are not allowed")
            if is_key and major > _MAJOR_TEXT:
                raise DecodeError("CBOR map keys must be int, str or bytes")
            if major in (_MAJOR_BYTES, _MAJOR_TEXT):
                end = pos + arg
                if end > n:
                    raise DecodeError("truncated CBOR string")
                if major == _MAJOR_TEXT:
                    try:
                        data[pos:end].decode("utf-8")
                    except UnicodeDecodeError:
                        raise DecodeError("invalid UTF-8 in CBOR text") from None
                pos = end
            elif major in (_MAJOR_ARRAY, _MAJOR_MAP):
                count = arg if major == _MAJOR_ARRAY else 2 * arg
                # Each item takes at least one byte: a larger count cannot be honest.
                if count > n - pos:
                    raise DecodeError("CBOR container count exceeds the data")
                if count:
                    remaining.append(count)
                    is_map.append(major == _MAJOR_MAP)
                    if len(remaining) - 1 > max_depth:
                        raise DecodeError(f"CBOR nested deeper than {max_depth}")
                elif len(remaining) > max_depth:  # an empty container still counts as a level
                    raise DecodeError(f"CBOR nested deeper than {max_depth}")
            # major 0/1: the argument is the value; nothing more to read.

        while remaining and remaining[-1] == 0:
            remaining.pop()
            is_map.pop()
    if pos != n:
        raise DecodeError(f"{n - pos} trailing bytes after CBOR item")


def decode(
    data: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Any:
    """Decode one canonical CBOR item that must fill ``data`` exactly.

    ``max_depth`` counts nested arrays/maps (a flat map is depth 1); ``max_items`` counts every
    data item including map keys. Arrays come back as ``list``. Raises ``DecodeError`` for any
    problem with ``data``; ``ValueError`` if ``max_depth`` exceeds 64 (a caller bug).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if not 0 <= max_depth <= _MAX_ENCODE_DEPTH:
        # A caller bug, not a wire error: deeper structures are never legitimate here.
        raise ValueError(f"max_depth must be 0..{_MAX_ENCODE_DEPTH}")
    data = bytes(data)
    if len(data) > max_size:
        raise DecodeError(f"CBOR item of {len(data)} bytes exceeds the {max_size}-byte limit")
    _scan(data, max_depth, max_items)
    fp = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            fp,
            max_depth=max_depth + 1,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            str_errors="strict",
        )
        obj = decoder.decode()
    except Exception as exc:  # the scan should make this unreachable; keep the contract anyway
        raise DecodeError(f"invalid CBOR: {exc}") from None
    if fp.tell() != len(data):
        raise DecodeError("trailing bytes after CBOR item")
    try:
        again = encode(obj)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"CBOR value outside the allowed subset: {exc}") from None
    if again != data:
        raise DecodeError("non-canonical CBOR (map keys unsorted or duplicated)")
    return obj
