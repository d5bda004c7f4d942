"""Relay frames (node/network/gossip_wire.py): exact bytes, strict decoding, bounds."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.channels import envelope as channel_envelope
from node.core.errors import SpacePandaError
from node.network import gossip_wire as W
from node.network.gossip_wire import (
    GossipError,
    Graft,
    IHave,
    IWant,
    Prune,
    Publish,
    Stem,
    Subscribe,
    Unsubscribe,
    decode_frame,
    encode_frame,
    is_envelope,
    message_id,
)
from tests.node.channels.strategies import mutations, prop

ID_A, ID_B = bytes(range(20)), bytes(range(20, 40))
ENV = b"\x01" + bytes(511)

topics16 = st.integers(0, 0xFFFF)
ids = st.lists(st.binary(min_size=20, max_size=20), min_size=1, max_size=30,
               unique=True).map(tuple)
topic_lists = st.lists(topics16, min_size=1, max_size=20, unique=True).map(
    lambda t: tuple(sorted(t)))
envelopes = st.binary(min_size=1, max_size=600)
items = st.one_of(
    st.builds(Publish, topics16, envelopes),
    st.builds(Stem, topics16, envelopes),
    st.builds(IHave, topics16, ids),
    st.builds(IWant, ids),
    st.builds(Graft, topics16),
    st.builds(Prune, topics16, st.integers(0, 0xFFFF)),
    st.builds(Subscribe, topic_lists),
    st.builds(Unsubscribe, topic_lists),
)
frames = st.lists(items, min_size=1, max_size=8)

SAMPLES: dict[str, list[Any]] = {
    "publish": [Publish(0, ENV)],
    "stem": [Stem(3, ENV)],
    "control": [IHave(0, (ID_A, ID_B)), IWant((ID_B,)), Graft(1), Prune(2, 60)],
    "subs": [Subscribe((0, 1, 7)), Unsubscribe((2,))],
    "mixed": [Graft(0), Publish(0, b"\x01\x02"), IHave(0, (ID_A,)), Subscribe((0,))],
}


# -- known bytes --------------------------------------------------------------------------


def test_known_bytes_of_every_item() -> None:
    assert encode_frame([Publish(0x0102, b"\xaa\xbb")]).hex() == "01" "01" "0102" "00000002" "aabb"
    assert encode_frame([Stem(7, b"\xcc")]).hex() == "01" "02" "0007" "00000001" "cc"
    assert encode_frame([IHave(1, (ID_A,))]).hex() == "01" "03" "0001" "0001" + ID_A.hex()
    assert encode_frame([IWant((ID_A, ID_B))]).hex() == "01" "04" "0002" + ID_A.hex() + ID_B.hex()
    assert encode_frame([Graft(5)]).hex() == "01" "05" "0005"
    assert encode_frame([Prune(5, 60)]).hex() == "01" "06" "0005" "003c"
    assert encode_frame([Subscribe((0, 258))]).hex() == "01" "07" "0002" "0000" "0102"
    assert encode_frame([Unsubscribe((1,))]).hex() == "01" "08" "0001" "0001"
    # Several items share a frame, back to back after the one version byte.
    assert encode_frame([Graft(0), Prune(1, 0)]).hex() == "01" "05" "0000" "06" "0001" "0000"


def test_protocol_name_limits_and_error_type() -> None:
    assert (W.PROTOCOL, W.VERSION, W.MSG_ID_LEN) == ("sp/gossip/1", 1, 20)
    assert (W.MAX_IDS, W.MAX_TOPICS, W.MAX_ITEMS, W.MAX_FRAME) == (1024, 256, 256, 1 << 20)
    assert issubclass(GossipError, SpacePandaError)
    # The largest envelope and its item header fit one frame (one chunked transport payload).
    assert 1 + Publish(0, bytes(W.MAX_ENVELOPE)).size() <= W.MAX_FRAME


def test_envelope_rules_are_the_channel_layers() -> None:
    assert W.BUCKETS == channel_envelope.BUCKETS
    assert W.MAX_ENVELOPE == channel_envelope.MAX_ENVELOPE
    assert W.ENVELOPE_VERSION == channel_envelope.VERSION
    for n in [*range(1, 40000, 7), 65536, 65537, 1 << 19, W.MAX_ENVELOPE, W.MAX_ENVELOPE + 1]:
        assert is_envelope(b"\x01" + bytes(n - 1)) == channel_envelope.is_envelope_size(n), n
    assert not is_envelope(b"")
    assert not is_envelope(b"\x02" + bytes(511))
    assert is_envelope(ENV)


def test_message_id_is_the_envelope_id() -> None:
    assert message_id(ENV) == hashlib.sha256(ENV).digest()[:20]
    assert message_id(ENV) == channel_envelope.envelope_id(ENV)


def test_envelopes_do_not_print() -> None:
    assert "511" not in repr(Publish(0, ENV)) and "512 bytes" in repr(Publish(0, ENV))
    assert "512 bytes" in repr(Stem(0, ENV))


# -- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_round_trip(name: str) -> None:
    data = encode_frame(SAMPLES[name])
    assert decode_frame(data) == SAMPLES[name]
    assert encode_frame(decode_frame(data)) == data


@prop(300)
@given(frames)
def test_round_trip_property(x: list[Any]) -> None:
    data = encode_frame(x)
    assert decode_frame(data) == x
    assert encode_frame(decode_frame(data)) == data


def test_largest_items_decode() -> None:
    big = [Publish(0xFFFF, bytes(W.MAX_ENVELOPE))]
    assert decode_frame(encode_frame(big)) == big
    many = [IHave(0, tuple(i.to_bytes(20, "big") for i in range(W.MAX_IDS)))]
    assert decode_frame(encode_frame(many)) == many
    topics = [Subscribe(tuple(range(W.MAX_TOPICS)))]
    assert decode_frame(encode_frame(topics)) == topics
    grafts = [Graft(i) for i in range(W.MAX_ITEMS)]
    assert decode_frame(encode_frame(grafts)) == grafts


# -- local misuse -------------------------------------------------------------------------


@pytest.mark.parametrize("build", [
    lambda: Publish(0, b""), lambda: Publish(-1, ENV), lambda: Publish(1 << 16, ENV),
    lambda: Stem(0, bytes(W.MAX_ENVELOPE + 1)), lambda: IHave(0, ()),
    lambda: IHave(0, (bytes(19),)), lambda: IWant((ID_A, ID_A)),
    lambda: IWant(tuple(i.to_bytes(20, "big") for i in range(W.MAX_IDS + 1))),
    lambda: Prune(0, 1 << 16), lambda: Prune(0, -1), lambda: Subscribe(()),
    lambda: Subscribe((2, 1)), lambda: Unsubscribe((1, 1)),
    lambda: Subscribe(tuple(range(W.MAX_TOPICS + 1))),
])
def test_bad_items_are_refused_locally(build: Any) -> None:
    with pytest.raises(ValueError):
        build()


def test_bad_frames_are_refused_locally() -> None:
    with pytest.raises(ValueError):
        encode_frame([])
    with pytest.raises(ValueError):
        encode_frame([Graft(0)] * (W.MAX_ITEMS + 1))
    with pytest.raises(ValueError):
        encode_frame([Publish(0, bytes(W.MAX_ENVELOPE)), Publish(1, bytes(5000))])


# -- bad input from peers -------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    "", "01", "00" "0500", "02" "0500", "ff" "0500",  # empty, no items, other versions
    "01" "00", "01" "09" "0000", "01" "ff",  # unknown item types
    "01" "01" "0000" "000000", "01" "01" "0000" "00000000",  # truncated header, empty envelope
    "01" "01" "0000" "00000002" "aa",  # envelope shorter than its length
    "01" "01" "0000" "ffffffff" "aa",  # absurd length
    "01" "02" "0000",  # truncated stem
    "01" "03" "0000" "0000",  # IHAVE with no ids
    "01" "03" "0000" "0001" + "00" * 19,  # a short id
    "01" "03" "0000" "0002" + "00" * 40,  # a repeated id
    "01" "04" "0401" + "00" * 20,  # more ids than allowed (and than present)
    "01" "04" "0001" + "00" * 21,  # trailing byte after an IWANT: an unknown item type 0
    "01" "05" "00",  # truncated GRAFT
    "01" "06" "0000" "00",  # truncated PRUNE
    "01" "07" "0000",  # no topics
    "01" "07" "0002" "0001" "0001",  # repeated topic
    "01" "08" "0002" "0002" "0001",  # descending topics
    "01" "07" "0101" + "0000" * 257,  # too many topics
    "01" "07" "0002" "0001",  # fewer topics than counted
])
def test_bad_frames_raise_gossip_error(data: str) -> None:
    with pytest.raises(GossipError):
        decode_frame(bytes.fromhex(data))


def test_frame_bounds_raise_gossip_error() -> None:
    with pytest.raises(GossipError):
        decode_frame(b"\x01" + b"\x05\x00\x00" * (W.MAX_ITEMS + 1))
    with pytest.raises(GossipError):
        decode_frame(b"\x01\x01\x00\x00" + (W.MAX_FRAME).to_bytes(4, "big") + bytes(W.MAX_FRAME))


@pytest.mark.parametrize("value", [bytearray(b"\x01\x05\x00\x00"), memoryview(b"\x01\x05\x00\x00"),
                                   "\x01\x05\x00\x00", None, 5])
def test_non_bytes_input_raises_gossip_error(value: Any) -> None:
    with pytest.raises(GossipError):
        decode_frame(value)


@prop(400)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_gossip_error(data: bytes) -> None:
    with contextlib.suppress(GossipError):
        decode_frame(data)


@prop(400)
@given(st.integers(1, 9), st.binary(max_size=120))
def test_random_items_raise_only_gossip_error_or_re_encode(kind: int, body: bytes) -> None:
    data = bytes((1, kind)) + body
    try:
        x = decode_frame(data)
    except GossipError:
        return
    assert encode_frame(x) == data


@prop(200)
@given(frames, st.data())
def test_truncated_and_extended_frames(x: list[Any], data: st.DataObject) -> None:
    raw = encode_frame(x)
    cut = data.draw(st.integers(0, len(raw) - 1))
    for mutant in (raw[:cut], raw + data.draw(st.binary(min_size=1, max_size=3))):
        try:
            y = decode_frame(mutant)
        except GossipError:
            continue
        assert encode_frame(y) == mutant


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_single_byte_mutations_raise_or_re_encode_exactly(name: str) -> None:
    for m in mutations(encode_frame(SAMPLES[name])):
        try:
            y = decode_frame(m)
        except GossipError:
            continue
        assert encode_frame(y) == m
