"""NetworkLayer messages on a link (Data protocol ``sp/env/1``; PROTOCOL.md section 13).

* :class:`EnvelopeMsg`: one sealed envelope (opaque here).
* :class:`AckMsg`: the envelope ids (SHA-256 of the envelope, first 20 bytes) the receiver
  has processed or refused for good; held envelopes are not acknowledged.

Canonical CBOR maps ``{"v": 1, "t": 1|2, ...}``, decoded strictly; :class:`NetworkError`
is the only error a peer's bytes can raise here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from node.core import cbor
from node.core.errors import DecodeError, SpacePandaError

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
ENVELOPE_ID_LEN = 20
MAX_ACK_IDS = 1024
# One chunked transport payload is at most 1 MiB; the map around the envelope is small.
MAX_ENVELOPE = (1 << 20) - 4096
_T_ENVELOPE, _T_ACK = 1, 2


class NetworkError(SpacePandaError):
    """A NetworkLayer message from a peer does not decode (counted and dropped)."""


def envelope_id(envelope: bytes) -> bytes:
    return hashlib.sha256(envelope).digest()[:ENVELOPE_ID_LEN]


@dataclass(frozen=True)
class EnvelopeMsg:
    envelope: bytes
    KIND: ClassVar[int] = _T_ENVELOPE

    def encode(self) -> bytes:
        return cbor.encode({"v": 1, "t": self.KIND, "env": self.envelope})


@dataclass(frozen=True)
class AckMsg:
    ids: tuple[bytes, ...]
    KIND: ClassVar[int] = _T_ACK

    def encode(self) -> bytes:
        return cbor.encode({"v": 1, "t": self.KIND, "ids": list(self.ids)})


NetMessage = EnvelopeMsg | AckMsg


def decode_net(data: bytes) -> NetMessage:
    if not isinstance(data, bytes) or len(data) > MAX_ENVELOPE + 64:
        raise NetworkError("network message too large")
    try:
        obj = cbor.decode(data, max_depth=2, max_items=8 + MAX_ACK_IDS, max_size=len(data))
    except DecodeError as exc:
        raise NetworkError(f"network message: {exc}") from None
    if not isinstance(obj, dict) or obj.get("v") != 1 or isinstance(obj.get("v"), bool):
        raise NetworkError("network message: unsupported version")
    kind = obj.get("t")
    if kind == _T_ENVELOPE and set(obj) == {"v", "t", "env"}:
        envelope = obj["env"]
        if not isinstance(envelope, bytes) or not 1 <= len(envelope) <= MAX_ENVELOPE:
            raise NetworkError("network message: bad envelope")
        return EnvelopeMsg(envelope)
    if kind == _T_ACK and set(obj) == {"v", "t", "ids"}:
        ids = obj["ids"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_ACK_IDS or not all(
            isinstance(i, bytes) and len(i) == ENVELOPE_ID_LEN for i in ids
        ):
            raise NetworkError("network message: bad ack")
        return AckMsg(tuple(ids))
    raise NetworkError(f"network message: unknown kind {kind!r:.20}")
