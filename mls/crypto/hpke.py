"""HPKE (RFC 9180) over ``cryptography`` primitives: all four modes, DHKEM base class,
DHKEM(X25519). The other KEMs (X448, P-256, P-384, P-521) are in ``mls.crypto.kems``.

The ``cryptography`` package ships HPKE (base mode, no X448), but it cannot take a fixed
ephemeral key, has no exporter and no DeriveKeyPair. RFC 9180's key schedule is small, so it
is written out here; when the caller wants exactly what the library offers (base mode,
random ephemeral from the OS, empty AAD, a KEM it knows) the library does the single-shot
seal/open, and tests check both paths agree. MLS uses base mode only; the PSK and Auth
modes are here so every case of the RFC 9180 vectors runs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke as _lib
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from mls.errors import CryptoError

__all__ = [
    "AEAD_AES128GCM",
    "AEAD_AES256GCM",
    "AEAD_CHACHA20POLY1305",
    "AEAD_EXPORT_ONLY",
    "KDF_HKDF_SHA256",
    "KDF_HKDF_SHA384",
    "KDF_HKDF_SHA512",
    "KEM_X25519_HKDF_SHA256",
    "MODE_AUTH",
    "MODE_AUTH_PSK",
    "MODE_BASE",
    "MODE_PSK",
    "Aead",
    "Context",
    "DhKemX25519",
    "HpkeSuite",
    "Kdf",
    "Kem",
    "Rng",
]

Rng = Callable[[int], bytes]
MODE_BASE = 0x00
MODE_PSK = 0x01
MODE_AUTH = 0x02
MODE_AUTH_PSK = 0x03
_HPKE_V1 = b"HPKE-v1"


class Kdf:
    """HKDF (RFC 5869) over one hashlib hash."""

    __slots__ = ("hash_name", "kdf_id", "nh")

    def __init__(self, kdf_id: int, hash_name: str) -> None:
        self.kdf_id = kdf_id
        self.hash_name = hash_name
        self.nh = hashlib.new(hash_name).digest_size

    def __repr__(self) -> str:
        return f"Kdf(0x{self.kdf_id:04x}, {self.hash_name})"

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        return hmac.digest(salt or bytes(self.nh), ikm, self.hash_name)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        if length < 0 or length > 255 * self.nh:
            raise CryptoError(f"HKDF-Expand length {length} out of range")
        if length <= self.nh:  # every HPKE/MLS key, nonce and secret: one block
            return hmac.digest(prk, info + b"\x01", self.hash_name)[:length]
        out = b""
        block = b""
        counter = 1
        while len(out) < length:
            block = hmac.digest(prk, block + info + bytes((counter,)), self.hash_name)
            out += block
            counter += 1
        return out[:length]


class Aead:
    """An HPKE AEAD: key/nonce/tag sizes and one-shot seal/open."""

    __slots__ = ("_cls", "aead_id", "nk", "nn", "nt")

    def __init__(
        self,
        aead_id: int,
        nk: int,
        nn: int,
        nt: int,
        cls: type[AESGCM] | type[ChaCha20Poly1305] | None,
    ) -> None:
        self.aead_id = aead_id
        self.nk = nk
        self.nn = nn
        self.nt = nt
        self._cls = cls

    def __repr__(self) -> str:
        return f"Aead(0x{self.aead_id:04x})"

    @property
    def export_only(self) -> bool:
        return self._cls is None

    def _cipher(self, key: bytes, nonce: bytes) -> AESGCM | ChaCha20Poly1305:
        if self._cls is None:
            raise CryptoError("export-only AEAD cannot seal or open")
        if len(key) != self.nk or len(nonce) != self.nn:
            raise CryptoError("AEAD key or nonce has the wrong length")
        return self._cls(key)

    def seal(self, key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
        return self._cipher(key, nonce).encrypt(nonce, pt, aad)

    def open(self, key: bytes, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        cipher = self._cipher(key, nonce)
        try:
            return cipher.decrypt(nonce, ct, aad)
        except InvalidTag:
            raise CryptoError("AEAD authentication failed") from None


KDF_HKDF_SHA256 = Kdf(0x0001, "sha256")
KDF_HKDF_SHA384 = Kdf(0x0002, "sha384")
KDF_HKDF_SHA512 = Kdf(0x0003, "sha512")
AEAD_AES128GCM = Aead(0x0001, 16, 12, 16, AESGCM)
AEAD_AES256GCM = Aead(0x0002, 32, 12, 16, AESGCM)
AEAD_CHACHA20POLY1305 = Aead(0x0003, 32, 12, 16, ChaCha20Poly1305)
AEAD_EXPORT_ONLY = Aead(0xFFFF, 0, 0, 0, None)


def _labeled_extract(kdf: Kdf, suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return kdf.extract(salt, _HPKE_V1 + suite_id + label + ikm)


def _labeled_expand(
    kdf: Kdf, suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int
) -> bytes:
    if length > 0xFFFF:
        raise CryptoError("LabeledExpand length exceeds 2 bytes")
    labeled_info = length.to_bytes(2, "big") + _HPKE_V1 + suite_id + label + info
    return kdf.expand(prk, labeled_info, length)


class Kem:
    """A DHKEM (RFC 9180 section 4.1); subclasses supply the group operations."""

    kem_id: int
    n_secret: int
    n_enc: int
    n_pk: int
    n_sk: int
    kdf: Kdf

    @property
    def suite_id(self) -> bytes:
        return b"KEM" + self.kem_id.to_bytes(2, "big")

    # Group operations (raw byte encodings: SerializePublicKey / SerializePrivateKey).
    def public_key(self, sk: bytes) -> bytes:
        raise NotImplementedError

    def dh(self, sk: bytes, pk: bytes) -> bytes:
        raise NotImplementedError

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        raise NotImplementedError

    def generate_key_pair(self, rng: Rng | None = None) -> tuple[bytes, bytes]:
        return self.derive_key_pair((rng or os.urandom)(self.n_sk))

    def derive_private_key(self, ikm: bytes) -> bytes:
        """DeriveKeyPair's private half only; subclasses skip computing the public key."""
        return self.derive_key_pair(ikm)[0]

    def _extract_and_expand(self, dh: bytes, kem_context: bytes) -> bytes:
        prk = _labeled_extract(self.kdf, self.suite_id, b"", b"eae_prk", dh)
        return _labeled_expand(
            self.kdf, self.suite_id, prk, b"shared_secret", kem_context, self.n_secret
        )

    def encap(self, pk_r: bytes, sk_e: bytes) -> tuple[bytes, bytes]:
        """Encap with the given ephemeral private key -> (shared_secret, enc)."""
        enc = self.public_key(sk_e)
        dh = self.dh(sk_e, pk_r)
        return self._extract_and_expand(dh, enc + pk_r), enc

    def decap(self, enc: bytes, sk_r: bytes) -> bytes:
        dh = self.dh(sk_r, enc)
        return self._extract_and_expand(dh, enc + self.public_key(sk_r))

    def auth_encap(self, pk_r: bytes, sk_e: bytes, sk_s: bytes) -> tuple[bytes, bytes]:
        """AuthEncap with the given ephemeral key -> (shared_secret, enc)."""
        enc = self.public_key(sk_e)
        dh = self.dh(sk_e, pk_r) + self.dh(sk_s, pk_r)
        return self._extract_and_expand(dh, enc + pk_r + self.public_key(sk_s)), enc

    def auth_decap(self, enc: bytes, sk_r: bytes, pk_s: bytes) -> bytes:
        dh = self.dh(sk_r, enc) + self.dh(sk_r, pk_s)
        return self._extract_and_expand(dh, enc + self.public_key(sk_r) + pk_s)

    # The library's single-shot HPKE takes key objects; None means "not supported there".
    def lib_public_key(self, pk: bytes) -> object | None:
        return None

    def lib_private_key(self, sk: bytes) -> object | None:
        return None


class DhKemX25519(Kem):
    kem_id = 0x0020
    n_secret = 32
    n_enc = 32
    n_pk = 32
    n_sk = 32

    def __init__(self) -> None:
        self.kdf = KDF_HKDF_SHA256

    def __repr__(self) -> str:
        return "DhKemX25519()"

    def _priv(self, sk: bytes) -> x25519.X25519PrivateKey:
        if len(sk) != 32:
            raise CryptoError("X25519 private key must be 32 bytes")
        return x25519.X25519PrivateKey.from_private_bytes(sk)

    def _pub(self, pk: bytes) -> x25519.X25519PublicKey:
        if len(pk) != 32:
            raise CryptoError("X25519 public key must be 32 bytes")
        return x25519.X25519PublicKey.from_public_bytes(pk)

    def public_key(self, sk: bytes) -> bytes:
        return self._priv(sk).public_key().public_bytes_raw()

    def dh(self, sk: bytes, pk: bytes) -> bytes:
        return self._exchange(self._priv(sk), pk)

    def derive_private_key(self, ikm: bytes) -> bytes:
        prk = _labeled_extract(self.kdf, self.suite_id, b"", b"dkp_prk", ikm)
        return _labeled_expand(self.kdf, self.suite_id, prk, b"sk", b"", self.n_sk)

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        sk = self.derive_private_key(ikm)
        return sk, self.public_key(sk)

    # Building an X25519PrivateKey costs a scalar multiplication (about as much as the DH
    # itself), so encap/decap build it once and take both the public key and the DH from it.
    def _exchange(self, priv: x25519.X25519PrivateKey, pk: bytes) -> bytes:
        try:
            # cryptography rejects an all-zero result (low-order point), as RFC 9180 requires.
            return priv.exchange(self._pub(pk))
        except ValueError:
            raise CryptoError("X25519 key exchange failed") from None

    def encap(self, pk_r: bytes, sk_e: bytes) -> tuple[bytes, bytes]:
        priv = self._priv(sk_e)
        enc = priv.public_key().public_bytes_raw()
        dh = self._exchange(priv, pk_r)
        return self._extract_and_expand(dh, enc + pk_r), enc

    def decap(self, enc: bytes, sk_r: bytes) -> bytes:
        priv = self._priv(sk_r)
        dh = self._exchange(priv, enc)
        return self._extract_and_expand(dh, enc + priv.public_key().public_bytes_raw())

    def lib_public_key(self, pk: bytes) -> object:
        return self._pub(pk)

    def lib_private_key(self, sk: bytes) -> object:
        return self._priv(sk)


KEM_X25519_HKDF_SHA256 = DhKemX25519()


@dataclass
class Context:
    """An HPKE encryption context (RFC 9180 section 5.2): sequence-numbered AEAD + exporter."""

    suite: HpkeSuite
    key: bytes = field(repr=False)
    base_nonce: bytes = field(repr=False)
    exporter_secret: bytes = field(repr=False)
    seq: int = 0

    def _nonce(self) -> bytes:
        nn = self.suite.aead.nn
        # RFC 9180 IncrementSeq refuses to move past 2^(8*Nn) - 1, so that value is never used.
        if self.seq >= (1 << (8 * nn)) - 1:
            raise CryptoError("HPKE sequence number overflow")
        seq_bytes = self.seq.to_bytes(nn, "big")
        return bytes(a ^ b for a, b in zip(self.base_nonce, seq_bytes, strict=True))

    def seal(self, aad: bytes, pt: bytes) -> bytes:
        ct = self.suite.aead.seal(self.key, self._nonce(), aad, pt)
        self.seq += 1
        return ct

    def open(self, aad: bytes, ct: bytes) -> bytes:
        pt = self.suite.aead.open(self.key, self._nonce(), aad, ct)
        self.seq += 1
        return pt

    def export(self, exporter_context: bytes, length: int) -> bytes:
        return self.suite.labeled_expand(self.exporter_secret, b"sec", exporter_context, length)


_LIB_KEM = {
    0x0010: _lib.KEM.P256,
    0x0011: _lib.KEM.P384,
    0x0012: _lib.KEM.P521,
    0x0020: _lib.KEM.X25519,
}
_LIB_KDF = {
    0x0001: _lib.KDF.HKDF_SHA256,
    0x0002: _lib.KDF.HKDF_SHA384,
    0x0003: _lib.KDF.HKDF_SHA512,
}
_LIB_AEAD = {
    0x0001: _lib.AEAD.AES_128_GCM,
    0x0002: _lib.AEAD.AES_256_GCM,
    0x0003: _lib.AEAD.CHACHA20_POLY1305,
}


class HpkeSuite:
    """One (KEM, KDF, AEAD) combination in base mode."""

    __slots__ = ("_lib_suite", "_psk_id_hash", "aead", "kdf", "kem", "suite_id")

    def __init__(self, kem: Kem, kdf: Kdf, aead: Aead) -> None:
        self.kem = kem
        self.kdf = kdf
        self.aead = aead
        self.suite_id = (
            b"HPKE"
            + kem.kem_id.to_bytes(2, "big")
            + kdf.kdf_id.to_bytes(2, "big")
            + aead.aead_id.to_bytes(2, "big")
        )
        lib_parts = (
            _LIB_KEM.get(kem.kem_id),
            _LIB_KDF.get(kdf.kdf_id),
            _LIB_AEAD.get(aead.aead_id),
        )
        self._lib_suite = (
            _lib.Suite(lib_parts[0], lib_parts[1], lib_parts[2])
            if lib_parts[0] is not None and lib_parts[1] is not None and lib_parts[2] is not None
            else None
        )
        # Base mode has an empty psk_id, so its hash is a per-suite constant.
        self._psk_id_hash = self.labeled_extract(b"", b"psk_id_hash", b"")

    def __repr__(self) -> str:
        return f"HpkeSuite({self.kem!r}, {self.kdf!r}, {self.aead!r})"

    def labeled_extract(self, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return _labeled_extract(self.kdf, self.suite_id, salt, label, ikm)

    def labeled_expand(self, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
        return _labeled_expand(self.kdf, self.suite_id, prk, label, info, length)

    def key_schedule(
        self,
        shared_secret: bytes,
        info: bytes,
        mode: int = MODE_BASE,
        psk: bytes = b"",
        psk_id: bytes = b"",
    ) -> Context:
        """KeySchedule (RFC 9180 5.1); ``psk``/``psk_id`` exactly for the PSK modes."""
        with_psk = mode in (MODE_PSK, MODE_AUTH_PSK)
        if mode not in (MODE_BASE, MODE_PSK, MODE_AUTH, MODE_AUTH_PSK):
            raise CryptoError(f"unknown HPKE mode {mode}")
        if bool(psk) != bool(psk_id) or with_psk != bool(psk):
            raise CryptoError("PSK and PSK id must be given exactly in the PSK modes")
        psk_id_hash = (
            self._psk_id_hash if not psk_id else self.labeled_extract(b"", b"psk_id_hash", psk_id)
        )
        info_hash = self.labeled_extract(b"", b"info_hash", info)
        ksc = bytes((mode,)) + psk_id_hash + info_hash
        secret = self.labeled_extract(shared_secret, b"secret", psk)
        key = self.labeled_expand(secret, b"key", ksc, self.aead.nk)
        base_nonce = self.labeled_expand(secret, b"base_nonce", ksc, self.aead.nn)
        exporter_secret = self.labeled_expand(secret, b"exp", ksc, self.kdf.nh)
        return Context(self, key, base_nonce, exporter_secret)

    def setup_s(
        self,
        pk_r: bytes,
        info: bytes,
        *,
        psk: bytes = b"",
        psk_id: bytes = b"",
        sk_s: bytes | None = None,
        rng: Rng | None = None,
        ikm_e: bytes | None = None,
    ) -> tuple[bytes, Context]:
        """SetupBaseS / SetupPSKS / SetupAuthS / SetupAuthPSKS, chosen by which of ``psk``
        and ``sk_s`` (the sender's static key) are given -> (enc, context)."""
        if ikm_e is None:
            ikm_e = (rng or os.urandom)(self.kem.n_sk)
        sk_e = self.kem.derive_private_key(ikm_e)
        if sk_s is None:
            shared_secret, enc = self.kem.encap(pk_r, sk_e)
            mode = MODE_PSK if psk else MODE_BASE
        else:
            shared_secret, enc = self.kem.auth_encap(pk_r, sk_e, sk_s)
            mode = MODE_AUTH_PSK if psk else MODE_AUTH
        return enc, self.key_schedule(shared_secret, info, mode, psk, psk_id)

    def setup_r(
        self,
        enc: bytes,
        sk_r: bytes,
        info: bytes,
        *,
        psk: bytes = b"",
        psk_id: bytes = b"",
        pk_s: bytes | None = None,
    ) -> Context:
        """The receiver side of ``setup_s``: ``pk_s`` is the sender's static public key."""
        if len(enc) != self.kem.n_enc:
            raise CryptoError("HPKE enc has the wrong length")
        if pk_s is None:
            shared_secret = self.kem.decap(enc, sk_r)
            mode = MODE_PSK if psk else MODE_BASE
        else:
            shared_secret = self.kem.auth_decap(enc, sk_r, pk_s)
            mode = MODE_AUTH_PSK if psk else MODE_AUTH
        return self.key_schedule(shared_secret, info, mode, psk, psk_id)

    def setup_base_s(
        self,
        pk_r: bytes,
        info: bytes,
        *,
        rng: Rng | None = None,
        ikm_e: bytes | None = None,
    ) -> tuple[bytes, Context]:
        """SetupBaseS -> (enc, context). ``ikm_e`` fixes the ephemeral key (tests only)."""
        # Same ephemeral key as generate_key_pair(rng) / derive_key_pair(ikm_e), without
        # computing a public key that encap derives again anyway.
        if ikm_e is None:
            ikm_e = (rng or os.urandom)(self.kem.n_sk)
        sk_e = self.kem.derive_private_key(ikm_e)
        shared_secret, enc = self.kem.encap(pk_r, sk_e)
        return enc, self.key_schedule(shared_secret, info)

    def setup_base_r(self, enc: bytes, sk_r: bytes, info: bytes) -> Context:
        if len(enc) != self.kem.n_enc:
            raise CryptoError("HPKE enc has the wrong length")
        return self.key_schedule(self.kem.decap(enc, sk_r), info)

    def seal(
        self,
        pk_r: bytes,
        info: bytes,
        aad: bytes,
        pt: bytes,
        *,
        rng: Rng | None = None,
        ikm_e: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        """Single-shot SealBase -> (enc, ciphertext)."""
        if self._lib_suite is not None and rng is None and ikm_e is None and not aad:
            return self._lib_seal(pk_r, info, pt)
        enc, ctx = self.setup_base_s(pk_r, info, rng=rng, ikm_e=ikm_e)
        return enc, ctx.seal(aad, pt)

    def open(self, enc: bytes, sk_r: bytes, info: bytes, aad: bytes, ct: bytes) -> bytes:
        """Single-shot OpenBase."""
        if self._lib_suite is not None and not aad:
            return self._lib_open(enc, sk_r, info, ct)
        return self.setup_base_r(enc, sk_r, info).open(aad, ct)

    def send_export(
        self,
        pk_r: bytes,
        info: bytes,
        exporter_context: bytes,
        length: int,
        *,
        rng: Rng | None = None,
        ikm_e: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        """SendExport (RFC 9180 section 6.2) -> (enc, exported secret)."""
        enc, ctx = self.setup_base_s(pk_r, info, rng=rng, ikm_e=ikm_e)
        return enc, ctx.export(exporter_context, length)

    def receive_export(
        self, enc: bytes, sk_r: bytes, info: bytes, exporter_context: bytes, length: int
    ) -> bytes:
        return self.setup_base_r(enc, sk_r, info).export(exporter_context, length)

    # The library path: the KEM builds the key objects (and checks their encodings).
    def _lib_seal(self, pk_r: bytes, info: bytes, pt: bytes) -> tuple[bytes, bytes]:
        assert self._lib_suite is not None
        pub = self.kem.lib_public_key(pk_r)
        try:
            out = self._lib_suite.encrypt(pt, pub, info)  # type: ignore[arg-type]
        except ValueError:
            raise CryptoError("HPKE seal failed") from None
        n = self.kem.n_enc
        return out[:n], out[n:]

    def _lib_open(self, enc: bytes, sk_r: bytes, info: bytes, ct: bytes) -> bytes:
        assert self._lib_suite is not None
        if len(enc) != self.kem.n_enc:
            raise CryptoError("HPKE enc has the wrong length")
        priv = self.kem.lib_private_key(sk_r)
        try:
            return self._lib_suite.decrypt(enc + ct, priv, info)  # type: ignore[arg-type]
        except (InvalidTag, ValueError):
            raise CryptoError("HPKE open failed") from None
