"""Strict field readers for the channel layer's canonical-CBOR maps.

Every channel structure is a flat-ish map ``{"v": 1, "t": <kind>, ...}``: the version is
checked first, then the kind, then the exact key set, then each field's type and bounds.
Everything a peer sent that fails raises :class:`PayloadError`; nothing else escapes.
"""

from __future__ import annotations

from typing import Any

from node.channels.errors import PayloadError
from node.core import cbor
from node.core.errors import DecodeError, IdentityError
from node.core.identity import PeerId

__all__ = [
    "VERSION",
    "decode_map",
    "encode_map",
    "get_bytes",
    "get_int",
    "get_peer",
    "get_text",
]

VERSION = 1


def encode_map(kind: int, fields: dict[str, Any]) -> bytes:
    return cbor.encode({"v": VERSION, "t": kind, **fields})


def decode_map(
    data: bytes,
    what: str,
    layouts: dict[int, frozenset[str]],
    *,
    max_size: int,
    max_items: int = 64,
    max_depth: int = 2,
) -> tuple[int, dict[str, Any]]:
    """Decode and check version, kind and key set; returns (kind, fields)."""
    if not isinstance(data, bytes):
        raise PayloadError(f"{what} must be bytes")
    if len(data) > max_size:
        raise PayloadError(f"{what} of {len(data)} bytes exceeds {max_size}")
    try:
        obj = cbor.decode(data, max_depth=max_depth, max_items=max_items, max_size=max_size)
    except DecodeError as exc:
        raise PayloadError(f"{what}: {exc}") from None
    if not isinstance(obj, dict):
        raise PayloadError(f"{what} must be a map")
    version = obj.get("v")
    if version != VERSION or isinstance(version, bool):
        raise PayloadError(f"{what}: unsupported version {version!r:.20}")
    kind = obj.get("t")
    if isinstance(kind, bool) or not isinstance(kind, int) or kind not in layouts:
        raise PayloadError(f"{what}: unknown kind {kind!r:.20}")
    expected = layouts[kind] | {"v", "t"}
    if set(obj) != expected:
        raise PayloadError(f"{what}: fields {sorted(map(str, obj))} != {sorted(expected)}")
    return kind, obj


def get_bytes(f: dict[str, Any], name: str, min_len: int, max_len: int) -> bytes:
    value = f[name]
    if not isinstance(value, bytes) or not min_len <= len(value) <= max_len:
        size = f"{min_len}" if min_len == max_len else f"{min_len}..{max_len}"
        raise PayloadError(f"{name} must be {size} bytes")
    return value


def get_text(f: dict[str, Any], name: str, max_bytes: int, *, min_len: int = 0) -> str:
    value = f[name]
    if not isinstance(value, str):
        raise PayloadError(f"{name} must be text")
    size = len(value.encode("utf-8", "surrogatepass"))
    if not min_len <= size <= max_bytes:
        raise PayloadError(f"{name} must be {min_len}..{max_bytes} UTF-8 bytes")
    return value


def get_int(f: dict[str, Any], name: str, lo: int, hi: int) -> int:
    value = f[name]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise PayloadError(f"{name} must be an integer in {lo}..{hi}")
    return value


def get_peer(f: dict[str, Any], name: str) -> PeerId:
    raw = get_bytes(f, name, 34, 34)
    try:
        return PeerId.from_bytes(raw)
    except IdentityError as exc:
        raise PayloadError(f"{name}: {exc}") from None
