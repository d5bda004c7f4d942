"""Relay frames (``sp/gossip/1``; docs/PROTOCOL.md 14): a strict binary codec.

A frame is ``version(1) = 1`` followed by 1..256 items, back to back; each item starts with
its type byte and carries its own lengths, so an item is never ambiguous::

    PUBLISH      0x01  topic u16 | len u32 | envelope[len]      len 1..MAX_ENVELOPE
    STEM         0x02  topic u16 | len u32 | envelope[len]      len 1..MAX_ENVELOPE
    IHAVE        0x03  topic u16 | n u16 | id[20] * n           n 1..1024, ids distinct
    IWANT        0x04  n u16 | id[20] * n                       n 1..1024, ids distinct
    GRAFT        0x05  topic u16
    PRUNE        0x06  topic u16 | backoff u16 (seconds)
    SUBSCRIBE    0x07  n u16 | topic u16 * n                    n 1..256, strictly ascending
    UNSUBSCRIBE  0x08  n u16 | topic u16 * n                    n 1..256, strictly ascending

Integers are big-endian; a whole frame is at most :data:`MAX_FRAME` bytes (one chunked
transport payload). Envelopes are opaque here: whether one is well formed (version, size) is
the router's question, and a malformed one is an *invalid message*, not a decode error.

:class:`GossipError` is the only error a peer's bytes can raise here; building an item that
could not be encoded (a local mistake) raises ``ValueError``.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from node.core.errors import SpacePandaError
from node.core.padding import BUCKETS, MAX_ENVELOPE, is_envelope_size

__all__ = [
    "BUCKETS",
    "ENVELOPE_VERSION",
    "MAX_ENVELOPE",
    "MAX_FRAME",
    "MAX_IDS",
    "MAX_ITEMS",
    "MAX_TOPICS",
    "MSG_ID_LEN",
    "PROTOCOL",
    "VERSION",
    "GossipError",
    "Graft",
    "IHave",
    "IWant",
    "Item",
    "Prune",
    "Publish",
    "Stem",
    "Subscribe",
    "Unsubscribe",
    "decode_frame",
    "encode_frame",
    "is_envelope",
    "message_id",
]

PROTOCOL = "sp/gossip/1"
VERSION = 1
MSG_ID_LEN = 20
MAX_IDS = 1024
MAX_TOPICS = 256
MAX_ITEMS = 256
MAX_FRAME = 1 << 20  # one chunked transport payload (PROTOCOL.md section 6.3)
# Sealed envelopes (PROTOCOL.md section 11); the size rule lives in node.core.padding.
ENVELOPE_VERSION = 1

_PUBLISH, _STEM, _IHAVE, _IWANT, _GRAFT, _PRUNE, _SUB, _UNSUB = range(1, 9)
_U16 = struct.Struct(">H")
_U16U16 = struct.Struct(">HH")
_U16U32 = struct.Struct(">HI")


class GossipError(SpacePandaError):
    """A relay frame from a peer does not decode (the router counts and penalises it)."""


def message_id(envelope: bytes) -> bytes:
    """A message's id: the first 20 bytes of SHA-256 of the envelope (no author, no seqno)."""
    return hashlib.sha256(envelope).digest()[:MSG_ID_LEN]


def is_envelope(envelope: bytes) -> bool:
    """Well formed for a relay: version 1 and one of the sizes a sealed envelope can have."""
    return (len(envelope) > 0 and envelope[0] == ENVELOPE_VERSION
            and is_envelope_size(len(envelope)))


def _check_topic(topic: int) -> None:
    if not isinstance(topic, int) or not 0 <= topic <= 0xFFFF:
        raise ValueError(f"topic must be 0..65535, not {topic!r}")


def _check_ids(ids: Sequence[bytes]) -> None:
    if not 1 <= len(ids) <= MAX_IDS:
        raise ValueError(f"1..{MAX_IDS} message ids, not {len(ids)}")
    if any(not isinstance(i, bytes) or len(i) != MSG_ID_LEN for i in ids):
        raise ValueError(f"message ids are {MSG_ID_LEN} bytes")
    if len(set(ids)) != len(ids):
        raise ValueError("message ids must be distinct")


def _check_topics(topics: Sequence[int]) -> None:
    if not 1 <= len(topics) <= MAX_TOPICS:
        raise ValueError(f"1..{MAX_TOPICS} topics, not {len(topics)}")
    for t in topics:
        _check_topic(t)
    if any(a >= b for a, b in itertools.pairwise(topics)):
        raise ValueError("topics must be strictly ascending")


def _check_envelope(envelope: bytes) -> None:
    if not isinstance(envelope, bytes) or not 1 <= len(envelope) <= MAX_ENVELOPE:
        raise ValueError(f"an envelope is 1..{MAX_ENVELOPE} bytes")


@dataclass(frozen=True)
class Publish:
    """A message for everyone subscribed to ``topic`` (the fluff phase)."""

    topic: int
    envelope: bytes
    TYPE: ClassVar[int] = _PUBLISH

    def __post_init__(self) -> None:
        _check_topic(self.topic)
        _check_envelope(self.envelope)

    def __repr__(self) -> str:
        return f"Publish(topic={self.topic}, envelope=<{len(self.envelope)} bytes>)"

    def size(self) -> int:
        return 7 + len(self.envelope)

    def encode(self) -> bytes:
        return bytes((_PUBLISH,)) + _U16U32.pack(self.topic, len(self.envelope)) + self.envelope


@dataclass(frozen=True)
class Stem:
    """A message in its stem phase: for one peer only, which relays it on or fluffs it."""

    topic: int
    envelope: bytes
    TYPE: ClassVar[int] = _STEM

    def __post_init__(self) -> None:
        _check_topic(self.topic)
        _check_envelope(self.envelope)

    def __repr__(self) -> str:
        return f"Stem(topic={self.topic}, envelope=<{len(self.envelope)} bytes>)"

    def size(self) -> int:
        return 7 + len(self.envelope)

    def encode(self) -> bytes:
        return bytes((_STEM,)) + _U16U32.pack(self.topic, len(self.envelope)) + self.envelope


@dataclass(frozen=True)
class IHave:
    """Ids of messages we hold for ``topic`` (gossip to peers outside our mesh)."""

    topic: int
    ids: tuple[bytes, ...]
    TYPE: ClassVar[int] = _IHAVE

    def __post_init__(self) -> None:
        _check_topic(self.topic)
        _check_ids(self.ids)

    def size(self) -> int:
        return 5 + MSG_ID_LEN * len(self.ids)

    def encode(self) -> bytes:
        return bytes((_IHAVE,)) + _U16U16.pack(self.topic, len(self.ids)) + b"".join(self.ids)


@dataclass(frozen=True)
class IWant:
    """Ids of advertised messages we want sent to us."""

    ids: tuple[bytes, ...]
    TYPE: ClassVar[int] = _IWANT

    def __post_init__(self) -> None:
        _check_ids(self.ids)

    def size(self) -> int:
        return 3 + MSG_ID_LEN * len(self.ids)

    def encode(self) -> bytes:
        return bytes((_IWANT,)) + _U16.pack(len(self.ids)) + b"".join(self.ids)


@dataclass(frozen=True)
class Graft:
    """Add the link to the sender's and the receiver's meshes for ``topic``."""

    topic: int
    TYPE: ClassVar[int] = _GRAFT

    def __post_init__(self) -> None:
        _check_topic(self.topic)

    def size(self) -> int:
        return 3

    def encode(self) -> bytes:
        return bytes((_GRAFT,)) + _U16.pack(self.topic)


@dataclass(frozen=True)
class Prune:
    """Remove the link from the meshes for ``topic``; no GRAFT back for ``backoff`` seconds."""

    topic: int
    backoff: int
    TYPE: ClassVar[int] = _PRUNE

    def __post_init__(self) -> None:
        _check_topic(self.topic)
        if not isinstance(self.backoff, int) or not 0 <= self.backoff <= 0xFFFF:
            raise ValueError("backoff must be 0..65535 seconds")

    def size(self) -> int:
        return 5

    def encode(self) -> bytes:
        return bytes((_PRUNE,)) + _U16U16.pack(self.topic, self.backoff)


@dataclass(frozen=True)
class Subscribe:
    topics: tuple[int, ...]
    TYPE: ClassVar[int] = _SUB

    def __post_init__(self) -> None:
        _check_topics(self.topics)

    def size(self) -> int:
        return 3 + 2 * len(self.topics)

    def encode(self) -> bytes:
        return bytes((_SUB,)) + _U16.pack(len(self.topics)) + b"".join(
            _U16.pack(t) for t in self.topics)


@dataclass(frozen=True)
class Unsubscribe:
    topics: tuple[int, ...]
    TYPE: ClassVar[int] = _UNSUB

    def __post_init__(self) -> None:
        _check_topics(self.topics)

    def size(self) -> int:
        return 3 + 2 * len(self.topics)

    def encode(self) -> bytes:
        return bytes((_UNSUB,)) + _U16.pack(len(self.topics)) + b"".join(
            _U16.pack(t) for t in self.topics)


Item = Publish | Stem | IHave | IWant | Graft | Prune | Subscribe | Unsubscribe


def encode_frame(items: Sequence[Item]) -> bytes:
    """One frame of 1..MAX_ITEMS items, at most MAX_FRAME bytes (ValueError otherwise)."""
    if not 1 <= len(items) <= MAX_ITEMS:
        raise ValueError(f"a frame holds 1..{MAX_ITEMS} items")
    data = bytes((VERSION,)) + b"".join(i.encode() for i in items)
    if len(data) > MAX_FRAME:
        raise ValueError(f"a frame is at most {MAX_FRAME} bytes")
    return data


def _ids(mv: memoryview, pos: int, n: int) -> tuple[bytes, ...]:
    raw = mv[pos : pos + MSG_ID_LEN * n].tobytes()
    ids = tuple(raw[i : i + MSG_ID_LEN] for i in range(0, len(raw), MSG_ID_LEN))
    if len(set(ids)) != n:
        raise GossipError("repeated message id")
    return ids


def decode_frame(data: bytes) -> list[Item]:
    """The items of one frame, or :class:`GossipError` (nothing else) for any bad input."""
    if not isinstance(data, bytes):
        raise GossipError("a frame is bytes")
    end = len(data)
    if end < 2:
        raise GossipError("frame too short")
    if end > MAX_FRAME:
        raise GossipError("frame too large")
    if data[0] != VERSION:
        raise GossipError(f"unsupported frame version {data[0]}")
    mv = memoryview(data)
    items: list[Item] = []
    pos = 1
    while pos < end:
        if len(items) == MAX_ITEMS:
            raise GossipError("too many items in a frame")
        kind = data[pos]
        pos += 1
        if kind in (_PUBLISH, _STEM):
            if pos + 6 > end:
                raise GossipError("truncated message header")
            topic, n = _U16U32.unpack_from(data, pos)
            pos += 6
            if not 1 <= n <= MAX_ENVELOPE or pos + n > end:
                raise GossipError("bad envelope length")
            envelope = mv[pos : pos + n].tobytes()
            pos += n
            items.append(Publish(topic, envelope) if kind == _PUBLISH else Stem(topic, envelope))
        elif kind == _IHAVE:
            if pos + 4 > end:
                raise GossipError("truncated IHAVE")
            topic, n = _U16U16.unpack_from(data, pos)
            pos += 4
            if not 1 <= n <= MAX_IDS or pos + MSG_ID_LEN * n > end:
                raise GossipError("bad IHAVE id count")
            items.append(IHave(topic, _ids(mv, pos, n)))
            pos += MSG_ID_LEN * n
        elif kind == _IWANT:
            if pos + 2 > end:
                raise GossipError("truncated IWANT")
            (n,) = _U16.unpack_from(data, pos)
            pos += 2
            if not 1 <= n <= MAX_IDS or pos + MSG_ID_LEN * n > end:
                raise GossipError("bad IWANT id count")
            items.append(IWant(_ids(mv, pos, n)))
            pos += MSG_ID_LEN * n
        elif kind == _GRAFT:
            if pos + 2 > end:
                raise GossipError("truncated GRAFT")
            items.append(Graft(_U16.unpack_from(data, pos)[0]))
            pos += 2
        elif kind == _PRUNE:
            if pos + 4 > end:
                raise GossipError("truncated PRUNE")
            topic, backoff = _U16U16.unpack_from(data, pos)
            items.append(Prune(topic, backoff))
            pos += 4
        elif kind in (_SUB, _UNSUB):
            if pos + 2 > end:
                raise GossipError("truncated topic list")
            (n,) = _U16.unpack_from(data, pos)
            pos += 2
            if not 1 <= n <= MAX_TOPICS or pos + 2 * n > end:
                raise GossipError("bad topic count")
            topics = struct.unpack_from(f">{n}H", data, pos)
            pos += 2 * n
            if any(a >= b for a, b in itertools.pairwise(topics)):
                raise GossipError("topics not strictly ascending")
            items.append(Subscribe(topics) if kind == _SUB else Unsubscribe(topics))
        else:
            raise GossipError(f"unknown item type {kind}")
    return items
