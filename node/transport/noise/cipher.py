"""Noise cipher functions and ``CipherState`` (spec rev 34, sections 4.2 and 5.1).

This object carries the bulk transport, so the hot path is kept short: the AEAD object is
built once per key, the 96-bit nonce is packed by a precompiled ``struct`` and the methods use
``__slots__`` attributes only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from node.core.errors import DecodeError, LimitExceeded
from node.transport.noise._misuse import local_error

__all__ = [
    "CIPHERS",
    "KEY_LEN",
    "MAX_MESSAGE_LEN",
    "MAX_NONCE",
    "TAG_LEN",
    "CipherFunction",
    "CipherState",
    "ClosedCipherState",
]

KEY_LEN = 32
TAG_LEN = 16
MAX_MESSAGE_LEN = 65535
# 2^64-1 is reserved for rekey(): encrypt/decrypt with it is an error (spec 5.1).
MAX_NONCE = 2**64 - 1
_MAX_PLAINTEXT = MAX_MESSAGE_LEN - TAG_LEN
_ZEROS = bytes(KEY_LEN)


class _Aead:
    """What ChaCha20Poly1305 and AESGCM have in common (for typing only)."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        raise NotImplementedError

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        raise NotImplementedError


@dataclass(frozen=True)
class CipherFunction:
    """A Noise cipher: its name, AEAD class and 12-byte nonce encoding."""

    name: str
    make_aead: Callable[[bytes], _Aead] = field(repr=False)
    pack_nonce: Callable[[int], bytes] = field(repr=False)


_CHACHAPOLY = CipherFunction(
    "ChaChaPoly",
    ChaCha20Poly1305,  # type: ignore[arg-type]
    # 32 zero bits then the counter little-endian (spec 12.3).
    struct.Struct("<4xQ").pack,
)
_AESGCM = CipherFunction(
    "AESGCM",
    AESGCM,  # type: ignore[arg-type]
    # 32 zero bits then the counter big-endian (spec 12.4).
    struct.Struct(">4xQ").pack,
)
CIPHERS: dict[str, CipherFunction] = {c.name: c for c in (_CHACHAPOLY, _AESGCM)}


class CipherState:
    """A key ``k`` (maybe empty) and a 64-bit counter ``n``; see spec section 5.1."""

    __slots__ = ("_aead", "_fn", "_k", "_n", "_pack")

    def __init__(self, cipher: CipherFunction, key: bytes | None = None) -> None:
        self._fn = cipher
        self._pack = cipher.pack_nonce
        self._k: bytes | None = None
        self._aead: _Aead | None = None
        self._n = 0
        if key is not None:
            self.initialize_key(key)

    def __repr__(self) -> str:
        return f"CipherState({self._fn.name}, has_key={self.has_key()}, n={self._n})"

    @property
    def cipher(self) -> CipherFunction:
        return self._fn

    @property
    def nonce(self) -> int:
        return self._n

    def initialize_key(self, key: bytes | None) -> None:
        """Set ``k`` (None empties it) and reset the nonce to 0."""
        if key is not None and len(key) != KEY_LEN:
            raise local_error(f"cipher key must be {KEY_LEN} bytes")
        self._k = key
        self._aead = None if key is None else self._fn.make_aead(key)
        self._n = 0

    def has_key(self) -> bool:
        return self._k is not None

    def set_nonce(self, nonce: int) -> None:
        if not 0 <= nonce <= MAX_NONCE:
            raise local_error("nonce out of range")
        self._n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        aead = self._aead
        if aead is None:
            # No key yet: the spec passes plaintext through unchanged.
            return plaintext
        n = self._n
        if n >= MAX_NONCE:
            raise LimitExceeded("Noise nonce exhausted: rekey or reconnect")
        if len(plaintext) > _MAX_PLAINTEXT:
            raise local_error(f"plaintext exceeds {_MAX_PLAINTEXT} bytes")
        out = aead.encrypt(self._pack(n), plaintext, ad)
        self._n = n + 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Open ``ciphertext``; :class:`DecodeError` if it is forged, the nonce is not consumed."""
        aead = self._aead
        if aead is None:
            return ciphertext
        n = self._n
        if n >= MAX_NONCE:
            raise LimitExceeded("Noise nonce exhausted: rekey or reconnect")
        if not TAG_LEN <= len(ciphertext) <= MAX_MESSAGE_LEN:
            raise DecodeError("Noise ciphertext length out of range")
        try:
            out = aead.decrypt(self._pack(n), ciphertext, ad)
        except InvalidTag:
            raise DecodeError("Noise message failed authentication") from None
        self._n = n + 1
        return out

    def encrypt(self, plaintext: bytes) -> bytes:
        """Transport shortcut: ``encrypt_with_ad(b"", plaintext)``."""
        return self.encrypt_with_ad(b"", plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Transport shortcut: ``decrypt_with_ad(b"", ciphertext)``."""
        return self.decrypt_with_ad(b"", ciphertext)

    def rekey(self) -> None:
        """``k = REKEY(k)``: first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros); ``n`` is kept."""
        aead = self._aead
        if aead is None:
            raise local_error("rekey without a key")
        key = aead.encrypt(self._pack(MAX_NONCE), _ZEROS, b"")[:KEY_LEN]
        self._k = key
        self._aead = self._fn.make_aead(key)


class ClosedCipherState(CipherState):
    """The direction a one-way pattern forbids (spec 7.4): every use is a local error."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ClosedCipherState({self._fn.name})"

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        raise local_error("one-way pattern: this direction carries no messages")

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        raise local_error("one-way pattern: this direction carries no messages")

    def rekey(self) -> None:
        raise local_error("one-way pattern: this direction carries no messages")
