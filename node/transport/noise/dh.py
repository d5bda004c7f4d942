"""Noise DH functions: Curve25519 and Curve448 via ``cryptography`` (spec rev 34, section 12)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import x448, x25519

from node.transport.noise._misuse import local_error

__all__ = ["DH_FUNCTIONS", "DHFunction", "KeyPair", "Rng", "generate_keypair", "keypair"]

Rng = Callable[[int], bytes]
"""``rng(n) -> n`` random bytes; injected so protocol code never reaches for a global RNG."""

_Private = x25519.X25519PrivateKey | x448.X448PrivateKey


class KeyPair:
    """A DH key pair; the private half never appears in ``repr``."""

    __slots__ = ("_key", "private", "public")

    def __init__(self, private: bytes, public: bytes, key: _Private) -> None:
        self.private = private
        self.public = public
        self._key = key

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()})"


@dataclass(frozen=True)
class DHFunction:
    """One Noise DH function: its name, DHLEN and the curve's classes."""

    name: str
    dhlen: int
    _from_private: Callable[[bytes], _Private] = field(repr=False)
    _from_public: Callable[[bytes], x25519.X25519PublicKey | x448.X448PublicKey] = field(repr=False)

    def keypair(self, private: bytes) -> KeyPair:
        if len(private) != self.dhlen:
            raise local_error(f"{self.name} private key must be {self.dhlen} bytes")
        key = self._from_private(private)
        return KeyPair(private, key.public_key().public_bytes_raw(), key)

    def generate(self, rng: Rng) -> KeyPair:
        return self.keypair(rng(self.dhlen))

    def dh(self, pair: KeyPair, public: bytes) -> bytes:
        """DH(pair, public). ``ValueError`` on a low-order point (an all-zero shared secret)."""
        if len(public) != self.dhlen:
            raise ValueError("bad public key length")
        peer = self._from_public(public)
        return pair._key.exchange(peer)  # type: ignore[arg-type]


DH_FUNCTIONS: dict[str, DHFunction] = {
    d.name: d
    for d in (
        DHFunction(
            "25519",
            32,
            x25519.X25519PrivateKey.from_private_bytes,
            x25519.X25519PublicKey.from_public_bytes,
        ),
        DHFunction(
            "448",
            56,
            x448.X448PrivateKey.from_private_bytes,
            x448.X448PublicKey.from_public_bytes,
        ),
    )
}


def _lookup(dh: str) -> DHFunction:
    try:
        return DH_FUNCTIONS[dh]
    except KeyError:
        raise local_error(f"unsupported Noise DH function {dh!r}") from None


def keypair(private: bytes, dh: str = "25519") -> KeyPair:
    """The key pair for a stored private key (e.g. a node's Noise static key)."""
    return _lookup(dh).keypair(private)


def generate_keypair(rng: Rng, dh: str = "25519") -> KeyPair:
    """A fresh key pair from ``rng`` (pass ``os.urandom`` in production)."""
    return _lookup(dh).generate(rng)
