"""What members say inside MLS (node/channels/content.py): exact bytes, strict decoding."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.channels import content as K
from node.channels.content import (
    AppHeader,
    ChannelInfo,
    CommitHeader,
    Intent,
    IntentOp,
    Profile,
    Text,
    decode_content,
)
from node.channels.errors import PayloadError
from node.core import cbor
from node.core.identity import PeerId
from tests.node.channels.strategies import (
    ALICE,
    BOB,
    CAROL,
    UINT63,
    app_headers,
    cbor_map,
    channel_infos,
    commit_headers,
    contents,
    field_maps,
    mutations,
    perturbed,
    prop,
)

A, B, C = ALICE.peer_id, BOB.peer_id, CAROL.peer_id
ID = bytes(range(16))

CONTENT_SAMPLES: dict[str, Any] = {
    "text": Text(ID, "hello, world", 1_800_000_000_000),
    "text-empty": Text(ID, "", 0),
    "profile": Profile("Alice"),
    "add": Intent(ID, IntentOp.ADD, B, b"key package", bytes(16), bytes(32)),
    "remove": Intent(ID, IntentOp.REMOVE, B),
    "admin": Intent(ID, IntentOp.ADMIN, C),
    "leave": Intent(ID, IntentOp.LEAVE),
}

# (decode, samples): the structures with their own decode classmethod.
HEADERS: dict[str, tuple[Callable[[bytes], Any], list[Any]]] = {
    "app": (AppHeader.decode, [AppHeader(1), AppHeader(UINT63)]),
    "commit": (CommitHeader.decode, [CommitHeader(), CommitHeader((ID, bytes(16)))]),
    "info": (ChannelInfo.decode, [ChannelInfo("garden", (A,)),
                                  ChannelInfo("g", tuple(sorted((A, B, C))))]),
}


def _raw(x: Any, **changes: Any) -> bytes:
    m = cbor_map(x)
    m.update(changes)
    return cbor.encode(m)


# -- exact bytes ------------------------------------------------------------------------


def test_app_header_known_bytes() -> None:
    # 0x01 || uint64 seq (binary: on every message's path)
    assert AppHeader(1).encode() == bytes.fromhex("01" "0000000000000001")
    assert AppHeader(0x0102030405060708).encode().hex() == "01" "0102030405060708"


@pytest.mark.parametrize(
    "data",
    ["010000000000000000",  # seq 0
     "018000000000000000",  # seq 2**63: above the range
     "01ffffffffffffffff",
     "020000000000000001", "000000000000000001",  # other prefixes
     "0100000000000001", "01000000000000000100", "01", ""],  # 7 and 9 bytes, nothing
)
def test_app_header_bad_bytes(data: str) -> None:
    with pytest.raises(PayloadError):
        AppHeader.decode(bytes.fromhex(data))


def test_app_header_extremes() -> None:
    assert AppHeader.decode(bytes.fromhex("010000000000000001")) == AppHeader(1)
    assert AppHeader.decode(bytes.fromhex("017fffffffffffffff")) == AppHeader(UINT63)


def test_text_known_bytes() -> None:
    # {"t": 1, "v": 1, "at": 1000, "id": h'00..0f', "prev": [], "seen": h'00' * 256,
    #  "text": "hi"}
    expected = ("a7" "6174" "01" "6176" "01" "6261741903e8" "626964" "50" + ID.hex()
                + "6470726576" "80" "647365656e" "590100" + "00" * 256
                + "6474657874" "626869")
    assert Text(ID, "hi", 1000).encode().hex() == expected


def test_leave_intent_known_bytes() -> None:
    # {"t": 3, "v": 1, "id": .., "kp": h'', "op": 4, "key": h'', "invite": h'', "target": h''}
    expected = ("a8" "6174" "03" "6176" "01" "626964" "50" + ID.hex() + "626b70" "40"
                "626f70" "04" "636b6579" "40" "66696e76697465" "40" "66746172676574" "40")
    assert Intent(ID, IntentOp.LEAVE).encode().hex() == expected


def test_channel_extension_is_a_private_use_type() -> None:
    assert 0xF000 <= K.CHANNEL_EXTENSION <= 0xFFFF


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONTENT_SAMPLES))
def test_content_samples_round_trip(name: str) -> None:
    x = CONTENT_SAMPLES[name]
    assert decode_content(x.encode()) == x
    assert decode_content(x.encode()).encode() == x.encode()


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_header_samples_round_trip(name: str) -> None:
    decode, samples = HEADERS[name]
    for x in samples:
        assert decode(x.encode()) == x
        assert decode(x.encode()).encode() == x.encode()


@prop(300)
@given(contents)
def test_content_round_trip_property(x: Any) -> None:
    data = x.encode()
    assert decode_content(data) == x
    assert decode_content(data).encode() == data


@prop(150)
@given(app_headers, commit_headers, channel_infos)
def test_header_round_trip_property(app: AppHeader, commit: CommitHeader,
                                    info: ChannelInfo) -> None:
    assert AppHeader.decode(app.encode()) == app
    assert CommitHeader.decode(commit.encode()) == commit
    assert ChannelInfo.decode(info.encode()) == info


def test_channel_info_encodes_admins_sorted_and_unique() -> None:
    info = ChannelInfo("g", (C, A, C, B))
    assert ChannelInfo.decode(info.encode()) == ChannelInfo("g", tuple(sorted((A, B, C))))


def test_channel_info_with_admin_and_without() -> None:
    info = ChannelInfo("g", (B,))
    assert info.with_admin(A) == ChannelInfo("g", tuple(sorted((A, B))))
    assert info.with_admin(B) == info
    assert info.with_admin(A).without({B}) == ChannelInfo("g", (A,))
    assert info.without({C}) == info


# -- intents ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "target", "kp"),
    [(IntentOp.ADD, None, b"kp"), (IntentOp.ADD, B, b""), (IntentOp.REMOVE, None, b""),
     (IntentOp.REMOVE, B, b"kp"), (IntentOp.ADMIN, None, b""), (IntentOp.LEAVE, B, b""),
     (IntentOp.LEAVE, None, b"kp")],
)
def test_intent_shape_is_checked_locally_and_on_decode(
    op: IntentOp, target: PeerId | None, kp: bytes
) -> None:
    with pytest.raises(ValueError):
        Intent(ID, op, target, kp)
    leave = Intent(ID, IntentOp.LEAVE)
    data = _raw(leave, op=int(op), target=b"" if target is None else target.binary, kp=kp)
    with pytest.raises(PayloadError, match="intent"):
        decode_content(data)


@pytest.mark.parametrize(
    ("field", "bad"),
    [("op", 0), ("op", 6), ("op", True), ("op", "1"), ("target", bytes(33)),
     ("target", b"\x02\xed" + bytes(32)), ("target", bytes(35)), ("id", bytes(15)),
     ("kp", bytes(16 * 1024 + 1)), ("invite", bytes(17)), ("key", bytes(33)), ("key", "k")],
)
def test_intent_field_bounds(field: str, bad: Any) -> None:
    x = CONTENT_SAMPLES["add"]
    with pytest.raises(PayloadError):
        decode_content(_raw(x, **{field: bad}))


def test_intent_field_maxima_decode() -> None:
    x = Intent(ID, IntentOp.ADD, B, bytes(16 * 1024), bytes(16), bytes(32))
    assert decode_content(x.encode()) == x


# -- bounds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "field", "good", "bad"),
    [
        ("text", "text", "x" * K.MAX_TEXT_BYTES, "x" * (K.MAX_TEXT_BYTES + 1)),
        ("text", "text", "\U0001f43c" * (K.MAX_TEXT_BYTES // 4),
         "\U0001f43c" * (K.MAX_TEXT_BYTES // 4) + "x"),
        ("text", "at", UINT63, UINT63 + 1),
        ("text", "at", 0, -1),
        ("text", "id", bytes(16), bytes(17)),
        ("text", "text", "", b""),
        ("profile", "name", "n" * 64, "n" * 65),
        ("profile", "name", "é" * 32, "é" * 32 + "x"),
    ],
)
def test_content_field_bounds(sample: str, field: str, good: Any, bad: Any) -> None:
    x = CONTENT_SAMPLES[sample]
    decode_content(_raw(x, **{field: good}))
    with pytest.raises(PayloadError):
        decode_content(_raw(x, **{field: bad}))


@pytest.mark.parametrize(
    ("name", "field", "good", "bad"),
    [
        ("commit", "done", [bytes(16)] * K.MAX_INTENTS_PER_COMMIT,
         [bytes(16)] * (K.MAX_INTENTS_PER_COMMIT + 1)),
        ("commit", "done", [ID], [bytes(15)]),
        ("commit", "done", [], {}),
        ("commit", "done", [ID], ["x" * 16]),
        ("info", "name", "n" * 128, "n" * 129),
        ("info", "admins", [A.binary], []),
        ("info", "admins", sorted([A.binary, B.binary]), sorted([A.binary, B.binary])[::-1]),
        ("info", "admins", [A.binary], [A.binary, A.binary]),
        ("info", "admins", [A.binary], [A.binary[:33]]),
        ("info", "admins", [A.binary], [b"\x01\xee" + bytes(32)]),
        ("info", "admins", [A.binary], A.binary),
        ("info", "admins", [A.binary], ["text"]),
    ],
)
def test_header_field_bounds(name: str, field: str, good: Any, bad: Any) -> None:
    decode, samples = HEADERS[name]
    decode(_raw(samples[0], **{field: good}))
    with pytest.raises(PayloadError):
        decode(_raw(samples[0], **{field: bad}))


def test_channel_info_1023_admins_decode() -> None:
    many = sorted(PeerId.from_public_key(i.to_bytes(32, "little")) for i in range(2, 1025))
    ok = ChannelInfo("g", tuple(many))
    assert ChannelInfo.decode(ok.encode()) == ok


def test_channel_info_admin_limit() -> None:
    many = sorted(PeerId.from_public_key(i.to_bytes(32, "little"))
            for i in range(2, K.MAX_ADMINS + 3))
    ok = ChannelInfo("g", tuple(many[: K.MAX_ADMINS]))
    assert ChannelInfo.decode(ok.encode()) == ok
    with pytest.raises(PayloadError):
        ChannelInfo.decode(ChannelInfo("g", tuple(many)).encode())


@pytest.mark.parametrize(
    "obj",
    [
        {"v": 1, "t": 4, "name": "x"},
        {"v": 1, "t": True, "name": "x"},
        {"v": True, "t": 2, "name": "x"},
        {"v": 1, "t": 2, "name": "x", "id": ID},
        {"v": 1, "t": 2},
        {"v": 1, "t": 2, "name": ["x"]},  # nesting: content maps are flat
        [1, 2, "x"],
    ],
)
def test_content_version_kind_key_set_and_depth(obj: Any) -> None:
    with pytest.raises(PayloadError):
        decode_content(cbor.encode(obj))


@pytest.mark.parametrize("name", ["commit", "info"])
def test_header_kind_version_and_size(name: str) -> None:
    decode, samples = HEADERS[name]
    m = cbor_map(samples[0])
    for change in ({"t": m["t"] + 1}, {"v": 2}, {"extra": 1}):
        with pytest.raises(PayloadError):
            decode(cbor.encode({**m, **change}))
    with pytest.raises(PayloadError):
        decode(bytes(1 << 20))


def test_app_header_is_exactly_nine_bytes() -> None:
    with pytest.raises(PayloadError, match="8-byte"):
        AppHeader.decode(AppHeader(1).encode() + bytes(60))


@pytest.mark.parametrize("admins", [[1, "a"], [b"\x01", 1], [None, b"x"], ["a", b"b"]])
def test_channel_info_mixed_admin_types_raise_payload_error(admins: list[Any]) -> None:
    data = cbor.encode({"v": 1, "t": 1, "name": "g", "admins": admins})
    with pytest.raises(PayloadError):
        ChannelInfo.decode(data)


# -- random and mutated input -------------------------------------------------------------

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "content": decode_content,
    "app": AppHeader.decode,
    "commit": CommitHeader.decode,
    "info": ChannelInfo.decode,
}


@prop(200)
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=300))
def test_random_bytes_raise_only_payload_error(name: str, data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        DECODERS[name](data)


def _decodes_or_payload_error(decode: Callable[[bytes], Any], data: bytes) -> None:
    try:
        x = decode(data)
    except PayloadError:
        return
    assert decode(x.encode()) == x


@prop(150)
@given(field_maps(K._CONTENT_LAYOUTS) | perturbed(contents, cbor_map))
def test_random_content_fields_raise_only_payload_error(obj: dict[Any, Any]) -> None:
    _decodes_or_payload_error(decode_content, cbor.encode(obj))


@prop(200)
@given(st.sampled_from([0, 1, 2, 0xFF]), st.integers(0, (1 << 64) - 1), st.sampled_from(
    [-1, 0, 1]))
def test_app_header_decodes_exactly_the_valid_range(prefix: int, seq: int, extra: int) -> None:
    data = bytes((prefix,)) + seq.to_bytes(8, "big")
    data = data[:-1] if extra < 0 else data + bytes(extra)
    valid = prefix == 1 and extra == 0 and 1 <= seq <= UINT63
    try:
        header = AppHeader.decode(data)
    except PayloadError:
        assert not valid
        return
    assert valid and header == AppHeader(seq) and header.encode() == data


@prop(100)
@given(field_maps({2: frozenset({"done"})}) | perturbed(commit_headers, cbor_map))
def test_random_commit_header_fields_raise_only_payload_error(obj: dict[Any, Any]) -> None:
    _decodes_or_payload_error(CommitHeader.decode, cbor.encode(obj))


@prop(150, shrink=False)
@given(field_maps({1: frozenset({"name", "admins"})}) | perturbed(channel_infos, cbor_map))
def test_random_channel_info_fields_raise_only_payload_error(obj: dict[Any, Any]) -> None:
    _decodes_or_payload_error(ChannelInfo.decode, cbor.encode(obj))


@prop(100)
@given(perturbed(channel_infos, cbor_map).filter(
    lambda m: not isinstance(m.get("admins"), list)
    or len({type(a) for a in m["admins"]}) <= 1))
def test_random_channel_info_fields_of_one_type_raise_only_payload_error(
    obj: dict[Any, Any]
) -> None:
    """The same property without the known mixed-type case, so the rest stays covered."""
    _decodes_or_payload_error(ChannelInfo.decode, cbor.encode(obj))


def _bad_mutants(decode: Callable[[bytes], Any], data: bytes) -> list[bytes]:
    bad = []
    for m in mutations(data):
        try:
            x = decode(m)
        except PayloadError:
            continue
        if x.encode() != m:
            bad.append(m)
    return bad


@pytest.mark.parametrize("name", sorted(CONTENT_SAMPLES))
def test_content_single_byte_mutations_raise_or_re_encode_exactly(name: str) -> None:
    assert _bad_mutants(decode_content, CONTENT_SAMPLES[name].encode()) == []


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_header_single_byte_mutations_raise_or_re_encode_exactly(name: str) -> None:
    decode, samples = HEADERS[name]
    for x in samples:
        assert _bad_mutants(decode, x.encode()) == []


@prop(150)
@given(contents, st.data())
def test_random_content_mutation_raises_or_re_encodes_exactly(x: Any, data: st.DataObject
                                                              ) -> None:
    raw = x.encode()
    i = data.draw(st.integers(0, len(raw) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    m = raw[:i] + bytes((new,)) + raw[i + 1 :]
    try:
        y = decode_content(m)
    except PayloadError:
        return
    assert y.encode() == m
