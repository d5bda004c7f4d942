"""NetworkLayer messages on a link (Data protocol ``sp/env/1``; PROTOCOL.md section 13).

Binary, because every envelope crosses this layer: ``version(1) = 1 || kind(1) || body``.

* kind 1, :class:`EnvelopeMsg`: the body is one sealed envelope (opaque here).
* kind 2, :class:`AckMsg`: the body is 1..1024 envelope ids of 20 bytes each (SHA-256 of the
  envelope, first 20 bytes) that the receiver processed or refused for good; held envelopes
  are not acknowledged.

:class:`NetworkError` is the only error a peer's bytes can raise here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from node.core.errors import SpacePandaError

__all__ = [
    "ENVELOPE_ID_LEN",
    "MAX_ACK_IDS",
    "MAX_ENVELOPE",
    "PROTOCOL",
    "AckMsg",
    "EnvelopeMsg",
    "NetworkError",
    "decode_net",
    "envelope_id",
]

PROTOCOL = "sp/env/1"
VERSION = 1
ENVELOPE_ID_LEN = 20
MAX_ACK_IDS = 1024
# One chunked transport payload is at most 1 MiB; the two header bytes fit easily.
MAX_ENVELOPE = (1 << 20) - 4096
_ENVELOPE, _ACK = 1, 2


class NetworkError(SpacePandaError):
    """A NetworkLayer message from a peer does not decode (counted and dropped)."""


def envelope_id(envelope: bytes) -> bytes:
    return hashlib.sha256(envelope).digest()[:ENVELOPE_ID_LEN]


@dataclass(frozen=True)
class EnvelopeMsg:
    envelope: bytes
    KIND: ClassVar[int] = _ENVELOPE

    def encode(self) -> bytes:
        return bytes((VERSION, _ENVELOPE)) + self.envelope


@dataclass(frozen=True)
class AckMsg:
    ids: tuple[bytes, ...]
    KIND: ClassVar[int] = _ACK

    def __post_init__(self) -> None:
        if not 1 <= len(self.ids) <= MAX_ACK_IDS or any(
            len(i) != ENVELOPE_ID_LEN for i in self.ids
        ):
            raise ValueError(f"an ack names 1..{MAX_ACK_IDS} ids of {ENVELOPE_ID_LEN} bytes")

    def encode(self) -> bytes:
        return bytes((VERSION, _ACK)) + b"".join(self.ids)


NetMessage = EnvelopeMsg | AckMsg


def decode_net(data: bytes) -> NetMessage:
    if not isinstance(data, bytes) or len(data) < 3:
        raise NetworkError("network message too short")
    if data[0] != VERSION:
        raise NetworkError(f"network message: unsupported version {data[0]}")
    kind, body = data[1], data[2:]
    if kind == _ENVELOPE:
        if len(body) > MAX_ENVELOPE:
            raise NetworkError("network message: envelope too large")
        return EnvelopeMsg(body)
    if kind == _ACK:
        n, rest = divmod(len(body), ENVELOPE_ID_LEN)
        if rest or not 1 <= n <= MAX_ACK_IDS:
            raise NetworkError("network message: bad ack")
        return AckMsg(tuple(body[i : i + ENVELOPE_ID_LEN] for i in range(0, len(body),
                                                                         ENVELOPE_ID_LEN)))
    raise NetworkError(f"network message: unknown kind {kind}")
