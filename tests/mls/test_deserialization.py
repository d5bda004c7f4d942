"""MLS variable-length headers: deserialization.json plus the encodings RFC 9420 forbids."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls.codec import Reader, Writer, decode_exact, encode_varint
from mls.errors import DecodeError
from tests.vectors import vector_params

VECTOR = "mls/deserialization.json"
CASES = vector_params(VECTOR)


@pytest.mark.parametrize("case", CASES)
def test_vlbytes_header(case: dict[str, Any]) -> None:
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


def _reference_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """Textbook RFC 9420 varint: (value, new position), or None when not acceptable."""
    if pos >= len(data):
        return None
    size = {0: 1, 1: 2, 2: 4}.get(data[pos] >> 6)
    if size is None or pos + size > len(data):
        return None
    value = int.from_bytes(data[pos : pos + size], "big") & ((1 << (8 * size - 2)) - 1)
    if value < {1: 0, 2: 1 << 6, 4: 1 << 14}[size]:  # minimal form only
        return None
    return value, pos + size


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 70))
def test_reader_matches_reference_on_random_bytes(data: bytes, max_len: int) -> None:
    """Fast paths and the textbook reading agree: same values, same bytes, same refusals."""
    ref = _reference_varint(data, 0)
    r = Reader(data)
    if ref is None:
        with pytest.raises(DecodeError):
            r.varint()
    else:
        assert (r.varint(), r.position) == ref
    # opaque<V> with a limit: accepted iff the header is valid, within the limit and backed.
    r = Reader(data)
    if ref is None or ref[0] > max_len or ref[1] + ref[0] > len(data):
        with pytest.raises(DecodeError):
            r.opaque(max_len)
    else:
        assert r.opaque(max_len) == data[ref[1] : ref[1] + ref[0]]
        assert r.remaining == len(data) - ref[1] - ref[0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_opaque_vector_round_trip(items: list[bytes]) -> None:
    w = Writer()
    w.vector(items, Writer.opaque)
    w.uint8(7).uint16(0x1234).uint32(0xDEADBEEF).uint64(2**64 - 1)
    data = w.getvalue()
    r = Reader(bytearray(data))  # any bytes-like input gives bytes back
    got = r.vector(Reader.opaque)
    assert got == items and all(type(x) is bytes for x in got)
    assert (r.uint8(), r.uint16(), r.uint32(), r.uint64()) == (7, 0x1234, 0xDEADBEEF, 2**64 - 1)
    r.finish()
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            short = Reader(data[:cut])
            short.vector(Reader.opaque)
            short.uint8(), short.uint16(), short.uint32(), short.uint64()


def test_fast_paths_keep_limits_and_windows() -> None:
    assert Reader(b"\x03abc").opaque(3) == b"abc"
    with pytest.raises(DecodeError):
        Reader(b"\x03abc").opaque(2)  # 1-byte length above the limit
    with pytest.raises(DecodeError):
        Reader(b"\x40\x40" + bytes(64)).opaque(63)  # 2-byte length above the limit
    with pytest.raises(DecodeError):
        Reader(b"\x03ab").opaque()
    with pytest.raises(DecodeError):
        Reader(b"\x02\x01").vector(Reader.opaque)  # item runs past the vector's end
    # A sub-window never reads past its end even though the underlying bytes go on.
    r = Reader(b"\x02abcdef", 0, 3)
    assert r.opaque() == b"ab"
    with pytest.raises(DecodeError):
        r.uint8()
    for start, end in ((0, 9), (5, 3), (-1, 2)):
        with pytest.raises(ValueError):
            Reader(b"abcdef", start, end)
    with pytest.raises(DecodeError):
        Reader(b"").uint8()
    with pytest.raises(DecodeError):
        Reader(b"\x05").optional(Reader.uint8)
