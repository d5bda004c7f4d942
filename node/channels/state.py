"""What a channel keeps besides its live MLS group, and its storage encoding.

* :class:`EpochNode`: one retained epoch state (the group at the start of that epoch), a node
  of the branch tree the no-fork rule chooses from (PROTOCOL.md 12).
* :class:`ChannelMeta`: bookkeeping that must survive a restart with the group: sequence
  numbers, pending intents, profiles, our pending commit, messages we may have to re-send.

Both encode to canonical CBOR for the node database (local data, still decoded strictly).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from node.channels.codec import get_bytes, get_int, get_text
from node.channels.errors import PayloadError
from node.core import cbor
from node.core.errors import DecodeError, IdentityError
from node.core.identity import PeerId

__all__ = [
    "REMOVED_BLOB",
    "ChannelMeta",
    "ChannelStatus",
    "EpochNode",
    "PendingCommit",
    "PendingIntent",
    "SentMessage",
]

# The blob of a node whose commit removes us: we cannot read that epoch.
REMOVED_BLOB = b"\x00"

_MAX_META = 8 << 20
_UINT63 = (1 << 63) - 1
_MAX_MS = 1 << 48  # the year 10889: far enough, and exact through a float of seconds


class ChannelStatus(enum.StrEnum):
    ACTIVE = "active"
    LEAVING = "leaving"  # we asked to be removed; waiting for the commit
    REMOVED = "removed"  # a commit removed us (or we left): read-only history


@dataclass(frozen=True)
class EpochNode:
    """A retained epoch state: ``blob`` is the group at the start of the epoch."""

    state_id: bytes  # the first 16 bytes of the epoch authenticator
    epoch: int
    parent: bytes | None  # state_id of the epoch this one's commit was made in
    commit_hash: bytes  # SHA-256 of the commit MLSMessage that made it (b"" at the root)
    committer: PeerId | None
    slot: int  # the committer's place in the parent's committer order
    removed: frozenset[PeerId]
    done: frozenset[bytes]  # intent ids the commit carried out
    blob: bytes = field(repr=False)
    # Our own commit's Welcomes: (invite id, PeerId, envelope key), to withdraw if it loses.
    welcomed: tuple[tuple[bytes, PeerId, bytes], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.state_id,
            "epoch": self.epoch,
            "parent": self.parent or b"",
            "commit": self.commit_hash,
            "committer": b"" if self.committer is None else self.committer.binary,
            "slot": self.slot,
            "removed": sorted(p.binary for p in self.removed),
            "done": sorted(self.done),
            "blob": self.blob,
            "welcomed": [[i, p.binary, k] for i, p, k in self.welcomed],
        }

    def encode(self) -> bytes:
        return cbor.encode(self.to_dict())

    @classmethod
    def decode(cls, data: bytes) -> EpochNode:
        f = _decode(data, {"id", "epoch", "parent", "commit", "committer", "slot", "removed",
                           "done", "blob", "welcomed"})
        committer_raw = get_bytes(f, "committer", 0, 34)
        return cls(
            get_bytes(f, "id", 16, 16),
            get_int(f, "epoch", 0, _UINT63),
            get_bytes(f, "parent", 0, 16) or None,
            get_bytes(f, "commit", 0, 32),
            _peer(committer_raw) if committer_raw else None,
            get_int(f, "slot", 0, 1 << 16),
            frozenset(_peer(p) for p in _sorted(_list(f, "removed"))),
            frozenset(_id(i) for i in _sorted(_list(f, "done"))),
            get_bytes(f, "blob", 1, _MAX_META),
            tuple(
                (_id(i), _peer(p), _bytes(k))
                for i, p, k in (_tuple(w, 3) for w in _list(f, "welcomed"))
            ),
        )


@dataclass(frozen=True)
class PendingIntent:
    """An intent seen in an application message, not yet carried out by a commit."""

    payload: bytes  # the Intent's encoding
    sender: PeerId
    seen_at: float


@dataclass(frozen=True)
class PendingCommit:
    """Our commit, published and not yet merged (R4)."""

    inner_id: bytes
    commit_hash: bytes
    sent_at: float
    recipients: frozenset[PeerId]
    acked: frozenset[PeerId]
    acked_at: float | None  # when the last recipient acknowledged
    # For each added member: (invite id, PeerId, envelope key) to send its Welcome to.
    welcomes: tuple[tuple[bytes, PeerId, bytes], ...]
    slot: int  # our place in the committer order of the epoch we committed in
    removed: frozenset[PeerId]  # whom the commit removes (R6 strong removal)


@dataclass(frozen=True)
class SentMessage:
    """One of our application messages, kept while its epoch could still lose (R7)."""

    state_id: bytes
    seq: int
    content: bytes
    inner_id: bytes  # of the envelope payload that carried it (cancelled if re-sent)
    is_text: bool = False  # a Text: its content is rebuilt from the stored message row

    def encode(self) -> bytes:
        """Storage record; a Text's content is left out (the message table holds it)."""
        content = b"" if self.is_text else self.content
        return cbor.encode([self.state_id, self.seq, content, self.inner_id])

    @classmethod
    def decode(cls, data: bytes, text_content: bytes | None = None) -> SentMessage:
        """``text_content``: the Text rebuilt from the message row, for records without one."""
        try:
            obj = cbor.decode(data, max_depth=1, max_items=8, max_size=_MAX_META)
        except DecodeError as exc:
            raise PayloadError(f"stored sent message: {exc}") from None
        sid, seq, content, iid = _tuple(obj, 4)
        stored = _bytes(content)
        if stored:
            return cls(_id(sid), _int(seq), stored, _id(iid))
        if text_content is None:
            raise PayloadError("stored sent message: its text is missing")
        return cls(_id(sid), _int(seq), text_content, _id(iid), is_text=True)


@dataclass
class ChannelMeta:
    status: ChannelStatus = ChannelStatus.ACTIVE
    my_seq: int = 0
    sender_seq: dict[PeerId, int] = field(default_factory=dict)
    profiles: dict[PeerId, str] = field(default_factory=dict)
    intents: dict[bytes, PendingIntent] = field(default_factory=dict)
    pending_commit: PendingCommit | None = None
    last_commit_at: float = 0.0
    display_name: str = ""
    profile_epoch: int = -1  # the epoch we last announced our profile in
    # Ids of the last messages we have in the channel (ours and others'), oldest first: the
    # source of the ``prev`` ids and the Bloom filter our messages carry (causal.py).
    recent: list[bytes] = field(default_factory=list)
    sync_due: float = -1.0  # when to send a Sync if we stay quiet (-1: none owed)

    def encode(self) -> bytes:
        pc = self.pending_commit
        return cbor.encode(
            {
                "status": self.status.value,
                "seq": self.my_seq,
                "senders": [[p.binary, n] for p, n in sorted(self.sender_seq.items())],
                "profiles": [[p.binary, n] for p, n in sorted(self.profiles.items())],
                "intents": [
                    [i, v.payload, v.sender.binary, round(v.seen_at * 1000)]
                    for i, v in sorted(self.intents.items())
                ],
                "pending": []
                if pc is None
                else [
                    pc.inner_id,
                    pc.commit_hash,
                    round(pc.sent_at * 1000),
                    sorted(p.binary for p in pc.recipients),
                    sorted(p.binary for p in pc.acked),
                    -1 if pc.acked_at is None else round(pc.acked_at * 1000),
                    [[i, p.binary, k] for i, p, k in pc.welcomes],
                    pc.slot,
                    sorted(p.binary for p in pc.removed),
                ],
                "last_commit": round(self.last_commit_at * 1000),
                "name": self.display_name,
                "profile_epoch": self.profile_epoch,
                "recent": list(self.recent),
                "sync_due": -1 if self.sync_due < 0 else round(self.sync_due * 1000),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> ChannelMeta:
        f = _decode(data, {"status", "seq", "senders", "profiles", "intents", "pending",
                           "last_commit", "name", "profile_epoch", "recent", "sync_due"})
        try:
            status = ChannelStatus(get_text(f, "status", 16))
            meta = cls(status=status, my_seq=get_int(f, "seq", 0, _UINT63))
            for p, n in _sorted_pairs(_pairs(f, "senders")):
                meta.sender_seq[_peer(p)] = _int(n)
            for p, n in _sorted_pairs(_pairs(f, "profiles")):
                meta.profiles[_peer(p)] = _text(n)
            for item in _sorted_pairs(_list(f, "intents")):
                i, payload, sender, at = _tuple(item, 4)
                meta.intents[_id(i)] = PendingIntent(
                    _bytes(payload), _peer(sender), _ms(at)
                )
            pending = _list(f, "pending")
            if pending:
                inner, commit, sent_at, rcpt, acked, acked_at, welcomes, slot, rem = _tuple(
                    pending, 9
                )
                meta.pending_commit = PendingCommit(
                    _bytes(inner),
                    _bytes(commit),
                    _ms(sent_at),
                    frozenset(_peer(p) for p in _sorted(_list_of(rcpt))),
                    frozenset(_peer(p) for p in _sorted(_list_of(acked))),
                    None if acked_at == -1 else _ms(acked_at),
                    tuple(
                        (_id(i), _peer(p), _bytes(k))
                        for i, p, k in (_tuple(w, 3) for w in _list_of(welcomes))
                    ),
                    _int(slot),
                    frozenset(_peer(p) for p in _sorted(_list_of(rem))),
                )
            meta.last_commit_at = _ms(f["last_commit"])
            meta.display_name = get_text(f, "name", 256)
            meta.profile_epoch = get_int(f, "profile_epoch", -1, _UINT63)
            recent = _list(f, "recent")
            if len(recent) > 256:
                raise PayloadError("stored channel meta: too many recent ids")
            meta.recent = [_id(i) for i in recent]
            due = f["sync_due"]
            meta.sync_due = -1.0 if due == -1 else _ms(due)
        except (ValueError, TypeError) as exc:
            raise PayloadError(f"stored channel meta: {exc}") from None
        return meta


def _decode(data: bytes, keys: set[str]) -> dict[str, Any]:
    try:
        obj = cbor.decode(data, max_depth=6, max_items=1 << 20, max_size=_MAX_META)
    except DecodeError as exc:
        raise PayloadError(f"stored channel state: {exc}") from None
    if not isinstance(obj, dict) or set(obj) != keys:
        raise PayloadError("stored channel state has the wrong fields")
    return obj


def _list(f: dict[str, Any], name: str) -> list[Any]:
    return _list_of(f[name])


def _list_of(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadError("expected a list")
    return value


def _sorted(items: list[Any]) -> list[Any]:
    """Sets are stored sorted and unique (one encoding per value)."""
    if not all(isinstance(x, bytes) for x in items) or items != sorted(set(items)):
        raise PayloadError("stored set is not sorted and unique")
    return items


def _sorted_pairs(items: list[Any]) -> list[Any]:
    """Maps are stored as lists sorted and unique by their first element."""
    keys = [x[0] if isinstance(x, list | tuple) and x else None for x in items]
    _sorted(keys)
    return items


def _pairs(f: dict[str, Any], name: str) -> list[tuple[Any, Any]]:
    return [(a, b) for a, b in (_tuple(x, 2) for x in _list(f, name))]


def _tuple(value: object, n: int) -> tuple[Any, ...]:
    if not isinstance(value, list) or len(value) != n:
        raise PayloadError(f"expected a list of {n}")
    return tuple(value)


def _bytes(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise PayloadError("expected bytes")
    return value


def _id(value: object) -> bytes:
    raw = _bytes(value)
    if len(raw) != 16:
        raise PayloadError("expected a 16-byte id")
    return raw


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError("expected an integer")
    return value


def _ms(value: object) -> float:
    """A stored time: whole milliseconds, small enough that seconds as a float keep them."""
    ms = _int(value)
    if not 0 <= ms < _MAX_MS:
        raise PayloadError("stored time out of range")
    return ms / 1000


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise PayloadError("expected text")
    return value


def _peer(value: object) -> PeerId:
    try:
        return PeerId.from_bytes(_bytes(value))
    except IdentityError as exc:
        raise PayloadError(str(exc)) from None
