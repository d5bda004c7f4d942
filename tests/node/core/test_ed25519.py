"""Strict Ed25519 acceptance (PROTOCOL.md 2.3): RFC 8032 vectors pass, weak encodings fail.

The small-order points are derived here independently (pure-Python Edwards arithmetic, test
code only) and compared with the blocklist; the weak encodings are the ones issue 11 found
accepted: the identity point with the trivial signature (R = identity, S = 0), y = p + 1, and
the sign bit set on x = 0.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mls.crypto import ed25519_strict
from mls.crypto.signatures import ED25519
from node.core import ed25519
from node.core.ed25519 import (
    SMALL_ORDER_POINTS,
    L,
    P,
    is_strict_public_key,
    is_strict_signature,
)
from node.core.errors import IdentityError
from node.core.identity import Identity, PeerId

# RFC 8032 section 7.1, written out from the RFC text: (secret key, public key, message,
# signature). TEST SHA(abc) signs the 64-byte SHA-512 of "abc".
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e"
        "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290"
        "ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        hashlib.sha512(b"abc").hexdigest(),
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ec"
        "fdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]

IDENTITY = bytes([1]) + bytes(31)
TRIVIAL_SIGNATURE = IDENTITY + bytes(32)  # R = identity, S = 0: verifies for any message


def _with_sign_bit(encoding: bytes) -> bytes:
    return encoding[:31] + bytes([encoding[31] | 0x80])


# Every non-canonical spelling: y in p..2^255-1 (19 values), with and without the sign bit,
# and the sign bit on the two points with x = 0 (y = 1, y = p - 1).
NON_CANONICAL = [
    *(y.to_bytes(32, "little") for y in range(P, 2**255)),
    *(_with_sign_bit(y.to_bytes(32, "little")) for y in range(P, 2**255)),
    _with_sign_bit(IDENTITY),
    _with_sign_bit((P - 1).to_bytes(32, "little")),
]
WEAK_KEYS = sorted(SMALL_ORDER_POINTS) + NON_CANONICAL


# ---- independent derivation of the small-order points (test code, not verification) ----

_D = -121665 * pow(121666, -1, P) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)


def _recover_x(y: int, sign: int) -> int | None:
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * _SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    return P - x if x & 1 != sign else x


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2
    return ((x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P)


def _mul(k: int, point: tuple[int, int]) -> tuple[int, int]:
    out = (0, 1)
    while k:
        if k & 1:
            out = _add(out, point)
        point = _add(point, point)
        k >>= 1
    return out


def _encode(point: tuple[int, int]) -> bytes:
    x, y = point
    return (y | (x & 1) << 255).to_bytes(32, "little")


def test_the_blocklist_is_exactly_the_eight_points_of_small_order() -> None:
    rand = random.Random(8032)
    torsion: set[tuple[int, int]] = set()
    while len(torsion) < 8:
        y, sign = rand.randrange(P), rand.randrange(2)
        x = _recover_x(y, sign)
        if x is None:
            continue
        generator = _mul(L, (x, y))  # clears the prime-order part: a point of order | 8
        torsion.update(_mul(k, generator) for k in range(8))
    assert {_encode(p) for p in torsion} == SMALL_ORDER_POINTS
    assert all(_mul(8, p) == (0, 1) for p in torsion)


# ---- RFC 8032 vectors ---------------------------------------------------------------------


@pytest.mark.parametrize("secret, public, message, signature", RFC8032)
def test_rfc8032_vectors_are_accepted(
    secret: str, public: str, message: str, signature: str
) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    pub, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert key.public_key().public_bytes_raw() == pub
    assert key.sign(msg) == sig  # deterministic: the vector byte for byte
    assert is_strict_public_key(pub) and is_strict_signature(sig)
    peer = PeerId.from_public_key(pub)
    assert peer.verify(sig, msg)
    assert not peer.verify(sig, msg + b"x")
    assert ED25519.verify(pub, msg, sig)


@pytest.mark.parametrize("secret, public, message, signature", RFC8032)
def test_rfc8032_signatures_with_s_plus_l_are_refused(
    secret: str, public: str, message: str, signature: str
) -> None:
    # S + L is the same scalar mod L: a malleable second signature for the same message.
    sig = bytes.fromhex(signature)
    s = int.from_bytes(sig[32:], "little") + L
    assert s < 2**256
    malleated = sig[:32] + s.to_bytes(32, "little")
    pub, msg = bytes.fromhex(public), bytes.fromhex(message)
    assert not is_strict_signature(malleated)
    assert not PeerId.from_public_key(pub).verify(malleated, msg)
    assert not ED25519.verify(pub, msg, malleated)


# ---- weak encodings -------------------------------------------------------------------------


def test_the_issue_11_encodings_are_weak() -> None:
    y_p_plus_1 = (P + 1).to_bytes(32, "little")
    for key in (IDENTITY, y_p_plus_1, _with_sign_bit(IDENTITY)):
        assert key in WEAK_KEYS
        assert not is_strict_public_key(key)


@pytest.mark.parametrize("key", WEAK_KEYS, ids=lambda k: bytes(k).hex()[:12] + bytes(k).hex()[-4:])
def test_weak_keys_make_no_peer_id(key: bytes) -> None:
    assert not is_strict_public_key(key)
    with pytest.raises(IdentityError):
        PeerId.from_public_key(key)
    with pytest.raises(IdentityError):
        PeerId(b"\x01\xed" + key)
    # And MLS never verifies anything under it, not even the trivial signature.
    for message in (b"", b"any message"):
        assert not ED25519.verify(key, message, TRIVIAL_SIGNATURE)


def test_a_weak_peer_id_text_does_not_parse() -> None:
    text = PeerId.from_public_key(Identity.from_seed(bytes(32)).public_key_bytes).to_string()
    assert PeerId.from_string(text)
    # Re-encode the text form around the identity key: the checksum is right, the key weak.
    import base64

    binary = b"\x01\xed" + IDENTITY
    checksum = hashlib.sha256(b"spacepanda/peer-id/v1" + binary).digest()[:4]
    weak = "sp" + base64.b32encode(binary + checksum).decode().rstrip("=").lower()
    with pytest.raises(IdentityError):
        PeerId.from_string(weak)


@pytest.mark.parametrize("r", WEAK_KEYS, ids=lambda k: bytes(k).hex()[:12] + bytes(k).hex()[-4:])
def test_signatures_with_a_weak_r_are_refused(r: bytes) -> None:
    assert not is_strict_signature(r + bytes(32))


def test_signature_shape() -> None:
    identity = Identity.from_seed(bytes(range(32)))
    sig = identity.sign(b"m")
    assert is_strict_signature(sig)
    assert not is_strict_signature(sig[:63])
    assert not is_strict_signature(sig + b"\0")
    assert not is_strict_signature(sig[:32] + L.to_bytes(32, "little"))
    assert is_strict_signature(sig[:32] + (L - 1).to_bytes(32, "little"))
    assert not identity.peer_id.verify(TRIVIAL_SIGNATURE, b"m")


def test_generated_keys_are_strict() -> None:
    for i in range(64):
        identity = Identity.from_seed(hashlib.sha256(b"%d" % i).digest())
        assert is_strict_public_key(identity.public_key_bytes)
        assert is_strict_signature(identity.sign(b"%d" % i))


def test_the_mls_copy_is_identical() -> None:
    # mls imports nothing of ours, so it carries its own copy of the rules.
    for name in ("L", "P", "SMALL_ORDER_POINTS"):
        assert getattr(ed25519_strict, name) == getattr(ed25519, name)
    rand = random.Random(11)
    samples = [*WEAK_KEYS, *(rand.randbytes(32) for _ in range(200))]
    for key in samples:
        assert ed25519_strict.is_strict_public_key(key) == is_strict_public_key(key)
        for s in (bytes(32), (L - 1).to_bytes(32, "little"), L.to_bytes(32, "little")):
            assert ed25519_strict.is_strict_signature(key + s) == is_strict_signature(key + s)
