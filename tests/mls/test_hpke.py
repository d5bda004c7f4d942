"""HPKE (RFC 9180) base mode against the CFRG vectors, and our path vs the library's."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls.crypto.hpke import (
    AEAD_AES128GCM,
    AEAD_CHACHA20POLY1305,
    AEAD_EXPORT_ONLY,
    KDF_HKDF_SHA256,
    KEM_X25519_HKDF_SHA256,
    HpkeSuite,
)
from mls.errors import CryptoError
from tests.vectors import load_vectors, vector_params

_AEADS = {1: AEAD_AES128GCM, 3: AEAD_CHACHA20POLY1305, 0xFFFF: AEAD_EXPORT_ONLY}
SUITES = {aid: HpkeSuite(KEM_X25519_HKDF_SHA256, KDF_HKDF_SHA256, a) for aid, a in _AEADS.items()}


def _ours(c: dict[str, Any]) -> bool:
    """Base mode, X25519 and HKDF-SHA256 with an AEAD that MLS suites 1/3 use (or export-only)."""
    return c["mode"] == 0 and c["kem_id"] == 0x20 and c["kdf_id"] == 1 and c["aead_id"] in _AEADS


def _load(name: str) -> list[dict[str, Any]]:
    return [c for c in load_vectors(f"hpke/{name}") if _ours(c)]


def _params(name: str) -> list[Any]:
    def ids(i: int, c: dict[str, Any]) -> str:
        return f"{name[:-5]}-aead{c['aead_id']:#06x}"

    return vector_params(f"hpke/{name}", ids, select=_ours)


CASES = _params("test-vectors.json") + _params("test-vectors-base-x25519-p256.json")
h = bytes.fromhex


def test_vector_selection_counts() -> None:
    full = _load("test-vectors.json")
    # The CFRG file has one base-mode X25519/HKDF-SHA256 case per AEAD (1, 2, 3, export-only);
    # AES-256-GCM (2) is not used by MLS suites 1/3.
    assert sorted(c["aead_id"] for c in full) == [1, 3, 0xFFFF]


@pytest.mark.parametrize("case", CASES)
def test_base_mode_vector(case: dict[str, Any]) -> None:
    suite = SUITES[case["aead_id"]]
    kem = suite.kem
    sk_r, pk_r = kem.derive_key_pair(h(case["ikmR"]))
    sk_e, pk_e = kem.derive_key_pair(h(case["ikmE"]))
    assert (sk_r, pk_r) == (h(case["skRm"]), h(case["pkRm"]))
    assert (sk_e, pk_e) == (h(case["skEm"]), h(case["pkEm"]))

    shared, enc = kem.encap(pk_r, sk_e)
    assert enc == h(case["enc"])
    assert shared == h(case["shared_secret"])
    assert kem.decap(enc, sk_r) == shared

    info = h(case["info"])
    enc_s, sender = suite.setup_base_s(pk_r, info, ikm_e=h(case["ikmE"]))
    assert enc_s == enc
    receiver = suite.setup_base_r(enc, sk_r, info)
    for ctx in (sender, receiver):
        assert ctx.key == h(case["key"])
        assert ctx.base_nonce == h(case["base_nonce"])
        assert ctx.exporter_secret == h(case["exporter_secret"])

    encryptions = case["encryptions"]
    if suite.aead.export_only:
        assert not encryptions
        with pytest.raises(CryptoError):
            sender.seal(b"", b"x")
    # Vectors list consecutive sequence numbers from 0 (some files skip ahead: honour "nonce").
    for enc_case in encryptions:
        seq = int.from_bytes(h(enc_case["nonce"]), "big") ^ int.from_bytes(sender.base_nonce, "big")
        sender.seq = receiver.seq = seq
        aad, pt, ct = h(enc_case["aad"]), h(enc_case["pt"]), h(enc_case["ct"])
        assert sender._nonce() == h(enc_case["nonce"])
        assert sender.seal(aad, pt) == ct
        assert receiver.open(aad, ct) == pt
    assert len(encryptions) in (0, 257, 10)

    for exp in case["exports"]:
        ctx_bytes, length = h(exp["exporter_context"]), exp["L"]
        want = h(exp["exported_value"])
        assert sender.export(ctx_bytes, length) == want
        assert receiver.export(ctx_bytes, length) == want
        enc2, secret = suite.send_export(pk_r, info, ctx_bytes, length, ikm_e=h(case["ikmE"]))
        assert (enc2, secret) == (enc, want)
        assert suite.receive_export(enc, sk_r, info, ctx_bytes, length) == want
    assert case["exports"]


def test_single_shot_with_fixed_ephemeral_matches_vector() -> None:
    cases = [c for c in _load("test-vectors.json") if c["aead_id"] == 1]
    if not cases:
        pytest.skip("no AES-128-GCM case in test-vectors.json")
    case = cases[0]
    suite = SUITES[1]
    first = case["encryptions"][0]
    enc, ct = suite.seal(
        h(case["pkRm"]), h(case["info"]), h(first["aad"]), h(first["pt"]), ikm_e=h(case["ikmE"])
    )
    assert (enc, ct) == (h(case["enc"]), h(first["ct"]))
    pt = suite.open(enc, h(case["skRm"]), h(case["info"]), h(first["aad"]), ct)
    assert pt == h(first["pt"])


@pytest.mark.parametrize("aead_id", [1, 3], ids=["aes128gcm", "chacha20poly1305"])
@settings(max_examples=25, deadline=None)
@given(
    ikm=st.binary(min_size=32, max_size=32),
    info=st.binary(max_size=64),
    pt=st.binary(max_size=200),
)
def test_own_path_and_library_path_agree(aead_id: int, ikm: bytes, info: bytes, pt: bytes) -> None:
    suite = SUITES[aead_id]
    sk, pk = suite.kem.derive_key_pair(ikm)
    # Library seals (random OS ephemeral, empty AAD); our key schedule opens.
    enc, ct = suite.seal(pk, info, b"", pt)
    assert suite.setup_base_r(enc, sk, info).open(b"", ct) == pt
    # Our key schedule seals with an injected RNG; the library opens.
    enc2, ct2 = suite.seal(pk, info, b"", pt, rng=os.urandom)
    assert suite._lib_open(enc2, sk, info, ct2) == pt
    # With a fixed ephemeral both single-shot and context paths give identical bytes.
    enc3, ct3 = suite.seal(pk, info, b"", pt, ikm_e=ikm[::-1])
    enc4, ctx = suite.setup_base_s(pk, info, ikm_e=ikm[::-1])
    assert (enc3, ct3) == (enc4, ctx.seal(b"", pt))


@pytest.mark.parametrize("aead_id", [1, 3], ids=["aes128gcm", "chacha20poly1305"])
def test_open_failures_raise_crypto_error(aead_id: int) -> None:
    suite = SUITES[aead_id]
    sk, pk = suite.kem.derive_key_pair(b"\x01" * 32)
    other_sk, _ = suite.kem.derive_key_pair(b"\x02" * 32)
    for aad in (b"", b"aad"):
        enc, ct = suite.seal(pk, b"info", aad, b"secret", rng=os.urandom)
        bad_ct = ct[:-1] + bytes((ct[-1] ^ 1,))
        for args in (
            (enc, sk, b"info", aad, bad_ct),
            (enc, other_sk, b"info", aad, ct),
            (enc, sk, b"other", aad, ct),
            (enc[:-1], sk, b"info", aad, ct),
            (bytes(32), sk, b"info", aad, ct),  # low-order point
            (enc, sk, b"info", aad, b""),
        ):
            with pytest.raises(CryptoError):
                suite.open(*args)
        assert suite.open(enc, sk, b"info", aad, ct) == b"secret"


def test_context_repr_hides_secrets() -> None:
    suite = SUITES[1]
    _, pk = suite.kem.derive_key_pair(b"\x03" * 32)
    _, ctx = suite.setup_base_s(pk, b"", ikm_e=b"\x04" * 32)
    text = repr(ctx)
    for secret in (ctx.key, ctx.base_nonce, ctx.exporter_secret):
        assert secret.hex() not in text


def test_sequence_overflow() -> None:
    suite = SUITES[1]
    _, pk = suite.kem.derive_key_pair(b"\x05" * 32)
    _, ctx = suite.setup_base_s(pk, b"", ikm_e=b"\x06" * 32)
    ctx.seq = (1 << 96) - 2
    ctx.seal(b"", b"last")
    with pytest.raises(CryptoError):
        ctx.seal(b"", b"one too many")


@settings(max_examples=20, deadline=None)
@given(ikm_e=st.binary(min_size=32, max_size=32), ikm_r=st.binary(min_size=32, max_size=32))
def test_injected_rng_is_deterministic_and_kem_matches_generic_dh(
    ikm_e: bytes, ikm_r: bytes
) -> None:
    """The injected-RNG seal uses exactly generate_key_pair(rng)'s ephemeral key, and the
    X25519 encap/decap shortcuts agree with the textbook DH + public-key formulation."""
    suite = SUITES[1]
    kem = suite.kem
    sk_r, pk_r = kem.derive_key_pair(ikm_r)

    def rng(n: int) -> bytes:
        assert n == kem.n_sk
        return ikm_e

    sk_e, pk_e = kem.generate_key_pair(rng)
    assert kem.derive_private_key(ikm_e) == sk_e
    enc, ct = suite.seal(pk_r, b"info", b"aad", b"pt", rng=rng)
    assert (enc, ct) == suite.seal(pk_r, b"info", b"aad", b"pt", ikm_e=ikm_e)
    assert enc == pk_e
    shared, enc2 = kem.encap(pk_r, sk_e)
    assert enc2 == pk_e
    assert shared == kem._extract_and_expand(kem.dh(sk_e, pk_r), pk_e + pk_r)
    assert kem.decap(enc, sk_r) == shared
    assert suite.open(enc, sk_r, b"info", b"aad", ct) == b"pt"


def test_expand_single_and_multi_block() -> None:
    import hashlib
    import hmac

    prk, info = b"\x07" * 32, b"ctx"
    blocks = b""
    prev = b""
    for i in range(1, 4):
        prev = hmac.new(prk, prev + info + bytes((i,)), hashlib.sha256).digest()
        blocks += prev
    for n in (0, 1, 16, 32, 33, 64, 96):
        assert KDF_HKDF_SHA256.expand(prk, info, n) == blocks[:n]
    with pytest.raises(CryptoError):
        KDF_HKDF_SHA256.expand(prk, info, 255 * 32 + 1)
