"""crypto-basics.json: labeled functions for all seven suites; suite and signature unit tests."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st

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
from mls.crypto.signatures import EcdsaScheme
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
    ours = sign_with_label(suite, priv, v["label"], content)
    if isinstance(suite.signature, EcdsaScheme):
        # The vector's ECDSA signature used a random nonce; ours is RFC 6979 deterministic
        # (so stable), DER encoded like the vector's, and verifies.
        assert ours == sign_with_label(suite, priv, v["label"], content)
        assert ours[0] == sig[0] == 0x30 and verify_with_label(
            suite, pub, v["label"], content, ours
        )
    else:
        # EdDSA is deterministic, so our signature must equal the vector's.
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
    assert suites == [1, 2, 3, 4, 5, 6, 7]
    assert sorted(SUITES) == suites


# RFC 9420 17.1 / RFC 9180 7: (Nh, Nk, Nn, Npk, signature scheme, hash of b"")
PARAMS = {
    1: (32, 16, 12, 32, 0x0807, "sha256"),
    2: (32, 16, 12, 65, 0x0403, "sha256"),
    3: (32, 32, 12, 32, 0x0807, "sha256"),
    4: (64, 32, 12, 56, 0x0808, "sha512"),
    5: (64, 32, 12, 133, 0x0603, "sha512"),
    6: (64, 32, 12, 56, 0x0808, "sha512"),
    7: (48, 32, 12, 97, 0x0503, "sha384"),
}


def test_get_suite_parameters_and_unknown() -> None:
    for sid, (nh, nk, nn, npk, scheme, hash_name) in PARAMS.items():
        suite = get_suite(sid)
        assert (suite.nh, suite.nk, suite.nn, suite.npk) == (nh, nk, nn, npk)
        assert suite.signature.scheme_id == scheme and suite.hash_name == hash_name
        assert suite.hash(b"") == hashlib.new(hash_name, b"").digest()
    for bad in (0, 8, 0xFFFF):
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
    assert (sk, pk) == suite.derive_key_pair(b"\x09" * suite.hpke.kem.n_sk)
    assert len(pk) == suite.npk and suite.hpke_public_key(sk) == pk
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


# -- signature schemes of every suite on hostile input ---------------------------------------


@pytest.mark.parametrize("suite_id", sorted(SUITES), ids=lambda s: f"suite{s}")
def test_signature_scheme_rejects_malformed_input(suite_id: int) -> None:
    suite = get_suite(suite_id)
    scheme = suite.signature
    priv, pub = scheme.generate(lambda n: b"\x05" * n)
    sig = scheme.sign(priv, b"msg")
    assert scheme.verify(pub, b"msg", sig)
    other_priv, other_pub = scheme.generate(lambda n: b"\x06" * n)
    bad_pubs = [b"", pub[:-1], pub + b"\x00", other_pub, bytes(len(pub))]
    if isinstance(scheme, EcdsaScheme):
        n = scheme.n_sk
        bad_pubs += [b"\x02" + pub[1 : 1 + n], pub[:-1] + bytes((pub[-1] ^ 1,))]
        # DER: r and s as INTEGERs in a SEQUENCE.
        r, s = decode_dss_signature(sig)
        assert 0 < r < scheme.order and 0 < s < scheme.order
        assert sig == scheme.sign(priv, b"msg")  # RFC 6979: deterministic
        bad_sigs = [
            encode_dss_signature(r, scheme.order - s) + b"\x00",  # trailing byte
            encode_dss_signature(r, 0),
            encode_dss_signature(0, s),
            encode_dss_signature(r, s + scheme.order),
            sig[:-1],
            b"\x30\x00",
            b"\x30" + bytes(300),
        ]
    else:
        bad_sigs = [sig[:-1], sig + b"\x00", bytes(len(sig)), sig[::-1]]
    for bad in bad_pubs:
        assert not scheme.verify(bad, b"msg", sig)
    for bad in bad_sigs:
        assert not scheme.verify(pub, b"msg", bad)
    assert not scheme.verify(pub, b"msh", sig)
    assert scheme.public_key(other_priv) == other_pub
    with pytest.raises(CryptoError):
        scheme.sign(b"", b"msg")


@pytest.mark.parametrize("suite_id", [2, 4, 5, 7], ids=lambda s: f"suite{s}")
@settings(max_examples=30, deadline=None)
@given(pub=st.binary(max_size=140), sig=st.binary(max_size=160))
def test_verify_never_raises(suite_id: int, pub: bytes, sig: bytes) -> None:
    assert get_suite(suite_id).verify(pub, b"m", sig) in (False, True)


def test_ecdsa_signatures_are_the_librarys() -> None:
    scheme = get_suite(2).signature
    assert isinstance(scheme, EcdsaScheme)
    priv, pub = scheme.generate(os.urandom)
    key = ec.derive_private_key(int.from_bytes(priv, "big"), ec.SECP256R1())
    lib_sig = key.sign(b"data", ec.ECDSA(hashes.SHA256()))  # random nonce
    assert scheme.verify(pub, b"data", lib_sig)
    key.public_key().verify(scheme.sign(priv, b"data"), b"data", ec.ECDSA(hashes.SHA256()))
    # generate() draws below the order with the top byte masked (P-521: one bit).
    p521 = get_suite(5).signature
    assert isinstance(p521, EcdsaScheme)
    draws = iter([b"\xff" * 66, b"\xff" + b"\x00" * 65])  # the first is above the order
    priv5, _ = p521.generate(lambda n: next(draws))
    assert priv5 == b"\x01" + b"\x00" * 65
    with pytest.raises(CryptoError, match="no valid scalar"):
        p521.generate(lambda n: b"\xff" * n)
