from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dht.errors import RecordError
from dht.records import MAX_RECORD_SIZE, MAX_TTL, PeerRecord, record_key
from node.core import cbor
from node.core.identity import Identity

NOW = 1_800_000_000
ALICE = Identity.from_seed(b"\x01" * 32)
MALLORY = Identity.from_seed(b"\x02" * 32)


def make(identity: Identity = ALICE, **kw: object) -> PeerRecord:
    args: dict[str, object] = {
        "noise_static_key": b"\x11" * 32,
        "envelope_key": b"\x22" * 32,
        "addrs": [f"/ip4/127.0.0.1/tcp/4001/p2p/{identity.peer_id}", "/dns4/boot.example/tcp/9"],
        "seq": 7,
        "expires_at": NOW + 3600,
    }
    args.update(kw)
    return PeerRecord.create(identity, **args)  # type: ignore[arg-type]


def test_roundtrip_and_verify() -> None:
    rec = make()
    data = rec.encode()
    again = PeerRecord.decode(data)
    assert again == rec
    assert again.encode() == data
    v = again.verify(NOW)
    assert v.peer_id == ALICE.peer_id
    assert v.seq == 7 and v.expires_at == NOW + 3600
    assert again.identity_key == ALICE.public_key_bytes
    assert [str(m) for m in v.multiaddrs()] == list(rec.addrs)
    assert rec.key == record_key(ALICE.peer_id) and len(rec.key) == 20


def test_record_key_is_domain_separated() -> None:
    import hashlib

    assert record_key(ALICE.peer_id) != hashlib.sha1(ALICE.peer_id.binary).digest()
    assert record_key(ALICE.peer_id) != record_key(MALLORY.peer_id)


def test_forged_signature_rejected() -> None:
    rec = make()
    bad = dataclasses.replace(rec, signature=bytes(64))
    with pytest.raises(RecordError, match="signature"):
        PeerRecord.decode(bad.encode()).verify(NOW)


def test_signed_by_someone_else_rejected() -> None:
    # Mallory signs a body claiming to be Alice.
    rec = make()
    forged = dataclasses.replace(
        rec, signature=MALLORY.sign(b"spacepanda/peer-record/v1" + rec.body)
    )
    with pytest.raises(RecordError, match="signature"):
        PeerRecord.decode(forged.encode()).verify(NOW)


def test_wrong_identity_key_rejected() -> None:
    rec = make()
    fields = cbor.decode(rec.body)
    fields["key"] = MALLORY.public_key_bytes
    body = cbor.encode(fields)
    sig = MALLORY.sign(b"spacepanda/peer-record/v1" + body)
    with pytest.raises(RecordError, match="does not match"):
        PeerRecord.decode(cbor.encode([1, body, sig]))


def test_field_tamper_detected() -> None:
    rec = make()
    tampered = dataclasses.replace(rec, seq=99)
    with pytest.raises(RecordError):
        tampered.verify(NOW)
    # A decoded record skips re-reading its body; a copy with changed fields does not.
    decoded = PeerRecord.decode(rec.encode())
    assert decoded == rec and decoded.verify(NOW).seq == rec.seq
    with pytest.raises(RecordError):
        dataclasses.replace(decoded, seq=99).verify(NOW)


def test_expired_and_far_future() -> None:
    rec = make(expires_at=NOW + 10)
    rec.verify(NOW + 9)
    with pytest.raises(RecordError, match="expired"):
        rec.verify(NOW + 10)
    far = make(expires_at=NOW + MAX_TTL + 1)
    with pytest.raises(RecordError, match="future"):
        far.verify(NOW)


def test_oversize_rejected() -> None:
    # Eight addresses of the maximum length each are individually fine but do not fit.
    label = "a" * 50
    addrs = [f"/dns4/{label}.{label}{i}.example/tcp/{4000 + i}" for i in range(8)]
    assert all(len(a) <= 128 for a in addrs)
    with pytest.raises(RecordError, match="larger"):
        make(addrs=addrs)
    with pytest.raises(RecordError):
        make(addrs=["/ip4/1.2.3.4/tcp/1"] * 9)
    with pytest.raises(RecordError):
        make(addrs=["/dns4/" + "a" * 200 + "/tcp/1"])
    with pytest.raises(RecordError):
        PeerRecord.decode(b"\x83" + b"\x00" * MAX_RECORD_SIZE)


def test_bad_address_and_other_peer_address() -> None:
    with pytest.raises(RecordError, match="bad address"):
        make(addrs=["not-a-multiaddr"]).verify(NOW)
    with pytest.raises(RecordError, match="another PeerId"):
        make(addrs=[f"/ip4/1.2.3.4/tcp/1/p2p/{MALLORY.peer_id}"]).verify(NOW)


def test_bad_field_values() -> None:
    with pytest.raises(RecordError):
        make(noise_static_key=b"\x00" * 31)
    with pytest.raises(RecordError):
        make(seq=-1)
    with pytest.raises(RecordError):
        make(seq=1 << 64)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: [2, o[1], o[2]],
        lambda o: [1, o[1], o[2][:63]],
        lambda o: [1, o[1]],
        lambda o: [True, o[1], o[2]],
        lambda o: {"v": 1},
    ],
)
def test_structural_rejects(mutate: object) -> None:
    outer = cbor.decode(make().encode())
    with pytest.raises(RecordError):
        PeerRecord.decode(cbor.encode(mutate(outer)))  # type: ignore[operator]


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(RecordError):
        PeerRecord.decode(make().encode() + b"\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200))
def test_decode_random_bytes_only_typed_error(data: bytes) -> None:
    try:
        rec = PeerRecord.decode(data)
    except RecordError:
        return
    assert rec.encode() == data


@settings(max_examples=40, deadline=None)
@given(
    seq=st.integers(0, (1 << 64) - 1),
    ttl=st.integers(1, MAX_TTL),
    n=st.integers(0, 4),
    port=st.integers(1, 65535),
)
def test_roundtrip_property(seq: int, ttl: int, n: int, port: int) -> None:
    rec = make(
        seq=seq, expires_at=NOW + ttl, addrs=[f"/ip4/10.0.0.{i}/tcp/{port}" for i in range(n)]
    )
    again = PeerRecord.decode(rec.encode())
    assert again == rec
    assert again.verify(NOW).seq == seq


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_record_never_verifies_as_other(data: st.DataObject) -> None:
    enc = bytearray(make().encode())
    i = data.draw(st.integers(0, len(enc) - 1))
    enc[i] ^= data.draw(st.integers(1, 255))
    try:
        rec = PeerRecord.decode(bytes(enc))
        v = rec.verify(NOW)
    except RecordError:
        return
    # Only a change that leaves the signed content intact can verify.
    assert v.encode() == make().encode()
