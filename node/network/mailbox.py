"""Mailboxes, sans-I/O: daily keys, the holder's admission rules, fetch paging.

A *mailbox key* names one channel epoch's envelopes of one day in the DHT keyspace::

    day_tag = HMAC-SHA256(tag_key, "spacepanda/v1/mailbox-day" || uint32(day))
    key     = SHA-256("sp/mbx" || day_tag)[0:20],          day = floor(unix / 86400)

so a holder (any node among the k = 3 closest to the key) learns nothing about the channel
without its ``tag_key``. Per key the holder keeps an append-only log; each envelope gets the
next sequence number of its key (the *cursor* a fetcher pages with). The holder's rules:

* only sealed-envelope lengths (``node.core.padding``, the rule the channel layer pads by);
* only days within ``day_skew`` of the holder's today (else EXPIRED): retention is counted
  from the day, ``expires_at = (day + 1 + retention_days) * 86400``;
* a token bucket per uploader PeerId, in envelopes and in bytes, and one per fetcher (in
  memory only);
* quotas per key, per uploader (across keys) and for the whole holder, checked by
  :meth:`Mailbox.admit` against the store's indexed counters inside the store's transaction.
  The store knows an uploader only by its *pseudonym* (:func:`uploader_pseudonym`: a keyed
  hash under the holder's own secret), so a holder's disk never ties an upload to a PeerId;
* the same envelope (SHA-256) under the same key is stored once and acknowledged again.

:class:`Mailbox` takes decoded requests and the time, and returns either a reply or an effect
(:class:`Append`, :class:`Read`) for the adapter to apply to the store; it never touches I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from node.core.identity import PeerId
from node.core.padding import is_envelope_size
from node.core.ratelimit import RateLimiter
from node.network.mailbox_wire import (
    ACCEPTED,
    BATCH_OVERHEAD,
    ITEM_OVERHEAD,
    KEY_LEN,
    MAX_DAY,
    MAX_LIMIT,
    MAX_MESSAGE,
    Batch,
    Fetch,
    MailboxWireError,
    Status,
    Store,
    Stored,
)

__all__ = [
    "COLLECT_K",
    "DAY_S",
    "HOLDER_SECRET_LEN",
    "PLACEMENT_K",
    "PSEUDONYM_LEN",
    "RETENTION_DAYS",
    "Admit",
    "Append",
    "Appended",
    "Entry",
    "Mailbox",
    "MailboxSettings",
    "Page",
    "Read",
    "Usage",
    "check_batch",
    "day_of",
    "envelope_digest",
    "fetch_days",
    "mailbox_key",
    "uploader_pseudonym",
]

DAY_S = 86400
RETENTION_DAYS = 14
PLACEMENT_K = 3
# A returning member asks one holder more than a sender stores at: senders skip themselves
# (see MailboxService._closest), so any sender's three are among the fetcher's four.
COLLECT_K = PLACEMENT_K + 1
MiB = 1 << 20
_DAY_LABEL = b"spacepanda/v1/mailbox-day"
_KEY_PREFIX = b"sp/mbx"
HOLDER_SECRET_LEN = 32
# 128 bits: collisions (two uploaders sharing a quota) need ~2^64 uploaders.
PSEUDONYM_LEN = 16


def day_of(unix: float) -> int:
    """The mailbox day of a Unix time: ``floor(unix / 86400)``."""
    return int(unix // DAY_S)


def mailbox_key(tag_key: bytes, day: int) -> bytes:
    """The 20-byte DHT key of one epoch's mailbox on ``day`` (``tag_key``: the epoch's
    routing-tag key, PROTOCOL.md section 11)."""
    if not isinstance(tag_key, bytes) or not tag_key:
        raise ValueError("tag_key must be non-empty bytes")
    if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= MAX_DAY:
        raise ValueError(f"day must be an integer in 0..{MAX_DAY}")
    day_tag = hmac.digest(tag_key, _DAY_LABEL + day.to_bytes(4, "big"), "sha256")
    return hashlib.sha256(_KEY_PREFIX + day_tag).digest()[:KEY_LEN]


def fetch_days(away_since: float, now: float, retention_days: int = RETENTION_DAYS) -> list[int]:
    """The days a member away since ``away_since`` fetches on return, oldest first: from the
    day it left (or the oldest day still retained) to today, at most ``retention_days + 1``."""
    today = day_of(now)
    first = max(day_of(away_since), today - retention_days)
    return list(range(first, today + 1))


def uploader_pseudonym(holder_secret: bytes, uploader: PeerId) -> bytes:
    """What a holder stores instead of an uploader's PeerId:
    ``HMAC-SHA256(holder_secret, peer_id.binary)[0:16]``. The same for every upload of one
    uploader (so its quota holds across keys and restarts), unlinkable to the PeerId without
    the secret, which never leaves the holder."""
    if not isinstance(holder_secret, bytes) or len(holder_secret) != HOLDER_SECRET_LEN:
        raise ValueError(f"holder_secret must be {HOLDER_SECRET_LEN} bytes")
    return hmac.digest(holder_secret, uploader.binary, "sha256")[:PSEUDONYM_LEN]


def envelope_digest(envelope: bytes) -> bytes:
    return hashlib.sha256(envelope).digest()


@dataclass(frozen=True)
class MailboxSettings:
    retention_days: int = RETENTION_DAYS
    day_skew: int = 1  # STORE days accepted: today - skew .. today + skew
    key_envelopes: int = 4096
    key_bytes: int = 16 * MiB
    uploader_envelopes: int = 16384  # per uploader (pseudonym), across keys
    uploader_bytes: int = 64 * MiB
    total_envelopes: int = 262_144  # the whole holder: bounds the disk it gives away
    total_bytes: int = 1024 * MiB
    store_rate: float = 20.0  # envelopes per second per uploader...
    store_burst: float = 200.0
    store_byte_rate: float = 2.0 * MiB  # ...and bytes per second
    store_byte_burst: float = 16.0 * MiB
    fetch_rate: float = 50.0  # FETCH requests per second per fetcher
    fetch_burst: float = 200.0
    max_sources: int = 4096  # rate buckets kept (LRU)

    def __post_init__(self) -> None:
        for name in ("retention_days", "key_envelopes", "key_bytes", "uploader_envelopes",
                     "uploader_bytes", "total_envelopes", "total_bytes", "max_sources"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        if isinstance(self.day_skew, bool) or not isinstance(self.day_skew, int) or not (
            0 <= self.day_skew <= self.retention_days
        ):
            raise ValueError("day_skew must be an integer in 0..retention_days")
        for name in ("store_rate", "store_burst", "store_byte_rate", "store_byte_burst",
                     "fetch_rate", "fetch_burst"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True)
class Usage:
    """What a holder already stores, as the store's counters say (the admission input)."""

    key_envelopes: int = 0
    key_bytes: int = 0
    uploader_envelopes: int = 0
    uploader_bytes: int = 0
    total_envelopes: int = 0
    total_bytes: int = 0


Admit = Callable[[Usage, int], Status]


@dataclass(frozen=True)
class Entry:
    """One envelope for the store to append under ``key``."""

    key: bytes
    digest: bytes  # SHA-256 of the envelope: duplicates under one key are stored once
    uploader: bytes  # the uploader's pseudonym (uploader_pseudonym), never its PeerId
    envelope: bytes = field(repr=False)
    stored_at: float
    expires_at: float

    @property
    def size(self) -> int:
        return len(self.envelope)


@dataclass(frozen=True)
class Appended:
    """The store's answer: OK or DUPLICATE with the envelope's seq, or a refusal and 0."""

    status: Status
    seq: int = 0


@dataclass(frozen=True)
class Page:
    items: tuple[tuple[int, bytes], ...]
    more: bool


@dataclass(frozen=True)
class Append:
    """Effect: ``store.append(entry, mailbox.admit, now)``, then :meth:`Mailbox.stored`."""

    request: Store
    entry: Entry


@dataclass(frozen=True)
class Read:
    """Effect: ``store.fetch(key, after, limit, max_bytes, now)``, then :meth:`Mailbox.batch`."""

    request: Fetch
    max_bytes: int  # envelope bytes that fit one BATCH with ``limit`` items


class Mailbox:
    """The holder's rules. One per node; its state is only the rate buckets and counters."""

    def __init__(self, settings: MailboxSettings | None = None) -> None:
        s = self.settings = settings or MailboxSettings()
        self._store_rate = RateLimiter(s.store_rate, s.store_burst, s.max_sources)
        self._byte_rate = RateLimiter(s.store_byte_rate, s.store_byte_burst, s.max_sources)
        self._fetch_rate = RateLimiter(s.fetch_rate, s.fetch_burst, s.max_sources)
        self.counters: Counter[str] = Counter()

    def expires_at(self, day: int) -> float:
        return float((day + 1 + self.settings.retention_days) * DAY_S)

    # -- STORE ----------------------------------------------------------------------------

    def on_store(self, uploader: PeerId, pseudonym: bytes, request: Store,
                 now: float) -> Stored | Append:
        """A STORE from ``uploader``: a refusal to send back, or an entry to append. Rate
        limits are per PeerId (in memory); the entry, and so the quota, names ``pseudonym``
        (:func:`uploader_pseudonym` of ``uploader``)."""
        self.counters["store_requests"] += 1
        source = uploader.binary.hex()
        size = len(request.envelope)
        if not self._store_rate.allow(source, now):
            return self.refuse(request, Status.RATE_LIMITED)
        if not is_envelope_size(size):
            return self.refuse(request, Status.BAD_SIZE)
        today = day_of(now)
        skew = self.settings.day_skew
        if not today - skew <= request.day <= today + skew:
            return self.refuse(request, Status.EXPIRED)
        if not self._byte_rate.allow(source, now, float(size)):
            return self.refuse(request, Status.RATE_LIMITED)
        entry = Entry(request.key, envelope_digest(request.envelope), pseudonym,
                      request.envelope, now, self.expires_at(request.day))
        return Append(request, entry)

    def admit(self, usage: Usage, size: int) -> Status:
        """Whether ``size`` more bytes fit every quota (pure; the store calls it inside the
        transaction that appends, so two uploads cannot both take the last room)."""
        s = self.settings
        if usage.key_envelopes + 1 > s.key_envelopes or usage.key_bytes + size > s.key_bytes:
            return Status.KEY_FULL
        if (usage.uploader_envelopes + 1 > s.uploader_envelopes
                or usage.uploader_bytes + size > s.uploader_bytes):
            return Status.UPLOADER_FULL
        if (usage.total_envelopes + 1 > s.total_envelopes
                or usage.total_bytes + size > s.total_bytes):
            return Status.HOLDER_FULL
        return Status.OK

    def stored(self, request: Store, result: Appended) -> Stored:
        """The store's answer to an :class:`Append`, as the reply."""
        if result.status not in ACCEPTED:
            return self.refuse(request, result.status)
        self.counters["stored" if result.status == Status.OK else "duplicates"] += 1
        return Stored(request.request_id, result.status, result.seq)

    def refuse(self, request: Store, status: Status) -> Stored:
        self.counters[f"refused_{status.name.lower()}"] += 1
        return Stored(request.request_id, status, 0)

    # -- FETCH ----------------------------------------------------------------------------

    def on_fetch(self, fetcher: PeerId, request: Fetch, now: float) -> Batch | Read:
        self.counters["fetch_requests"] += 1
        if not self._fetch_rate.allow(fetcher.binary.hex(), now):
            self.counters["refused_fetch_rate"] += 1
            return Batch(request.request_id, Status.RATE_LIMITED, (), 0, False)
        budget = MAX_MESSAGE - BATCH_OVERHEAD - request.limit * ITEM_OVERHEAD
        return Read(request, budget)

    def batch(self, read: Read, page: Page) -> Batch:
        """The store's page for a :class:`Read`, as the reply."""
        self.counters["fetched"] += len(page.items)
        cursor = page.items[-1][0] if page.items else read.request.cursor
        return Batch(read.request.request_id, Status.OK, page.items, cursor,
                     page.more and bool(page.items))

    def unavailable(self, request: Store | Fetch) -> Stored | Batch:
        """The reply when the store failed (the request was not served)."""
        self.counters["unavailable"] += 1
        if isinstance(request, Store):
            return Stored(request.request_id, Status.UNAVAILABLE, 0)
        return Batch(request.request_id, Status.UNAVAILABLE, (), 0, False)

    def statistics(self) -> dict[str, int]:
        return dict(self.counters)


def check_batch(request: Fetch, reply: Batch) -> Batch:
    """A holder's BATCH checked against the FETCH it answers (client side): the same
    request, at most ``limit`` items, all after the cursor, only sealed-envelope lengths."""
    if reply.request_id != request.request_id:
        raise MailboxWireError("mailbox BATCH answers another request")
    if reply.status != Status.OK:
        return reply
    if len(reply.items) > min(request.limit, MAX_LIMIT):
        raise MailboxWireError("mailbox BATCH holds more items than asked for")
    if reply.items and reply.items[0][0] <= request.cursor:
        raise MailboxWireError("mailbox BATCH goes back before the cursor")
    if reply.next_cursor < request.cursor:
        raise MailboxWireError("mailbox BATCH moves the cursor back")
    if any(not is_envelope_size(len(env)) for _, env in reply.items):
        raise MailboxWireError("mailbox BATCH holds something that is not a sealed envelope")
    return reply
