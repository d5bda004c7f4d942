"""MLS cipher suites (RFC 9420 section 5.1): one object bundling hash, KDF, AEAD, HPKE, signature.

Keys cross this API as raw bytes in RFC 9420's encodings (HPKE: SerializePublicKey /
SerializePrivateKey; Ed25519: the 32-byte public key and 32-byte seed), so group state can be
stored and compared without library objects. A P-256 suite would add a ``Kem`` subclass and a
``SignatureScheme`` and register here; nothing else changes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from mls.crypto.hpke import (
    AEAD_AES128GCM,
    AEAD_CHACHA20POLY1305,
    KDF_HKDF_SHA256,
    KEM_X25519_HKDF_SHA256,
    HpkeSuite,
    Rng,
)
from mls.errors import CryptoError, MlsError

__all__ = [
    "MLS_128_DHKEMX25519_AES128GCM_SHA256_ED25519",
    "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_ED25519",
    "SUITES",
    "CipherSuite",
    "Ed25519Scheme",
    "SignatureScheme",
    "get_suite",
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


class _KeyCache:
    """A small LRU of parsed key objects keyed by their raw bytes.

    Parsing an Ed25519 private key costs about as much as a signature (the library derives
    the public key each time), so the handful of keys a member signs and verifies with are
    kept parsed. Bounded, so a flood of distinct keys cannot grow memory."""

    __slots__ = ("_items", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, object] = OrderedDict()

    def get(self, raw: bytes) -> object | None:
        items = self._items
        obj = items.get(raw)
        if obj is not None:
            try:
                items.move_to_end(raw)
            except KeyError:  # evicted by another thread meanwhile: a miss is harmless
                return None
        return obj

    def put(self, raw: bytes, obj: object) -> None:
        items = self._items
        items[raw] = obj
        if len(items) > self._size:
            items.popitem(last=False)


class Ed25519Scheme(SignatureScheme):
    scheme_id = 0x0807
    name = "ed25519"

    # A process signs with very few keys; verification keys are one per sender (group size).
    PRIVATE_CACHE = 32
    PUBLIC_CACHE = 4096

    def __init__(self) -> None:
        self._privs = _KeyCache(self.PRIVATE_CACHE)
        self._pubs = _KeyCache(self.PUBLIC_CACHE)

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
        if len(pub) != 32 or len(signature) != 64:
            return False
        try:
            self._pub(pub).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True, eq=False)
class CipherSuite:
    """An MLS cipher suite. ``nh``/``nk``/``nn`` are RFC 9420's KDF.Nh, AEAD.Nk, AEAD.Nn."""

    suite_id: int
    name: str
    hash_name: str
    hpke: HpkeSuite
    signature: SignatureScheme

    def __repr__(self) -> str:
        return f"CipherSuite(0x{self.suite_id:04x} {self.name})"

    @property
    def nh(self) -> int:
        return self.hpke.kdf.nh

    @property
    def nk(self) -> int:
        return self.hpke.aead.nk

    @property
    def nn(self) -> int:
        return self.hpke.aead.nn

    @property
    def npk(self) -> int:
        return self.hpke.kem.n_pk

    # Hash / MAC / KDF
    def hash(self, data: bytes) -> bytes:
        return hashlib.new(self.hash_name, data).digest()

    def mac(self, key: bytes, data: bytes) -> bytes:
        """HMAC with the suite hash (membership tag, confirmation tag)."""
        return hmac.digest(key, data, self.hash_name)

    def verify_mac(self, key: bytes, data: bytes, tag: bytes) -> bool:
        return hmac.compare_digest(self.mac(key, data), tag)

    def kdf_extract(self, salt: bytes, ikm: bytes) -> bytes:
        return self.hpke.kdf.extract(salt, ikm)

    def kdf_expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        return self.hpke.kdf.expand(prk, info, length)

    # AEAD
    def aead_seal(self, key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
        return self.hpke.aead.seal(key, nonce, aad, pt)

    def aead_open(self, key: bytes, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        """Raises CryptoError on authentication failure."""
        return self.hpke.aead.open(key, nonce, aad, ct)

    # HPKE
    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """HPKE DeriveKeyPair -> (private key, public key)."""
        return self.hpke.kem.derive_key_pair(ikm)

    def generate_key_pair(self, rng: Rng | None = None) -> tuple[bytes, bytes]:
        return self.hpke.kem.generate_key_pair(rng)

    def hpke_public_key(self, priv: bytes) -> bytes:
        return self.hpke.kem.public_key(priv)

    def hpke_seal(
        self,
        pub: bytes,
        info: bytes,
        aad: bytes,
        pt: bytes,
        *,
        rng: Rng | None = None,
        ikm_e: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        """-> (kem_output, ciphertext)."""
        return self.hpke.seal(pub, info, aad, pt, rng=rng, ikm_e=ikm_e)

    def hpke_open(
        self, priv: bytes, kem_output: bytes, info: bytes, aad: bytes, ct: bytes
    ) -> bytes:
        """Raises CryptoError on failure."""
        return self.hpke.open(kem_output, priv, info, aad, ct)

    # Signatures
    def generate_signature_key_pair(self, rng: Rng | None = None) -> tuple[bytes, bytes]:
        return self.signature.generate(rng)

    def signature_public_key(self, priv: bytes) -> bytes:
        return self.signature.public_key(priv)

    def sign(self, priv: bytes, message: bytes) -> bytes:
        return self.signature.sign(priv, message)

    def verify(self, pub: bytes, message: bytes, signature: bytes) -> bool:
        return self.signature.verify(pub, message, signature)


_ED25519 = Ed25519Scheme()

MLS_128_DHKEMX25519_AES128GCM_SHA256_ED25519 = CipherSuite(
    0x0001,
    "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
    "sha256",
    HpkeSuite(KEM_X25519_HKDF_SHA256, KDF_HKDF_SHA256, AEAD_AES128GCM),
    _ED25519,
)
MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_ED25519 = CipherSuite(
    0x0003,
    "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519",
    "sha256",
    HpkeSuite(KEM_X25519_HKDF_SHA256, KDF_HKDF_SHA256, AEAD_CHACHA20POLY1305),
    _ED25519,
)

SUITES: dict[int, CipherSuite] = {
    s.suite_id: s
    for s in (
        MLS_128_DHKEMX25519_AES128GCM_SHA256_ED25519,
        MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_ED25519,
    )
}


def get_suite(suite_id: int) -> CipherSuite:
    try:
        return SUITES[suite_id]
    except KeyError:
        raise MlsError(f"unsupported cipher suite 0x{suite_id:04x}") from None
