"""Sans-I/O Noise Protocol Framework (revision 34) on ``cryptography``.

Typical use: ``hs = HandshakeState("Noise_XX_25519_ChaChaPoly_SHA256", initiator=True,
s=static_private, rng=os.urandom)``, exchange ``write_message``/``read_message`` until
``hs.complete``, then ``send, recv = hs.split()`` for the transport phase.
"""

from __future__ import annotations

from node.transport.noise.cipher import (
    MAX_MESSAGE_LEN,
    MAX_NONCE,
    TAG_LEN,
    CipherFunction,
    CipherState,
    ClosedCipherState,
)
from node.transport.noise.dh import DHFunction, KeyPair, Rng, generate_keypair, keypair
from node.transport.noise.handshake import PSK_LEN, HandshakeState
from node.transport.noise.patterns import PATTERNS, HandshakePattern, handshake_pattern
from node.transport.noise.protocol import NoiseProtocol, parse_protocol_name
from node.transport.noise.symmetric import HashFunction, SymmetricState

__all__ = [
    "MAX_MESSAGE_LEN",
    "MAX_NONCE",
    "PATTERNS",
    "PSK_LEN",
    "TAG_LEN",
    "CipherFunction",
    "CipherState",
    "ClosedCipherState",
    "DHFunction",
    "HandshakePattern",
    "HandshakeState",
    "HashFunction",
    "KeyPair",
    "NoiseProtocol",
    "Rng",
    "SymmetricState",
    "generate_keypair",
    "handshake_pattern",
    "keypair",
    "parse_protocol_name",
]
