"""Storage encodings of channel state (node/channels/state.py): EpochNode, ChannelMeta and
SentMessage.

Local data, but decoded strictly all the same: a corrupt row must raise PayloadError, never
crash the node while it loads its channels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.channels.errors import PayloadError
from node.channels.state import (
    REMOVED_BLOB,
    ChannelMeta,
    ChannelStatus,
    EpochNode,
    PendingCommit,
    PendingIntent,
    SentMessage,
)
from node.core import cbor
from tests.node.channels.strategies import (
    ALICE,
    BOB,
    CAROL,
    UINT63,
    cbor_map,
    cbor_values,
    channel_metas,
    epoch_nodes,
    mutations,
    prop,
    sent_messages,
)

A, B, C = ALICE.peer_id, BOB.peer_id, CAROL.peer_id
T = 1_800_000_000.5  # a wall-clock time with an exact millisecond value

ROOT = EpochNode(bytes(16), 0, None, b"", None, 0, frozenset(), frozenset(), b"\x00")
NODE = EpochNode(
    state_id=bytes(range(16)),
    epoch=7,
    parent=bytes(range(1, 17)),
    commit_hash=bytes(32),
    committer=A,
    slot=2,
    removed=frozenset({B, C}),
    done=frozenset({bytes(16), bytes(range(16))}),
    blob=b"group state",
    welcomed=((bytes(16), B, bytes(32)),),
)
META = ChannelMeta(
    status=ChannelStatus.LEAVING,
    my_seq=12,
    sender_seq={A: 3, B: 9},
    profiles={A: "Alice", C: ""},
    intents={bytes(16): PendingIntent(b"intent", B, T)},
    pending_commit=PendingCommit(
        inner_id=bytes(16), commit_hash=bytes(32), sent_at=T, recipients=frozenset({B, C}),
        acked=frozenset({B}), acked_at=None, welcomes=((bytes(16), C, bytes(32)),), slot=1,
        removed=frozenset({A}),
    ),
    last_commit_at=T,
    display_name="me",
    profile_epoch=3,
)


def _raw(x: Any, **changes: Any) -> bytes:
    m = cbor_map(x)
    m.update(changes)
    return cbor.encode(m)


# -- exact bytes ------------------------------------------------------------------------


def test_root_epoch_node_known_bytes() -> None:
    # Keys in bytewise order of their encodings: shorter names first.
    expected = (
        "aa"
        "626964" "50" + "00" * 16
        + "64626c6f62" "4100"
        "64646f6e65" "80"
        "64736c6f74" "00"
        "6565706f6368" "00"
        "66636f6d6d6974" "40"
        "66706172656e74" "40"
        "6772656d6f766564" "80"
        "6877656c636f6d6564" "80"
        "69636f6d6d6974746572" "40"
    )
    assert ROOT.encode().hex() == expected
    assert EpochNode.decode(bytes.fromhex(expected)) == ROOT


def test_empty_meta_known_bytes() -> None:
    m = cbor_map(ChannelMeta())
    assert m == {"status": "active", "seq": 0, "senders": [], "profiles": [], "intents": [],
                 "pending": [], "last_commit": 0, "name": "", "profile_epoch": -1,
                 "recent": [], "sync_due": -1}


def test_removed_blob_is_one_byte() -> None:
    assert REMOVED_BLOB == b"\x00"
    node = EpochNode(bytes(16), 1, bytes(16), bytes(32), A, 0, frozenset(), frozenset(),
                     REMOVED_BLOB)
    assert EpochNode.decode(node.encode()) == node


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("node", [ROOT, NODE], ids=["root", "node"])
def test_epoch_node_samples_round_trip(node: EpochNode) -> None:
    assert EpochNode.decode(node.encode()) == node
    assert EpochNode.decode(node.encode()).encode() == node.encode()


def test_meta_sample_round_trips() -> None:
    assert ChannelMeta.decode(META.encode()) == META
    assert ChannelMeta.decode(META.encode()).encode() == META.encode()
    acked = ChannelMeta(pending_commit=PendingCommit(b"", b"", T, frozenset(), frozenset(), T,
                                                     (), 0, frozenset()))
    assert ChannelMeta.decode(acked.encode()) == acked


@prop(200)
@given(epoch_nodes)
def test_epoch_node_round_trip_property(node: EpochNode) -> None:
    data = node.encode()
    assert EpochNode.decode(data) == node
    assert EpochNode.decode(data).encode() == data


@prop(80)
@given(channel_metas())
def test_meta_round_trip_property(meta: ChannelMeta) -> None:
    data = meta.encode()
    assert ChannelMeta.decode(data) == meta
    assert ChannelMeta.decode(data).encode() == data


def test_times_are_stored_to_the_millisecond() -> None:
    meta = ChannelMeta(last_commit_at=T + 0.0004)
    assert ChannelMeta.decode(meta.encode()).last_commit_at == T


TRUNCATION = (
    "ChannelMeta.encode stores times as int(t * 1000), truncating: 1.001 s is stored as "
    "1000 ms (1.001 * 1000 == 1000.9999999999999), and from 2038 (t >= 2**31 s) about a "
    "quarter of exact-millisecond times lose 1 ms at every save; round() would keep them")


@pytest.mark.parametrize("ms", [1_001, 2_147_888_078_338, 2_147_695_749_562])
def test_exact_millisecond_times_survive_storage(ms: int) -> None:
    t = ms / 1000
    meta = ChannelMeta(intents={bytes(16): PendingIntent(b"", A, t)}, last_commit_at=t)
    again = ChannelMeta.decode(meta.encode())
    assert (again.intents[bytes(16)].seen_at, again.last_commit_at) == (t, t)


def test_present_day_millisecond_times_survive_storage() -> None:
    for ms in range(1_800_000_000_000, 1_800_000_002_000):
        meta = ChannelMeta(last_commit_at=ms / 1000)
        assert ChannelMeta.decode(meta.encode()).last_commit_at == ms / 1000


# -- strict decoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("id", bytes(15)), ("id", bytes(17)),
        ("epoch", -1), ("epoch", UINT63 + 1), ("epoch", True),
        ("parent", bytes(17)), ("parent", None),
        ("commit", bytes(33)),
        ("committer", bytes(33)), ("committer", b"\x02\xed" + bytes(32)),
        ("slot", (1 << 16) + 1), ("slot", -1),
        ("removed", [b"x"]), ("removed", b""), ("removed", [A.binary, 5]),
        ("done", [bytes(15)]), ("done", ["x" * 16]),
        ("blob", b""),
        ("welcomed", [[bytes(16), A.binary]]), ("welcomed", [[bytes(16), A.binary, "k"]]),
        ("welcomed", [[bytes(15), A.binary, b""]]), ("welcomed", [[bytes(16), b"", b""]]),
        ("welcomed", {}),
    ],
)
def test_epoch_node_field_checks(field: str, bad: Any) -> None:
    with pytest.raises(PayloadError):
        EpochNode.decode(_raw(NODE, **{field: bad}))


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("status", "paused"), ("status", 1), ("status", "x" * 17),
        ("seq", -1), ("seq", False),
        ("senders", [[A.binary]]), ("senders", [[A.binary, "3"]]), ("senders", [[b"", 3]]),
        ("senders", [[A.binary, True]]),
        ("profiles", [[A.binary, b"Alice"]]), ("profiles", [A.binary, "Alice"]),
        ("intents", [[bytes(16), b"", B.binary]]), ("intents", [[bytes(15), b"", B.binary, 1]]),
        ("intents", [[bytes(16), "p", B.binary, 1]]), ("intents", [[bytes(16), b"", B.binary,
                                                                     None]]),
        ("pending", [b"x"] * 8), ("pending", b""), ("pending", [b""] * 9),
        ("last_commit", -1), ("last_commit", UINT63 + 1),
        ("name", "n" * 257), ("name", b"me"),
        ("profile_epoch", -2), ("profile_epoch", UINT63 + 1),
    ],
)
def test_meta_field_checks(field: str, bad: Any) -> None:
    with pytest.raises(PayloadError):
        ChannelMeta.decode(_raw(META, **{field: bad}))


def test_meta_pending_commit_field_checks() -> None:
    good = cbor_map(META)["pending"]
    for i, bad in [(0, "x"), (2, "t"), (3, [b"x"]), (4, b""), (5, None), (6, [[b"", A.binary,
                                                                              b""]]),
                   (7, True), (8, [5])]:
        pending = list(good)
        pending[i] = bad
        with pytest.raises(PayloadError):
            ChannelMeta.decode(_raw(META, pending=pending))


@pytest.mark.parametrize("decode", [EpochNode.decode, ChannelMeta.decode, SentMessage.decode])
def test_wrong_field_sets_and_non_maps(decode: Callable[[bytes], Any]) -> None:
    for obj in ({}, [], b"", {"id": bytes(16)}, {**cbor_map(NODE), **cbor_map(META)},
                {**cbor_map(NODE), "extra": 1}, {**cbor_map(META), "extra": 1}):
        with pytest.raises(PayloadError):
            decode(cbor.encode(obj))
    for data in (b"", b"\xff", b"\xa0\x00", b"\xbf\xff"):
        with pytest.raises(PayloadError):
            decode(data)


# -- SentMessage (its own row in channel_sent) -------------------------------------------

SENT = SentMessage(bytes(range(16)), 4, b"content", bytes(range(16, 32)))


def test_sent_message_known_bytes() -> None:
    # [state_id, seq, content, inner_id]
    expected = "84" "50" + bytes(range(16)).hex() + "04" "47" + b"content".hex() + "50" + bytes(
        range(16, 32)).hex()
    assert SENT.encode().hex() == expected
    assert SentMessage.decode(bytes.fromhex(expected)) == SENT


@prop(200)
@given(sent_messages)
def test_sent_message_round_trip_property(x: SentMessage) -> None:
    data = x.encode()
    assert SentMessage.decode(data) == x
    assert SentMessage.decode(data).encode() == data


def test_a_text_record_leaves_its_content_to_the_message_row() -> None:
    text = SentMessage(bytes(16), 9, b"the Text encoding", bytes(range(16)), is_text=True)
    data = text.encode()
    assert cbor.decode(data)[2] == b""
    assert SentMessage.decode(data, b"the Text encoding") == text
    with pytest.raises(PayloadError, match="text is missing"):
        SentMessage.decode(data)
    # A record with its content ignores the rebuilt text.
    assert SentMessage.decode(SENT.encode(), b"other") == SENT


@prop(100)
@given(sent_messages, st.binary(min_size=1, max_size=50))
def test_text_record_round_trip_property(x: SentMessage, rebuilt: bytes) -> None:
    text = SentMessage(x.state_id, x.seq, rebuilt, x.inner_id, is_text=True)
    assert SentMessage.decode(text.encode(), rebuilt) == text
    assert SentMessage.decode(text.encode(), rebuilt).encode() == text.encode()


@pytest.mark.parametrize(
    "obj",
    [
        [bytes(16), 4, b"", bytes(16)],  # no content and no text to rebuild it from
        [bytes(15), 4, b"c", bytes(16)], [bytes(16), 4, b"c", bytes(17)],
        [bytes(16), True, b"c", bytes(16)], [bytes(16), "4", b"c", bytes(16)],
        [bytes(16), 4, "c", bytes(16)], [bytes(16), 4, b"c"], [bytes(16), 4, b"c", bytes(16), 0],
        [bytes(16), 4, [b"c"], bytes(16)],  # nesting: the record is one flat array
        {"state_id": bytes(16)}, b"", None,
    ],
)
def test_sent_message_field_checks(obj: Any) -> None:
    with pytest.raises(PayloadError):
        SentMessage.decode(cbor.encode(obj))


def test_sent_message_single_byte_mutations_raise_or_re_encode_exactly() -> None:
    assert _bad_mutant(SentMessage.decode, SENT.encode()) is None


# -- random and mutated input -------------------------------------------------------------

DECODERS = {"node": EpochNode.decode, "meta": ChannelMeta.decode, "sent": SentMessage.decode}


@prop(200)
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=300))
def test_random_bytes_raise_only_payload_error(name: str, data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        DECODERS[name](data)


@st.composite
def _perturbed_state(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid encoding with one value somewhere inside (top level, or nested in a list)
    replaced by an arbitrary one."""
    name = draw(st.sampled_from(["node", "meta"]))
    x = draw(epoch_nodes if name == "node" else channel_metas())
    m = cbor_map(x)
    key = draw(st.sampled_from(sorted(m)))
    value = m[key]
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        inner = value[i]
        if isinstance(inner, list) and inner and draw(st.booleans()):
            j = draw(st.integers(0, len(inner) - 1))
            inner = [*inner[:j], draw(cbor_values), *inner[j + 1 :]]
        else:
            inner = draw(cbor_values)
        m[key] = [*value[:i], inner, *value[i + 1 :]]
    else:
        m[key] = draw(cbor_values)
    return name, cbor.encode(m)


@prop(150)
@given(_perturbed_state())
def test_perturbed_fields_raise_only_payload_error(case: tuple[str, bytes]) -> None:
    name, data = case
    decode = DECODERS[name]
    try:
        x = decode(data)
    except PayloadError:
        return
    assert decode(x.encode()) == x


def _bad_mutant(decode: Callable[[bytes], Any], data: bytes) -> bytes | None:
    """The first mutant that decodes to something re-encoding to other bytes, if any."""
    for m in mutations(data):
        try:
            x = decode(m)
        except PayloadError:
            continue
        if x.encode() != m:
            return m
    return None


def test_epoch_node_single_byte_mutations_of_a_root_raise_or_re_encode_exactly() -> None:
    assert _bad_mutant(EpochNode.decode, ROOT.encode()) is None


def test_epoch_node_single_byte_mutations_raise_or_re_encode_exactly() -> None:
    assert _bad_mutant(EpochNode.decode, NODE.encode()) is None


def test_meta_single_byte_mutations_raise_or_re_encode_exactly() -> None:
    assert _bad_mutant(ChannelMeta.decode, META.encode()) is None


@pytest.mark.parametrize(("name", "x"), [
    ("node", ROOT), ("node", NODE), ("meta", ChannelMeta()), ("sent", SENT),
    ("meta", META),
])
def test_single_byte_mutations_raise_only_payload_error_and_re_decode(name: str, x: Any
                                                                       ) -> None:
    """The weaker property that does hold: a mutant raises PayloadError or decodes to a value
    that survives another encode/decode unchanged."""
    decode = DECODERS[name]
    for m in mutations(x.encode()):
        try:
            y = decode(m)
        except PayloadError:
            continue
        assert decode(y.encode()) == y
