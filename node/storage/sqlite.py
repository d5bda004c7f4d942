"""SQLite :class:`~node.storage.base.Storage` on aiosqlite.

Settings, and why:

* ``journal_mode=WAL``: readers never block the writer, and commits append to one file.
* ``synchronous=FULL`` (default): the WAL is fsynced at every commit, so what the node has
  acknowledged survives power loss, not just a process crash (DESIGN 6: "what was acknowledged
  is durable; a crash never loses MLS keys"). ``NORMAL`` would only risk the last commits on
  power loss, but that is exactly the window in which an acknowledged message or a just-merged
  MLS epoch would vanish. Throughput comes from batching work into one transaction, not from
  weaker syncs. Benchmarks may pass ``synchronous="NORMAL"`` to measure the difference.
* ``foreign_keys=ON``: SQLite leaves it off per connection; child rows (addresses now; MLS
  state, messages and outbox later) must go with their parent.
* Connection in autocommit mode with explicit ``BEGIN IMMEDIATE`` transactions, serialised by an
  asyncio lock, because one aiosqlite connection is shared by all coroutines of the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from node.core.errors import IdentityError, MultiaddrError, StorageError, StorageFull
from node.core.identity import PeerId
from node.core.multiaddr import Multiaddr
from node.storage.base import (
    BlockEntry,
    PeerEntry,
    check_addrs,
    check_meta,
    check_peer_id,
    check_time,
)
from node.storage.channelstore import SqliteChannelStore
from node.storage.dhtstore import SqliteDhtStore
from node.storage.mailboxstore import SqliteMailboxStore
from node.storage.migrations import MIGRATIONS, Migration, check_migrations

__all__ = ["SqliteStorage"]


def _private_file(name: str) -> None:
    """Create the database file 0600 (it holds MLS secrets) or tighten an existing one."""
    if name == ":memory:" or name.startswith("file:"):
        return
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot open database {name}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)

Synchronous = Literal["FULL", "NORMAL"]
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"
_SQLITE_IOERR = 10


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF == _SQLITE_FULL):
        return True
    # An ENOSPC while writing the WAL can surface as an I/O error; the text still says so.
    return "full" in str(exc).lower() or (
        isinstance(code, int) and code & 0xFF == _SQLITE_IOERR and "space" in str(exc).lower()
    )


class SqliteStorage:
    """Open with ``await SqliteStorage.open(path)``; ``await close()`` when done."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db = db
        self._path = path
        self._lock = asyncio.Lock()
        self._closed = False
        self._channels = SqliteChannelStore(self)
        self._mailboxes = SqliteMailboxStore(self)

    def __repr__(self) -> str:
        return f"SqliteStorage({self._path!r})"

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        synchronous: Synchronous = "FULL",
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> SqliteStorage:
        """Open (creating if needed) and migrate forward; refuse a database from a newer build."""
        if synchronous not in ("FULL", "NORMAL"):
            raise StorageError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        check_migrations(migrations)
        name = str(path)
        _private_file(name)
        try:
            db = await aiosqlite.connect(name, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open database {name}: {exc}") from None
        store = cls(db, name)
        try:
            await store._setup(synchronous, migrations)
        except BaseException:
            await db.close()
            raise
        for suffix in ("-wal", "-shm"):
            # SQLite gives these the main file's mode; make sure (they hold the same secrets).
            with contextlib.suppress(FileNotFoundError):
                os.chmod(name + suffix, 0o600)
        return store

    async def _setup(self, synchronous: Synchronous, migrations: tuple[Migration, ...]) -> None:
        try:
            await self._db.execute("PRAGMA busy_timeout = 5000")
            cur = await self._db.execute("PRAGMA journal_mode = WAL")
            row = await cur.fetchone()
            if row is None or str(row[0]).lower() not in ("wal", "memory"):
                raise StorageError(f"database {self._path}: cannot enable WAL (got {row!r})")
            await self._db.execute(f"PRAGMA synchronous = {synchronous}")
            await self._db.execute("PRAGMA foreign_keys = ON")
            await self._migrate(migrations)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"database {self._path} is unusable: {exc}") from None

    async def _migrate(self, migrations: tuple[Migration, ...]) -> None:
        target = len(migrations)
        while True:
            async with self._transaction():
                await self._db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    " id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
                )
                current = await self._read_version()
                if current > target:
                    raise StorageError(
                        f"database {self._path} has schema version {current}, newer than this "
                        f"build supports ({target}); upgrade spacepanda or use another data dir"
                    )
                if current == target:
                    return
                step = migrations[current]
                for sql in step.statements:
                    await self._db.execute(sql)
                await self._db.execute(
                    "INSERT INTO schema_version (id, version) VALUES (1, ?)"
                    " ON CONFLICT(id) DO UPDATE SET version = excluded.version",
                    (step.version,),
                )

    async def _read_version(self) -> int:
        cur = await self._db.execute("SELECT version FROM schema_version WHERE id = 1")
        row = await cur.fetchone()
        if row is None:
            return 0
        version = row[0]
        if not isinstance(version, int) or version < 0:
            raise StorageError(f"database {self._path} has a corrupt schema version {version!r}")
        return version

    def _error(self, exc: sqlite3.Error, what: str = "") -> StorageError:
        """The typed error for a failed statement; a full disk is :class:`StorageFull`."""
        text = f"database {self._path}: {what}{exc}"
        if _is_full(exc):
            return StorageFull(text)
        return StorageError(text)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """``BEGIN IMMEDIATE`` .. ``COMMIT`` (``ROLLBACK`` on any error), one at a time.

        Every failure, COMMIT's included (a full disk shows up there first), is a
        StorageError and leaves no transaction open: the next one starts clean.
        """
        if self._closed:
            raise StorageError("storage is closed")
        async with self._lock:
            try:
                if self._db.in_transaction:
                    # A task cancelled while awaiting BEGIN left one open (the statement still
                    # ran on aiosqlite's thread): undo it rather than fail every later one.
                    await self._db.execute("ROLLBACK")
                await self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc, "cannot begin a transaction: ") from None
            try:
                yield
            except BaseException:
                await self._rollback()
                raise
            try:
                await self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                await self._rollback()
                raise self._error(exc, "cannot commit: ") from None

    async def _rollback(self) -> None:
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await asyncio.shield(self._db.execute("ROLLBACK"))

    async def _run(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            cur = await self._db.execute(sql, tuple(params))
            return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    async def _run_many(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        try:
            await self._db.executemany(sql, [tuple(r) for r in rows])
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def dht_store(self, clock: Callable[[], float] | None = None) -> SqliteDhtStore:
        """The DHT snapshot tables, on this connection (see ``node.storage.dhtstore``)."""
        return SqliteDhtStore(self, clock or time.time)

    def channel_store(self) -> SqliteChannelStore:
        """The channel tables, on this connection (see ``node.storage.channelstore``)."""
        return self._channels

    def mailbox_store(self) -> SqliteMailboxStore:
        """The mailbox tables, on this connection (see ``node.storage.mailboxstore``)."""
        return self._mailboxes

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            await self._db.close()

    async def schema_version(self) -> int:
        async with self._transaction():
            return await self._read_version()

    # ---- meta --------------------------------------------------------------------------
    async def get_meta(self, key: str) -> bytes | None:
        check_meta(key)
        async with self._transaction():
            rows = await self._run("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows:
            return None
        value = rows[0][0]
        if not isinstance(value, bytes):
            raise StorageError(f"meta {key!r} holds {type(value).__name__}, not bytes")
        return value

    async def set_meta(self, key: str, value: bytes) -> None:
        check_meta(key, value)
        async with self._transaction():
            await self._run(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, bytes(value)),
            )

    # ---- address book ------------------------------------------------------------------
    async def upsert_peer(
        self, peer_id: PeerId, addrs: Sequence[Multiaddr], now: float
    ) -> PeerEntry:
        t = check_time(now)
        bare = check_addrs(peer_id, addrs)
        async with self._transaction():
            await self._run(
                "INSERT INTO peers (peer_id, added) VALUES (?, ?) ON CONFLICT(peer_id) DO NOTHING",
                (peer_id.binary, t),
            )
            await self._run("DELETE FROM peer_addrs WHERE peer_id = ?", (peer_id.binary,))
            for pos, a in enumerate(bare):
                await self._run(
                    "INSERT INTO peer_addrs (peer_id, position, addr) VALUES (?, ?, ?)",
                    (peer_id.binary, pos, str(a)),
                )
            entry = await self._load_peer(peer_id)
        assert entry is not None  # inserted above, in the same transaction
        return entry

    async def mark_seen(self, peer_id: PeerId, now: float) -> PeerEntry | None:
        t = check_time(now)
        async with self._transaction():
            await self._run(
                "UPDATE peers SET last_seen = ?, failures = 0 WHERE peer_id = ?",
                (t, peer_id.binary),
            )
            return await self._load_peer(peer_id)

    async def mark_failure(self, peer_id: PeerId, now: float) -> PeerEntry | None:
        t = check_time(now)
        async with self._transaction():
            await self._run(
                "UPDATE peers SET failures = failures + 1, last_failure = ? WHERE peer_id = ?",
                (t, peer_id.binary),
            )
            return await self._load_peer(peer_id)

    async def get_peer(self, peer_id: PeerId) -> PeerEntry | None:
        async with self._transaction():
            return await self._load_peer(peer_id)

    async def list_peers(self) -> list[PeerEntry]:
        async with self._transaction():
            rows = await self._run(
                "SELECT peer_id, added, last_seen, failures, last_failure FROM peers"
                " ORDER BY peer_id"
            )
            addr_rows = await self._run(
                "SELECT peer_id, addr FROM peer_addrs ORDER BY peer_id, position"
            )
        addrs: dict[bytes, list[str]] = {}
        for pid, text in addr_rows:
            addrs.setdefault(pid, []).append(text)
        return [self._decode(row, addrs.get(row[0], [])) for row in rows]

    async def remove_peer(self, peer_id: PeerId) -> bool:
        async with self._transaction():
            # Addresses go with it (ON DELETE CASCADE).
            await self._run("DELETE FROM peers WHERE peer_id = ?", (peer_id.binary,))
            rows = await self._run("SELECT changes()")
        return bool(rows[0][0])

    # ---- deny list ---------------------------------------------------------------------
    async def block_peer(self, peer_id: PeerId, now: float) -> bool:
        t = check_time(now)
        check_peer_id(peer_id)
        async with self._transaction():
            await self._run("DELETE FROM peers WHERE peer_id = ?", (peer_id.binary,))
            await self._run(
                "INSERT INTO blocked_peers (peer_id, blocked_at) VALUES (?, ?)"
                " ON CONFLICT(peer_id) DO NOTHING",
                (peer_id.binary, t),
            )
            rows = await self._run("SELECT changes()")
        return bool(rows[0][0])

    async def unblock_peer(self, peer_id: PeerId) -> bool:
        check_peer_id(peer_id)
        async with self._transaction():
            await self._run("DELETE FROM blocked_peers WHERE peer_id = ?", (peer_id.binary,))
            rows = await self._run("SELECT changes()")
        return bool(rows[0][0])

    async def list_blocked(self) -> list[BlockEntry]:
        async with self._transaction():
            rows = await self._run(
                "SELECT peer_id, blocked_at FROM blocked_peers ORDER BY peer_id"
            )
        out = []
        for pid, at in rows:
            try:
                peer_id = PeerId.from_bytes(pid)
            except (IdentityError, TypeError) as exc:
                raise StorageError(f"database {self._path}: corrupt deny-list row: {exc}") from None
            out.append(BlockEntry(peer_id, float(at)))
        return out

    async def _load_peer(self, peer_id: PeerId) -> PeerEntry | None:
        rows = await self._run(
            "SELECT peer_id, added, last_seen, failures, last_failure FROM peers WHERE peer_id = ?",
            (peer_id.binary,),
        )
        if not rows:
            return None
        addr_rows = await self._run(
            "SELECT addr FROM peer_addrs WHERE peer_id = ? ORDER BY position", (peer_id.binary,)
        )
        return self._decode(rows[0], [r[0] for r in addr_rows])

    def _decode(self, row: Sequence[Any], addr_texts: list[str]) -> PeerEntry:
        """Rows are data too: anything that does not decode is a StorageError, not a crash."""
        pid, added, last_seen, failures, last_failure = row
        try:
            peer_id = PeerId.from_bytes(pid)
            addrs = tuple(Multiaddr.parse(t) for t in addr_texts)
        except (IdentityError, MultiaddrError, TypeError) as exc:
            raise StorageError(f"database {self._path}: corrupt address book row: {exc}") from None
        if not isinstance(failures, int) or failures < 0:
            raise StorageError(f"database {self._path}: corrupt failure count {failures!r}")
        return PeerEntry(
            peer_id=peer_id,
            addrs=addrs,
            last_seen=None if last_seen is None else float(last_seen),
            failures=failures,
            last_failure=None if last_failure is None else float(last_failure),
            added=float(added),
        )
