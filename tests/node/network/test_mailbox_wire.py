"""Mailbox messages (node/network/mailbox_wire.py): exact bytes, strict decoding, bounds."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.core.errors import SpacePandaError
from node.network import mailbox_wire as W
from node.network.mailbox_wire import (
    Batch,
    Fetch,
    MailboxWireError,
    Status,
    Store,
    Stored,
    decode_mailbox,
)
from node.network.wire import NetworkError
from tests.node.channels.strategies import mutations, prop

KEY = bytes(range(20))
REFUSALS = [s for s in Status if s not in W.ACCEPTED]

request_ids = st.integers(0, W.MAX_REQUEST_ID)
cursors = st.integers(0, W.MAX_CURSOR)
keys = st.binary(min_size=20, max_size=20)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    rid = draw(request_ids)
    status = draw(st.sampled_from([Status.OK, Status.RATE_LIMITED, Status.UNAVAILABLE]))
    if status != Status.OK:
        return Batch(rid, status, (), 0, False)
    seqs = sorted(draw(st.sets(st.integers(1, W.MAX_CURSOR), max_size=8)))
    items = tuple((s, draw(st.binary(min_size=1, max_size=40))) for s in seqs)
    last = seqs[-1] if seqs else 0
    next_cursor = draw(st.integers(last, W.MAX_CURSOR))
    more = bool(items) and draw(st.booleans())
    return Batch(rid, status, items, next_cursor, more)


@st.composite
def storeds(draw: st.DrawFn) -> Stored:
    status = draw(st.sampled_from(list(Status)))
    cursor = draw(st.integers(1, W.MAX_CURSOR)) if status in W.ACCEPTED else 0
    return Stored(draw(request_ids), status, cursor)


messages = st.one_of(
    st.builds(Store, request_ids, keys, st.integers(0, W.MAX_DAY),
              st.binary(min_size=1, max_size=600)),
    storeds(),
    st.builds(Fetch, request_ids, keys, cursors, st.integers(1, W.MAX_LIMIT)),
    batches(),
)

SAMPLES: dict[str, Any] = {
    "store": Store(7, KEY, 20_000, b"\x01" + bytes(511)),
    "stored": Stored(7, Status.OK, 3),
    "stored-duplicate": Stored(8, Status.DUPLICATE, 1),
    "stored-refused": Stored(9, Status.KEY_FULL, 0),
    "fetch": Fetch(10, KEY, 2, 64),
    "batch": Batch(10, Status.OK, ((3, b"\xaa" * 5), (9, b"\xbb")), 9, True),
    "batch-empty": Batch(11, Status.OK, (), 4, False),
    "batch-refused": Batch(12, Status.RATE_LIMITED, (), 0, False),
}


def test_names_and_limits() -> None:
    assert (W.PROTOCOL, W.VERSION, W.KEY_LEN, W.MAX_LIMIT) == ("sp/mbx/1", 1, 20, 256)
    assert W.MAX_MESSAGE == 1 << 20
    # The largest envelope fits a STORE and a one-item BATCH in one transport payload.
    assert W.STORE_OVERHEAD + W.MAX_ENVELOPE <= W.MAX_MESSAGE
    assert W.BATCH_OVERHEAD + W.ITEM_OVERHEAD + W.MAX_ENVELOPE <= W.MAX_MESSAGE
    assert issubclass(MailboxWireError, NetworkError)
    assert issubclass(MailboxWireError, SpacePandaError)
    assert [int(s) for s in Status] == list(range(9))


def test_known_bytes() -> None:
    rid = "0000000000000007"
    assert SAMPLES["store"].encode().hex() == (
        "0101" + rid + KEY.hex() + "00004e20" + "01" + "00" * 511)
    assert SAMPLES["stored"].encode().hex() == "0102" + rid + "00" + "0000000000000003"
    assert Stored(7, Status.KEY_FULL, 0).encode().hex() == "0102" + rid + "05" + "00" * 8
    assert SAMPLES["fetch"].encode().hex() == (
        "0103" + "000000000000000a" + KEY.hex() + "0000000000000002" + "0040")
    assert SAMPLES["batch"].encode().hex() == (
        "0104" + "000000000000000a" + "00" + "01" + "0000000000000009" + "0002"
        + "0000000000000003" + "00000005" + "aa" * 5
        + "0000000000000009" + "00000001" + "bb")
    assert SAMPLES["batch-refused"].encode().hex() == (
        "0104" + "000000000000000c" + "04" + "00" + "00" * 8 + "0000")


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_round_trip(name: str) -> None:
    x = SAMPLES[name]
    assert decode_mailbox(x.encode()) == x
    assert decode_mailbox(x.encode()).encode() == x.encode()


@prop(300)
@given(messages)
def test_round_trip_property(x: Any) -> None:
    data = x.encode()
    assert decode_mailbox(data) == x
    assert decode_mailbox(data).encode() == data


def test_largest_messages() -> None:
    big = Store(W.MAX_REQUEST_ID, KEY, W.MAX_DAY, bytes(W.MAX_ENVELOPE))
    assert decode_mailbox(big.encode()) == big
    one = Batch(1, Status.OK, ((W.MAX_CURSOR, bytes(W.MAX_ENVELOPE)),), W.MAX_CURSOR, False)
    assert decode_mailbox(one.encode()) == one
    many = Batch(1, Status.OK, tuple((i + 1, b"x") for i in range(W.MAX_LIMIT)), 999, True)
    assert decode_mailbox(many.encode()) == many


@pytest.mark.parametrize(
    "build",
    [
        lambda: Store(-1, KEY, 1, b"x"),
        lambda: Store(1 << 64, KEY, 1, b"x"),
        lambda: Store(1, KEY[:19], 1, b"x"),
        lambda: Store(1, KEY, 1 << 32, b"x"),
        lambda: Store(1, KEY, 1, b""),
        lambda: Store(1, KEY, 1, bytes(W.MAX_ENVELOPE + 1)),
        lambda: Store(True, KEY, 1, b"x"),
        lambda: Stored(1, Status.OK, 0),
        lambda: Stored(1, Status.RATE_LIMITED, 5),
        lambda: Stored(1, 0, 1),
        lambda: Fetch(1, KEY, 0, 0),
        lambda: Fetch(1, KEY, 0, W.MAX_LIMIT + 1),
        lambda: Fetch(1, KEY, -1, 1),
        lambda: Fetch(1, KEY, 1 << 63, 1),
        lambda: Batch(1, Status.KEY_FULL, (), 0, False),
        lambda: Batch(1, Status.RATE_LIMITED, ((1, b"x"),), 1, False),
        lambda: Batch(1, Status.RATE_LIMITED, (), 3, False),
        lambda: Batch(1, Status.OK, ((2, b"x"), (2, b"y")), 2, False),
        lambda: Batch(1, Status.OK, ((3, b"x"), (2, b"y")), 3, False),
        lambda: Batch(1, Status.OK, ((0, b"x"),), 0, False),
        lambda: Batch(1, Status.OK, ((5, b"x"),), 4, False),
        lambda: Batch(1, Status.OK, ((5, b""),), 5, False),
        lambda: Batch(1, Status.OK, (), 0, True),
        lambda: Batch(1, Status.OK, [(1, b"x")], 1, False),  # type: ignore[arg-type]
        lambda: Batch(1, Status.OK, ((1, bytes(W.MAX_ENVELOPE)), (2, bytes(W.MAX_ENVELOPE))),
                      2, False),
        lambda: Batch(1, Status.OK, tuple((i + 1, b"x") for i in range(W.MAX_LIMIT + 1)),
                      999, False),
    ],
)
def test_bad_fields_are_refused_locally(build: Any) -> None:
    with pytest.raises(ValueError):
        build()


def _hex(*parts: str) -> bytes:
    return bytes.fromhex("".join(parts))


RID = "00" * 8
C = "00" * 7


@pytest.mark.parametrize(
    "data",
    [
        b"", b"\x01", _hex("0001"), _hex("0005"), _hex("ff01"),
        _hex("0201", RID, KEY.hex(), "00000001", "01"),  # version 2
        _hex("0100", RID), _hex("0105", RID), _hex("01ff", RID),  # unknown kinds
        _hex("0101", RID, KEY.hex(), "00000001"),  # STORE without an envelope
        _hex("0101", RID, KEY.hex()[:-2]),  # truncated
        _hex("0102", RID, "00", C),  # STORED truncated
        _hex("0102", RID, "00", C, "0100"),  # trailing byte
        _hex("0102", RID, "09", C, "00"),  # unknown status
        _hex("0102", RID, "00", C, "00"),  # accepted with cursor 0
        _hex("0102", RID, "05", C, "01"),  # refused with a cursor
        _hex("0102", RID, "00", "80", "00" * 6, "01"),  # cursor beyond 63 bits
        _hex("0103", RID, KEY.hex(), C, "01", "0000"),  # limit 0
        _hex("0103", RID, KEY.hex(), C, "01", "0101"),  # limit 257
        _hex("0103", RID, KEY.hex(), C, "01", "0001", "00"),  # trailing
        _hex("0104", RID, "00", "02", C, "00", "0000"),  # unknown flag
        _hex("0104", RID, "00", "01", C, "00", "0000"),  # more without items
        _hex("0104", RID, "05", "00", C, "00", "0000"),  # a STORE status in a BATCH
        _hex("0104", RID, "04", "00", C, "01", "0000"),  # refused with a cursor
        _hex("0104", RID, "00", "00", C, "00", "0001"),  # an item missing
        _hex("0104", RID, "00", "00", C, "01", "0001", C, "01", "00000002", "aa"),  # short
        _hex("0104", RID, "00", "00", C, "01", "0001", C, "01", "00000000"),  # empty envelope
        _hex("0104", RID, "00", "00", C, "00", "0001", C, "01", "00000001", "aa"),  # cursor<seq
        _hex("0104", RID, "00", "00", C, "05", "0002", C, "05", "00000001", "aa",
             C, "05", "00000001", "bb"),  # seq repeated
        _hex("0104", RID, "00", "00", C, "05", "0101"),  # too many items
    ],
)
def test_bad_messages_raise_mailbox_wire_error(data: bytes) -> None:
    with pytest.raises(MailboxWireError):
        decode_mailbox(data)


def test_size_limits() -> None:
    head = _hex("0101", RID, KEY.hex(), "00000001")
    assert isinstance(decode_mailbox(head + bytes(W.MAX_ENVELOPE)), Store)
    with pytest.raises(MailboxWireError):
        decode_mailbox(head + bytes(W.MAX_ENVELOPE + 1))
    with pytest.raises(MailboxWireError):
        decode_mailbox(b"\x01\x04" + bytes(W.MAX_MESSAGE))
    # An item length beyond what is left of the message.
    with pytest.raises(MailboxWireError):
        decode_mailbox(_hex("0104", RID, "00", "00", C, "01", "0001", C, "01", "000ff000",
                            "aa" * 100))


@pytest.mark.parametrize("value", [bytearray(b"\x01\x02"), memoryview(b"\x01\x02"), "x", None])
def test_non_bytes_input_raises_mailbox_wire_error(value: Any) -> None:
    with pytest.raises(MailboxWireError):
        decode_mailbox(value)


# -- random and mutated input -------------------------------------------------------------


@prop(400)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_mailbox_wire_error(data: bytes) -> None:
    with contextlib.suppress(MailboxWireError):
        x = decode_mailbox(data)
        assert x.encode() == data


@prop(400)
@given(st.integers(0, 2), st.integers(0, 5), st.binary(max_size=120))
def test_random_bodies_raise_only_mailbox_wire_error(version: int, kind: int,
                                                     body: bytes) -> None:
    data = bytes((version, kind)) + body
    with contextlib.suppress(MailboxWireError):
        assert decode_mailbox(data).encode() == data


@prop(200)
@given(messages, st.data())
def test_mutated_messages_raise_only_mailbox_wire_error(x: Any, data: st.DataObject) -> None:
    raw = bytearray(x.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "grow"]))
        if op == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut" and raw:
            del raw[data.draw(st.integers(0, len(raw) - 1)):]
        else:
            raw += data.draw(st.binary(min_size=1, max_size=9))
    with contextlib.suppress(MailboxWireError):
        assert decode_mailbox(bytes(raw)).encode() == bytes(raw)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_single_byte_mutations_raise_or_re_encode_exactly(name: str) -> None:
    for m in mutations(SAMPLES[name].encode()):
        with contextlib.suppress(MailboxWireError):
            assert decode_mailbox(m).encode() == m
