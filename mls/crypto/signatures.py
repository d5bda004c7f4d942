"""Signature schemes of the MLS cipher suites over raw byte keys (RFC 9420 5.1.1-5.1.2).

* Ed25519 / Ed448 (RFC 8032): private key = the 32/57-byte seed, public key = 32/57 bytes,
  signature = R || S.
* ECDSA over P-256/SHA-256, P-384/SHA-384, P-521/SHA-512: private key = the big-endian scalar
  in the field size (32/48/66 bytes), public key = the uncompressed point, signature = DER
  ``ECDSA-Sig-Value`` as in TLS 1.3. Signing is deterministic (RFC 6979), so no randomness is
  drawn inside a signature; verification accepts any valid DER signature.

``verify`` never raises on hostile input: a malformed key or signature is just ``False``.
Ed25519 verification is strict (canonical encodings, no small-order keys, S < L).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mls.crypto.ed25519_strict import is_strict_public_key, is_strict_signature
from mls.crypto.hpke import Rng
from mls.crypto.kems import (
    P256_ORDER,
    P384_ORDER,
    P521_ORDER,
    nist_private_key,
    nist_public_key,
)
from mls.crypto.keycache import KeyCache
from mls.errors import CryptoError, MlsError

__all__ = [
    "ECDSA_P256_SHA256",
    "ECDSA_P384_SHA384",
    "ECDSA_P521_SHA512",
    "ED448",
    "ED25519",
    "EcdsaScheme",
    "Ed448Scheme",
    "Ed25519Scheme",
    "SignatureScheme",
]


class SignatureScheme:
    """A signature algorithm over raw byte keys."""

    scheme_id: int
    name: str

    def generate(self, rng: Rng | None = None) -> tuple[bytes, bytes]:
        """-> (private key, public key)."""
        raise NotImplementedError

    def public_key(self, priv: bytes) -> bytes:
        raise NotImplementedError

    def sign(self, priv: bytes, message: bytes) -> bytes:
        raise NotImplementedError

    def verify(self, pub: bytes, message: bytes, signature: bytes) -> bool:
        raise NotImplementedError


class Ed25519Scheme(SignatureScheme):
    scheme_id = 0x0807
    name = "ed25519"

    # A process signs with very few keys; verification keys are one per sender (group size).
    PRIVATE_CACHE = 32
    PUBLIC_CACHE = 4096

    def __init__(self) -> None:
        self._privs = KeyCache(self.PRIVATE_CACHE)
        self._pubs = KeyCache(self.PUBLIC_CACHE)

    def __repr__(self) -> str:
        return "Ed25519Scheme()"

    def _priv(self, priv: bytes) -> ed25519.Ed25519PrivateKey:
        if type(priv) is not bytes:  # bytearray / memoryview are not hashable
            priv = bytes(priv)
        key = self._privs.get(priv)
        if key is not None:
            assert isinstance(key, ed25519.Ed25519PrivateKey)
            return key
        if len(priv) != 32:
            raise CryptoError("Ed25519 private key must be 32 bytes")
        parsed = ed25519.Ed25519PrivateKey.from_private_bytes(priv)
        self._privs.put(priv, parsed)
        return parsed

    def _pub(self, pub: bytes) -> ed25519.Ed25519PublicKey:
        if type(pub) is not bytes:
            pub = bytes(pub)
        key = self._pubs.get(pub)
        if key is not None:
            assert isinstance(key, ed25519.Ed25519PublicKey)
            return key
        parsed = ed25519.Ed25519PublicKey.from_public_bytes(pub)  # ValueError if invalid
        self._pubs.put(pub, parsed)
        return parsed

    def generate(self, rng: Rng | None = None) -> tuple[bytes, bytes]:
        priv = (rng or os.urandom)(32)
        return priv, self.public_key(priv)

    def public_key(self, priv: bytes) -> bytes:
        return self._priv(priv).public_key().public_bytes_raw()

    def sign(self, priv: bytes, message: bytes) -> bytes:
        return self._priv(priv).sign(message)

    def verify(self, pub: bytes, message: bytes, signature: bytes) -> bool:
        # Strict: small-order or non-canonical keys, non-canonical R and S >= L are refused
        # before OpenSSL, which accepts some of them (see mls.crypto.ed25519_strict).
        pub, signature = bytes(pub), bytes(signature)
        if not is_strict_public_key(pub) or not is_strict_signature(signature):
            return False
        try:
            self._pub(pub).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class Ed448Scheme(SignatureScheme):
    scheme_id = 0x0808
    name = "ed448"

    def __init__(self) -> None:
        self._privs = KeyCache(32)
        self._pubs = KeyCache(4096)

    def __repr__(self) -> str:
        return "Ed448Scheme()"

    def _priv(self, priv: bytes) -> ed448.Ed448PrivateKey:
        priv = bytes(priv)
        key = self._privs.get(priv)
        if key is None:
            if len(priv) != 57:
                raise CryptoError("Ed448 private key must be 57 bytes")
            key = ed448.Ed448PrivateKey.from_private_bytes(priv)
            self._privs.put(priv, key)
        assert isinstance(key, ed448.Ed448PrivateKey)
        return key

    def _pub(self, pub: bytes) -> ed448.Ed448PublicKey:
        pub = bytes(pub)
        key = self._pubs.get(pub)
        if key is None:
            key = ed448.Ed448PublicKey.from_public_bytes(pub)  # ValueError if invalid
            self._pubs.put(pub, key)
        assert isinstance(key, ed448.Ed448PublicKey)
        return key

    def generate(self, rng: Rng | None = None) -> tuple[bytes, bytes]:
        priv = (rng or os.urandom)(57)
        return priv, self.public_key(priv)

    def public_key(self, priv: bytes) -> bytes:
        return self._priv(priv).public_key().public_bytes_raw()

    def sign(self, priv: bytes, message: bytes) -> bytes:
        return self._priv(priv).sign(message)

    def verify(self, pub: bytes, message: bytes, signature: bytes) -> bool:
        if len(pub) != 57 or len(signature) != 114:
            return False
        try:
            self._pub(pub).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class EcdsaScheme(SignatureScheme):
    """ECDSA with a NIST curve and its hash; DER signatures, deterministic signing."""

    def __init__(
        self,
        scheme_id: int,
        name: str,
        curve: ec.EllipticCurve,
        hash_algorithm: hashes.HashAlgorithm,
        order: int,
    ) -> None:
        self.scheme_id = scheme_id
        self.name = name
        self.curve = curve
        self.order = order
        self.n_sk = (curve.key_size + 7) // 8
        self.n_pk = 1 + 2 * self.n_sk
        self._algorithm = ec.ECDSA(hash_algorithm, deterministic_signing=True)
        self._verify_algorithm = ec.ECDSA(hash_algorithm)
        self._privs = KeyCache(32)
        self._pubs = KeyCache(4096)
        # A DER ECDSA-Sig-Value is at most 2 * (n_sk + 3) + 3 bytes; anything longer is junk.
        self.max_signature = 2 * (self.n_sk + 3) + 3

    def __repr__(self) -> str:
        return f"EcdsaScheme({self.name})"

    def _priv(self, priv: bytes) -> ec.EllipticCurvePrivateKey:
        priv = bytes(priv)
        key = self._privs.get(priv)
        if key is None:
            key = nist_private_key(self.curve, priv, self.n_sk)
            self._privs.put(priv, key)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def _pub(self, pub: bytes) -> ec.EllipticCurvePublicKey:
        pub = bytes(pub)
        key = self._pubs.get(pub)
        if key is None:
            key = nist_public_key(self.curve, pub, self.n_pk)
            self._pubs.put(pub, key)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def generate(self, rng: Rng | None = None) -> tuple[bytes, bytes]:
        """A uniformly random scalar (rejection sampling over the field size, top byte
        masked to the order's bit length)."""
        draw = rng or os.urandom
        top_bits = self.order.bit_length() % 8 or 8
        mask = (1 << top_bits) - 1
        for _ in range(256):  # a fair RNG needs more than one draw with prob. < 2^-31
            raw = bytearray(draw(self.n_sk))
            raw[0] &= mask
            if 0 < int.from_bytes(raw, "big") < self.order:
                priv = bytes(raw)
                return priv, self.public_key(priv)
        raise CryptoError("the RNG gave no valid scalar in 256 draws")

    def public_key(self, priv: bytes) -> bytes:
        key = self._priv(priv).public_key()
        return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def sign(self, priv: bytes, message: bytes) -> bytes:
        return self._priv(priv).sign(message, self._algorithm)

    def verify(self, pub: bytes, message: bytes, signature: bytes) -> bool:
        if len(pub) != self.n_pk or not 8 <= len(signature) <= self.max_signature:
            return False
        try:
            self._pub(pub).verify(signature, message, self._verify_algorithm)
        except (InvalidSignature, ValueError, MlsError):
            return False
        return True


ED25519 = Ed25519Scheme()
ED448 = Ed448Scheme()
ECDSA_P256_SHA256 = EcdsaScheme(
    0x0403, "ecdsa_secp256r1_sha256", ec.SECP256R1(), hashes.SHA256(), P256_ORDER
)
ECDSA_P384_SHA384 = EcdsaScheme(
    0x0503, "ecdsa_secp384r1_sha384", ec.SECP384R1(), hashes.SHA384(), P384_ORDER
)
ECDSA_P521_SHA512 = EcdsaScheme(
    0x0603, "ecdsa_secp521r1_sha512", ec.SECP521R1(), hashes.SHA512(), P521_ORDER
)
