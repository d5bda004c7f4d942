"""The node database's mailbox tables: envelopes this node holds for others.

Per mailbox key an append-only log (``seq`` = the fetch cursor), counters per key, per
uploader and in total kept by SQLite triggers (so the quota check in :meth:`append` is three
primary-key lookups, never a scan), and expiry by an index on ``expires_at``. The admission
rule itself is the mailbox core's (``node.network.mailbox.Mailbox.admit``), called inside
the transaction that appends: two uploads can never both take the last room.

Uploaders are rows of 16-byte pseudonyms (``node.network.mailbox.uploader_pseudonym``), never
PeerIds: a seized disk does not say which node uploaded what. The secret behind them is made
once and kept in the node's ``meta`` table (:meth:`MailboxStore.holder_secret`), so a restart
charges an uploader's quota to the same row.

:class:`SqliteMailboxStore` shares the node's aiosqlite connection; :class:`MemoryMailboxStore`
is its twin for tests and simulations (tests/node/test_mailboxstore.py holds both to it).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from node.core.errors import StorageError
from node.network.mailbox import (
    HOLDER_SECRET_LEN,
    PSEUDONYM_LEN,
    Admit,
    Appended,
    Entry,
    Page,
    Usage,
)
from node.network.mailbox_wire import KEY_LEN, Status
from node.storage.base import check_time

if TYPE_CHECKING:
    from node.storage.sqlite import SqliteStorage

__all__ = [
    "MAX_BATCH",
    "MAX_EXPIRE",
    "MAX_PAGE",
    "SECRET_META_KEY",
    "MailboxStore",
    "MailboxTotals",
    "MemoryMailboxStore",
    "SqliteMailboxStore",
]

MAX_PAGE = 1000
MAX_EXPIRE = 10_000
MAX_BATCH = 1000  # entries per append_many
SECRET_META_KEY = "mailbox_holder_secret"


@dataclass(frozen=True)
class MailboxTotals:
    envelopes: int
    bytes: int
    keys: int  # keys with at least one envelope
    uploaders: int


class MailboxStore(Protocol):
    async def append(self, entry: Entry, admit: Admit, now: float) -> Appended:
        """If the key already holds this envelope (same digest, not expired), DUPLICATE with
        its seq; else ``admit(usage, size)``: a refusal is returned as it is, OK appends the
        entry with the key's next seq. One transaction."""
        ...

    async def append_many(self, entries: Sequence[Entry], admit: Admit,
                          now: float) -> list[Appended]:
        """:meth:`append` for each entry in order (each admitted against the counters the
        earlier ones left), all in ONE transaction: one disk sync for a batch of uploads."""
        ...

    async def fetch(self, key: bytes, after: int, limit: int, max_bytes: int,
                    now: float) -> Page:
        """Unexpired envelopes of ``key`` with seq > ``after``, ascending: at most ``limit``
        and ``max_bytes`` of envelopes (but the first always); ``more`` if others follow."""
        ...

    async def expire(self, now: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` envelopes with ``expires_at <= now`` (earliest first) and
        the counters of keys left empty past their expiry; returns envelopes deleted."""
        ...

    async def usage(self, key: bytes, uploader: bytes) -> Usage:
        """The counters an entry of ``uploader`` (a pseudonym) under ``key`` is admitted by."""
        ...

    async def totals(self) -> MailboxTotals: ...

    async def holder_secret(self, fresh: bytes) -> bytes:
        """The secret uploader pseudonyms are keyed with: the one in the ``meta`` table, or
        ``fresh`` (32 random bytes from the caller), stored there first if there is none."""
        ...


# ---- argument checks shared by both backends, so they reject exactly the same inputs ----


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_LEN:
        raise StorageError(f"mailbox key must be {KEY_LEN} bytes")


def _check_uploader(uploader: bytes) -> None:
    if not isinstance(uploader, bytes) or len(uploader) != PSEUDONYM_LEN:
        raise StorageError(f"a mailbox uploader is a {PSEUDONYM_LEN}-byte pseudonym")


def _check_secret(secret: object) -> bytes:
    if not isinstance(secret, bytes) or len(secret) != HOLDER_SECRET_LEN:
        raise StorageError(f"the mailbox holder secret is {HOLDER_SECRET_LEN} bytes")
    return secret


def _check_entry(entry: Entry) -> None:
    if not isinstance(entry, Entry):
        raise StorageError("mailbox entries must be Entry")
    _check_key(entry.key)
    if not isinstance(entry.envelope, bytes) or not entry.envelope:
        raise StorageError("a mailbox envelope is non-empty bytes")
    if entry.digest != hashlib.sha256(entry.envelope).digest():
        raise StorageError("a mailbox entry's digest is the SHA-256 of its envelope")
    _check_uploader(entry.uploader)
    check_time(entry.stored_at)
    check_time(entry.expires_at)


def _check_batch(entries: Sequence[Entry]) -> None:
    if not isinstance(entries, list | tuple) or len(entries) > MAX_BATCH:
        raise StorageError(f"append_many takes a list of at most {MAX_BATCH} entries")
    for entry in entries:
        _check_entry(entry)


def _check_page(after: int, limit: int, max_bytes: int) -> None:
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 1 << 63:
        raise StorageError("cursor must be a non-negative 63-bit integer")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise StorageError(f"limit must be 1..{MAX_PAGE}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise StorageError("max_bytes must be a positive integer")


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EXPIRE:
        raise StorageError(f"limit must be 1..{MAX_EXPIRE}")


def _status(value: object) -> Status:
    if not isinstance(value, Status):
        raise StorageError(f"admit must return a Status, not {value!r}")
    return value


def _cut(sizes: list[tuple[int, int]], limit: int, max_bytes: int) -> tuple[list[int], bool]:
    """The seqs of a page: up to ``limit`` within ``max_bytes`` (the first always)."""
    taken: list[int] = []
    total = 0
    for seq, size in sizes[:limit]:
        if taken and total + size > max_bytes:
            break
        taken.append(seq)
        total += size
    return taken, len(sizes) > len(taken)


class SqliteMailboxStore:
    def __init__(self, storage: SqliteStorage) -> None:
        self._s = storage

    async def append(self, entry: Entry, admit: Admit, now: float) -> Appended:
        return (await self.append_many([entry], admit, now))[0]

    async def append_many(self, entries: Sequence[Entry], admit: Admit,
                          now: float) -> list[Appended]:
        _check_batch(entries)
        t = check_time(now)
        if not entries:
            return []
        async with self._s._transaction():
            return [await self._append(entry, admit, t) for entry in entries]

    async def _append(self, entry: Entry, admit: Admit, t: float) -> Appended:
        s = self._s
        # One round trip for the duplicate check and the counters (primary-key lookups).
        rows = await s._run(
            "SELECT d.seq, d.expires_at, k.envelopes, k.bytes, u.envelopes, u.bytes,"
            " t.envelopes, t.bytes FROM mailbox_totals t"
            " LEFT JOIN mailbox_entries d ON d.key = ? AND d.digest = ?"
            " LEFT JOIN mailbox_keys k ON k.key = ?"
            " LEFT JOIN mailbox_uploaders u ON u.uploader = ?"
            " WHERE t.id = 1",
            (entry.key, entry.digest, entry.key, entry.uploader),
        )
        if not rows:
            raise StorageError("mailbox_totals has no row")
        seq, expires_at, *counts = rows[0]
        if seq is not None and float(expires_at) > t:
            return Appended(Status.DUPLICATE, int(seq))
        if seq is not None:
            # An expired copy still waiting for the sweep does not make this a duplicate.
            await s._run("DELETE FROM mailbox_entries WHERE key = ? AND seq = ?",
                         (entry.key, seq))
            usage = await self._usage(entry.key, entry.uploader)
        else:
            usage = Usage(*(0 if v is None else int(v) for v in counts))
        status = _status(admit(usage, entry.size))
        if status != Status.OK:
            return Appended(status)
        rows = await s._run(
            "INSERT INTO mailbox_keys (key, last_seq, envelopes, bytes, expires_at)"
            " VALUES (?, 1, 0, 0, ?) ON CONFLICT (key) DO UPDATE"
            " SET last_seq = last_seq + 1 RETURNING last_seq",
            (entry.key, entry.expires_at),
        )
        new_seq = int(rows[0][0])
        await s._run(
            "INSERT INTO mailbox_entries (key, seq, digest, uploader, envelope, size,"
            " stored_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.key, new_seq, entry.digest, entry.uploader, entry.envelope,
             entry.size, entry.stored_at, entry.expires_at),
        )
        return Appended(Status.OK, new_seq)

    async def _usage(self, key: bytes, uploader: bytes) -> Usage:
        rows = await self._s._run(
            "SELECT k.envelopes, k.bytes, u.envelopes, u.bytes, t.envelopes, t.bytes"
            " FROM mailbox_totals t"
            " LEFT JOIN mailbox_keys k ON k.key = ?"
            " LEFT JOIN mailbox_uploaders u ON u.uploader = ?"
            " WHERE t.id = 1",
            (key, uploader),
        )
        if not rows:
            raise StorageError("mailbox_totals has no row")
        return Usage(*(0 if v is None else int(v) for v in rows[0]))

    async def usage(self, key: bytes, uploader: bytes) -> Usage:
        _check_key(key)
        _check_uploader(uploader)
        async with self._s._transaction():
            return await self._usage(key, uploader)

    async def fetch(self, key: bytes, after: int, limit: int, max_bytes: int,
                    now: float) -> Page:
        _check_key(key)
        _check_page(after, limit, max_bytes)
        t = check_time(now)
        s = self._s
        async with s._transaction():
            # Sizes first, from the covering index; envelopes only for the page itself.
            sizes = await s._run(
                "SELECT seq, size FROM mailbox_entries WHERE key = ? AND seq > ?"
                " AND expires_at > ? ORDER BY seq LIMIT ?",
                (key, after, t, limit + 1),
            )
            taken, more = _cut([(int(a), int(b)) for a, b in sizes], limit, max_bytes)
            if not taken:
                return Page((), False)
            rows = await s._run(
                "SELECT seq, envelope FROM mailbox_entries WHERE key = ? AND seq > ?"
                " AND seq <= ? AND expires_at > ? ORDER BY seq",
                (key, after, taken[-1], t),
            )
        return Page(tuple((int(seq), bytes(env)) for seq, env in rows), more)

    async def expire(self, now: float, limit: int = 1000) -> int:
        t = check_time(now)
        _check_limit(limit)
        s = self._s
        async with s._transaction():
            await s._run(
                "DELETE FROM mailbox_entries WHERE rowid IN (SELECT rowid FROM mailbox_entries"
                " WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
                (t, limit),
            )
            deleted = int((await s._run("SELECT changes()"))[0][0])
            await s._run(
                "DELETE FROM mailbox_keys WHERE key IN (SELECT key FROM mailbox_keys"
                " WHERE expires_at <= ? AND envelopes = 0 LIMIT ?)",
                (t, limit),
            )
        return deleted

    async def totals(self) -> MailboxTotals:
        s = self._s
        async with s._transaction():
            t = await s._run("SELECT envelopes, bytes FROM mailbox_totals WHERE id = 1")
            keys = await s._run("SELECT count(*) FROM mailbox_keys WHERE envelopes > 0")
            uploaders = await s._run("SELECT count(*) FROM mailbox_uploaders")
        if not t:
            raise StorageError("mailbox_totals has no row")
        return MailboxTotals(int(t[0][0]), int(t[0][1]), int(keys[0][0]), int(uploaders[0][0]))

    async def holder_secret(self, fresh: bytes) -> bytes:
        _check_secret(fresh)
        s = self._s
        async with s._transaction():
            # Whoever comes first sets it; every later call (and restart) reads that one.
            await s._run("INSERT INTO meta (key, value) VALUES (?, ?)"
                         " ON CONFLICT (key) DO NOTHING", (SECRET_META_KEY, fresh))
            rows = await s._run("SELECT value FROM meta WHERE key = ?", (SECRET_META_KEY,))
        return _check_secret(rows[0][0] if rows else None)


@dataclass
class _Key:
    last_seq: int
    expires_at: float
    envelopes: int = 0
    bytes: int = 0


class MemoryMailboxStore:
    """The in-memory twin: the same results, counters and checks as SQLite."""

    def __init__(self, check_open: Callable[[], None] | None = None,
                 meta: dict[str, bytes] | None = None) -> None:
        self._check_open = check_open or (lambda: None)
        self._meta = {} if meta is None else meta  # the storage's meta table (shared)
        self._entries: dict[bytes, dict[int, Entry]] = {}  # key -> seq -> entry (ascending)
        self._digests: dict[tuple[bytes, bytes], int] = {}
        self._keys: dict[bytes, _Key] = {}
        self._uploaders: dict[bytes, list[int]] = {}  # pseudonym -> [envelopes, bytes]
        self._total = [0, 0]
        self._expiry: list[tuple[float, bytes, int]] = []  # heap; stale items skipped

    def _usage(self, key: bytes, uploader: bytes) -> Usage:
        k = self._keys.get(key)
        u = self._uploaders.get(uploader, [0, 0])
        return Usage(0 if k is None else k.envelopes, 0 if k is None else k.bytes,
                     u[0], u[1], self._total[0], self._total[1])

    def _put(self, seq: int, entry: Entry) -> None:
        """An entry in, with the counters (the INSERT trigger); its key row must exist."""
        self._entries.setdefault(entry.key, {})[seq] = entry
        self._digests[(entry.key, entry.digest)] = seq
        k = self._keys[entry.key]
        k.envelopes += 1
        k.bytes += entry.size
        u = self._uploaders.setdefault(entry.uploader, [0, 0])
        u[0] += 1
        u[1] += entry.size
        self._total[0] += 1
        self._total[1] += entry.size

    def _remove(self, key: bytes, seq: int) -> Entry:
        """An entry out, with the counters (the DELETE trigger)."""
        entry = self._entries[key].pop(seq)
        if not self._entries[key]:
            del self._entries[key]
        del self._digests[(key, entry.digest)]
        k = self._keys[key]
        k.envelopes -= 1
        k.bytes -= entry.size
        u = self._uploaders[entry.uploader]
        u[0] -= 1
        u[1] -= entry.size
        if u[0] == 0:
            del self._uploaders[entry.uploader]
        self._total[0] -= 1
        self._total[1] -= entry.size
        return entry

    async def append(self, entry: Entry, admit: Admit, now: float) -> Appended:
        return (await self.append_many([entry], admit, now))[0]

    async def append_many(self, entries: Sequence[Entry], admit: Admit,
                          now: float) -> list[Appended]:
        self._check_open()
        _check_batch(entries)
        t = check_time(now)
        # All or nothing, like the SQLite transaction: if admit raises, undo the batch.
        undo: list[Callable[[], None]] = []
        try:
            return [self._append(entry, admit, t, undo) for entry in entries]
        except BaseException:
            for step in reversed(undo):
                step()
            raise

    def _append(self, entry: Entry, admit: Admit, t: float,
                undo: list[Callable[[], None]]) -> Appended:
        key = entry.key
        seq = self._digests.get((key, entry.digest))
        if seq is not None:
            if self._entries[key][seq].expires_at > t:
                return Appended(Status.DUPLICATE, seq)
            old = self._remove(key, seq)
            undo.append(lambda: self._put(seq, old))
        status = _status(admit(self._usage(key, entry.uploader), entry.size))
        if status != Status.OK:
            return Appended(status)
        k = self._keys.get(key)
        before = None if k is None else (k.last_seq, k.expires_at)
        if k is None:
            k = self._keys[key] = _Key(0, entry.expires_at)
        k.last_seq += 1
        k.expires_at = max(k.expires_at, entry.expires_at)
        new_seq = k.last_seq
        self._put(new_seq, entry)
        heapq.heappush(self._expiry, (entry.expires_at, key, new_seq))

        def back() -> None:
            self._remove(key, new_seq)
            if before is None:
                del self._keys[key]
            else:
                self._keys[key].last_seq, self._keys[key].expires_at = before

        undo.append(back)
        return Appended(Status.OK, new_seq)

    async def usage(self, key: bytes, uploader: bytes) -> Usage:
        self._check_open()
        _check_key(key)
        _check_uploader(uploader)
        return self._usage(key, uploader)

    async def fetch(self, key: bytes, after: int, limit: int, max_bytes: int,
                    now: float) -> Page:
        self._check_open()
        _check_key(key)
        _check_page(after, limit, max_bytes)
        t = check_time(now)
        log = self._entries.get(key, {})
        sizes = [(seq, e.size) for seq, e in log.items() if seq > after and e.expires_at > t]
        taken, more = _cut(sizes[: limit + 1], limit, max_bytes)
        return Page(tuple((seq, log[seq].envelope) for seq in taken), more)

    async def expire(self, now: float, limit: int = 1000) -> int:
        self._check_open()
        t = check_time(now)
        _check_limit(limit)
        deleted = 0
        while self._expiry and self._expiry[0][0] <= t and deleted < limit:
            at, key, seq = heapq.heappop(self._expiry)
            entry = self._entries.get(key, {}).get(seq)
            if entry is not None and entry.expires_at == at:
                self._remove(key, seq)
                deleted += 1
        gone = [key for key, k in self._keys.items() if k.envelopes == 0 and k.expires_at <= t]
        for key in gone[:limit]:
            del self._keys[key]
        return deleted

    async def totals(self) -> MailboxTotals:
        self._check_open()
        return MailboxTotals(self._total[0], self._total[1],
                             sum(1 for k in self._keys.values() if k.envelopes),
                             len(self._uploaders))

    async def holder_secret(self, fresh: bytes) -> bytes:
        self._check_open()
        _check_secret(fresh)
        return _check_secret(self._meta.setdefault(SECRET_META_KEY, fresh))
