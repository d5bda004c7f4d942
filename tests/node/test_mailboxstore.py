"""The mailbox tables (node/storage/mailboxstore.py), one suite run against both backends.

SQLite-only at the end: a reopen gives back what was written, the quota and expiry queries
use indexes, the triggers' counters match the rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from node.core.errors import StorageError
from node.core.identity import PeerId
from node.network.mailbox import Appended, Entry, Mailbox, MailboxSettings, Page, Usage
from node.network.mailbox_wire import Status
from node.storage import MemoryStorage, SqliteStorage
from node.storage.mailboxstore import SECRET_META_KEY, MailboxStore, MailboxTotals

# Uploaders as the store sees them: pseudonyms (node.network.mailbox.uploader_pseudonym).
P1, P2, P3 = (bytes((i,)) * 16 for i in (1, 2, 3))
PEER = PeerId.from_public_key(bytes((1,)) * 32)  # what the tables must never hold
K1, K2 = b"\x01" * 20, b"\x02" * 20
NOW = 1_700_000_000.0
EXP = NOW + 14 * 86400


def env(i: int, size: int = 512) -> bytes:
    return b"\x01" + i.to_bytes(4, "big") + bytes(size - 5)


def entry(key: bytes, i: int, uploader: bytes = P1, size: int = 512,
          expires_at: float = EXP) -> Entry:
    e = env(i, size)
    return Entry(key, hashlib.sha256(e).digest(), uploader, e, NOW, expires_at)


def admit_all(usage: Usage, size: int) -> Status:
    return Status.OK


@dataclass
class Backend:
    kind: str
    store: MailboxStore
    storage: Any
    path: Path | None = None

    async def reopen(self) -> Backend:
        assert self.path is not None
        await self.storage.close()
        self.storage = await SqliteStorage.open(self.path)
        self.store = self.storage.mailbox_store()
        return self


@pytest.fixture(params=["sqlite", "memory"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "node.db"
        storage: Any = await SqliteStorage.open(path)
        b = Backend("sqlite", storage.mailbox_store(), storage, path)
    else:
        storage = MemoryStorage()
        b = Backend("memory", storage.mailbox_store(), storage)
    yield b
    await b.storage.close()


async def test_append_gives_each_key_its_own_sequence(backend: Backend) -> None:
    s = backend.store
    assert await s.append(entry(K1, 1), admit_all, NOW) == Appended(Status.OK, 1)
    assert await s.append(entry(K1, 2), admit_all, NOW) == Appended(Status.OK, 2)
    assert await s.append(entry(K2, 3), admit_all, NOW) == Appended(Status.OK, 1)
    assert await s.append(entry(K1, 4), admit_all, NOW) == Appended(Status.OK, 3)
    page = await s.fetch(K1, 0, 10, 1 << 20, NOW)
    assert page == Page(((1, env(1)), (2, env(2)), (3, env(4))), False)
    assert await s.fetch(K2, 0, 10, 1 << 20, NOW) == Page(((1, env(3)),), False)


async def test_a_duplicate_is_stored_once_and_answered_with_its_seq(backend: Backend) -> None:
    s = backend.store
    await s.append(entry(K1, 1), admit_all, NOW)
    await s.append(entry(K1, 2), admit_all, NOW)
    # From another uploader too: acknowledged, not charged to it.
    assert await s.append(entry(K1, 1, P2), admit_all, NOW) == Appended(Status.DUPLICATE, 1)
    assert await s.usage(K1, P2) == Usage(2, 1024, 0, 0, 2, 1024)
    # The same envelope under another key is another mailbox's.
    assert await s.append(entry(K2, 1), admit_all, NOW) == Appended(Status.OK, 1)


async def test_admit_sees_the_counters_and_its_refusal_is_returned(backend: Backend) -> None:
    s = backend.store
    seen: list[tuple[Usage, int]] = []

    def admit(usage: Usage, size: int) -> Status:
        seen.append((usage, size))
        return Status.KEY_FULL if usage.key_envelopes >= 2 else Status.OK

    await s.append(entry(K1, 1, P1), admit, NOW)
    await s.append(entry(K2, 2, P2, 2048), admit, NOW)
    await s.append(entry(K1, 3, P2), admit, NOW)
    assert await s.append(entry(K1, 4, P1), admit, NOW) == Appended(Status.KEY_FULL)
    assert seen == [
        (Usage(0, 0, 0, 0, 0, 0), 512),
        (Usage(0, 0, 0, 0, 1, 512), 2048),
        (Usage(1, 512, 1, 2048, 2, 2560), 512),
        (Usage(2, 1024, 1, 512, 3, 3072), 512),
    ]
    # Nothing of the refused one was kept; its digest is not a duplicate later.
    assert len((await s.fetch(K1, 0, 10, 1 << 20, NOW)).items) == 2
    assert await s.append(entry(K1, 4), admit_all, NOW) == Appended(Status.OK, 3)


async def test_the_cores_admit_enforces_the_quotas(backend: Backend) -> None:
    core = Mailbox(MailboxSettings(key_envelopes=3, uploader_bytes=4 * 512))
    s = backend.store
    results = [(await s.append(entry(K1, i), core.admit, NOW)).status for i in range(4)]
    assert results == [Status.OK] * 3 + [Status.KEY_FULL]
    assert (await s.append(entry(K2, 9), core.admit, NOW)).status == Status.OK
    assert (await s.append(entry(K2, 10), core.admit, NOW)).status == Status.UPLOADER_FULL
    assert (await s.append(entry(K2, 10, P2), core.admit, NOW)).status == Status.OK


async def test_admit_must_return_a_status(backend: Backend) -> None:
    with pytest.raises(StorageError):
        await backend.store.append(entry(K1, 1), lambda u, n: 0, NOW)  # type: ignore[arg-type,return-value]
    assert await backend.store.totals() == MailboxTotals(0, 0, 0, 0)


async def test_append_many_is_append_in_order_in_one_transaction(backend: Backend) -> None:
    s = backend.store
    core = Mailbox(MailboxSettings(key_envelopes=2))
    results = await s.append_many(
        [entry(K1, 1), entry(K1, 1, P2), entry(K2, 2), entry(K1, 3), entry(K1, 4)],
        core.admit, NOW)
    assert results == [Appended(Status.OK, 1), Appended(Status.DUPLICATE, 1),
                       Appended(Status.OK, 1), Appended(Status.OK, 2),
                       Appended(Status.KEY_FULL)]
    assert await s.append_many([], core.admit, NOW) == []
    assert await s.totals() == MailboxTotals(3, 1536, 2, 1)


async def test_append_many_is_all_or_nothing(backend: Backend) -> None:
    s = backend.store
    await s.append(entry(K1, 1, expires_at=NOW + 1), admit_all, NOW)
    calls = []

    def admit(usage: Usage, size: int) -> Status:
        calls.append(usage)
        if len(calls) == 3:
            raise RuntimeError("bug in admit")
        return Status.OK

    with pytest.raises(RuntimeError):
        # The first replaces an expired copy; the second is new; the third fails.
        await s.append_many([entry(K1, 1), entry(K2, 2), entry(K1, 3)], admit, NOW + 5)
    assert await s.totals() == MailboxTotals(1, 512, 1, 1)
    assert await s.fetch(K2, 0, 10, 1 << 20, NOW) == Page((), False)
    assert await s.append(entry(K1, 3), admit_all, NOW) == Appended(Status.OK, 2)
    assert await s.append(entry(K2, 2), admit_all, NOW) == Appended(Status.OK, 1)


@pytest.mark.parametrize("entries", [lambda: (entry(K1, i) for i in range(2)),
                                     lambda: [entry(K1, i) for i in range(1001)],
                                     lambda: [entry(K1, 1), "x"]])
async def test_bad_batches_are_refused(backend: Backend, entries: Any) -> None:
    with pytest.raises(StorageError):
        await backend.store.append_many(entries(), admit_all, NOW)
    assert await backend.store.totals() == MailboxTotals(0, 0, 0, 0)


async def test_fetch_pages_by_cursor_limit_and_bytes(backend: Backend) -> None:
    s = backend.store
    for i in range(1, 6):
        await s.append(entry(K1, i, size=2048), admit_all, NOW)
    assert [q for q, _ in (await s.fetch(K1, 0, 2, 1 << 20, NOW)).items] == [1, 2]
    assert (await s.fetch(K1, 0, 2, 1 << 20, NOW)).more
    assert [q for q, _ in (await s.fetch(K1, 2, 10, 1 << 20, NOW)).items] == [3, 4, 5]
    assert not (await s.fetch(K1, 2, 10, 1 << 20, NOW)).more
    # Bytes: 2 x 2048 fit 5000; the third does not.
    page = await s.fetch(K1, 0, 10, 5000, NOW)
    assert [q for q, _ in page.items] == [1, 2] and page.more
    # The first always comes, whatever the budget.
    page = await s.fetch(K1, 4, 10, 1, NOW)
    assert [q for q, _ in page.items] == [5] and not page.more
    assert await s.fetch(K1, 5, 10, 1 << 20, NOW) == Page((), False)
    assert await s.fetch(K2, 0, 10, 1 << 20, NOW) == Page((), False)


async def test_expired_entries_are_not_fetched_and_are_deleted_by_time(backend: Backend) -> None:
    s = backend.store
    await s.append(entry(K1, 1, expires_at=NOW + 10), admit_all, NOW)
    await s.append(entry(K1, 2, expires_at=NOW + 20), admit_all, NOW)
    await s.append(entry(K2, 3, P2, expires_at=NOW + 30), admit_all, NOW)
    assert [q for q, _ in (await s.fetch(K1, 0, 10, 1 << 20, NOW + 10)).items] == [2]
    assert await s.expire(NOW + 9) == 0
    assert await s.expire(NOW + 10) == 1
    assert await s.totals() == MailboxTotals(2, 1024, 2, 2)
    assert await s.usage(K1, P1) == Usage(1, 512, 1, 512, 2, 1024)
    # The key's sequence goes on (a fetcher's cursor stays valid)...
    assert await s.append(entry(K1, 4, expires_at=NOW + 20), admit_all, NOW) == Appended(
        Status.OK, 3)
    assert await s.expire(NOW + 20) == 2
    assert await s.totals() == MailboxTotals(1, 512, 1, 1)
    # ...until the key is empty past its latest expiry: then its counters go too.
    assert await s.expire(NOW + 40) == 1
    assert await s.totals() == MailboxTotals(0, 0, 0, 0)
    assert await s.usage(K2, P2) == Usage()
    assert await s.append(entry(K1, 5), admit_all, NOW + 40) == Appended(Status.OK, 1)


async def test_an_unswept_expired_entry_keeps_the_keys_sequence(backend: Backend) -> None:
    s = backend.store
    await s.append(entry(K2, 1, expires_at=NOW + 10), admit_all, NOW)
    assert [q for q, _ in (await s.fetch(K2, 0, 10, 1 << 20, NOW + 10)).items] == []
    assert await s.append(entry(K2, 2, expires_at=NOW + 60), admit_all, NOW + 20) == Appended(
        Status.OK, 2)


async def test_expire_is_bounded(backend: Backend) -> None:
    s = backend.store
    for i in range(5):
        await s.append(entry(K1, i, expires_at=NOW + i), admit_all, NOW)
    assert await s.expire(NOW + 10, limit=2) == 2
    assert [q for q, _ in (await s.fetch(K1, 0, 10, 1 << 20, NOW)).items] == [3, 4, 5]
    assert await s.expire(NOW + 10, limit=10) == 3


async def test_an_expired_copy_is_not_a_duplicate(backend: Backend) -> None:
    s = backend.store
    await s.append(entry(K1, 1, expires_at=NOW + 10), admit_all, NOW)
    assert await s.append(entry(K1, 1), admit_all, NOW + 10) == Appended(Status.OK, 2)
    assert await s.totals() == MailboxTotals(1, 512, 1, 1)


async def test_counters_follow_appends_and_expiry(backend: Backend) -> None:
    s = backend.store
    await s.append(entry(K1, 1, P1), admit_all, NOW)
    await s.append(entry(K1, 2, P2, 2048), admit_all, NOW)
    await s.append(entry(K2, 3, P1, 8192, expires_at=NOW + 1), admit_all, NOW)
    assert await s.usage(K1, P1) == Usage(2, 2560, 2, 512 + 8192, 3, 512 + 2048 + 8192)
    assert await s.totals() == MailboxTotals(3, 512 + 2048 + 8192, 2, 2)
    await s.expire(NOW + 1)
    assert await s.usage(K2, P1) == Usage(0, 0, 1, 512, 2, 2560)
    assert await s.usage(K1, P3) == Usage(2, 2560, 0, 0, 2, 2560)


@pytest.mark.parametrize(
    "bad",
    [
        lambda e: replace(e, key=b"\x01" * 19),
        lambda e: replace(e, digest=bytes(32)),
        lambda e: replace(e, envelope=b""),
        lambda e: replace(e, uploader=b"\x00" * 34),
        lambda e: replace(e, uploader=PEER),
        lambda e: replace(e, expires_at=float("nan")),
        lambda e: replace(e, stored_at=True),
    ],
)
async def test_bad_entries_are_refused_the_same_way(backend: Backend, bad: Any) -> None:
    with pytest.raises(StorageError):
        await backend.store.append(bad(entry(K1, 1)), admit_all, NOW)
    assert await backend.store.totals() == MailboxTotals(0, 0, 0, 0)


@pytest.mark.parametrize("uploader", [b"\x01" * 15, b"\x01" * 34, "x" * 16])
async def test_usage_takes_a_pseudonym(backend: Backend, uploader: Any) -> None:
    with pytest.raises(StorageError):
        await backend.store.usage(K1, uploader)


async def test_the_holder_secret_is_made_once_and_kept_in_meta(backend: Backend) -> None:
    first, second = b"\x0a" * 32, b"\x0b" * 32
    assert await backend.storage.get_meta(SECRET_META_KEY) is None
    assert await backend.store.holder_secret(first) == first
    assert await backend.store.holder_secret(second) == first
    assert await backend.storage.get_meta(SECRET_META_KEY) == first


@pytest.mark.parametrize("fresh", [b"", bytes(31), bytes(33), "x" * 32])
async def test_the_holder_secret_is_32_bytes(backend: Backend, fresh: Any) -> None:
    with pytest.raises(StorageError):
        await backend.store.holder_secret(fresh)
    await backend.storage.set_meta(SECRET_META_KEY, b"short")  # a damaged database
    with pytest.raises(StorageError):
        await backend.store.holder_secret(bytes(32))


@pytest.mark.parametrize(
    ("key", "after", "limit", "max_bytes"),
    [(K1[:19], 0, 1, 1), (K1, -1, 1, 1), (K1, 0, 0, 1), (K1, 0, 1001, 1), (K1, 0, 1, 0),
     (K1, True, 1, 1), (K1, 1 << 63, 1, 1)],
)
async def test_bad_fetch_arguments(backend: Backend, key: bytes, after: int, limit: int,
                                   max_bytes: int) -> None:
    with pytest.raises(StorageError):
        await backend.store.fetch(key, after, limit, max_bytes, NOW)


@pytest.mark.parametrize("limit", [0, 10_001, True])
async def test_bad_expire_limit(backend: Backend, limit: int) -> None:
    with pytest.raises(StorageError):
        await backend.store.expire(NOW, limit)


async def test_closed_store_refuses(backend: Backend) -> None:
    await backend.storage.close()
    with pytest.raises(StorageError):
        await backend.store.append(entry(K1, 1), admit_all, NOW)
    with pytest.raises(StorageError):
        await backend.store.fetch(K1, 0, 1, 1, NOW)


# -- SQLite only ----------------------------------------------------------------------------


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Backend]:
    path = tmp_path / "node.db"
    storage = await SqliteStorage.open(path)
    b = Backend("sqlite", storage.mailbox_store(), storage, path)
    yield b
    await b.storage.close()


async def test_envelopes_and_sequences_survive_a_reopen(sqlite: Backend) -> None:
    for i in range(3):
        await sqlite.store.append(entry(K1, i), admit_all, NOW)
    await sqlite.reopen()
    assert [q for q, _ in (await sqlite.store.fetch(K1, 0, 10, 1 << 20, NOW)).items] == [1, 2, 3]
    assert await sqlite.store.append(entry(K1, 1), admit_all, NOW) == Appended(
        Status.DUPLICATE, 2)
    assert await sqlite.store.append(entry(K1, 9), admit_all, NOW) == Appended(Status.OK, 4)
    assert await sqlite.store.totals() == MailboxTotals(4, 2048, 1, 1)


async def test_the_holder_secret_survives_a_reopen(sqlite: Backend) -> None:
    secret = await sqlite.store.holder_secret(b"\x0c" * 32)
    await sqlite.reopen()
    assert await sqlite.store.holder_secret(b"\x0d" * 32) == secret


async def _plan(b: Backend, sql: str, params: tuple[Any, ...]) -> str:
    rows = await b.storage._run("EXPLAIN QUERY PLAN " + sql, params)
    return " | ".join(str(r[3]) for r in rows)


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT envelopes, bytes FROM mailbox_keys WHERE key = ?", (K1,)),
        ("SELECT envelopes, bytes FROM mailbox_uploaders WHERE uploader = ?", (P1,)),
        ("SELECT envelopes, bytes FROM mailbox_totals WHERE id = 1", ()),
        ("SELECT k.envelopes, k.bytes, u.envelopes, u.bytes, t.envelopes, t.bytes"
         " FROM mailbox_totals t LEFT JOIN mailbox_keys k ON k.key = ?"
         " LEFT JOIN mailbox_uploaders u ON u.uploader = ? WHERE t.id = 1", (K1, P1)),
        ("SELECT d.seq, d.expires_at, k.envelopes, k.bytes, u.envelopes, u.bytes,"
         " t.envelopes, t.bytes FROM mailbox_totals t"
         " LEFT JOIN mailbox_entries d ON d.key = ? AND d.digest = ?"
         " LEFT JOIN mailbox_keys k ON k.key = ?"
         " LEFT JOIN mailbox_uploaders u ON u.uploader = ? WHERE t.id = 1",
         (K1, bytes(32), K1, P1)),
        ("SELECT seq, size FROM mailbox_entries WHERE key = ? AND seq > ? AND expires_at > ?"
         " ORDER BY seq LIMIT ?", (K1, 0, NOW, 10)),
        ("SELECT rowid FROM mailbox_entries WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
         (NOW, 10)),
        ("SELECT key FROM mailbox_keys WHERE expires_at <= ? AND envelopes = 0 LIMIT ?",
         (NOW, 10)),
    ],
)
async def test_quota_fetch_and_expiry_queries_use_indexes(sqlite: Backend, sql: str,
                                                          params: tuple[Any, ...]) -> None:
    plan = await _plan(sqlite, sql, params)
    assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
    if "mailbox_entries WHERE key" in sql and "seq, size" in sql:
        assert "COVERING INDEX" in plan, plan


async def test_trigger_counters_match_the_rows(sqlite: Backend) -> None:
    s = sqlite.store
    for i in range(20):
        await s.append(entry(K1 if i % 3 else K2, i, (P1, P2, P3)[i % 3], 512 << (i % 3),
                             expires_at=NOW + i), admit_all, NOW)
    await s.expire(NOW + 7)
    run = sqlite.storage._run
    keys = await run("SELECT key, count(*), sum(size) FROM mailbox_entries GROUP BY key")
    for key, n, size in keys:
        assert await run("SELECT envelopes, bytes FROM mailbox_keys WHERE key = ?",
                         (key,)) == [(n, size)]
    ups = await run("SELECT uploader, count(*), sum(size) FROM mailbox_entries GROUP BY uploader")
    assert sorted(tuple(r) for r in ups) == sorted(
        tuple(r) for r in await run("SELECT uploader, envelopes, bytes FROM mailbox_uploaders"))
    total = await run("SELECT count(*), sum(size) FROM mailbox_entries")
    assert [tuple(r) for r in total] == [
        tuple(r) for r in await run("SELECT envelopes, bytes FROM mailbox_totals")]


@pytest.mark.parametrize(("uploader", "size"), [(P1, 3), (PEER, 2)])
async def test_the_schema_refuses_what_the_checks_refuse(sqlite: Backend, uploader: Any,
                                                         size: int) -> None:
    # A wrong size, or a PeerId where a pseudonym belongs.
    raw = uploader.binary if isinstance(uploader, PeerId) else uploader
    with pytest.raises(StorageError):
        async with sqlite.storage._transaction():
            await sqlite.storage._run(
                "INSERT INTO mailbox_entries (key, seq, digest, uploader, envelope, size,"
                " stored_at, expires_at) VALUES (?, 1, ?, ?, ?, ?, 0, 0)",
                (K1, bytes(32), raw, b"ab", size),
            )
    assert await sqlite.store.totals() == MailboxTotals(0, 0, 0, 0)
