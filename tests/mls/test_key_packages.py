"""KeyPackage creation and validation (RFC 9420 section 10), tolerant lifetimes."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls import Client, DecodeError, MlsError
from mls.crypto import get_suite
from mls.crypto.labels import sign_with_label
from mls.key_packages import (
    CLOCK_SKEW,
    DEFAULT_LIFETIME,
    KEY_PACKAGE_TBS_LABEL,
    KeyPackageBundle,
    KeyPackageError,
    create_key_package,
    key_package_ref,
    validate_key_package,
)
from mls.messages import Credential, KeyPackage, Lifetime, MLSMessage
from mls.tree.validation import sign_leaf_node

NOW = 1_700_000_000
SUITE = get_suite(1)


def bundle(seed: int = 1, now: int = NOW, lifetime: int = DEFAULT_LIFETIME) -> KeyPackageBundle:
    rng = random.Random(seed).randbytes
    sig_priv, _ = SUITE.generate_signature_key_pair(rng)
    return create_key_package(
        SUITE, Credential.basic(b"peer"), sig_priv, rng=rng, now=now, lifetime=lifetime
    )


def resign(b: KeyPackageBundle, kp: KeyPackage) -> KeyPackage:
    leaf = sign_leaf_node(SUITE, kp.leaf_node, b.signature_priv)
    kp = replace(kp, leaf_node=leaf)
    sig = sign_with_label(SUITE, b.signature_priv, KEY_PACKAGE_TBS_LABEL, kp.tbs())
    return replace(kp, signature=sig)


def test_created_key_package_validates_and_round_trips() -> None:
    b = bundle()
    kp = b.key_package
    validate_key_package(SUITE, kp, now=NOW)
    msg = MLSMessage.from_bytes(b.to_message())
    assert msg.payload == kp and msg.to_bytes() == b.to_message()
    assert kp.init_key != kp.leaf_node.encryption_key
    assert SUITE.hpke_public_key(b.init_priv) == kp.init_key
    assert SUITE.hpke_public_key(b.encryption_priv) == kp.leaf_node.encryption_key
    lt = kp.leaf_node.lifetime
    assert lt is not None and lt.not_after - NOW == DEFAULT_LIFETIME
    assert len(key_package_ref(SUITE, kp)) == 32


def test_client_key_package_uses_injected_clock() -> None:
    c = Client(b"id", clock=lambda: NOW, rng=random.Random(3).randbytes)
    kp = MLSMessage.from_bytes(c.key_package()).payload
    assert isinstance(kp, KeyPackage)
    validate_key_package(SUITE, kp, now=NOW)
    assert kp.leaf_node.credential.identity == b"id"
    assert kp.leaf_node.signature_key == c.signature_public_key


def test_lifetime_policy_is_tolerant_but_bounded() -> None:
    b = bundle()
    kp = b.key_package
    validate_key_package(SUITE, kp, now=NOW - CLOCK_SKEW // 2)  # receiver clock lags
    with pytest.raises(KeyPackageError):
        validate_key_package(SUITE, kp, now=NOW + DEFAULT_LIFETIME + 2 * CLOCK_SKEW)
    with pytest.raises(KeyPackageError):
        validate_key_package(SUITE, kp, now=NOW - 3 * CLOCK_SKEW)
    long = resign(b, replace(kp, leaf_node=replace(kp.leaf_node, lifetime=Lifetime(0, 2**64 - 1))))
    validate_key_package(SUITE, long, now=NOW)  # very long lifetimes are accepted
    validate_key_package(SUITE, kp, now=None)  # no clock: no lifetime check


def test_bad_signature_rejected() -> None:
    kp = bundle().key_package
    sig = bytearray(kp.signature)
    sig[0] ^= 1
    with pytest.raises(KeyPackageError):
        validate_key_package(SUITE, replace(kp, signature=bytes(sig)), now=NOW)


def test_wrong_suite_and_init_key_reuse_rejected() -> None:
    b = bundle()
    kp = b.key_package
    with pytest.raises(KeyPackageError):
        validate_key_package(get_suite(3), kp, now=NOW)
    same = resign(b, replace(kp, init_key=kp.leaf_node.encryption_key))
    with pytest.raises(KeyPackageError):
        validate_key_package(SUITE, same, now=NOW)


def test_bad_leaf_rejected() -> None:
    b = bundle()
    kp = b.key_package
    leaf = replace(kp.leaf_node, signature=bytes(64))
    kp2 = replace(kp, leaf_node=leaf)
    kp2 = replace(
        kp2, signature=sign_with_label(SUITE, b.signature_priv, KEY_PACKAGE_TBS_LABEL, kp2.tbs())
    )
    with pytest.raises(KeyPackageError):
        validate_key_package(SUITE, kp2, now=NOW)


def test_group_rejects_invalid_key_package() -> None:
    c = Client(b"a", clock=lambda: NOW)
    g = c.create_group(b"g")
    kp = bundle().key_package
    bad = replace(kp, signature=bytes(64))
    with pytest.raises(MlsError):
        g.add([MLSMessage(bad).to_bytes()])
    assert not g.has_pending_commit and g.epoch == 0
    expired = bundle(now=NOW - 2 * DEFAULT_LIFETIME).key_package
    with pytest.raises(MlsError):
        g.add([MLSMessage(expired).to_bytes()])


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_decode_random_bytes_only_raises_decode_error(data: bytes) -> None:
    try:
        kp = KeyPackage.from_bytes(data)
    except DecodeError:
        return
    assert kp.to_bytes() == data
