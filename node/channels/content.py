"""What members say to each other inside MLS (PROTOCOL.md section 11).

* Application data of an MLS application message is one of :class:`Text`, :class:`Profile`
  or :class:`Intent`; its MLS ``authenticated_data`` is :class:`AppHeader` (the sender's
  per-channel sequence number, so every member shows each sender's messages in order).
* A commit's ``authenticated_data`` is :class:`CommitHeader` (the intents it carries out).
* The channel's name and admin list live in the MLS group context as the extension
  :data:`CHANNEL_EXTENSION` holding :class:`ChannelInfo`: every member agrees on them by
  construction (they feed the key schedule), and a joiner gets them in the Welcome.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from node.channels.causal import BLOOM_BYTES
from node.channels.codec import (
    decode_map,
    encode_map,
    get_bytes,
    get_int,
    get_peer,
    get_text,
)
from node.channels.errors import PayloadError
from node.core.errors import IdentityError
from node.core.identity import PeerId

__all__ = [
    "CHANNEL_EXTENSION",
    "MAX_DISPLAY_NAME_BYTES",
    "MAX_INTENTS_PER_COMMIT",
    "MAX_TEXT_BYTES",
    "AppHeader",
    "ChannelInfo",
    "CommitHeader",
    "Content",
    "Intent",
    "IntentOp",
    "Profile",
    "Sync",
    "Text",
    "decode_content",
]

# A private-use MLS extension type (RFC 9420 section 17.3: 0xF000-0xFFFF).
CHANNEL_EXTENSION = 0xF5A0
MAX_TEXT_BYTES = 64 * 1024
MAX_DISPLAY_NAME_BYTES = 64
MAX_CHANNEL_NAME_BYTES = 128
MAX_ADMINS = 1024
MAX_INTENTS_PER_COMMIT = 256
ID_LEN = 16
_UINT63 = (1 << 63) - 1

_T_TEXT, _T_PROFILE, _T_INTENT, _T_SYNC = 1, 2, 3, 4
_T_COMMIT_HEADER, _T_CHANNEL_INFO = 2, 1


@dataclass(frozen=True)
class Text:
    """A message. ``prev``: the last (up to) two message ids its sender had in the channel;
    ``seen``: a Bloom filter of the ids its sender has received recently (``causal``)."""

    message_id: bytes
    text: str
    sent_at_ms: int
    prev: tuple[bytes, ...] = ()
    seen: bytes = bytes(BLOOM_BYTES)
    KIND: ClassVar[int] = _T_TEXT

    def encode(self) -> bytes:
        return encode_map(
            self.KIND,
            {"id": self.message_id, "text": self.text, "at": self.sent_at_ms,
             "prev": list(self.prev), "seen": self.seen},
        )


@dataclass(frozen=True)
class Sync:
    """Content-free: what its sender has received (sent when the channel is quiet)."""

    prev: tuple[bytes, ...]
    seen: bytes
    KIND: ClassVar[int] = _T_SYNC

    def encode(self) -> bytes:
        return encode_map(self.KIND, {"prev": list(self.prev), "seen": self.seen})


@dataclass(frozen=True)
class Profile:
    display_name: str
    KIND: ClassVar[int] = _T_PROFILE

    def encode(self) -> bytes:
        return encode_map(self.KIND, {"name": self.display_name})


class IntentOp(enum.IntEnum):
    ADD = 1  # an admin: add the invitee whose KeyPackage is attached
    REMOVE = 2  # an admin: remove ``target``
    ADMIN = 3  # an admin: make ``target`` an admin
    LEAVE = 4  # any member: remove me
    READD = 5  # an admin: replace ``target``'s leaf by its fresh KeyPackage (repair, 12.7)


@dataclass(frozen=True)
class Intent:
    """A membership change asked of the epoch's committer (the no-fork rule's R1).

    ``ADD`` carries the invite id, the invitee's KeyPackage and its envelope key (for the
    Welcome); ``REMOVE`` and ``ADMIN`` carry ``target``; ``LEAVE`` nothing more.
    """

    intent_id: bytes
    op: IntentOp
    target: PeerId | None = None
    key_package: bytes = b""
    invite_id: bytes = b""
    envelope_key: bytes = b""
    KIND: ClassVar[int] = _T_INTENT

    def __post_init__(self) -> None:
        needs_target = self.op != IntentOp.LEAVE
        if needs_target != (self.target is not None):
            raise ValueError(f"{self.op.name} intent target mismatch")
        if (self.op in (IntentOp.ADD, IntentOp.READD)) != bool(self.key_package):
            raise ValueError("only ADD and READD intents carry a KeyPackage")

    def encode(self) -> bytes:
        return encode_map(
            self.KIND,
            {
                "id": self.intent_id,
                "op": int(self.op),
                "target": b"" if self.target is None else self.target.binary,
                "kp": self.key_package,
                "invite": self.invite_id,
                "key": self.envelope_key,
            },
        )


Content = Text | Profile | Intent | Sync

_CONTENT_LAYOUTS = {
    _T_TEXT: frozenset({"id", "text", "at", "prev", "seen"}),
    _T_SYNC: frozenset({"prev", "seen"}),
    _T_PROFILE: frozenset({"name"}),
    _T_INTENT: frozenset({"id", "op", "target", "kp", "invite", "key"}),
}


def decode_content(data: bytes) -> Content:
    """Decode MLS application data. Raises PayloadError."""
    kind, f = decode_map(data, "content", _CONTENT_LAYOUTS, max_size=MAX_TEXT_BYTES + 16384,
                         max_items=32, max_depth=2)
    if kind == _T_TEXT:
        return Text(
            get_bytes(f, "id", ID_LEN, ID_LEN),
            get_text(f, "text", MAX_TEXT_BYTES),
            get_int(f, "at", 0, _UINT63),
            _prev(f),
            get_bytes(f, "seen", BLOOM_BYTES, BLOOM_BYTES),
        )
    if kind == _T_SYNC:
        return Sync(_prev(f), get_bytes(f, "seen", BLOOM_BYTES, BLOOM_BYTES))
    if kind == _T_PROFILE:
        return Profile(get_text(f, "name", MAX_DISPLAY_NAME_BYTES))
    op_value = get_int(f, "op", 1, len(IntentOp))
    op = IntentOp(op_value)
    target_raw = get_bytes(f, "target", 0, 34)
    target = None
    if target_raw:
        target = get_peer(f, "target")
    try:
        return Intent(
            get_bytes(f, "id", ID_LEN, ID_LEN),
            op,
            target,
            get_bytes(f, "kp", 0, 16 * 1024),
            get_bytes(f, "invite", 0, ID_LEN),
            get_bytes(f, "key", 0, 32),
        )
    except ValueError as exc:
        raise PayloadError(f"intent: {exc}") from None


def _prev(f: dict[str, object]) -> tuple[bytes, ...]:
    prev = f["prev"]
    if not isinstance(prev, list) or len(prev) > 2 or not all(
        isinstance(i, bytes) and len(i) == ID_LEN for i in prev
    ):
        raise PayloadError("prev must be at most two 16-byte message ids")
    return tuple(prev)


@dataclass(frozen=True)
class AppHeader:
    """MLS authenticated_data of an application message: ``0x01 || uint64 seq`` (binary:
    it is on every message's path)."""

    seq: int

    def encode(self) -> bytes:
        return b"\x01" + self.seq.to_bytes(8, "big")

    @classmethod
    def decode(cls, data: bytes) -> AppHeader:
        if len(data) != 9 or data[0] != 1:
            raise PayloadError("app header must be 0x01 and an 8-byte sequence number")
        seq = int.from_bytes(data[1:], "big")
        if not 1 <= seq <= _UINT63:
            raise PayloadError("app header sequence number out of range")
        return cls(seq)


@dataclass(frozen=True)
class CommitHeader:
    """MLS authenticated_data of a commit: the intent ids it carried out (or refused)."""

    done: tuple[bytes, ...] = ()
    KIND: ClassVar[int] = _T_COMMIT_HEADER

    def encode(self) -> bytes:
        return encode_map(self.KIND, {"done": list(self.done)})

    @classmethod
    def decode(cls, data: bytes) -> CommitHeader:
        _, f = decode_map(
            data,
            "commit header",
            {_T_COMMIT_HEADER: frozenset({"done"})},
            max_size=64 + MAX_INTENTS_PER_COMMIT * 20,
            max_items=8 + MAX_INTENTS_PER_COMMIT,
        )
        done = f["done"]
        if not isinstance(done, list) or len(done) > MAX_INTENTS_PER_COMMIT:
            raise PayloadError("commit header: done must be a list of intent ids")
        if not all(isinstance(i, bytes) and len(i) == ID_LEN for i in done):
            raise PayloadError("commit header: bad intent id")
        return cls(tuple(done))


@dataclass(frozen=True)
class ChannelInfo:
    """The channel extension in the group context: name and admins (sorted, unique)."""

    name: str
    admins: tuple[PeerId, ...]
    KIND: ClassVar[int] = _T_CHANNEL_INFO

    def encode(self) -> bytes:
        admins = sorted({a.binary for a in self.admins})
        return encode_map(self.KIND, {"name": self.name, "admins": admins})

    @classmethod
    def decode(cls, data: bytes) -> ChannelInfo:
        _, f = decode_map(
            data,
            "channel info",
            {_T_CHANNEL_INFO: frozenset({"name", "admins"})},
            max_size=256 + MAX_ADMINS * 40,
            max_items=9 + MAX_ADMINS,  # the map (1), 4 keys, 3 other values, the list's items
        )
        name = get_text(f, "name", MAX_CHANNEL_NAME_BYTES)
        raw = f["admins"]
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ADMINS:
            raise PayloadError("channel info: admins must be a non-empty list")
        if not all(isinstance(a, bytes) for a in raw):
            raise PayloadError("channel info: admins must be binary PeerIds")
        if raw != sorted(set(raw)):
            raise PayloadError("channel info: admins must be sorted and unique")
        try:
            admins = tuple(PeerId.from_bytes(a) for a in raw)
        except IdentityError as exc:
            raise PayloadError(f"channel info: {exc}") from None
        return cls(name, admins)

    def with_admin(self, peer: PeerId) -> ChannelInfo:
        return ChannelInfo(self.name, tuple(sorted({*self.admins, peer})))

    def without(self, peers: set[PeerId]) -> ChannelInfo:
        return ChannelInfo(self.name, tuple(a for a in self.admins if a not in peers))
