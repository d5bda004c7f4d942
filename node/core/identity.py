"""Ed25519 identities and self-certifying PeerIds.

Binary PeerId: ``0x01`` (format version) ``0xed`` (key type Ed25519) then the 32-byte public key.
Anyone can verify a signature against a PeerId without fetching anything.

Text form: ``"sp"`` + lowercase RFC 4648 base32 (no padding) of ``binary || checksum`` where the
checksum is the first 4 bytes of SHA-256(b"spacepanda/peer-id/v1" || binary). The checksum makes
a mistyped PeerId fail loudly instead of naming some other key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from node.core.ed25519 import is_strict_public_key, is_strict_signature
from node.core.errors import IdentityError

__all__ = ["NODE_ID_DOMAIN", "Identity", "PeerId", "node_id_for"]

_VERSION = 0x01
_KEY_ED25519 = 0xED
_BINARY_LEN = 34
_CHECKSUM_LEN = 4
_CHECKSUM_DOMAIN = b"spacepanda/peer-id/v1"
_TEXT_PREFIX = "sp"
# The DHT node id is a hash of the identity key, so a node cannot choose where it sits.
NODE_ID_DOMAIN = b"spacepanda/dht-node-id/v1"


def node_id_for(public_key: bytes) -> bytes:
    """The 160-bit DHT node id an Ed25519 identity key must sit at."""
    return hashlib.sha1(NODE_ID_DOMAIN + public_key).digest()


@functools.lru_cache(maxsize=65536)
def _text_of(binary: bytes) -> str:
    # Cached: PeerIds are printed for every message event and log line.
    raw = binary + _checksum(binary)
    return _TEXT_PREFIX + base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _checksum(binary: bytes) -> bytes:
    return hashlib.sha256(_CHECKSUM_DOMAIN + binary).digest()[:_CHECKSUM_LEN]


@dataclass(frozen=True, order=True)
class PeerId:
    """A node's self-certifying name (derived from its Ed25519 public key)."""

    binary: bytes

    def __post_init__(self) -> None:
        b = self.binary
        if not isinstance(b, bytes) or len(b) != _BINARY_LEN:
            raise IdentityError("PeerId must be 34 bytes")
        if b[0] != _VERSION:
            raise IdentityError(f"unsupported PeerId version {b[0]}")
        if b[1] != _KEY_ED25519:
            raise IdentityError(f"unsupported PeerId key type {b[1]:#x}")
        # A small-order or non-canonically encoded key has no owner: anyone can sign for it.
        if not is_strict_public_key(b[2:]):
            raise IdentityError("PeerId holds a weak or non-canonical Ed25519 key")

    @classmethod
    def from_public_key(cls, key: Ed25519PublicKey | bytes) -> PeerId:
        raw = key if isinstance(key, bytes) else key.public_bytes_raw()
        if len(raw) != 32:
            raise IdentityError("Ed25519 public key must be 32 bytes")
        return cls(bytes((_VERSION, _KEY_ED25519)) + raw)

    @classmethod
    def from_string(cls, text: str) -> PeerId:
        if not isinstance(text, str) or not text.startswith(_TEXT_PREFIX):
            raise IdentityError(f"not a PeerId (must start with {_TEXT_PREFIX!r}): {text!r:.80}")
        body = text[len(_TEXT_PREFIX) :]
        if len(body) > 80 or not body.isascii() or body != body.lower():
            raise IdentityError("malformed PeerId text")
        try:
            raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        except ValueError as exc:
            raise IdentityError(f"malformed PeerId text: {exc}") from None
        if len(raw) != _BINARY_LEN + _CHECKSUM_LEN:
            raise IdentityError("malformed PeerId text: wrong length")
        binary, check = raw[:_BINARY_LEN], raw[_BINARY_LEN:]
        if not hmac.compare_digest(check, _checksum(binary)):
            raise IdentityError("PeerId checksum mismatch (mistyped?)")
        peer = cls(binary)
        if peer.to_string() != text:  # non-canonical base32 tail bits
            raise IdentityError("non-canonical PeerId text")
        return peer

    @classmethod
    def from_bytes(cls, data: bytes) -> PeerId:
        return cls(bytes(data))

    def to_string(self) -> str:
        return _text_of(self.binary)

    @property
    def public_key_bytes(self) -> bytes:
        return self.binary[2:]

    def public_key(self) -> Ed25519PublicKey:
        try:
            return Ed25519PublicKey.from_public_bytes(self.public_key_bytes)
        except ValueError as exc:
            raise IdentityError(f"PeerId holds an invalid Ed25519 key: {exc}") from None

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is this peer's Ed25519 signature over ``data``.

        Strict: a non-canonical R or an S >= L is refused before OpenSSL sees it.
        """
        if not is_strict_signature(signature):
            return False
        try:
            self.public_key().verify(signature, data)
        except (InvalidSignature, IdentityError, ValueError):
            return False
        return True

    def short(self) -> str:
        s = self.to_string()
        return f"{s[:8]}…{s[-6:]}"

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"PeerId({self.to_string()})"


@dataclass(frozen=True)
class Identity:
    """An Ed25519 signing key and the PeerId it certifies. The key never prints."""

    private_key: Ed25519PrivateKey = field(repr=False)
    peer_id: PeerId = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "peer_id", PeerId.from_public_key(self.private_key.public_key()))

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if len(seed) != 32:
            raise IdentityError("Ed25519 seed must be 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        return self.private_key.private_bytes_raw()

    @property
    def public_key_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes_raw()

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, data: bytes) -> Identity:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise IdentityError(f"identity key is unreadable: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError("identity key is not an Ed25519 key")
        return cls(key)
