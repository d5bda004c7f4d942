"""The node database's side of :class:`dht.persistence.DhtStore` (no pickle).

A routing-table snapshot (PeerId, UDP host and port) and the DHT's stored records (the signed
bytes, keyed by their DHT key) are each replaced wholesale by every save, so what is on disk
is always one consistent snapshot. Both are bounded. Rows are data, not trust: on load a row
that does not decode is skipped, counted by reason in :meth:`statistics` and logged, never
raised; records are verified again by the DHT when it loads them.

:class:`SqliteDhtStore` shares the node's aiosqlite connection (``SqliteStorage.dht_store()``);
:class:`MemoryStorageDhtStore` is its twin over ``MemoryStorage``'s tables. ``saved_at`` comes
from an injected clock (storage itself never reads one).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from dht.errors import RecordError
from dht.persistence import ContactSnapshot, DhtStore
from dht.records import MAX_RECORD_SIZE, PeerRecord
from node.core.errors import IdentityError, StorageError
from node.core.identity import PeerId
from node.storage.base import check_time

if TYPE_CHECKING:
    from node.storage.sqlite import SqliteStorage

__all__ = [
    "MAX_SNAPSHOT_CONTACTS",
    "MAX_SNAPSHOT_RECORDS",
    "DhtTables",
    "MemoryStorageDhtStore",
    "NodeDhtStore",
    "SqliteDhtStore",
]

# A routing table of 160 buckets x k=20 holds at most 3,200 contacts.
MAX_SNAPSHOT_CONTACTS = 4096
# Matches the DHT's default record quota (dht.storage.StorageLimits.max_records).
MAX_SNAPSHOT_RECORDS = 10_000
_KEY_LEN = 20
_MAX_HOST_LEN = 253
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")

Clock = Callable[[], float]
_log = structlog.get_logger("storage")


class NodeDhtStore(DhtStore, Protocol):
    """A :class:`DhtStore` that also reports what it skipped or truncated."""

    def statistics(self) -> dict[str, Any]: ...


class _Skip(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _check_host(host: object) -> str:
    if not isinstance(host, str) or not 0 < len(host) <= _MAX_HOST_LEN:
        raise _Skip("bad_host", "host must be a 1..253 character string")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if _HOSTNAME.fullmatch(host) is None:
            raise _Skip("bad_host", "host is neither an IP address nor a DNS name") from None
    return host


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _Skip("bad_port", "port must be an integer in 1..65535")
    return port


def _contact_from_row(peer_id: object, host: object, port: object) -> ContactSnapshot:
    if not isinstance(peer_id, bytes):
        raise _Skip("bad_peer_id", f"peer id is {type(peer_id).__name__}, not bytes")
    try:
        pid = PeerId.from_bytes(peer_id)
    except IdentityError as exc:
        raise _Skip("bad_peer_id", str(exc)) from None
    return ContactSnapshot(pid, _check_host(host), _check_port(port))


def _decode_record(value: object) -> PeerRecord:
    """Structure only (the DHT verifies signatures and expiry when it loads the record)."""
    if not isinstance(value, bytes):
        raise _Skip("bad_value", f"record is {type(value).__name__}, not bytes")
    if len(value) > MAX_RECORD_SIZE:
        raise _Skip("oversized", f"record of {len(value)} bytes > {MAX_RECORD_SIZE}")
    try:
        return PeerRecord.decode(value)
    except RecordError as exc:
        raise _Skip("undecodable", str(exc)) from None


def _record_from_row(key: object, value: object) -> bytes:
    if not isinstance(key, bytes) or len(key) != _KEY_LEN:
        raise _Skip("bad_key", f"key must be {_KEY_LEN} bytes")
    record = _decode_record(value)
    if record.key != key:
        raise _Skip("wrong_key", "record does not belong under its key")
    assert isinstance(value, bytes)  # _decode_record checked it
    return value


ContactRow = tuple[bytes, str, int]


class _DhtStoreBase:
    """Validation, bounds and counters shared by both backends (so they behave the same)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.skipped: Counter[str] = Counter()
        self.saved_contacts = 0
        self.saved_records = 0

    def statistics(self) -> dict[str, Any]:
        return {
            "saved_contacts": self.saved_contacts,
            "saved_records": self.saved_records,
            "skipped": dict(self.skipped),
        }

    def _skip(self, where: str, position: object, skip: _Skip) -> None:
        # Never the row's contents: records are peer-supplied bytes.
        self.skipped[f"{where}_{skip.reason}"] += 1
        _log.warning(
            "storage.dht_row_skipped",
            where=where,
            position=position,
            reason=skip.reason,
            detail=skip.detail,
        )

    def _now(self) -> float:
        return check_time(self._clock())

    def _prepare_contacts(self, contacts: Sequence[ContactSnapshot]) -> list[ContactRow]:
        rows: list[ContactRow] = []
        seen: set[PeerId] = set()
        for i, c in enumerate(contacts):
            if not isinstance(c, ContactSnapshot) or not isinstance(c.peer_id, PeerId):
                raise StorageError(f"DHT contacts must be ContactSnapshot, got {c!r:.60}")
            if c.peer_id in seen:
                self._skip("save_contact", i, _Skip("duplicate", "PeerId already listed"))
                continue
            try:
                rows.append((c.peer_id.binary, _check_host(c.host), _check_port(c.port)))
            except _Skip as skip:
                self._skip("save_contact", i, skip)
                continue
            seen.add(c.peer_id)
        return self._bounded("contacts", rows, MAX_SNAPSHOT_CONTACTS)

    def _prepare_records(self, records: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
        by_key: dict[bytes, tuple[int, bytes]] = {}
        for i, value in enumerate(records):
            try:
                record = _decode_record(value)
            except _Skip as skip:
                self._skip("save_record", i, skip)
                continue
            # Two records for one key: keep the higher sequence number, as the DHT would.
            old = by_key.get(record.key)
            if old is None or record.seq > old[0]:
                assert isinstance(value, bytes)  # _decode_record checked it
                by_key[record.key] = (record.seq, value)
        rows = [(key, value) for key, (_, value) in by_key.items()]
        return self._bounded("records", rows, MAX_SNAPSHOT_RECORDS)

    def _bounded(self, what: str, rows: list[Any], limit: int) -> list[Any]:
        if len(rows) > limit:
            self.skipped[f"save_{what}_truncated"] += len(rows) - limit
            _log.warning("storage.dht_snapshot_truncated", what=what, kept=limit, given=len(rows))
            del rows[limit:]
        return rows

    def _decode_contacts(self, rows: Sequence[Sequence[object]]) -> list[ContactSnapshot]:
        out: list[ContactSnapshot] = []
        seen: set[PeerId] = set()
        for position, peer_id, host, port in rows:
            try:
                contact = _contact_from_row(peer_id, host, port)
                if contact.peer_id in seen:
                    raise _Skip("duplicate", "PeerId already listed")
            except _Skip as skip:
                self._skip("load_contact", position, skip)
                continue
            seen.add(contact.peer_id)
            out.append(contact)
        return out

    def _decode_records(self, rows: Sequence[Sequence[object]]) -> list[bytes]:
        out: list[bytes] = []
        for key, value in rows:
            try:
                out.append(_record_from_row(key, value))
            except _Skip as skip:
                where = key[:8].hex() if isinstance(key, bytes) else type(key).__name__
                self._skip("load_record", where, skip)
        return out


class SqliteDhtStore(_DhtStoreBase):
    """Tables ``dht_contacts`` and ``dht_records`` of the node database (schema version 3)."""

    def __init__(self, storage: SqliteStorage, clock: Clock = time.time) -> None:
        super().__init__(clock)
        self._storage = storage

    def __repr__(self) -> str:
        return f"SqliteDhtStore({self._storage!r})"

    async def save_contacts(self, contacts: list[ContactSnapshot]) -> None:
        rows = self._prepare_contacts(contacts)
        now = self._now()
        s = self._storage
        async with s._transaction():
            await s._run("DELETE FROM dht_contacts")
            await s._run_many(
                "INSERT INTO dht_contacts (position, peer_id, host, port, saved_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(i, *row, now) for i, row in enumerate(rows)],
            )
        self.saved_contacts = len(rows)

    async def load_contacts(self) -> list[ContactSnapshot]:
        s = self._storage
        async with s._transaction():
            rows = await s._run(
                "SELECT position, peer_id, host, port FROM dht_contacts ORDER BY position LIMIT ?",
                (MAX_SNAPSHOT_CONTACTS,),
            )
        return self._decode_contacts(rows)

    async def save_records(self, records: list[bytes]) -> None:
        rows = self._prepare_records(records)
        now = self._now()
        s = self._storage
        async with s._transaction():
            await s._run("DELETE FROM dht_records")
            await s._run_many(
                "INSERT INTO dht_records (key, value, saved_at) VALUES (?, ?, ?)",
                [(*row, now) for row in rows],
            )
        self.saved_records = len(rows)

    async def load_records(self) -> list[bytes]:
        s = self._storage
        async with s._transaction():
            rows = await s._run(
                "SELECT key, value FROM dht_records ORDER BY key LIMIT ?", (MAX_SNAPSHOT_RECORDS,)
            )
        return self._decode_records(rows)


@dataclass
class DhtTables:
    """``MemoryStorage``'s DHT tables, as loosely typed as SQLite rows (tests corrupt them).

    ``contacts``: (peer_id, host, port, saved_at) in order; ``records``: key -> (value,
    saved_at).
    """

    contacts: list[tuple[object, object, object, float]] = field(default_factory=list)
    records: dict[object, tuple[object, float]] = field(default_factory=dict)


class MemoryStorageDhtStore(_DhtStoreBase):
    """In-memory twin of :class:`SqliteDhtStore` (``MemoryStorage.dht_store()``)."""

    def __init__(
        self, tables: DhtTables, check_open: Callable[[], None], clock: Clock = time.time
    ) -> None:
        super().__init__(clock)
        self._tables = tables
        self._check_open = check_open

    async def save_contacts(self, contacts: list[ContactSnapshot]) -> None:
        self._check_open()
        rows = self._prepare_contacts(contacts)
        now = self._now()
        self._tables.contacts = [(*row, now) for row in rows]
        self.saved_contacts = len(rows)

    async def load_contacts(self) -> list[ContactSnapshot]:
        self._check_open()
        rows = self._tables.contacts[:MAX_SNAPSHOT_CONTACTS]
        return self._decode_contacts([(i, *row[:3]) for i, row in enumerate(rows)])

    async def save_records(self, records: list[bytes]) -> None:
        self._check_open()
        rows = self._prepare_records(records)
        now = self._now()
        self._tables.records = {key: (value, now) for key, value in rows}
        self.saved_records = len(rows)

    async def load_records(self) -> list[bytes]:
        self._check_open()
        # SQLite orders BLOB keys bytewise; do the same (non-bytes keys sort last, then skip).
        keys = sorted(
            self._tables.records,
            key=lambda k: (0, k) if isinstance(k, bytes) else (1, b""),
        )[:MAX_SNAPSHOT_RECORDS]
        return self._decode_records([(k, self._tables.records[k][0]) for k in keys])
