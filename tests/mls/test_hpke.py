"""HPKE (RFC 9180) against every case of the CFRG vectors (all four modes; DHKEM X25519,
X448, P-256, P-521; HKDF-SHA256/512; AES-128/256-GCM, ChaCha20Poly1305, export-only), our
path vs the library's for every KEM, and the failure behaviour on hostile input."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from mls.crypto.hpke import (
    AEAD_AES128GCM,
    AEAD_AES256GCM,
    AEAD_CHACHA20POLY1305,
    AEAD_EXPORT_ONLY,
    KDF_HKDF_SHA256,
    KDF_HKDF_SHA384,
    KDF_HKDF_SHA512,
    KEM_X25519_HKDF_SHA256,
    MODE_AUTH,
    MODE_AUTH_PSK,
    MODE_BASE,
    MODE_PSK,
    Aead,
    HpkeSuite,
    Kdf,
    Kem,
    _labeled_expand,
    _labeled_extract,
)
from mls.crypto.kems import (
    KEM_P256_HKDF_SHA256,
    KEM_P384_HKDF_SHA384,
    KEM_P521_HKDF_SHA512,
    KEM_X448_HKDF_SHA512,
    DhKemNist,
)
from mls.errors import CryptoError
from tests.vectors import load_vectors, vector_params

KEMS: dict[int, Kem] = {
    k.kem_id: k
    for k in (
        KEM_X25519_HKDF_SHA256,
        KEM_X448_HKDF_SHA512,
        KEM_P256_HKDF_SHA256,
        KEM_P384_HKDF_SHA384,
        KEM_P521_HKDF_SHA512,
    )
}
KDFS: dict[int, Kdf] = {k.kdf_id: k for k in (KDF_HKDF_SHA256, KDF_HKDF_SHA384, KDF_HKDF_SHA512)}
AEADS: dict[int, Aead] = {
    a.aead_id: a for a in (AEAD_AES128GCM, AEAD_AES256GCM, AEAD_CHACHA20POLY1305, AEAD_EXPORT_ONLY)
}
FILES = ("test-vectors.json", "test-vectors-base-x25519-p256.json")
h = bytes.fromhex


def _suite(c: dict[str, Any]) -> HpkeSuite:
    return HpkeSuite(KEMS[c["kem_id"]], KDFS[c["kdf_id"]], AEADS[c["aead_id"]])


def _params(name: str) -> list[Any]:
    def ids(i: int, c: dict[str, Any]) -> str:
        kem, kdf, aead = c["kem_id"], c["kdf_id"], c["aead_id"]
        return f"{name[:-5]}[{i}]-mode{c['mode']}-kem{kem:#06x}-kdf{kdf}-aead{aead:#06x}"

    return vector_params(f"hpke/{name}", ids)


CASES = [p for name in FILES for p in _params(name)]


def test_every_vector_case_is_covered() -> None:
    full = load_vectors(f"hpke/{FILES[0]}")
    assert len(full) == 128
    combos = {(c["mode"], c["kem_id"], c["kdf_id"], c["aead_id"]) for c in full}
    assert {m for m, *_ in combos} == {MODE_BASE, MODE_PSK, MODE_AUTH, MODE_AUTH_PSK}
    assert all(k in KEMS and f in KDFS and a in AEADS for _, k, f, a in combos)
    assert len(load_vectors(f"hpke/{FILES[1]}")) == 4


@pytest.mark.parametrize("case", CASES)
def test_vector(case: dict[str, Any]) -> None:
    suite = _suite(case)
    kem = suite.kem
    mode = case["mode"]
    sk_r, pk_r = kem.derive_key_pair(h(case["ikmR"]))
    sk_e, pk_e = kem.derive_key_pair(h(case["ikmE"]))
    assert (sk_r, pk_r) == (h(case["skRm"]), h(case["pkRm"]))
    assert (sk_e, pk_e) == (h(case["skEm"]), h(case["pkEm"]))
    assert kem.public_key(sk_r) == pk_r
    psk = h(case.get("psk", ""))
    psk_id = h(case.get("psk_id", ""))
    sk_s = pk_s = None
    if mode in (MODE_AUTH, MODE_AUTH_PSK):
        sk_s, pk_s = kem.derive_key_pair(h(case["ikmS"]))
        assert (sk_s, pk_s) == (h(case["skSm"]), h(case["pkSm"]))
        shared, enc = kem.auth_encap(pk_r, sk_e, sk_s)
        assert kem.auth_decap(enc, sk_r, pk_s) == shared
    else:
        shared, enc = kem.encap(pk_r, sk_e)
        assert kem.decap(enc, sk_r) == shared
    assert enc == h(case["enc"]) and shared == h(case["shared_secret"])

    info = h(case["info"])
    enc_s, sender = suite.setup_s(
        pk_r, info, psk=psk, psk_id=psk_id, sk_s=sk_s, ikm_e=h(case["ikmE"])
    )
    assert enc_s == enc
    receiver = suite.setup_r(enc, sk_r, info, psk=psk, psk_id=psk_id, pk_s=pk_s)
    for ctx in (sender, receiver):
        assert ctx.key == h(case["key"])
        assert ctx.base_nonce == h(case["base_nonce"])
        assert ctx.exporter_secret == h(case["exporter_secret"])
    if mode == MODE_BASE:
        enc_b, ctx_b = suite.setup_base_s(pk_r, info, ikm_e=h(case["ikmE"]))
        assert enc_b == enc and ctx_b.key == sender.key
        assert suite.setup_base_r(enc, sk_r, info).exporter_secret == sender.exporter_secret

    encryptions = case["encryptions"]
    if suite.aead.export_only:
        assert not encryptions
        with pytest.raises(CryptoError):
            sender.seal(b"", b"x")
    for enc_case in encryptions:
        seq = int.from_bytes(h(enc_case["nonce"]), "big") ^ int.from_bytes(sender.base_nonce, "big")
        sender.seq = receiver.seq = seq
        aad, pt, ct = h(enc_case["aad"]), h(enc_case["pt"]), h(enc_case["ct"])
        assert sender._nonce() == h(enc_case["nonce"])
        assert sender.seal(aad, pt) == ct
        assert receiver.open(aad, ct) == pt
    assert len(encryptions) in (0, 257, 10)
    if encryptions and mode == MODE_BASE:
        # Single-shot SealBase/OpenBase (library path where the library has the KEM).
        first = encryptions[0]
        aad, pt = h(first["aad"]), h(first["pt"])
        assert suite.seal(pk_r, info, aad, pt, ikm_e=h(case["ikmE"])) == (enc, h(first["ct"]))
        assert suite.open(enc, sk_r, info, aad, h(first["ct"])) == pt
        enc2, ct2 = suite.seal(pk_r, info, b"", pt)
        assert suite.open(enc2, sk_r, info, b"", ct2) == pt

    for exp in case["exports"]:
        ctx_bytes, length = h(exp["exporter_context"]), exp["L"]
        want = h(exp["exported_value"])
        assert sender.export(ctx_bytes, length) == want
        assert receiver.export(ctx_bytes, length) == want
        if mode == MODE_BASE:
            got = suite.send_export(pk_r, info, ctx_bytes, length, ikm_e=h(case["ikmE"]))
            assert got == (enc, want)
            assert suite.receive_export(enc, sk_r, info, ctx_bytes, length) == want
    assert case["exports"]


def test_psk_inputs_are_checked() -> None:
    suite = HpkeSuite(KEM_X25519_HKDF_SHA256, KDF_HKDF_SHA256, AEAD_AES128GCM)
    _, pk = suite.kem.derive_key_pair(b"\x01" * 32)
    with pytest.raises(CryptoError):
        suite.setup_s(pk, b"", psk=b"k" * 32)  # PSK without its id
    with pytest.raises(CryptoError):
        suite.setup_s(pk, b"", psk_id=b"id")
    with pytest.raises(CryptoError):
        suite.key_schedule(bytes(32), b"", MODE_PSK)  # PSK mode without a PSK
    with pytest.raises(CryptoError):
        suite.key_schedule(bytes(32), b"", 7)


# The MLS cipher suites' HPKE configurations.
MLS_HPKE = {
    1: HpkeSuite(KEM_X25519_HKDF_SHA256, KDF_HKDF_SHA256, AEAD_AES128GCM),
    2: HpkeSuite(KEM_P256_HKDF_SHA256, KDF_HKDF_SHA256, AEAD_AES128GCM),
    3: HpkeSuite(KEM_X25519_HKDF_SHA256, KDF_HKDF_SHA256, AEAD_CHACHA20POLY1305),
    4: HpkeSuite(KEM_X448_HKDF_SHA512, KDF_HKDF_SHA512, AEAD_AES256GCM),
    5: HpkeSuite(KEM_P521_HKDF_SHA512, KDF_HKDF_SHA512, AEAD_AES256GCM),
    6: HpkeSuite(KEM_X448_HKDF_SHA512, KDF_HKDF_SHA512, AEAD_CHACHA20POLY1305),
    7: HpkeSuite(KEM_P384_HKDF_SHA384, KDF_HKDF_SHA384, AEAD_AES256GCM),
}
SUITE_IDS = pytest.mark.parametrize("sid", sorted(MLS_HPKE), ids=lambda s: f"suite{s}")


@SUITE_IDS
@settings(max_examples=8, deadline=None)
@given(
    ikm=st.binary(min_size=66, max_size=66), info=st.binary(max_size=64), pt=st.binary(max_size=200)
)
def test_own_path_and_library_path_agree(sid: int, ikm: bytes, info: bytes, pt: bytes) -> None:
    suite = MLS_HPKE[sid]
    ikm = ikm[: suite.kem.n_sk]
    sk, pk = suite.kem.derive_key_pair(ikm)
    has_lib = suite._lib_suite is not None
    assert has_lib == (sid not in (4, 6))  # the library has no X448
    # Single shot (library where it can) seals; our key schedule opens.
    enc, ct = suite.seal(pk, info, b"", pt)
    assert suite.setup_base_r(enc, sk, info).open(b"", ct) == pt
    # Our key schedule seals with an injected RNG; the single-shot open reads it.
    enc2, ct2 = suite.seal(pk, info, b"", pt, rng=os.urandom)
    assert suite.open(enc2, sk, info, b"", ct2) == pt
    if has_lib:
        assert suite._lib_open(enc2, sk, info, ct2) == pt
    # With a fixed ephemeral both single-shot and context paths give identical bytes.
    enc3, ct3 = suite.seal(pk, info, b"", pt, ikm_e=ikm[::-1])
    enc4, ctx = suite.setup_base_s(pk, info, ikm_e=ikm[::-1])
    assert (enc3, ct3) == (enc4, ctx.seal(b"", pt))


def _hostile_encs(kem: Kem, enc: bytes) -> list[bytes]:
    out = [enc[:-1], enc + b"\x00", b""]
    if isinstance(kem, DhKemNist):
        n = kem.n_sk
        out.append(b"\x02" + enc[1 : 1 + n])  # compressed form: not RFC 9180's encoding
        out.append(b"\x04" + bytes(2 * n))  # not on the curve
        out.append(enc[:-1] + bytes((enc[-1] ^ 1,)))  # off the curve
    else:
        out.append(bytes(kem.n_enc))  # low-order point: all-zero shared secret
        out.append(b"\x01" + bytes(kem.n_enc - 1))
    return out


@SUITE_IDS
def test_open_failures_raise_crypto_error(sid: int) -> None:
    suite = MLS_HPKE[sid]
    n = suite.kem.n_sk
    sk, pk = suite.kem.derive_key_pair(b"\x01" * n)
    other_sk, _ = suite.kem.derive_key_pair(b"\x02" * n)
    for aad in (b"", b"aad"):
        enc, ct = suite.seal(pk, b"info", aad, b"secret", rng=os.urandom)
        bad_ct = ct[:-1] + bytes((ct[-1] ^ 1,))
        cases = [
            (enc, sk, b"info", aad, bad_ct),
            (enc, other_sk, b"info", aad, ct),
            (enc, sk, b"other", aad, ct),
            (enc, sk, b"info", aad, b""),
        ]
        cases += [(e, sk, b"info", aad, ct) for e in _hostile_encs(suite.kem, enc)]
        for args in cases:
            with pytest.raises(CryptoError):
                suite.open(*args)
        assert suite.open(enc, sk, b"info", aad, ct) == b"secret"
    for bad_pk in _hostile_encs(suite.kem, pk):
        with pytest.raises(CryptoError):
            suite.seal(bad_pk, b"", b"", b"x")
        with pytest.raises(CryptoError):
            suite.seal(bad_pk, b"", b"aad", b"x", rng=os.urandom)


@pytest.mark.parametrize(
    "kem", [KEM_P256_HKDF_SHA256, KEM_P384_HKDF_SHA384, KEM_P521_HKDF_SHA512], ids=repr
)
def test_group_orders_match_the_library(kem: DhKemNist) -> None:
    assert kem.order.bit_length() == kem.curve.key_size
    ec.derive_private_key(kem.order - 1, kem.curve)
    with pytest.raises(ValueError):
        ec.derive_private_key(kem.order, kem.curve)


def test_nist_private_keys() -> None:
    kem = KEM_P256_HKDF_SHA256
    with pytest.raises(CryptoError):
        kem.public_key(bytes(32))  # zero
    with pytest.raises(CryptoError):
        kem.public_key(kem.order.to_bytes(32, "big"))  # the order itself
    with pytest.raises(CryptoError):
        kem.public_key(b"\x01" * 33)  # too long
    # A scalar with its leading zero bytes dropped is the same key (vectors do this).
    sk = (5).to_bytes(32, "big")
    assert kem.public_key(sk) == kem.public_key(b"\x05")
    assert kem.public_key((kem.order - 1).to_bytes(32, "big"))


@pytest.mark.parametrize("kem", [KEM_P256_HKDF_SHA256, KEM_P521_HKDF_SHA512], ids=["p256", "p521"])
def test_derive_key_pair_rejection_sampling(
    kem: DhKemNist, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 9180 7.1.3: mask the first byte, reject 0 and values >= order, next counter.
    Rejections are ~2^-32 (P-256) to ~2^-260 (P-521) likely, so force one by lowering the
    order to the first candidate."""
    ikm = b"\x42" * kem.n_sk
    prk = _labeled_extract(kem.kdf, kem.suite_id, b"", b"dkp_prk", ikm)

    def candidate(counter: int) -> int:
        raw = bytearray(
            _labeled_expand(kem.kdf, kem.suite_id, prk, b"candidate", bytes((counter,)), kem.n_sk)
        )
        raw[0] &= kem.bitmask
        return int.from_bytes(raw, "big")

    first = candidate(0)
    assert first.bit_length() <= (521 if kem.bitmask == 1 else 8 * kem.n_sk)
    assert kem.derive_private_key(ikm) == first.to_bytes(kem.n_sk, "big")
    c1 = candidate(1)
    monkeypatch.setattr(kem, "order", first)  # the first candidate is now out of range
    want = c1 if c1 < first else None
    if want is None:
        with pytest.raises(CryptoError):
            kem.derive_private_key(ikm)
    else:
        assert kem.derive_private_key(ikm) == want.to_bytes(kem.n_sk, "big")
    monkeypatch.setattr(kem, "order", 1)  # nothing is ever valid: counter runs out
    with pytest.raises(CryptoError, match="no valid scalar"):
        kem.derive_private_key(ikm)


def test_context_repr_hides_secrets() -> None:
    suite = MLS_HPKE[1]
    _, pk = suite.kem.derive_key_pair(b"\x03" * 32)
    _, ctx = suite.setup_base_s(pk, b"", ikm_e=b"\x04" * 32)
    text = repr(ctx)
    for secret in (ctx.key, ctx.base_nonce, ctx.exporter_secret):
        assert secret.hex() not in text


def test_sequence_overflow() -> None:
    suite = MLS_HPKE[1]
    _, pk = suite.kem.derive_key_pair(b"\x05" * 32)
    _, ctx = suite.setup_base_s(pk, b"", ikm_e=b"\x06" * 32)
    ctx.seq = (1 << 96) - 2
    ctx.seal(b"", b"last")
    with pytest.raises(CryptoError):
        ctx.seal(b"", b"one too many")


@SUITE_IDS
@settings(max_examples=5, deadline=None)
@given(ikm_e=st.binary(min_size=66, max_size=66), ikm_r=st.binary(min_size=66, max_size=66))
def test_injected_rng_is_deterministic_and_kem_matches_generic_dh(
    sid: int, ikm_e: bytes, ikm_r: bytes
) -> None:
    """The injected-RNG seal uses exactly generate_key_pair(rng)'s ephemeral key, and the
    encap/decap shortcuts agree with the textbook DH + public-key formulation."""
    suite = MLS_HPKE[sid]
    kem = suite.kem
    ikm_e, ikm_r = ikm_e[: kem.n_sk], ikm_r[: kem.n_sk]
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
    assert enc2 == pk_e and len(shared) == kem.n_secret
    assert shared == kem._extract_and_expand(kem.dh(sk_e, pk_r), pk_e + pk_r)
    assert kem.dh(sk_e, pk_r) == kem.dh(sk_r, pk_e)
    assert kem.decap(enc, sk_r) == shared
    assert suite.open(enc, sk_r, b"info", b"aad", ct) == b"pt"


def test_expand_single_and_multi_block() -> None:
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
