from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.core.errors import StorageError
from node.core.identity import Identity, PeerId
from node.core.multiaddr import Multiaddr
from node.storage import (
    LATEST_VERSION,
    MIGRATIONS,
    MemoryStorage,
    Migration,
    SqliteStorage,
    Storage,
)
from node.storage.base import MAX_PEER_ADDRS
from node.storage.migrations import check_migrations


def _pid() -> PeerId:
    return Identity.generate().peer_id


def _addr(port: int, host: str = "127.0.0.1") -> Multiaddr:
    return Multiaddr.parse(f"/ip4/{host}/tcp/{port}")


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    s: Storage
    if request.param == "sqlite":
        s = await SqliteStorage.open(tmp_path / "node.db")
    else:
        s = MemoryStorage()
    yield s
    await s.close()


async def test_schema_is_latest(store: Storage) -> None:
    assert await store.schema_version() == LATEST_VERSION == len(MIGRATIONS)


async def test_meta_round_trip_and_overwrite(store: Storage) -> None:
    assert await store.get_meta("peer_id") is None
    await store.set_meta("peer_id", b"\x00abc")
    assert await store.get_meta("peer_id") == b"\x00abc"
    await store.set_meta("peer_id", b"")
    assert await store.get_meta("peer_id") == b""


@pytest.mark.parametrize("key", ["", "k" * 129])
async def test_meta_rejects_bad_keys(store: Storage, key: str) -> None:
    with pytest.raises(StorageError):
        await store.set_meta(key, b"x")


async def test_upsert_new_peer(store: Storage) -> None:
    p = _pid()
    e = await store.upsert_peer(p, [_addr(4001), _addr(4002)], now=100.0)
    assert e.peer_id == p
    assert e.addrs == (_addr(4001), _addr(4002))
    assert (e.last_seen, e.failures, e.last_failure, e.added) == (None, 0, None, 100.0)
    assert await store.get_peer(p) == e


async def test_upsert_replaces_addrs_keeps_counters(store: Storage) -> None:
    p = _pid()
    await store.upsert_peer(p, [_addr(4001)], now=1.0)
    await store.mark_failure(p, now=2.0)
    await store.mark_seen(p, now=3.0)
    await store.mark_failure(p, now=4.0)
    e = await store.upsert_peer(p, [_addr(5000), _addr(4001)], now=9.0)
    assert e.addrs == (_addr(5000), _addr(4001))  # caller's order kept
    assert (e.added, e.last_seen, e.failures, e.last_failure) == (1.0, 3.0, 1, 4.0)


async def test_upsert_strips_matching_p2p_dedups_and_rejects_foreign(store: Storage) -> None:
    p, q = _pid(), _pid()
    e = await store.upsert_peer(p, [_addr(1).with_peer_id(p), _addr(1), _addr(2)], now=0.0)
    assert e.addrs == (_addr(1), _addr(2))
    with pytest.raises(StorageError, match="another peer"):
        await store.upsert_peer(p, [_addr(3).with_peer_id(q)], now=0.0)
    assert (await store.get_peer(p)) == e  # refused write changed nothing


async def test_upsert_bounds_address_count(store: Storage) -> None:
    p = _pid()
    await store.upsert_peer(p, [_addr(1000 + i) for i in range(MAX_PEER_ADDRS)], now=0.0)
    with pytest.raises(StorageError, match="too many"):
        await store.upsert_peer(p, [_addr(1000 + i) for i in range(MAX_PEER_ADDRS + 1)], now=0.0)


async def test_failures_count_and_reset_on_seen(store: Storage) -> None:
    p = _pid()
    await store.upsert_peer(p, [_addr(1)], now=0.0)
    e1 = await store.mark_failure(p, now=10.0)
    e2 = await store.mark_failure(p, now=20.0)
    assert e1 is not None and e2 is not None
    assert (e1.failures, e2.failures, e2.last_failure) == (1, 2, 20.0)
    seen = await store.mark_seen(p, now=30.0)
    assert seen is not None
    assert (seen.failures, seen.last_seen, seen.last_failure) == (0, 30.0, 20.0)


async def test_unknown_peer(store: Storage) -> None:
    p = _pid()
    assert await store.get_peer(p) is None
    assert await store.mark_seen(p, now=1.0) is None
    assert await store.mark_failure(p, now=1.0) is None
    assert await store.remove_peer(p) is False
    assert await store.list_peers() == []


async def test_list_is_sorted_and_remove_works(store: Storage) -> None:
    peers = [_pid() for _ in range(5)]
    for i, p in enumerate(peers):
        await store.upsert_peer(p, [_addr(2000 + i)], now=float(i))
    listed = await store.list_peers()
    assert [e.peer_id for e in listed] == sorted(peers, key=lambda p: p.binary)
    assert await store.remove_peer(peers[2]) is True
    assert await store.get_peer(peers[2]) is None
    assert {e.peer_id for e in await store.list_peers()} == set(peers) - {peers[2]}


async def test_block_forgets_the_peer_and_lists_sorted(store: Storage) -> None:
    peers = [_pid() for _ in range(4)]
    for p in peers:
        await store.upsert_peer(p, [_addr(3000)], now=1.0)
    assert await store.list_blocked() == []
    assert await store.block_peer(peers[1], now=10.0) is True
    assert await store.block_peer(peers[3], now=11.0) is True
    # Blocking forgets the address book entry; the others stay.
    assert await store.get_peer(peers[1]) is None and await store.get_peer(peers[3]) is None
    assert {e.peer_id for e in await store.list_peers()} == {peers[0], peers[2]}
    blocked = await store.list_blocked()
    assert [b.peer_id for b in blocked] == sorted([peers[1], peers[3]], key=lambda p: p.binary)
    assert {b.peer_id: b.blocked_at for b in blocked} == {peers[1]: 10.0, peers[3]: 11.0}


async def test_block_twice_keeps_the_first_time_and_unblock(store: Storage) -> None:
    p, never = _pid(), _pid()
    assert await store.block_peer(p, now=5.0) is True  # never in the address book: fine
    assert await store.block_peer(p, now=9.0) is False
    assert [(b.peer_id, b.blocked_at) for b in await store.list_blocked()] == [(p, 5.0)]
    assert await store.unblock_peer(never) is False
    assert await store.unblock_peer(p) is True
    assert await store.unblock_peer(p) is False
    assert await store.list_blocked() == []
    # Unblocking does not bring the address book entry back.
    assert await store.get_peer(p) is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "1"])
async def test_block_rejects_bad_times(store: Storage, bad: object) -> None:
    with pytest.raises(StorageError):
        await store.block_peer(_pid(), now=bad)  # type: ignore[arg-type]
    assert await store.list_blocked() == []


async def test_block_rejects_what_is_not_a_peer_id(store: Storage) -> None:
    with pytest.raises(StorageError):
        await store.block_peer(b"\x00" * 34, now=1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "1"])
async def test_bad_times_rejected(store: Storage, bad: object) -> None:
    with pytest.raises(StorageError):
        await store.upsert_peer(_pid(), [], now=bad)  # type: ignore[arg-type]


async def test_closed_storage_refuses(store: Storage) -> None:
    await store.close()
    with pytest.raises(StorageError):
        await store.get_meta("x")
    with pytest.raises(StorageError):
        await store.block_peer(_pid(), now=1.0)
    with pytest.raises(StorageError):
        await store.list_blocked()


# ---- SQLite only: persistence and migrations -------------------------------------------


async def test_sqlite_persists_across_reopen_with_wal_and_fks(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    p = _pid()
    s = await SqliteStorage.open(db)
    await s.upsert_peer(p, [_addr(1), _addr(2)], now=5.0)
    await s.set_meta("k", b"v")
    await s.close()
    s2 = await SqliteStorage.open(db)
    try:
        e = await s2.get_peer(p)
        assert e is not None and e.addrs == (_addr(1), _addr(2))
        assert await s2.get_meta("k") == b"v"
    finally:
        await s2.close()
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # Removing the peer must have removed its addresses too (ON DELETE CASCADE).
        raw.execute("PRAGMA foreign_keys = ON")
        raw.execute("DELETE FROM peers")
        assert raw.execute("SELECT count(*) FROM peer_addrs").fetchone()[0] == 0


async def test_v1_database_migrates_forward(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    s = await SqliteStorage.open(db, migrations=MIGRATIONS[:1])
    assert await s.schema_version() == 1
    await s.set_meta("peer_id", b"old")
    await s.close()
    with sqlite3.connect(db) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "peers" not in tables

    extra = Migration(LATEST_VERSION + 1, "test table", ("CREATE TABLE later (x INTEGER)",))
    s = await SqliteStorage.open(db, migrations=(*MIGRATIONS, extra))
    try:
        assert await s.schema_version() == LATEST_VERSION + 1
        assert await s.get_meta("peer_id") == b"old"  # data survived
        p = _pid()
        await s.upsert_peer(p, [_addr(9)], now=1.0)  # v2 table usable
        assert (await s.get_peer(p)) is not None
    finally:
        await s.close()


async def test_newer_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    extra = Migration(LATEST_VERSION + 1, "from the future", ("CREATE TABLE future (x)",))
    s = await SqliteStorage.open(db, migrations=(*MIGRATIONS, extra))
    await s.close()
    with pytest.raises(StorageError, match=rf"schema version {LATEST_VERSION + 1}, newer"):
        await SqliteStorage.open(db)


async def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    broken = Migration(LATEST_VERSION + 1, "broken", ("CREATE TABLE ok (x)", "NOT SQL"))
    with pytest.raises(StorageError):
        await SqliteStorage.open(db, migrations=(*MIGRATIONS, broken))
    s = await SqliteStorage.open(db)
    try:
        assert await s.schema_version() == LATEST_VERSION
    finally:
        await s.close()
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name='ok'").fetchone()[0] == 0


async def test_not_a_database_is_storage_error(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError):
        await SqliteStorage.open(db)


async def test_corrupt_row_is_storage_error(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    p = _pid()
    s = await SqliteStorage.open(db)
    await s.upsert_peer(p, [_addr(1)], now=0.0)
    await s.close()
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE peer_addrs SET addr = '/ip4/999.1.1.1/tcp/1'")
    s = await SqliteStorage.open(db)
    try:
        with pytest.raises(StorageError, match="corrupt"):
            await s.get_peer(p)
    finally:
        await s.close()


def test_migration_versions_must_be_contiguous() -> None:
    check_migrations(MIGRATIONS)
    with pytest.raises(ValueError):
        check_migrations((MIGRATIONS[0], Migration(3, "gap", ("SELECT 1",))))


async def test_v2_database_gains_dht_tables_and_keeps_peers(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    p = _pid()
    s = await SqliteStorage.open(db, migrations=MIGRATIONS[:2])
    await s.upsert_peer(p, [_addr(7)], now=1.0)
    await s.close()
    s = await SqliteStorage.open(db)
    try:
        assert await s.schema_version() == LATEST_VERSION >= 3
        assert (await s.get_peer(p)) is not None
        assert await s.dht_store().load_contacts() == []
    finally:
        await s.close()
    with sqlite3.connect(db) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"dht_contacts", "dht_records"} <= tables


async def test_v4_database_gains_the_deny_list_and_it_persists(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    p, q = _pid(), _pid()
    s = await SqliteStorage.open(db, migrations=MIGRATIONS[:4])
    await s.upsert_peer(p, [_addr(7)], now=1.0)
    await s.upsert_peer(q, [_addr(8)], now=1.0)
    await s.close()
    with sqlite3.connect(db) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "blocked_peers" not in tables
    s = await SqliteStorage.open(db)
    try:
        assert await s.schema_version() == LATEST_VERSION >= 5
        assert await s.block_peer(p, now=2.0) is True
    finally:
        await s.close()
    s = await SqliteStorage.open(db)  # across a restart
    try:
        assert [(b.peer_id, b.blocked_at) for b in await s.list_blocked()] == [(p, 2.0)]
        assert await s.get_peer(p) is None and await s.get_peer(q) is not None
    finally:
        await s.close()
    with sqlite3.connect(db) as raw, pytest.raises(sqlite3.IntegrityError):
        raw.execute("INSERT INTO blocked_peers VALUES (x'00', 1.0)")  # not a PeerId
