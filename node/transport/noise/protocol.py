"""Noise protocol names: ``Noise_<pattern>_<dh>_<cipher>_<hash>`` (spec rev 34, section 8)."""

from __future__ import annotations

from dataclasses import dataclass

from node.transport.noise._misuse import local_error
from node.transport.noise.cipher import CIPHERS, CipherFunction
from node.transport.noise.dh import DH_FUNCTIONS, DHFunction
from node.transport.noise.patterns import HandshakePattern, handshake_pattern
from node.transport.noise.symmetric import HASHES, HashFunction

__all__ = ["DEFAULT_SUITE", "NoiseProtocol", "parse_protocol_name"]

DEFAULT_SUITE = "25519_ChaChaPoly_SHA256"
"""Suite used when only a pattern name (``"XX"``) is given."""


@dataclass(frozen=True)
class NoiseProtocol:
    """A concrete protocol: pattern plus DH, cipher and hash functions."""

    name: str
    pattern: HandshakePattern
    dh: DHFunction
    cipher: CipherFunction
    hash: HashFunction


def parse_protocol_name(name: str) -> NoiseProtocol:
    """Parse a full protocol name, or a bare pattern name with :data:`DEFAULT_SUITE`."""
    full = name if name.startswith("Noise_") else f"Noise_{name}_{DEFAULT_SUITE}"
    parts = full.split("_")
    if len(parts) != 5 or parts[0] != "Noise":
        raise local_error(f"malformed Noise protocol name {name!r}")
    _, pattern, dh, cipher, hash_name = parts
    if dh not in DH_FUNCTIONS or cipher not in CIPHERS or hash_name not in HASHES:
        raise local_error(f"unsupported Noise functions in {name!r}")
    return NoiseProtocol(
        full, handshake_pattern(pattern), DH_FUNCTIONS[dh], CIPHERS[cipher], HASHES[hash_name]
    )
