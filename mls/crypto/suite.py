"""MLS cipher suites (RFC 9420 sections 5.1 and 17.1): one object bundling hash, KDF, AEAD,
HPKE, signature. All seven suites of the RFC are registered.

Keys cross this API as raw bytes in RFC 9420's encodings (HPKE: SerializePublicKey /
SerializePrivateKey; signatures: see ``mls.crypto.signatures``), so group state can be
stored and compared without library objects.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from mls.crypto.hpke import (
    AEAD_AES128GCM,
    AEAD_AES256GCM,
    AEAD_CHACHA20POLY1305,
    KDF_HKDF_SHA256,
    KDF_HKDF_SHA384,
    KDF_HKDF_SHA512,
    KEM_X25519_HKDF_SHA256,
    HpkeSuite,
    Rng,
)
from mls.crypto.kems import (
    KEM_P256_HKDF_SHA256,
    KEM_P384_HKDF_SHA384,
    KEM_P521_HKDF_SHA512,
    KEM_X448_HKDF_SHA512,
)
from mls.crypto.signatures import (
    ECDSA_P256_SHA256,
    ECDSA_P384_SHA384,
    ECDSA_P521_SHA512,
    ED448,
    ED25519,
    Ed25519Scheme,
    SignatureScheme,
)
from mls.errors import MlsError

__all__ = [
    "MLS_128_DHKEMP256_AES128GCM_SHA256_P256",
    "MLS_128_DHKEMX25519_AES128GCM_SHA256_ED25519",
    "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_ED25519",
    "MLS_256_DHKEMP384_AES256GCM_SHA384_P384",
    "MLS_256_DHKEMP521_AES256GCM_SHA512_P521",
    "MLS_256_DHKEMX448_AES256GCM_SHA512_ED448",
    "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_ED448",
    "SUITES",
    "CipherSuite",
    "Ed25519Scheme",
    "SignatureScheme",
    "get_suite",
]


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


MLS_128_DHKEMX25519_AES128GCM_SHA256_ED25519 = CipherSuite(
    0x0001,
    "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
    "sha256",
    HpkeSuite(KEM_X25519_HKDF_SHA256, KDF_HKDF_SHA256, AEAD_AES128GCM),
    ED25519,
)
MLS_128_DHKEMP256_AES128GCM_SHA256_P256 = CipherSuite(
    0x0002,
    "MLS_128_DHKEMP256_AES128GCM_SHA256_P256",
    "sha256",
    HpkeSuite(KEM_P256_HKDF_SHA256, KDF_HKDF_SHA256, AEAD_AES128GCM),
    ECDSA_P256_SHA256,
)
MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_ED25519 = CipherSuite(
    0x0003,
    "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519",
    "sha256",
    HpkeSuite(KEM_X25519_HKDF_SHA256, KDF_HKDF_SHA256, AEAD_CHACHA20POLY1305),
    ED25519,
)
MLS_256_DHKEMX448_AES256GCM_SHA512_ED448 = CipherSuite(
    0x0004,
    "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448",
    "sha512",
    HpkeSuite(KEM_X448_HKDF_SHA512, KDF_HKDF_SHA512, AEAD_AES256GCM),
    ED448,
)
MLS_256_DHKEMP521_AES256GCM_SHA512_P521 = CipherSuite(
    0x0005,
    "MLS_256_DHKEMP521_AES256GCM_SHA512_P521",
    "sha512",
    HpkeSuite(KEM_P521_HKDF_SHA512, KDF_HKDF_SHA512, AEAD_AES256GCM),
    ECDSA_P521_SHA512,
)
MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_ED448 = CipherSuite(
    0x0006,
    "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448",
    "sha512",
    HpkeSuite(KEM_X448_HKDF_SHA512, KDF_HKDF_SHA512, AEAD_CHACHA20POLY1305),
    ED448,
)
MLS_256_DHKEMP384_AES256GCM_SHA384_P384 = CipherSuite(
    0x0007,
    "MLS_256_DHKEMP384_AES256GCM_SHA384_P384",
    "sha384",
    HpkeSuite(KEM_P384_HKDF_SHA384, KDF_HKDF_SHA384, AEAD_AES256GCM),
    ECDSA_P384_SHA384,
)

SUITES: dict[int, CipherSuite] = {
    s.suite_id: s
    for s in (
        MLS_128_DHKEMX25519_AES128GCM_SHA256_ED25519,
        MLS_128_DHKEMP256_AES128GCM_SHA256_P256,
        MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_ED25519,
        MLS_256_DHKEMX448_AES256GCM_SHA512_ED448,
        MLS_256_DHKEMP521_AES256GCM_SHA512_P521,
        MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_ED448,
        MLS_256_DHKEMP384_AES256GCM_SHA384_P384,
    )
}


def get_suite(suite_id: int) -> CipherSuite:
    try:
        return SUITES[suite_id]
    except KeyError:
        raise MlsError(f"unsupported cipher suite 0x{suite_id:04x}") from None
