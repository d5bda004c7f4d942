"""Mailbox messages on a link (Data protocol ``sp/mbx/1``; docs/PROTOCOL.md 15).

Binary and strict: ``version(1) = 1 || kind(1) || body``, integers big-endian, one message
per Data payload (at most :data:`MAX_MESSAGE` bytes, chunked by the transport).

======  ======  =======================================================================
kind    name    body
======  ======  =======================================================================
1       STORE   request_id(8) || key(20) || day(4) || envelope (the rest, 1..MAX_ENVELOPE)
2       STORED  request_id(8) || status(1) || cursor(8)
3       FETCH   request_id(8) || key(20) || cursor(8) || limit(2)
4       BATCH   request_id(8) || status(1) || flags(1) || next_cursor(8) || count(2)
                || count x (seq(8) || length(4) || envelope)
======  ======  =======================================================================

Every field has one valid encoding: a decoded message re-encodes to the same bytes.
:class:`MailboxWireError` is the only error a peer's bytes can raise here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from node.core.padding import MAX_ENVELOPE
from node.network.wire import NetworkError

__all__ = [
    "ACCEPTED",
    "BATCH_OVERHEAD",
    "ITEM_OVERHEAD",
    "KEY_LEN",
    "MAX_CURSOR",
    "MAX_DAY",
    "MAX_ENVELOPE",
    "MAX_LIMIT",
    "MAX_MESSAGE",
    "MAX_REQUEST_ID",
    "PROTOCOL",
    "Batch",
    "Fetch",
    "MailboxMessage",
    "MailboxWireError",
    "Status",
    "Store",
    "Stored",
    "decode_mailbox",
]

PROTOCOL = "sp/mbx/1"
VERSION = 1
KEY_LEN = 20
MAX_MESSAGE = 1 << 20  # one chunked transport payload
MAX_LIMIT = 256  # envelopes per FETCH
MAX_CURSOR = (1 << 63) - 1  # sequence numbers fit SQLite's INTEGER
MAX_REQUEST_ID = (1 << 64) - 1
MAX_DAY = (1 << 32) - 1
_STORE, _STORED, _FETCH, _BATCH = 1, 2, 3, 4
_MORE = 0x01
_HEAD = 2
STORE_OVERHEAD = _HEAD + 8 + KEY_LEN + 4
BATCH_OVERHEAD = _HEAD + 8 + 1 + 1 + 8 + 2
ITEM_OVERHEAD = 8 + 4


class MailboxWireError(NetworkError):
    """A mailbox message from a peer does not decode, or a reply breaks the protocol."""


class Status(IntEnum):
    """The outcome of a STORE (all values) or a FETCH (OK, RATE_LIMITED, UNAVAILABLE)."""

    OK = 0  # stored (STORE) / here is a batch (FETCH)
    DUPLICATE = 1  # already held under this key: acknowledged, stored once
    BAD_SIZE = 2  # not a sealed envelope's length (or version)
    EXPIRED = 3  # the day is outside the window the holder accepts
    RATE_LIMITED = 4  # over the uploader's (or fetcher's) rate: try later
    KEY_FULL = 5  # the key's quota (envelopes or bytes) is used up
    UPLOADER_FULL = 6  # the uploader's quota across keys is used up
    HOLDER_FULL = 7  # the holder's whole mailbox budget is used up
    UNAVAILABLE = 8  # the holder could not serve it (storage failed, stopping)


ACCEPTED = frozenset({Status.OK, Status.DUPLICATE})
_FETCH_STATUSES = frozenset({Status.OK, Status.RATE_LIMITED, Status.UNAVAILABLE})


def _check_uint(name: str, value: int, top: int, low: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= top:
        raise ValueError(f"{name} must be an integer in {low}..{top}")


def _check_bytes(name: str, value: bytes, low: int, high: int) -> None:
    if not isinstance(value, bytes) or not low <= len(value) <= high:
        raise ValueError(f"{name} must be {low}..{high} bytes")


@dataclass(frozen=True)
class Store:
    request_id: int
    key: bytes
    day: int
    envelope: bytes
    KIND: ClassVar[int] = _STORE

    def __post_init__(self) -> None:
        _check_uint("request_id", self.request_id, MAX_REQUEST_ID)
        _check_bytes("key", self.key, KEY_LEN, KEY_LEN)
        _check_uint("day", self.day, MAX_DAY)
        _check_bytes("envelope", self.envelope, 1, MAX_ENVELOPE)

    def encode(self) -> bytes:
        return b"".join((bytes((VERSION, _STORE)), self.request_id.to_bytes(8, "big"),
                         self.key, self.day.to_bytes(4, "big"), self.envelope))


@dataclass(frozen=True)
class Stored:
    request_id: int
    status: Status
    cursor: int  # the envelope's sequence number when accepted, else 0
    KIND: ClassVar[int] = _STORED

    def __post_init__(self) -> None:
        _check_uint("request_id", self.request_id, MAX_REQUEST_ID)
        if not isinstance(self.status, Status):
            raise ValueError("status must be a Status")
        if self.status in ACCEPTED:
            _check_uint("cursor", self.cursor, MAX_CURSOR, 1)
        elif self.cursor != 0:
            raise ValueError("a refusal carries cursor 0")

    def encode(self) -> bytes:
        return b"".join((bytes((VERSION, _STORED)), self.request_id.to_bytes(8, "big"),
                         bytes((self.status,)), self.cursor.to_bytes(8, "big")))


@dataclass(frozen=True)
class Fetch:
    request_id: int
    key: bytes
    cursor: int  # envelopes with a sequence number above this one
    limit: int
    KIND: ClassVar[int] = _FETCH

    def __post_init__(self) -> None:
        _check_uint("request_id", self.request_id, MAX_REQUEST_ID)
        _check_bytes("key", self.key, KEY_LEN, KEY_LEN)
        _check_uint("cursor", self.cursor, MAX_CURSOR)
        _check_uint("limit", self.limit, MAX_LIMIT, 1)

    def encode(self) -> bytes:
        return b"".join((bytes((VERSION, _FETCH)), self.request_id.to_bytes(8, "big"),
                         self.key, self.cursor.to_bytes(8, "big"), self.limit.to_bytes(2, "big")))


@dataclass(frozen=True)
class Batch:
    request_id: int
    status: Status
    items: tuple[tuple[int, bytes], ...]  # (sequence number, envelope), ascending
    next_cursor: int  # the cursor for the next FETCH (0 when refused)
    more: bool  # the holder has more after next_cursor
    KIND: ClassVar[int] = _BATCH

    def __post_init__(self) -> None:
        _check_uint("request_id", self.request_id, MAX_REQUEST_ID)
        if not isinstance(self.status, Status) or self.status not in _FETCH_STATUSES:
            raise ValueError("a batch's status is OK, RATE_LIMITED or UNAVAILABLE")
        if not isinstance(self.items, tuple) or len(self.items) > MAX_LIMIT:
            raise ValueError(f"a batch holds a tuple of at most {MAX_LIMIT} items")
        _check_uint("next_cursor", self.next_cursor, MAX_CURSOR)
        if not isinstance(self.more, bool):
            raise ValueError("more must be a bool")
        if self.status != Status.OK:
            if self.items or self.more or self.next_cursor:
                raise ValueError("a refused batch is empty, with cursor 0")
            return
        last = 0
        size = BATCH_OVERHEAD
        for item in self.items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise ValueError("a batch item is (seq, envelope)")
            seq, envelope = item
            _check_uint("seq", seq, MAX_CURSOR, last + 1)
            _check_bytes("envelope", envelope, 1, MAX_ENVELOPE)
            last = seq
            size += ITEM_OVERHEAD + len(envelope)
        if size > MAX_MESSAGE:
            raise ValueError(f"a batch is at most {MAX_MESSAGE} bytes encoded")
        if self.next_cursor < last:
            raise ValueError("next_cursor is at least the last item's seq")
        if self.more and not self.items:
            raise ValueError("a batch with more to come carries at least one item")

    def encode(self) -> bytes:
        parts = [bytes((VERSION, _BATCH)), self.request_id.to_bytes(8, "big"),
                 bytes((self.status, _MORE if self.more else 0)),
                 self.next_cursor.to_bytes(8, "big"), len(self.items).to_bytes(2, "big")]
        for seq, envelope in self.items:
            parts += (seq.to_bytes(8, "big"), len(envelope).to_bytes(4, "big"), envelope)
        return b"".join(parts)


MailboxMessage = Store | Stored | Fetch | Batch


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def take(self, n: int) -> bytes:
        end = self._at + n
        if end > len(self._data):
            raise MailboxWireError("mailbox message: truncated")
        out = self._data[self._at : end]
        self._at = end
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def rest(self) -> bytes:
        out = self._data[self._at :]
        self._at = len(self._data)
        return out

    def end(self) -> None:
        if self._at != len(self._data):
            raise MailboxWireError("mailbox message: trailing bytes")


def _status(raw: int) -> Status:
    try:
        return Status(raw)
    except ValueError:
        raise MailboxWireError(f"mailbox message: unknown status {raw}") from None


def decode_mailbox(data: bytes) -> MailboxMessage:
    """Decode one message; anything but exactly one valid encoding raises MailboxWireError."""
    if not isinstance(data, bytes) or len(data) < _HEAD:
        raise MailboxWireError("mailbox message too short")
    if len(data) > MAX_MESSAGE:
        raise MailboxWireError("mailbox message too large")
    if data[0] != VERSION:
        raise MailboxWireError(f"mailbox message: unsupported version {data[0]}")
    kind = data[1]
    r = _Reader(data)
    r.take(_HEAD)
    try:
        if kind == _STORE:
            rid, key, day, envelope = r.uint(8), r.take(KEY_LEN), r.uint(4), r.rest()
            if not 1 <= len(envelope) <= MAX_ENVELOPE:
                raise MailboxWireError("mailbox STORE: envelope of a bad length")
            return Store(rid, key, day, envelope)
        if kind == _STORED:
            rid, status, cursor = r.uint(8), _status(r.uint(1)), r.uint(8)
            r.end()
            return Stored(rid, status, cursor)
        if kind == _FETCH:
            rid, key, cursor, limit = r.uint(8), r.take(KEY_LEN), r.uint(8), r.uint(2)
            r.end()
            return Fetch(rid, key, cursor, limit)
        if kind == _BATCH:
            rid, status, flags = r.uint(8), _status(r.uint(1)), r.uint(1)
            if flags & ~_MORE:
                raise MailboxWireError(f"mailbox BATCH: unknown flags {flags:#x}")
            next_cursor, count = r.uint(8), r.uint(2)
            if count > MAX_LIMIT:
                raise MailboxWireError("mailbox BATCH: too many items")
            items = []
            for _ in range(count):
                seq, length = r.uint(8), r.uint(4)
                items.append((seq, r.take(length)))
            r.end()
            return Batch(rid, status, tuple(items), next_cursor, bool(flags & _MORE))
    except ValueError as exc:  # a field out of range: the dataclass checks say which
        raise MailboxWireError(f"mailbox message: {exc}") from None
    raise MailboxWireError(f"mailbox message: unknown kind {kind}")
