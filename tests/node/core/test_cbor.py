"""Strict canonical CBOR: canonical encoding, strict decoding, hostile input."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.core import cbor
from node.core.errors import DecodeError

# -- strategies -------------------------------------------------------------------------

ints = st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
# Bias toward the head-size boundaries where minimal encoding matters.
edge_ints = st.sampled_from(
    [
        0,
        23,
        24,
        255,
        256,
        65535,
        65536,
        2**32 - 1,
        2**32,
        2**64 - 1,
        -1,
        -24,
        -25,
        -256,
        -257,
        -(2**32),
        -(2**32) - 1,
        -(2**64),
    ]
)
scalars = (
    st.none() | st.booleans() | ints | edge_ints | st.binary(max_size=64) | st.text(max_size=32)
)
keys = ints | st.binary(max_size=16) | st.text(max_size=16)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)


def _lists(x: Any) -> Any:
    """What decode returns for x: tuples become lists."""
    if isinstance(x, (list, tuple)):
        return [_lists(v) for v in x]
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    return x


def _depth(x: Any) -> int:
    if isinstance(x, list):
        return 1 + max((_depth(v) for v in x), default=0)
    if isinstance(x, dict):
        return 1 + max((_depth(v) for v in x.values()), default=0)
    return 0


# -- encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hex_"),
    [
        # RFC 8949 appendix A examples within our subset.
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (100, "1864"),
        (1000, "1903e8"),
        (1000000, "1a000f4240"),
        (1000000000000, "1b000000e8d4a51000"),
        (18446744073709551615, "1bffffffffffffffff"),
        (-18446744073709551616, "3bffffffffffffffff"),
        (-1, "20"),
        (-1000, "3903e7"),
        (False, "f4"),
        (True, "f5"),
        (None, "f6"),
        (b"", "40"),
        (b"\x01\x02\x03\x04", "4401020304"),
        ("", "60"),
        ("IETF", "6449455446"),
        ("\u00fc", "62c3bc"),
        ([], "80"),
        ([1, [2, 3], [4, 5]], "8301820203820405"),
        ({}, "a0"),
        ({1: 2, 3: 4}, "a201020304"),
        ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    ],
)
def test_encode_known_answers(value: Any, hex_: str) -> None:
    assert cbor.encode(value).hex() == hex_
    assert cbor.decode(bytes.fromhex(hex_)) == value


def test_keys_sorted_bytewise_not_length_first() -> None:
    # RFC 8949 4.2.1: 0x1a... (int 1000000) sorts before 0x61... ("b") although it is longer.
    # cbor2's canonical mode uses the older length-first rule and would put "b" first.
    enc = cbor.encode({"b": 1, 1000000: 2})
    assert enc.hex() == "a21a000f424002616201"
    assert cbor2.dumps({"b": 1, 1000000: 2}, canonical=True) != enc
    assert cbor.decode(enc) == {"b": 1, 1000000: 2}
    # Mixed key types: ints (0x0_/0x2_) < bytes (0x4_) < text (0x6_).
    assert cbor.encode({"a": 0, b"a": 0, -1: 0, 1: 0}).hex() == "a4010020004161006161" + "00"


def test_tuple_encodes_as_array() -> None:
    assert cbor.encode((1, 2)) == cbor.encode([1, 2])


def test_intenum_encodes_as_int() -> None:
    import enum

    class E(enum.IntEnum):
        X = 7

    assert cbor.encode(E.X) == b"\x07"


@pytest.mark.parametrize(
    "value",
    [1.0, float("nan"), {1.5: 1}, [0.0], object(), {1, 2}, 1j, {(1, 2): 3}, {True: 1}, {None: 1}],
    ids=repr,
)
def test_encode_rejects_unsupported_types(value: Any) -> None:
    with pytest.raises(TypeError):
        cbor.encode(value)


@pytest.mark.parametrize("value", [2**64, -(2**64) - 1, "\ud800"])
def test_encode_rejects_out_of_range(value: Any) -> None:
    with pytest.raises(ValueError):
        cbor.encode(value)


def test_encode_rejects_self_reference() -> None:
    x: list[Any] = []
    x.append(x)
    with pytest.raises(ValueError):
        cbor.encode(x)


# -- strict decoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_", "why"),
    [
        ("", "truncated"),
        ("1817", "non-minimal"),  # 23 in a 1-byte argument
        ("190017", "non-minimal"),
        ("1900ff", "non-minimal"),
        ("1a0000ffff", "non-minimal"),
        ("1b00000000ffffffff", "non-minimal"),
        ("3817", "non-minimal"),
        ("5801ff", "non-minimal"),  # 1-byte bytes with a long length
        ("780161", "non-minimal"),
        ("980101", "non-minimal"),
        ("b8010101", "non-minimal"),
        ("a2616201616101", "non-canonical"),  # keys "b","a" out of order
        ("a2616101616101", "duplicate"),  # duplicate key "a"
        ("a201010101", "duplicate"),  # duplicate int key 1
        ("a2020101", "container"),  # 4 items declared, 3 bytes left
        ("9f01ff", "indefinite"),
        ("5f4101ff", "indefinite"),
        ("7f6161ff", "indefinite"),
        ("bf616101ff", "indefinite"),
        ("ff", "break"),
        ("c11a514b67b0", "tags"),
        ("c249010000000000000000", "tags"),  # bignum
        ("f90000", "float"),
        ("fa3f800000", "float"),
        ("fb3ff0000000000000", "float"),
        ("f7", "simple"),  # undefined
        ("f0", "simple"),
        ("f820", "simple"),
        ("1c", "reserved"),
        ("5d", "reserved"),
        ("0000", "trailing"),
        ("8101ff", "trailing"),
        ("62c328", "UTF-8"),
        ("63eda080", "UTF-8"),  # encoded surrogate
        ("61", "truncated"),
        ("4201", "truncated"),
        ("19", "truncated"),
        ("1b000000", "truncated"),
        ("82", "container"),
        ("9b0000000100000000", "container"),
        ("a18001", "keys"),  # array as key
        ("a1a001", "keys"),  # map as key
        ("a1f401", "keys"),  # bool as key
        ("a1f601", "keys"),  # null as key
    ],
)
def test_decode_rejects(hex_: str, why: str) -> None:
    with pytest.raises(DecodeError) as info:
        cbor.decode(bytes.fromhex(hex_))
    assert why.lower() in str(info.value).lower()


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError):
        cbor.decode("00")  # type: ignore[arg-type]


def test_depth_limit_exact() -> None:
    nested: Any = []
    for _ in range(15):
        nested = [nested]
    assert _depth(nested) == 16
    assert cbor.decode(cbor.encode(nested)) == nested
    with pytest.raises(DecodeError, match="deeper"):
        cbor.decode(cbor.encode([nested]))
    assert cbor.decode(cbor.encode([nested]), max_depth=17) == [nested]
    with pytest.raises(DecodeError, match="deeper"):
        cbor.decode(cbor.encode({"a": 1}), max_depth=0)
    assert cbor.decode(b"\x01", max_depth=0) == 1


def test_item_limit_exact() -> None:
    data = cbor.encode(list(range(9)))  # 10 items: the array and 9 ints
    assert cbor.decode(data, max_items=10) == list(range(9))
    with pytest.raises(DecodeError, match="items"):
        cbor.decode(data, max_items=9)
    m = cbor.encode({1: 2})  # map + key + value
    assert cbor.decode(m, max_items=3) == {1: 2}
    with pytest.raises(DecodeError, match="items"):
        cbor.decode(m, max_items=2)


def test_size_limit_exact() -> None:
    data = cbor.encode(b"x" * 100)
    assert cbor.decode(data, max_size=len(data)) == b"x" * 100
    with pytest.raises(DecodeError, match="limit"):
        cbor.decode(data, max_size=len(data) - 1)


def test_hostile_deep_nesting_is_cheap() -> None:
    # 1 MB of array-of-one heads: must fail on depth fast, no RecursionError.
    data = b"\x81" * 1_000_000 + b"\x00"
    with pytest.raises(DecodeError, match="deeper"):
        cbor.decode(data, max_size=len(data))
    # Callers cannot lift the depth limit to a level that would stress cbor2's recursion.
    with pytest.raises(ValueError):
        cbor.decode(data, max_size=len(data), max_depth=2_000_000, max_items=2_000_000)
    assert cbor.decode(b"\x81" * 64 + b"\x00", max_depth=64) is not None


def test_huge_declared_lengths_rejected_without_allocation() -> None:
    for hex_ in (
        "5bffffffffffffffff",
        "7bffffffffffffffff",
        "9bffffffffffffffff",
        "bbffffffffffffffff",
    ):
        with pytest.raises(DecodeError):
            cbor.decode(bytes.fromhex(hex_))


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = cbor.encode({"a": [1, b"x"]})
    assert cbor.decode(bytearray(data)) == {"a": [1, b"x"]}
    assert cbor.decode(memoryview(data)) == {"a": [1, b"x"]}


# -- properties -------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_roundtrip(value: Any) -> None:
    enc = cbor.encode(value)
    expect = _lists(value)
    if _depth(expect) > cbor.DEFAULT_MAX_DEPTH:
        return
    assert cbor.decode(enc, max_size=1 << 20) == expect
    # Canonical: decoding and re-encoding reproduces the bytes.
    assert cbor.encode(cbor.decode(enc, max_size=1 << 20)) == enc


@settings(max_examples=200)
@given(values)
def test_matches_cbor2_on_content(value: Any) -> None:
    # An independent decoder reads the same value from our bytes.
    assert cbor2.loads(cbor.encode(value)) == _lists(value)


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_random_bytes_only_decode_error(data: bytes) -> None:
    try:
        obj = cbor.decode(data)
    except DecodeError:
        return
    assert cbor.encode(obj) == data


@settings(max_examples=300)
@given(values, st.data())
def test_mutations_only_decode_error(value: Any, data: st.DataObject) -> None:
    enc = bytearray(cbor.encode(value))
    if not enc:
        return
    i = data.draw(st.integers(0, len(enc) - 1))
    enc[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(enc)))
    mutated = bytes(enc[:cut])
    try:
        obj = cbor.decode(mutated, max_size=1 << 20)
    except DecodeError:
        return
    assert cbor.encode(obj) == mutated


@settings(max_examples=200)
@given(st.dictionaries(keys, st.integers(0, 10), min_size=2, max_size=8), st.randoms())
def test_unsorted_maps_rejected(d: dict[Any, int], rnd: Any) -> None:
    pairs = [(cbor.encode(k), cbor.encode(v)) for k, v in d.items()]
    canonical = sorted(pairs)
    rnd.shuffle(pairs)
    body = b"".join(k + v for k, v in pairs)
    data = bytes([0xA0 | len(pairs)]) + body
    if pairs == canonical:
        assert cbor.decode(data) == d
    else:
        with pytest.raises(DecodeError):
            cbor.decode(data)


@settings(max_examples=200)
@given(st.integers(0, (1 << 64) - 1), st.sampled_from([0, 1, 2, 3, 4, 5]))
def test_non_minimal_heads_rejected(arg: int, major: int) -> None:
    # Re-encode ``arg`` with every wider head than needed; all must be refused.
    minimal = cbor._head(major, arg)
    for ai, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg >= 1 << (8 * width) or len(minimal) >= 1 + width:
            continue
        head = bytes([(major << 5) | ai]) + arg.to_bytes(width, "big")
        with pytest.raises(DecodeError):
            cbor.decode(head + b"\x00" * (arg if major in (2, 3) and arg < 64 else 0))


_text_keyed_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=30), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400)
@given(_text_keyed_values)
def test_fast_encoder_gives_the_canonical_bytes(obj: object) -> None:
    """cbor2's C encoder (used for text-keyed maps) and ours agree byte for byte."""
    from node.core.cbor import _encode_item

    assert cbor.encode(obj) == _encode_item(obj, 0)
    assert cbor.decode(cbor.encode(obj), max_depth=64, max_size=1 << 20) == _lists(obj)


def _lists(obj: object) -> object:
    if isinstance(obj, tuple | list):
        return [_lists(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    return obj
