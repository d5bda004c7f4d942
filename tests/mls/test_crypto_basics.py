"""crypto-basics.json: labeled functions for suites 1 and 3; suite and signature unit tests."""

from __future__ import annotations

import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from mls.crypto import (
    SUITES,
    decrypt_with_label,
    derive_secret,
    derive_tree_secret,
    encrypt_with_label,
    expand_with_label,
    get_suite,
    make_key_package_ref,
    make_proposal_ref,
    ref_hash,
    sign_with_label,
    verify_with_label,
)
from mls.crypto.suite import Ed25519Scheme
from mls.errors import CryptoError, MlsError
from tests.vectors import load_vectors, vector_params

h = bytes.fromhex


VECTOR = "mls/crypto-basics.json"
CASES = vector_params(VECTOR, lambda i, c: f"suite{c['cipher_suite']}", suite_key="cipher_suite")


@pytest.mark.parametrize("case", CASES)
def test_ref_hash(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["ref_hash"]
    assert ref_hash(suite, v["label"], h(v["value"])) == h(v["out"])


@pytest.mark.parametrize("case", CASES)
def test_expand_with_label(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["expand_with_label"]
    out = expand_with_label(suite, h(v["secret"]), v["label"], h(v["context"]), v["length"])
    assert out == h(v["out"])


@pytest.mark.parametrize("case", CASES)
def test_derive_secret(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["derive_secret"]
    assert derive_secret(suite, h(v["secret"]), v["label"]) == h(v["out"])


@pytest.mark.parametrize("case", CASES)
def test_derive_tree_secret(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["derive_tree_secret"]
    out = derive_tree_secret(suite, h(v["secret"]), v["label"], v["generation"], v["length"])
    assert out == h(v["out"])


@pytest.mark.parametrize("case", CASES)
def test_sign_with_label(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["sign_with_label"]
    priv, pub, content, sig = h(v["priv"]), h(v["pub"]), h(v["content"]), h(v["signature"])
    assert suite.signature_public_key(priv) == pub
    assert verify_with_label(suite, pub, v["label"], content, sig)
    # Ed25519 is deterministic, so our signature must equal the vector's.
    ours = sign_with_label(suite, priv, v["label"], content)
    assert ours == sig
    assert not verify_with_label(suite, pub, v["label"] + "x", content, sig)
    assert not verify_with_label(suite, pub, v["label"], content + b"\x00", sig)
    assert not verify_with_label(suite, pub, v["label"], content, sig[:-1])


@pytest.mark.parametrize("case", CASES)
def test_encrypt_with_label(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["encrypt_with_label"]
    priv, pub = h(v["priv"]), h(v["pub"])
    label, context, pt = v["label"], h(v["context"]), h(v["plaintext"])
    assert suite.hpke_public_key(priv) == pub
    out = decrypt_with_label(suite, priv, label, context, h(v["kem_output"]), h(v["ciphertext"]))
    assert out == pt
    kem_output, ct = encrypt_with_label(suite, pub, label, context, pt, rng=os.urandom)
    assert decrypt_with_label(suite, priv, label, context, kem_output, ct) == pt
    with pytest.raises(CryptoError):
        decrypt_with_label(suite, priv, label + "x", context, kem_output, ct)


def test_vector_suite_counts() -> None:
    suites = [c["cipher_suite"] for c in load_vectors(VECTOR)]
    assert [s for s in suites if s in SUITES] == [1, 3]
    assert len(suites) == 7


def test_get_suite_unknown() -> None:
    assert get_suite(1).nk == 16
    assert get_suite(3).nk == 32
    for suite in SUITES.values():
        assert (suite.nh, suite.nn, suite.npk) == (32, 12, 32)
    for bad in (0, 2, 4, 7, 0xFFFF):
        with pytest.raises(MlsError):
            get_suite(bad)


@pytest.mark.parametrize("suite_id", sorted(SUITES), ids=lambda s: f"suite{s}")
def test_refs_are_domain_separated(suite_id: int) -> None:
    suite = get_suite(suite_id)
    value = b"some encoded struct"
    kp_ref, prop_ref = make_key_package_ref(suite, value), make_proposal_ref(suite, value)
    assert kp_ref == ref_hash(suite, "MLS 1.0 KeyPackage Reference", value)
    assert prop_ref == ref_hash(suite, b"MLS 1.0 Proposal Reference", value)
    assert kp_ref != prop_ref and len(kp_ref) == suite.nh


@pytest.mark.parametrize("suite_id", sorted(SUITES), ids=lambda s: f"suite{s}")
def test_suite_primitives_round_trip(suite_id: int) -> None:
    suite = get_suite(suite_id)
    key, nonce = bytes(range(suite.nk)), bytes(suite.nn)
    ct = suite.aead_seal(key, nonce, b"aad", b"data")
    assert suite.aead_open(key, nonce, b"aad", ct) == b"data"
    with pytest.raises(CryptoError):
        suite.aead_open(key, nonce, b"aaX", ct)
    with pytest.raises(CryptoError):
        suite.aead_seal(key[:-1], nonce, b"", b"")
    tag = suite.mac(b"k", b"data")
    assert suite.verify_mac(b"k", b"data", tag) and not suite.verify_mac(b"k", b"datb", tag)
    sig_priv, sig_pub = suite.generate_signature_key_pair(rng=lambda n: b"\x07" * n)
    assert suite.verify(sig_pub, b"m", suite.sign(sig_priv, b"m"))
    assert not suite.verify(sig_pub[:-1], b"m", suite.sign(sig_priv, b"m"))
    sk, pk = suite.generate_key_pair(rng=lambda n: b"\x09" * n)
    assert (sk, pk) == suite.derive_key_pair(b"\x09" * 32)
    assert suite.hash(b"") == h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert repr(suite).startswith("CipherSuite(0x000")


def test_ed25519_key_caches_are_bounded_and_exact() -> None:
    scheme = Ed25519Scheme()
    keys = [scheme.generate(os.urandom) for _ in range(40)]
    sigs = [scheme.sign(priv, b"msg") for priv, _ in keys]
    # Cached or not, results equal the library's own (deterministic Ed25519).
    for (priv, pub), sig in zip(keys, sigs, strict=True):
        lib = ed25519.Ed25519PrivateKey.from_private_bytes(priv)
        assert sig == lib.sign(b"msg") and pub == lib.public_key().public_bytes_raw()
        mutable: Any = bytearray(pub)  # bytes-like keys are accepted too
        assert scheme.verify(pub, b"msg", sig) and scheme.verify(mutable, b"msg", sig)
        assert not scheme.verify(pub, b"msh", sig)
    mutable_priv: Any = bytearray(keys[0][0])
    assert scheme.sign(mutable_priv, b"msg") == sigs[0]
    assert len(scheme._privs._items) == Ed25519Scheme.PRIVATE_CACHE
    assert not scheme.verify(keys[1][1], b"msg", sigs[0])  # right length, wrong key
    # A public key that is not a curve point is refused (cached parsed or not).
    bad = (2).to_bytes(32, "little")
    assert not scheme.verify(bad, b"msg", sigs[0])
    assert not scheme.verify(bad, b"msg", sigs[0])
    with pytest.raises(CryptoError):
        scheme.sign(b"short", b"msg")
