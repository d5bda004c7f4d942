"""Envelope payloads (node/channels/wire.py): exact bytes, strict decoding, signatures."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.channels import envelope as E
from node.channels import wire as W
from node.channels.errors import PayloadError, Rejected
from node.channels.wire import (
    GroupMessage,
    InviteAnswer,
    InviteOffer,
    WelcomeMessage,
    Withdrawal,
    decode_payload,
)
from node.core import cbor
from node.core.identity import PeerId
from tests.node.channels.strategies import (
    ALICE,
    BOB,
    CAROL,
    answers,
    cbor_map,
    field_maps,
    group_messages,
    mutations,
    offers,
    payloads,
    peers,
    perturbed,
    prop,
    welcomes,
    withdrawals,
)

A, B, C = ALICE.peer_id, BOB.peer_id, CAROL.peer_id

OFFER = InviteOffer(bytes(range(16)), bytes(range(32)), "garden", A, bytes(32), B).signed(ALICE)
ANSWER = InviteAnswer(bytes(range(16)), B, A, b"key package").signed(BOB)
REFUSAL = InviteAnswer(bytes(range(16)), B, A, b"").signed(BOB)
WITHDRAWAL = Withdrawal(bytes(range(16)), bytes(range(32)), bytes(range(32, 64)), A,
                        B).signed(ALICE)
WELCOME = WelcomeMessage(bytes(range(16)), b"mls welcome", A, bytes(range(32)), 3,
                         tuple(sorted((B, C))))
SAMPLES: dict[str, Any] = {
    "group": GroupMessage(b"\x00\x01mls"),
    "offer": OFFER,
    "answer": ANSWER,
    "refusal": REFUSAL,
    "welcome-none-removed": dataclasses.replace(WELCOME, removed=()),
    "welcome": WELCOME,
    "withdrawal": WITHDRAWAL,
}


# -- exact bytes ------------------------------------------------------------------------


def test_group_message_known_bytes() -> None:
    # 0x01 || MLSMessage: binary, the one payload of channel envelopes.
    assert GroupMessage(b"\x01\x02").encode() == bytes.fromhex("010102")
    assert decode_payload(bytes.fromhex("010102")) == GroupMessage(b"\x01\x02")


@pytest.mark.parametrize("name", [n for n in sorted(SAMPLES) if n != "group"])
def test_invitation_kinds_are_cbor_maps_that_cannot_start_with_0x01(name: str) -> None:
    assert 0xA0 <= SAMPLES[name].encode()[0] <= 0xBF


def test_a_group_message_needs_at_least_one_byte() -> None:
    with pytest.raises(PayloadError):
        decode_payload(b"\x01")
    assert decode_payload(b"\x01\x00") == GroupMessage(b"\x00")


def test_welcome_known_bytes() -> None:
    w = WelcomeMessage(bytes(16), b"W", A, bytes(32), 7, ())
    expected = (
        "a8" "6174" "04" "6176" "01"
        "64" + b"from".hex() + "5822" + A.binary.hex()
        + "64" + b"slot".hex() + "07"
        + "66" + b"commit".hex() + "5820" + "00" * 32
        + "66" + b"invite".hex() + "50" + "00" * 16
        + "67" + b"removed".hex() + "80"
        + "67" + b"welcome".hex() + "4157"
    )
    assert w.encode().hex() == expected
    assert decode_payload(bytes.fromhex(expected)) == w


def test_offer_signature_covers_the_documented_body() -> None:
    body = {"invite": OFFER.invite_id, "channel": OFFER.channel_id, "name": "garden",
            "from": A.binary, "from_key": bytes(32), "to": B.binary}
    assert A.verify(OFFER.signature, b"spacepanda/v1/invite-offer" + cbor.encode(body))


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_round_trip(name: str) -> None:
    x = SAMPLES[name]
    data = x.encode()
    assert decode_payload(data) == x
    assert decode_payload(data).encode() == data


@prop(300)
@given(payloads)
def test_decode_encode_round_trip(x: Any) -> None:
    data = x.encode()
    y = decode_payload(data)
    assert y == x and type(y) is type(x)
    assert y.encode() == data


@prop(100)
@given(st.sampled_from([group_messages, offers, answers, welcomes, withdrawals]).flatmap(
    lambda s: s))
def test_every_kind_round_trips(x: Any) -> None:
    assert decode_payload(x.encode()) == x


# -- boundaries --------------------------------------------------------------------------


def _raw(x: Any, **changes: Any) -> bytes:
    m = cbor.decode(x.encode(), max_depth=2, max_items=2000, max_size=1 << 21)
    m.update(changes)
    return cbor.encode(m)


@pytest.mark.parametrize(
    ("sample", "field", "good", "bad"),
    [
        ("offer", "invite", bytes(16), bytes(15)),
        ("offer", "channel", bytes(32), bytes(33)),
        ("offer", "name", "n" * 128, "n" * 129),
        ("offer", "name", "é" * 64, "é" * 64 + "x"),  # counted in UTF-8 bytes
        ("offer", "from_key", bytes(32), bytes(31)),
        ("offer", "sig", bytes(64), bytes(63)),
        ("offer", "from", A.binary, A.binary[:33]),
        ("offer", "to", B.binary, b"\x02" + B.binary[1:]),  # PeerId version 2
        ("answer", "kp", bytes(16 * 1024), bytes(16 * 1024 + 1)),
        ("answer", "invite", bytes(16), b""),
        ("welcome", "slot", 1 << 16, (1 << 16) + 1),
        ("welcome", "slot", 0, -1),
        ("welcome", "slot", 5, True),
        ("welcome", "welcome", b"w", b""),
        ("welcome", "commit", bytes(32), bytes(31)),
        ("welcome", "removed", [], {}),
        ("welcome", "removed", [A.binary], [A.binary[:-1]]),
        ("welcome", "removed", [A.binary], ["text"]),
        ("withdrawal", "commit", bytes(32), bytes(33)),
        ("withdrawal", "channel", bytes(32), "x" * 32),
    ],
)
def test_field_bounds(sample: str, field: str, good: Any, bad: Any) -> None:
    x = SAMPLES[sample]
    decode_payload(_raw(x, **{field: good}))
    with pytest.raises(PayloadError):
        decode_payload(_raw(x, **{field: bad}))


def test_largest_group_message_and_removed_list_decode() -> None:
    big = GroupMessage(bytes(W.MAX_GROUP_MESSAGE))
    assert decode_payload(big.encode()) == big
    with pytest.raises(PayloadError):
        decode_payload(b"\x01" + bytes(W.MAX_GROUP_MESSAGE + 1))
    many = tuple(sorted(PeerId.from_public_key(i.to_bytes(32, "little")) for i in range(2, 1027)))
    w = dataclasses.replace(WELCOME, removed=many[:1024])
    assert decode_payload(w.encode()) == w
    with pytest.raises(PayloadError):
        decode_payload(dataclasses.replace(WELCOME, removed=many).encode())


def test_every_decodable_group_message_fits_in_an_envelope() -> None:
    assert len(GroupMessage(bytes(W.MAX_GROUP_MESSAGE)).encode()) <= E.MAX_PAYLOAD


@pytest.mark.parametrize(
    "obj",
    [
        {"v": 1, "t": 6, "mls": b"x"},
        {"v": 1, "t": 0, "mls": b"x"},
        {"v": 1, "t": True, "mls": b"x"},
        {"v": True, "t": 1, "mls": b"x"},
        {"v": 2, "t": 1, "mls": b"x"},
        {"t": 1, "mls": b"x"},
        {"v": 1, "mls": b"x"},
        {"v": 1, "t": 1},
        {"v": 1, "t": 1, "mls": b"x", "extra": 0},
        {"v": 1, "t": 2, "mls": b"x"},
        [1, 1, b"x"],
        b"x",
    ],
)
def test_version_kind_and_key_set_are_exact(obj: Any) -> None:
    with pytest.raises(PayloadError):
        decode_payload(cbor.encode(obj))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes.fromhex("a3617401617601636d6c7342010200"),  # trailing byte
        bytes.fromhex("a3617601617401636d6c73420102"),  # keys out of order
        bytes.fromhex("a3617401617601636d6c734201"),  # truncated
        bytes.fromhex("bf617401617601636d6c73420102ff"),  # indefinite map
    ],
)
def test_non_canonical_or_broken_cbor_is_refused(data: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_payload(data)




@pytest.mark.parametrize("value", [
    bytearray(b"\xa0"), memoryview(b"\xa0"), "x",
    None, 5])
def test_non_bytes_input_is_a_payload_error(value: Any) -> None:
    with pytest.raises(PayloadError):
        decode_payload(value)


def test_payload_error_is_a_counted_rejection() -> None:
    with pytest.raises(Rejected) as info:
        decode_payload(b"")
    assert info.value.reason == "bad_payload"


# -- canonical form of WelcomeMessage.removed -----------------------------------------------


@pytest.mark.parametrize("order", ["unsorted", "duplicate"])
def test_welcome_removed_must_be_sorted_and_unique(order: str) -> None:
    lo, hi = sorted((B.binary, C.binary))
    removed = [hi, lo] if order == "unsorted" else [lo, lo]
    with pytest.raises(PayloadError):
        decode_payload(_raw(WELCOME, removed=removed))


# -- random and mutated input -------------------------------------------------------------


@prop(300)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_payload_error(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_payload(data)


@prop(150)
@given(field_maps(W._LAYOUTS) | perturbed(st.one_of(offers, answers, welcomes, withdrawals),
                                           cbor_map))
def test_random_field_values_raise_only_payload_error(obj: dict[Any, Any]) -> None:
    data = cbor.encode(obj)
    try:
        x = decode_payload(data)
    except PayloadError:
        return
    assert decode_payload(x.encode()) == x




def _check_mutants(data: bytes) -> list[bytes]:
    """Every mutant raises PayloadError or re-encodes to itself; returns the ones that don't."""
    bad = []
    for m in mutations(data):
        try:
            x = decode_payload(m)
        except PayloadError:
            continue
        if x.encode() != m:
            bad.append(m)
    return bad


@pytest.mark.parametrize(
    "name",
    sorted(SAMPLES),
)
def test_single_byte_mutations_raise_or_re_encode_exactly(name: str) -> None:
    assert _check_mutants(SAMPLES[name].encode()) == []


@prop(150)
@given(st.one_of(group_messages, offers, answers, withdrawals), st.data())
def test_random_mutation_raises_or_re_encodes_exactly(x: Any, data: st.DataObject) -> None:
    # Welcome messages are left to the deterministic sweep above (known non-canonical case).
    raw = x.encode()
    i = data.draw(st.integers(0, len(raw) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    m = raw[:i] + bytes((new,)) + raw[i + 1 :]
    try:
        y = decode_payload(m)
    except PayloadError:
        return
    assert y.encode() == m


# -- signatures -------------------------------------------------------------------------

SIGNED = {"offer": (OFFER, B, ALICE), "answer": (ANSWER, A, BOB),
          "refusal": (REFUSAL, A, BOB), "withdrawal": (WITHDRAWAL, B, ALICE)}
# The field naming the addressee (checked before the signature) and the signer.
TO_FIELD = {"offer": "invitee", "answer": "inviter", "refusal": "inviter",
            "withdrawal": "joiner"}
FROM_FIELD = {"offer": "inviter", "answer": "invitee", "refusal": "invitee",
              "withdrawal": "admin"}


@pytest.mark.parametrize("name", sorted(SIGNED))
def test_signed_structures_verify_after_a_round_trip(name: str) -> None:
    x, me, _ = SIGNED[name]
    x.verify(me)
    decoded = decode_payload(x.encode())
    decoded.verify(me)  # type: ignore[union-attr]


def _other_value(value: Any) -> Any:
    if isinstance(value, PeerId):
        return C if value != C else A
    if isinstance(value, str):
        return value + "!"
    assert isinstance(value, bytes)
    return bytes((value[0] ^ 1,)) + value[1:] if value else b"\x01"


@pytest.mark.parametrize(
    ("name", "field"),
    [(n, f.name) for n, (x, _, _) in sorted(SIGNED.items())
     for f in dataclasses.fields(x) if f.name not in ("signature", TO_FIELD[n])],
)
def test_a_changed_field_breaks_the_signature(name: str, field: str) -> None:
    x, me, _ = SIGNED[name]
    bad = dataclasses.replace(x, **{field: _other_value(getattr(x, field))})
    with pytest.raises(PayloadError, match="signature"):
        bad.verify(me)
    with pytest.raises(PayloadError, match="signature"):
        decode_payload(bad.encode()).verify(me)  # type: ignore[union-attr]


@pytest.mark.parametrize("name", sorted(SIGNED))
def test_the_claimed_signer_is_bound(name: str) -> None:
    """Changing who it claims to come from (the signer) breaks it; a signature by anyone
    else than the claimed sender does not verify."""
    x, me, _ = SIGNED[name]
    with pytest.raises(PayloadError, match="signature"):
        dataclasses.replace(x, **{FROM_FIELD[name]: C}).verify(me)
    forged = dataclasses.replace(x, signature=b"").signed(CAROL)
    with pytest.raises(PayloadError, match="signature"):
        forged.verify(me)


@pytest.mark.parametrize("name", sorted(SIGNED))
def test_any_flipped_signature_bit_is_refused(name: str) -> None:
    x, me, _ = SIGNED[name]
    for i in range(0, 512, 7):
        sig = bytearray(x.signature)
        sig[i // 8] ^= 1 << (i % 8)
        with pytest.raises(PayloadError, match="signature"):
            dataclasses.replace(x, signature=bytes(sig)).verify(me)


@pytest.mark.parametrize("name", sorted(SIGNED))
def test_addressed_to_someone_else_is_refused(name: str) -> None:
    x, me, _ = SIGNED[name]
    for other in (C, A if me != A else B):
        with pytest.raises(PayloadError, match="addressed to another node"):
            x.verify(other)


@pytest.mark.parametrize("name", sorted(SIGNED))
def test_readdressing_breaks_the_signature(name: str) -> None:
    """Changing the addressee to me (a replay to a third node) does not verify."""
    x, _, _ = SIGNED[name]
    with pytest.raises(PayloadError, match="signature"):
        dataclasses.replace(x, **{TO_FIELD[name]: C}).verify(C)


def test_signatures_are_domain_separated() -> None:
    """The same body signed under another structure's domain does not verify."""
    body = cbor.encode(OFFER._body())
    for domain in (b"spacepanda/v1/invite-answer", b"spacepanda/v1/welcome-withdrawal", b""):
        sig = ALICE.sign(domain + body)
        with pytest.raises(PayloadError, match="signature"):
            dataclasses.replace(OFFER, signature=sig).verify(B)


@prop(80)
@given(st.sampled_from(sorted(SIGNED)), st.data())
def test_mutated_signed_field_property(name: str, data: st.DataObject) -> None:
    x, me, _ = SIGNED[name]
    fields = [f.name for f in dataclasses.fields(x) if f.name != TO_FIELD[name]]
    field = data.draw(st.sampled_from(fields))
    old = getattr(x, field)
    if isinstance(old, PeerId):
        new: Any = data.draw(peers.filter(lambda p: p != old))
    elif isinstance(old, str):
        new = data.draw(st.text(max_size=20).filter(lambda s: s != old))
    else:
        new = data.draw(st.binary(min_size=len(old), max_size=len(old) or 8).filter(
            lambda b: b != old))
    with pytest.raises(PayloadError):
        dataclasses.replace(x, **{field: new}).verify(me)


def test_a_peer_id_with_an_invalid_key_never_verifies() -> None:
    # y = 2 is not on the curve for any sign bit: not a valid Ed25519 public key.
    bogus = PeerId.from_public_key(bytes((2,)) + bytes(31))
    x = dataclasses.replace(OFFER, inviter=bogus)
    with pytest.raises(PayloadError, match="signature"):
        x.verify(B)
