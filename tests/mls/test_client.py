"""Client: KeyPackage private keys surviving a restart (export, strict restore, use once),
KeyPackageRefs, and the member list with signature keys."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls import Client, DecodeError, KeyPackageError, SecretBytes, WelcomeError
from mls.key_packages import encode_bundle
from mls.messages import MLSMessage, Welcome

NOW = 1_700_000_000


def client(name: bytes, signing_key: bytes | None = None) -> Client:
    seed = int.from_bytes(name, "big")
    return Client(
        name, signing_key=signing_key, rng=random.Random(seed).randbytes, clock=lambda: NOW
    )


def test_key_package_ref_matches_the_welcome() -> None:
    bob = client(b"bob")
    kp = bob.key_package()
    ref = bob.key_package_ref(kp)
    assert set(bob.unused_key_packages()) == {ref}
    ga = client(b"alice").create_group(b"g")
    out = ga.add([kp])
    assert out.welcome is not None
    welcome = MLSMessage.from_bytes(out.welcome).payload
    assert isinstance(welcome, Welcome)
    assert [s.new_member for s in welcome.secrets] == [ref]
    with pytest.raises(DecodeError):
        bob.key_package_ref(b"\x00\x01")
    with pytest.raises(DecodeError):
        bob.key_package_ref(out.welcome[:-1])


def test_restart_between_key_package_and_welcome() -> None:
    bob = client(b"bob")
    kps = [bob.key_package() for _ in range(3)]
    stored = bob.unused_key_packages()
    assert len(stored) == 3
    # Stored values are secret: never printed.
    for value in stored.values():
        assert isinstance(value, SecretBytes)
        assert value.hex()[:16] not in repr(stored) and value.hex()[:16] not in str(value)
        assert "redacted" in f"{value}"
    assert "redacted" in repr(stored)

    ga = client(b"alice").create_group(b"g")
    out = ga.add([kps[1]])
    ga.merge_pending_commit()
    assert out.welcome is not None

    # The process restarts: a new Client with the same identity and signing key.
    bob2 = client(b"bob", signing_key=bob._signing_key)
    with pytest.raises(WelcomeError):
        bob2.join(out.welcome)
    refs = [bob2.restore_key_package(v) for v in stored.values()]
    assert sorted(refs) == sorted(stored)
    gb = bob2.join(out.welcome)
    assert gb.epoch_authenticator == ga.epoch_authenticator
    # join() consumed that bundle, and only that one.
    left = bob2.unused_key_packages()
    assert bob2.key_package_ref(kps[1]) not in left and len(left) == 2
    with pytest.raises(WelcomeError):
        bob2.join(out.welcome)
    # Round trip is exact.
    assert left == {r: stored[r] for r in left}


def test_restore_refuses_another_clients_key_package() -> None:
    bob, carol = client(b"bob"), client(b"carol")
    carol.key_package()
    (data,) = carol.unused_key_packages().values()
    with pytest.raises(KeyPackageError, match="signature key"):
        bob.restore_key_package(data)
    assert bob.unused_key_packages() == {}


def test_restore_refuses_tampered_or_truncated_data() -> None:
    bob = client(b"bob")
    bob.key_package()
    (data,) = bob.unused_key_packages().values()
    fresh = client(b"bob", signing_key=bob._signing_key)
    assert fresh.restore_key_package(data)
    bad_cases = [
        b"",
        data[:-1],
        data + b"\x00",
        b"XXXX" + data[4:],
        data[:4] + b"\x00\x02" + data[6:],  # unknown version
    ]
    # Every single-byte change (key package fields, signature, private keys) is refused.
    r = random.Random(5)
    for _ in range(60):
        raw = bytearray(data)
        raw[r.randrange(len(raw))] ^= 1 << r.randrange(8)
        bad_cases.append(bytes(raw))
    # The last bytes are the leaf encryption private key: a wrong key is caught.
    bad_cases.append(data[:-1] + bytes([data[-1] ^ 0x55]))
    for bad in bad_cases:
        other = client(b"bob", signing_key=bob._signing_key)
        with pytest.raises((DecodeError, KeyPackageError)):
            other.restore_key_package(bad)
        assert other.unused_key_packages() == {}


def test_private_keys_must_match_the_key_package() -> None:
    bob = client(b"bob")
    bob.key_package()
    bob.key_package()
    b1, b2 = bob._bundles.values()
    swapped = replace(b1, init_priv=b2.init_priv)
    with pytest.raises(DecodeError, match="do not match"):
        client(b"bob", signing_key=bob._signing_key).restore_key_package(encode_bundle(swapped))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_restore_garbage_only_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        client(b"bob").restore_key_package(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_restore_garbage_after_valid_header(tail: bytes) -> None:
    with pytest.raises(DecodeError):
        client(b"bob").restore_key_package(b"MLSK\x00\x01" + tail)


def test_member_leaves() -> None:
    alice, bob, carol = client(b"alice"), client(b"bob"), client(b"carol")
    ga = alice.create_group(b"g")
    out = ga.add([bob.key_package(), carol.key_package()])
    ga.merge_pending_commit()
    assert ga.member_leaves() == [
        (0, b"alice", alice.signature_public_key),
        (1, b"bob", bob.signature_public_key),
        (2, b"carol", carol.signature_public_key),
    ]
    out = ga.remove([b"bob"])
    ga.merge_pending_commit()
    assert [(i, ident) for i, ident, _ in ga.member_leaves()] == [(0, b"alice"), (2, b"carol")]
    assert out.commit
