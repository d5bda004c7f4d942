"""Noise hash functions, HKDF and ``SymmetricState`` (spec rev 34, sections 4.3, 5.2)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from node.transport.noise.cipher import KEY_LEN, CipherFunction, CipherState

__all__ = ["HASHES", "HashFunction", "SymmetricState"]


@dataclass(frozen=True)
class HashFunction:
    """A Noise hash: its name, HASHLEN and hashlib name (HMAC uses the hash's own block size,
    which is what the spec asks for: 64 bytes for BLAKE2s, 128 for BLAKE2b)."""

    name: str
    hashlen: int
    hashlib_name: str

    def hash(self, data: bytes) -> bytes:
        return hashlib.new(self.hashlib_name, data).digest()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self.hashlib_name)

    def hkdf(self, ck: bytes, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
        """The spec's HKDF: HMAC chain over a temporary key, 2 or 3 outputs of HASHLEN."""
        temp = self.hmac(ck, ikm)
        out1 = self.hmac(temp, b"\x01")
        out2 = self.hmac(temp, out1 + b"\x02")
        if outputs == 2:
            return out1, out2
        return out1, out2, self.hmac(temp, out2 + b"\x03")


HASHES: dict[str, HashFunction] = {
    h.name: h
    for h in (
        HashFunction("SHA256", 32, "sha256"),
        HashFunction("SHA512", 64, "sha512"),
        HashFunction("BLAKE2s", 32, "blake2s"),
        HashFunction("BLAKE2b", 64, "blake2b"),
    )
}


class SymmetricState:
    """Chaining key ``ck``, handshake hash ``h`` and the handshake ``CipherState``."""

    __slots__ = ("_ck", "_cs", "_h", "_hash")

    def __init__(self, protocol_name: bytes, cipher: CipherFunction, hash_fn: HashFunction) -> None:
        self._hash = hash_fn
        if len(protocol_name) <= hash_fn.hashlen:
            self._h = protocol_name.ljust(hash_fn.hashlen, b"\x00")
        else:
            self._h = hash_fn.hash(protocol_name)
        self._ck = self._h
        self._cs = CipherState(cipher)

    def __repr__(self) -> str:
        return f"SymmetricState({self._hash.name}, has_key={self._cs.has_key()})"

    @property
    def handshake_hash(self) -> bytes:
        return self._h

    def has_key(self) -> bool:
        return self._cs.has_key()

    def mix_key(self, ikm: bytes) -> None:
        self._ck, temp_k = self._hash.hkdf(self._ck, ikm, 2)
        # HASHLEN 64 outputs are truncated to the 32-byte cipher key.
        self._cs.initialize_key(temp_k[:KEY_LEN])

    def mix_hash(self, data: bytes) -> None:
        self._h = self._hash.hash(self._h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self._ck, temp_h, temp_k = self._hash.hkdf(self._ck, ikm, 3)
        self.mix_hash(temp_h)
        self._cs.initialize_key(temp_k[:KEY_LEN])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self._cs.encrypt_with_ad(self._h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """Raises ``DecodeError`` (from ``CipherState``) when authentication fails."""
        plaintext = self._cs.decrypt_with_ad(self._h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """(initiator->responder, responder->initiator) cipher states; wipes ``ck``."""
        temp_k1, temp_k2 = self._hash.hkdf(self._ck, b"", 2)
        cipher = self._cs.cipher
        self._ck = b""
        self._cs.initialize_key(None)
        return CipherState(cipher, temp_k1[:KEY_LEN]), CipherState(cipher, temp_k2[:KEY_LEN])
