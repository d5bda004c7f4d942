"""NetworkLayer messages (node/network/wire.py): exact bytes, strict decoding."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.channels import envelope as channel_envelope
from node.core.errors import SpacePandaError
from node.network import wire as N
from node.network.wire import AckMsg, EnvelopeMsg, NetworkError, decode_net, envelope_id
from tests.node.channels.strategies import mutations, prop

ids20 = st.binary(min_size=20, max_size=20)
net_messages = st.one_of(
    st.builds(EnvelopeMsg, st.binary(min_size=1, max_size=3000)),
    st.builds(AckMsg, st.lists(ids20, min_size=1, max_size=40).map(tuple)),
)
SAMPLES = {"envelope": EnvelopeMsg(b"\x01" + bytes(511)),
           "ack": AckMsg((bytes(20), bytes(range(20)))),
           "ack-one": AckMsg((bytes(range(20, 40)),))}


def test_envelope_msg_known_bytes() -> None:
    # version 1 || kind 1 || the envelope
    assert EnvelopeMsg(b"\xaa\xbb").encode() == bytes.fromhex("0101aabb")


def test_ack_msg_known_bytes() -> None:
    # version 1 || kind 2 || the 20-byte ids back to back
    ids = (bytes(20), bytes(range(20)))
    assert AckMsg(ids).encode().hex() == "0102" + "00" * 20 + bytes(range(20)).hex()


def test_protocol_name_and_limits() -> None:
    assert (N.PROTOCOL, N.VERSION) == ("sp/env/1", 1)
    assert (N.ENVELOPE_ID_LEN, N.MAX_ACK_IDS) == (20, 1024)
    # The network layer carries any envelope the channel layer can make.
    assert N.MAX_ENVELOPE == channel_envelope.MAX_ENVELOPE


@pytest.mark.parametrize("ids", [(), (bytes(19),), (bytes(20), bytes(21)),
                                 (bytes(20),) * (N.MAX_ACK_IDS + 1)])
def test_ack_msg_refuses_bad_ids_locally(ids: tuple[bytes, ...]) -> None:
    with pytest.raises(ValueError):
        AckMsg(ids)


def test_network_error_is_a_spacepanda_error() -> None:
    assert issubclass(NetworkError, SpacePandaError)


def test_envelope_id_is_the_channel_layers() -> None:
    env = b"\x01" + bytes(511)
    assert envelope_id(env) == hashlib.sha256(env).digest()[:20]
    assert envelope_id(env) == channel_envelope.envelope_id(env)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_round_trip(name: str) -> None:
    x = SAMPLES[name]
    assert decode_net(x.encode()) == x
    assert decode_net(x.encode()).encode() == x.encode()


@prop(200)
@given(net_messages)
def test_round_trip_property(x: Any) -> None:
    data = x.encode()
    assert decode_net(data) == x
    assert decode_net(data).encode() == data


def test_largest_envelope_and_ack_decode() -> None:
    big = EnvelopeMsg(bytes(N.MAX_ENVELOPE))
    assert decode_net(big.encode()) == big
    many = AckMsg(tuple(i.to_bytes(20, "big") for i in range(N.MAX_ACK_IDS)))
    assert decode_net(many.encode()) == many


@pytest.mark.parametrize(
    "data",
    [
        "", "01", "0101",  # too short: an envelope has at least one byte
        "000101", "020101", "ff0101",  # other versions
        "010001", "010301", "01ff01",  # other kinds
        "0102" + "00" * 19, "0102" + "00" * 21, "0102" + "00" * 39,  # not whole ids
        "0102",  # no ids
    ],
)
def test_bad_messages_raise_network_error(data: str) -> None:
    with pytest.raises(NetworkError):
        decode_net(bytes.fromhex(data))


def test_size_limits() -> None:
    assert decode_net(b"\x01\x01\x00") == EnvelopeMsg(b"\x00")
    with pytest.raises(NetworkError):
        decode_net(b"\x01\x01" + bytes(N.MAX_ENVELOPE + 1))
    with pytest.raises(NetworkError):
        decode_net(b"\x01\x02" + bytes(20 * (N.MAX_ACK_IDS + 1)))


@pytest.mark.parametrize("value", [bytearray(b"\x01\x01\x00"), memoryview(b"\x01\x01\x00"),
                                   "\x01\x01\x00", None, 5])
def test_non_bytes_input_raises_network_error(value: Any) -> None:
    with pytest.raises(NetworkError):
        decode_net(value)


# -- random and mutated input -------------------------------------------------------------


@prop(300)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_network_error(data: bytes) -> None:
    with contextlib.suppress(NetworkError):
        decode_net(data)


@prop(300)
@given(st.integers(0, 3), st.integers(0, 4), st.integers(0, 3 * 20 + 3).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)))
def test_random_headers_and_bodies_raise_only_network_error(version: int, kind: int,
                                                           body: bytes) -> None:
    data = bytes((version, kind)) + body
    valid = version == 1 and body and (kind == 1 or (kind == 2 and len(body) % 20 == 0))
    try:
        x = decode_net(data)
    except NetworkError:
        assert not valid
        return
    assert valid and x.encode() == data


def _bad_mutant(data: bytes) -> bytes | None:
    for m in mutations(data):
        try:
            x = decode_net(m)
        except NetworkError:
            continue
        if x.encode() != m:
            return m
    return None


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_single_byte_mutations_raise_or_re_encode_exactly(name: str) -> None:
    assert _bad_mutant(SAMPLES[name].encode()) is None


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_single_byte_mutations_raise_only_network_error(name: str) -> None:
    for m in mutations(SAMPLES[name].encode()):
        with contextlib.suppress(NetworkError):
            decode_net(m)
