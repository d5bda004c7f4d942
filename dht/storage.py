"""Validating record storage for the DHT (a kademlia ``IStorage``).

Every value is a signed :class:`~dht.records.PeerRecord`. A STORE is accepted only if the
record verifies now, sits under its own key, and has a higher sequence number than what we
hold; reads verify again and drop anything that expired or stopped verifying. Quotas bound the
total count and bytes and what a single source address may make us hold. Every refusal is
counted by reason in :meth:`RecordStorage.statistics`.

Verification is memoised by :class:`VerifyCache`: a record is immutable bytes, so the
signature, key binding and address checks give the same answer every time for the same
``(key, sha256(bytes))``; only the expiry depends on ``now`` and is checked on every hit.
Reads therefore still validate (a changed byte is a different cache key) without paying an
Ed25519 verification and two CBOR decodes each time.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kademlia.storage import IStorage

from dht.errors import RecordError
from dht.records import MAX_TTL, PeerRecord, VerifiedPeerRecord

__all__ = ["RecordStorage", "StorageLimits", "StoreResult", "VerifyCache"]

Clock = Callable[[], float]


@dataclass(frozen=True)
class StorageLimits:
    max_records: int = 10_000
    max_bytes: int = 8 * 1024 * 1024
    max_per_source: int = 64


class StoreResult:
    """Reasons a STORE is accepted or refused (strings, so they read well in statistics)."""

    STORED = "stored"
    MALFORMED = "malformed"
    INVALID = "invalid"
    WRONG_KEY = "wrong_key"
    REPLAY = "replayed_seq"
    DUPLICATE = "duplicate"  # the very bytes we hold: not stored again, but held
    QUOTA = "quota"
    SOURCE_QUOTA = "source_quota"


class VerifyCache:
    """Records that verified, by ``(key, sha256(bytes))``, until they expire (LRU-bounded)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[bytes, bytes], VerifiedPeerRecord] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def verify(self, key: bytes, data: bytes, now: float) -> VerifiedPeerRecord:
        """``data`` decoded and verified at ``now`` under ``key``; raises :class:`RecordError`.

        Failures are not cached (a forger must not be able to evict good entries cheaply
        either: the cache only grows on success, which needs a valid signature).
        """
        if not isinstance(data, bytes):
            raise RecordError("record must be bytes")
        ident = (key, hashlib.sha256(data).digest())
        hit = self._hit(ident, now)
        if hit is not None:
            return hit
        record = PeerRecord.decode(data)
        if record.key != key:
            raise RecordError("record stored under another key")
        return self._verify_new(ident, record, now)

    def verify_decoded(
        self, key: bytes, data: bytes, record: PeerRecord, now: float
    ) -> VerifiedPeerRecord:
        """As :meth:`verify` for a ``record`` the caller decoded from ``data`` (and whose key
        it checked): no second decode."""
        ident = (key, hashlib.sha256(data).digest())
        hit = self._hit(ident, now)
        return hit if hit is not None else self._verify_new(ident, record, now)

    def _hit(self, ident: tuple[bytes, bytes], now: float) -> VerifiedPeerRecord | None:
        hit = self._entries.get(ident)
        if hit is None:
            return None
        # The only checks whose answer changes with time (see PeerRecord.verify).
        if hit.expires_at <= now or hit.expires_at > now + MAX_TTL:
            del self._entries[ident]
            raise RecordError("record expired")
        self._entries.move_to_end(ident)
        self.hits += 1
        return hit

    def _verify_new(
        self, ident: tuple[bytes, bytes], record: PeerRecord, now: float
    ) -> VerifiedPeerRecord:
        self.misses += 1
        verified = record.verify(now)
        self._entries[ident] = verified
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return verified


@dataclass
class _Entry:
    record: PeerRecord
    data: bytes
    stored_at: float
    source: str | None


class RecordStorage(IStorage):  # type: ignore[misc]
    """Highest-sequence verified record per key, bounded; ``clock`` gives unix seconds."""

    def __init__(
        self, clock: Clock, limits: StorageLimits | None = None, cache: VerifyCache | None = None
    ) -> None:
        self._clock = clock
        self.limits = limits or StorageLimits()
        self.cache = cache if cache is not None else VerifyCache()
        self._data: dict[bytes, _Entry] = {}
        self._bytes = 0
        self._per_source: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.stored = 0

    # -- writes

    def put(self, key: bytes, value: object, source: str | None = None) -> str:
        """Validate and store; returns a :class:`StoreResult` reason (``STORED`` on success).

        ``source`` is the sender's IP address (``None`` for our own records, which are exempt
        from the per-source limit).
        """
        result = self._put(key, value, source)
        if result == StoreResult.STORED:
            self.stored += 1
        else:
            self.drops[result] += 1
        return result

    def _put(self, key: bytes, value: object, source: str | None) -> str:
        if not isinstance(key, bytes) or len(key) != 20 or not isinstance(value, bytes):
            return StoreResult.MALFORMED
        now = self._clock()
        old = self._live(key, now)
        if old is not None and old.data == value:
            # The same signed bytes again (a second holder's hand-over, a retransmission):
            # nothing to decode or verify.
            return StoreResult.DUPLICATE
        try:
            record = PeerRecord.decode(value)
        except RecordError:
            return StoreResult.MALFORMED
        if record.key != key:
            return StoreResult.WRONG_KEY
        try:
            self.cache.verify_decoded(key, value, record, now)
        except RecordError:
            return StoreResult.INVALID
        if old is not None and record.seq <= old.record.seq:
            return StoreResult.REPLAY
        extra_bytes = len(value) - (len(old.data) if old else 0)
        if old is None and len(self._data) >= self.limits.max_records:
            self._cull(now)
            if len(self._data) >= self.limits.max_records:
                return StoreResult.QUOTA
        if self._bytes + extra_bytes > self.limits.max_bytes:
            return StoreResult.QUOTA
        if (
            source is not None
            and (old is None or old.source != source)
            and self._per_source[source] >= self.limits.max_per_source
        ):
            return StoreResult.SOURCE_QUOTA
        if old is not None:
            self._remove(key)
        self._data[key] = _Entry(record, value, now, source)
        self._bytes += len(value)
        if source is not None:
            self._per_source[source] += 1
        return StoreResult.STORED

    def __setitem__(self, key: bytes, value: bytes) -> None:
        # kademlia's own code paths store through here; refusals are counted, not raised.
        self.put(key, value, None)

    def _remove(self, key: bytes) -> None:
        entry = self._data.pop(key)
        self._bytes -= len(entry.data)
        if entry.source is not None:
            self._per_source[entry.source] -= 1
            if self._per_source[entry.source] <= 0:
                del self._per_source[entry.source]

    def _live(self, key: bytes, now: float) -> _Entry | None:
        """The entry for ``key`` if it still verifies at ``now``; drops it otherwise."""
        entry = self._data.get(key)
        if entry is None:
            return None
        try:
            self.cache.verify(key, entry.data, now)
        except RecordError:
            self._remove(key)
            self.drops["expired_on_read"] += 1
            return None
        return entry

    def _cull(self, now: float) -> None:
        for key in [k for k, e in self._data.items() if e.record.expires_at <= now]:
            self._remove(key)
            self.drops["expired_on_read"] += 1

    # -- reads

    def get_verified(self, key: bytes) -> VerifiedPeerRecord | None:
        entry = self._live(key, self._clock())
        return None if entry is None else VerifiedPeerRecord(entry.record)

    def get(self, key: bytes, default: object = None) -> object:
        entry = self._live(key, self._clock())
        return default if entry is None else entry.data

    def __getitem__(self, key: bytes) -> bytes:
        entry = self._live(key, self._clock())
        if entry is None:
            raise KeyError(key)
        return entry.data

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self._live(key, self._clock()) is not None

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        now = self._clock()
        self._cull(now)
        return iter([(k, e.data) for k, e in self._data.items()])

    def iter_older_than(self, seconds_old: float) -> list[tuple[bytes, bytes]]:
        now = self._clock()
        self._cull(now)
        return [(k, e.data) for k, e in self._data.items() if now - e.stored_at >= seconds_old]

    def statistics(self) -> dict[str, object]:
        return {
            "records": len(self._data),
            "bytes": self._bytes,
            "sources": len(self._per_source),
            "stored": self.stored,
            "verify_cache": {"hits": self.cache.hits, "misses": self.cache.misses},
            "drops": dict(self.drops),
        }
