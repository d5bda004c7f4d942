"""MLS variable-length headers: deserialization.json plus the encodings RFC 9420 forbids."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mls.codec import Reader, decode_exact, encode_varint
from mls.errors import DecodeError
from tests.conftest import vectors_root

VECTOR = "deserialization.json"


def _params(name: str) -> list[Any]:
    path = vectors_root() / "mls" / name
    if not path.is_file():
        return [pytest.param(-1, id=f"{name}-missing")]
    n = len(json.loads(path.read_text()))
    return [pytest.param(i, id=f"{name}[{i}]") for i in range(n)]


@cache
def _load(path: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("index", _params(VECTOR))
def test_vlbytes_header(vectors_dir: Path, index: int) -> None:
    case = _load(vectors_dir / "mls" / VECTOR)[index]
    header = bytes.fromhex(case["vlbytes_header"])
    assert decode_exact(header, Reader.varint) == case["length"]
    assert encode_varint(case["length"]) == header
    # As an opaque<V> header the length must be backed by that many bytes.
    r = Reader(header + bytes(min(case["length"], 1 << 16)))
    if case["length"] <= 1 << 16:
        assert len(r.opaque()) == case["length"]
        r.finish()
    else:
        with pytest.raises(DecodeError):
            r.opaque()


@pytest.mark.parametrize(
    "header",
    [
        "4000",  # 0 in the two-byte form
        "403f",  # 63 in the two-byte form
        "80000000",  # 0 in the four-byte form
        "80003fff",  # 16383 in the four-byte form
        "c0",  # 0b11 prefix is not allowed in MLS
        "ff",
        "c000000000000000",
        "",  # truncated
        "40",
        "800000",
    ],
)
def test_invalid_headers_rejected(header: str) -> None:
    with pytest.raises(DecodeError):
        decode_exact(bytes.fromhex(header), Reader.varint)


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(DecodeError):
        decode_exact(bytes.fromhex("0100"), Reader.varint)


def test_length_bounded_by_input() -> None:
    with pytest.raises(DecodeError):
        Reader(bytes.fromhex("05") + b"abcd").opaque()
    with pytest.raises(DecodeError):
        Reader(bytes.fromhex("bfffffff")).vector(Reader.uint8)


@pytest.mark.parametrize("value", [-1, 1 << 30])
def test_out_of_range_encode(value: int) -> None:
    with pytest.raises(ValueError):
        encode_varint(value)


def test_vector_item_must_consume_bytes() -> None:
    def read_nothing(r: Reader) -> int:
        return 0

    with pytest.raises(DecodeError):
        Reader(b"\x02ab").vector(read_nothing)
