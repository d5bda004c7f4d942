"""Per-node keys derived from the identity seed.

The Noise static key and the sealed-envelope (HPKE) key are X25519 keys derived from the
Ed25519 identity seed with HKDF under distinct labels. Deriving (rather than storing) them
means a data directory holds one secret, and a restart always presents the same keys that the
DHT record advertises. HKDF output under a domain-separated label is independent of the
Ed25519 use of the seed, so no key is used by two algorithms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from node.core.identity import Identity

__all__ = ["NodeKeys"]

_NOISE_LABEL = b"spacepanda/noise-static/v1"
_ENVELOPE_LABEL = b"spacepanda/envelope-x25519/v1"


def _derive(seed: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(seed)


@dataclass(frozen=True)
class NodeKeys:
    """The identity plus the X25519 keys derived from it."""

    identity: Identity
    noise_private: bytes = field(repr=False)
    noise_public: bytes
    envelope_private: bytes = field(repr=False)
    envelope_public: bytes

    @classmethod
    def derive(cls, identity: Identity) -> NodeKeys:
        seed = identity.seed()
        noise = _derive(seed, _NOISE_LABEL)
        envelope = _derive(seed, _ENVELOPE_LABEL)
        return cls(
            identity=identity,
            noise_private=noise,
            noise_public=X25519PrivateKey.from_private_bytes(noise).public_key().public_bytes_raw(),
            envelope_private=envelope,
            envelope_public=X25519PrivateKey.from_private_bytes(envelope)
            .public_key()
            .public_bytes_raw(),
        )
