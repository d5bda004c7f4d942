from __future__ import annotations

import os
from typing import Any

import pytest
import umsgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from dht.errors import DhtError
from dht.limits import (
    RttEstimator,
    is_local_address,
    subnet_key,
    valid_contact_address,
)
from dht.wire import (
    REQUEST,
    RESPONSE,
    WireError,
    encode_request,
    encode_response,
    pack,
    parse_datagram,
    unpack,
)

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_unpack_roundtrips_umsgpack(value: Any) -> None:
    assert unpack(umsgpack.packb(value)) == value


@settings(max_examples=300, deadline=None)
@given(values)
def test_pack_matches_umsgpack_byte_for_byte(value: Any) -> None:
    # Our writer replaced umsgpack on the hot path; peers running rpcudp must see no change.
    assert pack(value) == umsgpack.packb(value)
    assert unpack(pack(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        *(2**n + d for n in (7, 8, 15, 16, 31, 32, 63) for d in (-1, 0)),
        *(-(2**n) + d for n in (5, 7, 15, 31, 63) for d in (-1, 0) if -(2**n) + d >= -(2**63)),
        2**64 - 1,
        *("a" * n for n in (31, 32, 255, 256, 65535, 65536)),
        *(b"b" * n for n in (255, 256, 65535, 65536)),
        list(range(15)),
        list(range(16)),
        list(range(65536)),
        {str(i): i for i in range(16)},
    ],
)
def test_pack_length_boundaries_match_umsgpack(value: Any) -> None:
    assert pack(value) == umsgpack.packb(value)


def test_pack_refuses_what_the_wire_does_not_carry() -> None:
    for bad in (2**64, -(2**63) - 1, object(), {1.5}):
        with pytest.raises(DhtError):
            pack(bad)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_parse_random_only_typed_error(data: bytes) -> None:
    try:
        d = parse_datagram(data, 1400)
    except WireError as exc:
        assert exc.reason
        return
    assert d.kind in (REQUEST, RESPONSE) and len(d.msg_id) == 20


def test_depth_limit_is_exact() -> None:
    ok: Any = None
    for _ in range(6):
        ok = [ok]
    assert unpack(pack(ok)) == ok  # a value at depth 6
    with pytest.raises(WireError) as info:
        unpack(pack([ok]))  # depth 7
    assert info.value.reason == "too_deep"
    assert unpack(pack([[[[[[[]]]]]]])) == [[[[[[[]]]]]]]  # an empty container at depth 6


def test_request_roundtrip() -> None:
    mid = os.urandom(20)
    d = parse_datagram(encode_request(mid, "find_node", [b"a" * 20, b"b" * 20]), 1400)
    assert (d.kind, d.msg_id, d.body) == (REQUEST, mid, ["find_node", [b"a" * 20, b"b" * 20]])
    r = parse_datagram(encode_response(mid, {"value": b"x"}), 1400)
    assert r.kind == RESPONSE and r.body == {"value": b"x"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00" + bytes(20) + b"\x91" * 100 + b"\xc0", "too_deep"),
        (b"\x00" + bytes(20) + b"\xc4\xff", "bad_msgpack"),  # length beyond the datagram
        (b"\x00" + bytes(20) + b"\xdd\xff\xff\xff\xff", "bad_msgpack"),  # 4G-element array
        (b"\x00" + bytes(20) + b"\xcb" + bytes(8), "bad_msgpack"),  # floats are refused
        (b"\x01" + bytes(20) + b"\x91\xca" + bytes(4), "bad_msgpack"),  # also inside arrays
        (b"\x01" + bytes(20) + b"\xd4\x05\x00", "bad_msgpack"),  # fixext 1
        (b"\x01" + bytes(20) + b"\xc7\x00\x05", "bad_msgpack"),  # empty ext 8
        (b"\x01" + bytes(20) + b"\x91\xd6\xff" + bytes(4), "bad_msgpack"),  # timestamp ext
        (b"\x01" + bytes(20) + b"\xc1", "bad_msgpack"),  # never-used type byte
        (b"\x01" + bytes(20) + b"\x81\x01\x02", "bad_msgpack"),  # int map key
        (b"\x01" + bytes(20) + b"\x81\x90\x02", "bad_msgpack"),  # array map key
        (b"\x01" + bytes(20) + b"\x91" * 1300 + b"\xc0", "too_deep"),  # beyond msgpack's stack
        (b"\x01" + bytes(20) + b"\x81\xa1a" + b"\x91" * 7 + b"\xc0", "too_deep"),  # in a map
        (b"\x00" + bytes(20) + b"\x82\xa1a\x01\xa1a\x02", "bad_msgpack"),  # duplicate key
        (b"\x00" + bytes(20) + b"\xa2\xff\xfe", "bad_msgpack"),  # invalid utf-8
        (b"\x00" + bytes(20) + umsgpack.packb(["ping"]), "bad_arity"),
        (b"\x00" + bytes(20) + umsgpack.packb([1, []]), "bad_arity"),
        (b"\x00" + bytes(20) + umsgpack.packb(["a", []]) + b"\x00", "bad_msgpack"),
        (b"\x09" + bytes(20) + b"\xc0", "bad_kind"),
        (b"\x00" * 21, "too_short"),
        (b"\x00" * 2000, "oversized"),
    ],
)
def test_rejects(data: bytes, reason: str) -> None:
    with pytest.raises(WireError) as info:
        parse_datagram(data, 1400)
    assert info.value.reason == reason


def test_valid_contact_address() -> None:
    assert valid_contact_address("127.0.0.1", 1)
    assert valid_contact_address("::1", 65535, 6)
    for ip, port in [
        ("127.0.0.1", 0),
        ("127.0.0.1", 65536),
        ("127.0.0.1", True),
        ("127.0.0.1", "80"),
        ("0.0.0.0", 80),
        ("255.255.255.255", 80),
        ("224.0.0.1", 80),
        ("example.com", 80),
        (b"127.0.0.1", 80),
    ]:
        assert not valid_contact_address(ip, port), (ip, port)
    assert not valid_contact_address("::1", 80, 4)


def test_rtt_estimator_adapts() -> None:
    est = RttEstimator(initial=1.0, minimum=0.05, maximum=5.0)
    a = ("10.0.0.1", 1)
    assert est.timeout(a) == 1.0
    for _ in range(10):
        est.sample(a, 0.01)
    assert est.timeout(a) == 0.05
    assert est.timeout(("10.0.0.2", 1)) == 0.05  # unknown: derived from the global estimate
    est.backoff(a)
    assert est.timeout(a) > 0.05 or est.timeout(a) == 0.05
    for _ in range(20):
        est.sample(a, 9.0)
    assert est.timeout(a) == 5.0


def test_subnet_key() -> None:
    assert subnet_key("10.1.2.3", 24, 48) == "10.1.2.0/24"
    assert subnet_key("127.0.0.5", 32, 48) == "127.0.0.5/32"
    assert subnet_key("2001:db8::1", 24, 48) == "2001:db8::/48"


def test_is_local_address() -> None:
    local = ["127.0.0.1", "127.9.9.9", "10.0.0.1", "172.16.0.1", "172.31.255.255",
             "192.168.0.1", "100.64.0.1", "100.127.255.254", "169.254.10.1", "::1",
             "fc00::1", "fdff::1", "fe80::1", "::ffff:10.1.2.3", "::ffff:127.0.0.1"]
    public = ["8.8.8.8", "172.32.0.1", "172.15.255.255", "100.128.0.1", "100.63.255.255",
              "192.0.2.1", "198.51.100.7", "203.0.113.5", "2001:db8::1", "2600::1",
              "::ffff:8.8.8.8", "fec0::1", "not-an-ip", ""]
    assert [ip for ip in local if not is_local_address(ip)] == []
    assert [ip for ip in public if is_local_address(ip)] == []
