"""The DHKEMs of RFC 9180 besides X25519: DHKEM(X448, HKDF-SHA512) and DHKEM over the NIST
curves P-256, P-384 and P-521 (HKDF-SHA256/384/512), on ``cryptography``.

Encodings are RFC 9180's (section 7.1): NIST public keys are uncompressed SEC1 points
(``0x04 || x || y``), private keys the big-endian scalar in exactly Nsk bytes, and the DH
value is the x-coordinate; X448 keys are the RFC 7748 byte strings. DeriveKeyPair follows
section 7.1.3: X448 expands ``"sk"``; the NIST curves sample ``"candidate"`` strings, mask the
top byte (0xFF, or 0x01 for P-521) and reject 0 and values at or above the group order.

Parsed key objects are cached by their bytes (building one costs a scalar multiplication);
the caches are bounded so a flood of distinct keys cannot grow memory.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, x448
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mls.crypto.hpke import (
    KDF_HKDF_SHA256,
    KDF_HKDF_SHA384,
    KDF_HKDF_SHA512,
    Kdf,
    Kem,
    _labeled_expand,
    _labeled_extract,
)
from mls.crypto.keycache import KeyCache
from mls.errors import CryptoError

__all__ = [
    "KEM_P256_HKDF_SHA256",
    "KEM_P384_HKDF_SHA384",
    "KEM_P521_HKDF_SHA512",
    "KEM_X448_HKDF_SHA512",
    "P256_ORDER",
    "P384_ORDER",
    "P521_ORDER",
    "DhKemNist",
    "DhKemX448",
    "nist_private_key",
    "nist_public_key",
]

# Group orders (SEC 2 / FIPS 186-4 D.1.2).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)
P521_ORDER = int(
    "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
    "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)
_ORDERS: dict[str, int] = {
    "secp256r1": P256_ORDER,
    "secp384r1": P384_ORDER,
    "secp521r1": P521_ORDER,
}


def nist_private_key(curve: ec.EllipticCurve, sk: bytes, size: int) -> ec.EllipticCurvePrivateKey:
    """A private key from its big-endian scalar; CryptoError unless 0 < scalar < order.

    RFC 9180 serializes the scalar in exactly ``size`` bytes; shorter strings are taken as
    that scalar with its leading zero bytes dropped, because some implementations (and
    the official MLS vectors, e.g. a 65-byte P-521 key) serialize it that way. Private
    keys are local input, never read off the wire."""
    if not 0 < len(sk) <= size:
        raise CryptoError(f"{curve.name} private key must be at most {size} bytes")
    k = int.from_bytes(sk, "big")
    if not 0 < k < _ORDERS[curve.name]:
        raise CryptoError(f"{curve.name} private key out of range")
    return ec.derive_private_key(k, curve)


def nist_public_key(curve: ec.EllipticCurve, pk: bytes, size: int) -> ec.EllipticCurvePublicKey:
    """A public key from its uncompressed point (``size`` bytes); CryptoError unless it is
    a point on the curve (not the identity)."""
    if len(pk) != size or pk[0] != 0x04:
        raise CryptoError(f"{curve.name} public key must be an uncompressed {size}-byte point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, pk)
    except ValueError:
        raise CryptoError(f"{curve.name} public key is not on the curve") from None


def _uncompressed(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


class DhKemNist(Kem):
    """DHKEM over a NIST prime curve (RFC 9180 7.1)."""

    PRIVATE_CACHE = 64
    PUBLIC_CACHE = 4096

    def __init__(
        self, kem_id: int, curve: ec.EllipticCurve, kdf: Kdf, n_secret: int, bitmask: int
    ) -> None:
        self.kem_id = kem_id
        self.curve = curve
        self.kdf = kdf
        self.n_secret = n_secret
        self.n_sk = (curve.key_size + 7) // 8
        self.n_pk = self.n_enc = 1 + 2 * self.n_sk
        self.bitmask = bitmask
        self.order = _ORDERS[curve.name]
        self._privs = KeyCache(self.PRIVATE_CACHE)
        self._pubs = KeyCache(self.PUBLIC_CACHE)

    def __repr__(self) -> str:
        return f"DhKemNist(0x{self.kem_id:04x}, {self.curve.name})"

    def _priv(self, sk: bytes) -> ec.EllipticCurvePrivateKey:
        sk = bytes(sk)
        key = self._privs.get(sk)
        if key is None:
            key = nist_private_key(self.curve, sk, self.n_sk)
            self._privs.put(sk, key)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def _pub(self, pk: bytes) -> ec.EllipticCurvePublicKey:
        pk = bytes(pk)
        key = self._pubs.get(pk)
        if key is None:
            key = nist_public_key(self.curve, pk, self.n_pk)
            self._pubs.put(pk, key)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def public_key(self, sk: bytes) -> bytes:
        return _uncompressed(self._priv(sk).public_key())

    def dh(self, sk: bytes, pk: bytes) -> bytes:
        # ECDH gives the x-coordinate, left-padded to the field size (Ndh = Nsk bytes).
        return self._exchange(self._priv(sk), pk)

    def _exchange(self, priv: ec.EllipticCurvePrivateKey, pk: bytes) -> bytes:
        try:
            return priv.exchange(ec.ECDH(), self._pub(pk))
        except ValueError:
            raise CryptoError("ECDH failed") from None

    # Ephemeral keys are built once per encap and not cached (they would push the members'
    # long-lived keys out of the cache); receivers' keys are cached.
    def encap(self, pk_r: bytes, sk_e: bytes) -> tuple[bytes, bytes]:
        priv = nist_private_key(self.curve, sk_e, self.n_sk)
        enc = _uncompressed(priv.public_key())
        return self._extract_and_expand(self._exchange(priv, pk_r), enc + pk_r), enc

    def decap(self, enc: bytes, sk_r: bytes) -> bytes:
        priv = self._priv(sk_r)
        pk_rm = _uncompressed(priv.public_key())
        return self._extract_and_expand(self._exchange(priv, enc), enc + pk_rm)

    def derive_private_key(self, ikm: bytes) -> bytes:
        prk = _labeled_extract(self.kdf, self.suite_id, b"", b"dkp_prk", ikm)
        for counter in range(256):
            candidate = bytearray(
                _labeled_expand(
                    self.kdf, self.suite_id, prk, b"candidate", bytes((counter,)), self.n_sk
                )
            )
            candidate[0] &= self.bitmask
            if 0 < int.from_bytes(candidate, "big") < self.order:
                return bytes(candidate)
        raise CryptoError("DeriveKeyPair found no valid scalar")  # probability < 2^-256

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        sk = self.derive_private_key(ikm)
        return sk, self.public_key(sk)

    def lib_public_key(self, pk: bytes) -> object:
        return self._pub(pk)

    def lib_private_key(self, sk: bytes) -> object:
        return self._priv(sk)


class DhKemX448(Kem):
    """DHKEM(X448, HKDF-SHA512) (RFC 9180 7.1). The ``cryptography`` HPKE does not offer
    it, so every operation takes the written-out path."""

    kem_id = 0x0021
    n_secret = 64
    n_enc = 56
    n_pk = 56
    n_sk = 56

    def __init__(self) -> None:
        self.kdf = KDF_HKDF_SHA512
        self._privs = KeyCache(64)

    def __repr__(self) -> str:
        return "DhKemX448()"

    @staticmethod
    def _parse(sk: bytes) -> x448.X448PrivateKey:
        if len(sk) != 56:
            raise CryptoError("X448 private key must be 56 bytes")
        return x448.X448PrivateKey.from_private_bytes(bytes(sk))

    def _priv(self, sk: bytes) -> x448.X448PrivateKey:
        sk = bytes(sk)
        key = self._privs.get(sk)
        if key is None:
            key = self._parse(sk)
            self._privs.put(sk, key)
        assert isinstance(key, x448.X448PrivateKey)
        return key

    def _pub(self, pk: bytes) -> x448.X448PublicKey:
        if len(pk) != 56:
            raise CryptoError("X448 public key must be 56 bytes")
        return x448.X448PublicKey.from_public_bytes(bytes(pk))

    def public_key(self, sk: bytes) -> bytes:
        return self._priv(sk).public_key().public_bytes_raw()

    def dh(self, sk: bytes, pk: bytes) -> bytes:
        return self._exchange(self._priv(sk), pk)

    def _exchange(self, priv: x448.X448PrivateKey, pk: bytes) -> bytes:
        try:
            shared = priv.exchange(self._pub(pk))
        except ValueError:
            raise CryptoError("X448 key exchange failed") from None
        if not any(shared):  # RFC 9180 7.1.4: reject the all-zero value (low-order point)
            raise CryptoError("X448 key exchange gave the all-zero value")
        return shared

    def encap(self, pk_r: bytes, sk_e: bytes) -> tuple[bytes, bytes]:
        priv = self._parse(sk_e)  # ephemeral: built once, not cached
        enc = priv.public_key().public_bytes_raw()
        return self._extract_and_expand(self._exchange(priv, pk_r), enc + pk_r), enc

    def decap(self, enc: bytes, sk_r: bytes) -> bytes:
        priv = self._priv(sk_r)
        pk_rm = priv.public_key().public_bytes_raw()
        return self._extract_and_expand(self._exchange(priv, enc), enc + pk_rm)

    def derive_private_key(self, ikm: bytes) -> bytes:
        prk = _labeled_extract(self.kdf, self.suite_id, b"", b"dkp_prk", ikm)
        return _labeled_expand(self.kdf, self.suite_id, prk, b"sk", b"", self.n_sk)

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        sk = self.derive_private_key(ikm)
        return sk, self.public_key(sk)


KEM_P256_HKDF_SHA256 = DhKemNist(0x0010, ec.SECP256R1(), KDF_HKDF_SHA256, 32, 0xFF)
KEM_P384_HKDF_SHA384 = DhKemNist(0x0011, ec.SECP384R1(), KDF_HKDF_SHA384, 48, 0xFF)
KEM_P521_HKDF_SHA512 = DhKemNist(0x0012, ec.SECP521R1(), KDF_HKDF_SHA512, 64, 0x01)
KEM_X448_HKDF_SHA512 = DhKemX448()
