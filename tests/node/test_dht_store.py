"""The node database as a ``dht.persistence.DhtStore``: both backends, same tests."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dht.persistence import ContactSnapshot, DhtStore
from dht.records import MAX_RECORD_SIZE, PeerRecord, record_key
from dht.service import DhtService
from node.core.ed25519 import is_strict_public_key
from node.core.errors import StorageError
from node.core.identity import Identity, PeerId
from node.storage import MemoryStorage, SqliteStorage, Storage, dhtstore
from node.storage.dhtstore import MAX_SNAPSHOT_CONTACTS

NOW = 1_700_000_000.0


def _pid() -> PeerId:
    # Any 32 bytes make a well-formed PeerId; no key generation needed for contacts.
    return PeerId.from_public_key(os.urandom(32))


def _contact(i: int, host: str = "127.0.0.1") -> ContactSnapshot:
    return ContactSnapshot(_pid(), host, 4000 + i)


def _record(identity: Identity | None = None, seq: int = 1, n_addrs: int = 1) -> bytes:
    identity = identity or Identity.generate()
    return PeerRecord.create(
        identity,
        noise_static_key=os.urandom(32),
        envelope_key=os.urandom(32),
        addrs=[f"/ip4/127.0.0.{i + 1}/tcp/4001" for i in range(n_addrs)],
        seq=seq,
        expires_at=int(NOW) + 3600,
    ).encode()


def _key(data: bytes) -> bytes:
    return PeerRecord.decode(data).key


@pytest.fixture(params=["sqlite", "memory"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    s: Storage
    if request.param == "sqlite":
        s = await SqliteStorage.open(tmp_path / "node.db", synchronous="NORMAL")
    else:
        s = MemoryStorage()
    yield s
    await s.close()


@pytest.fixture
def store(storage: Storage) -> dhtstore.NodeDhtStore:
    return storage.dht_store(clock=lambda: NOW)


def test_fits_the_dht_protocol(storage: Storage) -> None:
    s: DhtStore = storage.dht_store()  # checked by mypy; and at runtime the methods exist
    for name in ("save_contacts", "load_contacts", "save_records", "load_records"):
        assert asyncio.iscoroutinefunction(getattr(s, name))


async def test_empty_database_loads_nothing(store: dhtstore.NodeDhtStore) -> None:
    assert await store.load_contacts() == []
    assert await store.load_records() == []
    assert store.statistics()["skipped"] == {}


async def test_contacts_round_trip_in_order(store: dhtstore.NodeDhtStore) -> None:
    contacts = [
        _contact(0),
        ContactSnapshot(_pid(), "::1", 1),
        ContactSnapshot(_pid(), "boot.example.org", 65535),
        _contact(3, "10.0.0.7"),
    ]
    await store.save_contacts(contacts)
    assert await store.load_contacts() == contacts
    assert store.statistics()["saved_contacts"] == 4


async def test_records_round_trip_sorted_by_key(store: dhtstore.NodeDhtStore) -> None:
    records = [_record(n_addrs=n) for n in (1, 3, 8)]
    await store.save_records(records)
    assert await store.load_records() == sorted(records, key=_key)


async def test_saves_replace_the_previous_snapshot(
    storage: Storage, store: dhtstore.NodeDhtStore
) -> None:
    await store.save_contacts([_contact(i) for i in range(5)])
    await store.save_records([_record(), _record()])
    newer_contacts = [_contact(9)]
    newer_records = [_record()]
    await store.save_contacts(newer_contacts)
    await store.save_records(newer_records)
    # A fresh view over the same tables sees exactly the last snapshot.
    again = storage.dht_store()
    assert await again.load_contacts() == newer_contacts
    assert await again.load_records() == newer_records
    await store.save_contacts([])
    await store.save_records([])
    assert await again.load_contacts() == [] and await again.load_records() == []


async def test_duplicate_contact_keeps_first(store: dhtstore.NodeDhtStore) -> None:
    a, b = _contact(1), _contact(2)
    dup = ContactSnapshot(a.peer_id, "127.0.0.9", 9)
    await store.save_contacts([a, b, dup])
    assert await store.load_contacts() == [a, b]
    assert store.statistics()["skipped"] == {"save_contact_duplicate": 1}


async def test_two_records_for_one_key_keep_higher_seq(store: dhtstore.NodeDhtStore) -> None:
    ident = Identity.generate()
    old, new = _record(ident, seq=5), _record(ident, seq=7)
    for order in ([old, new], [new, old]):
        await store.save_records(order)
        assert await store.load_records() == [new]


async def test_bad_entries_on_save_are_skipped_and_counted(
    store: dhtstore.NodeDhtStore,
) -> None:
    good_c = _contact(1)
    await store.save_contacts(
        [
            ContactSnapshot(_pid(), "", 1),
            ContactSnapshot(_pid(), "no spaces allowed", 1),
            good_c,
            ContactSnapshot(_pid(), "127.0.0.1", 0),
            ContactSnapshot(_pid(), "127.0.0.1", 70000),
        ]
    )
    good_r = _record()
    await store.save_records([b"\x00junk", good_r, b"\xa0" * (MAX_RECORD_SIZE + 1)])
    assert await store.load_contacts() == [good_c]
    assert await store.load_records() == [good_r]
    assert store.statistics()["skipped"] == {
        "save_contact_bad_host": 2,
        "save_contact_bad_port": 2,
        "save_record_undecodable": 1,
        "save_record_oversized": 1,
    }


async def test_wrong_types_are_a_storage_error(store: dhtstore.NodeDhtStore) -> None:
    await store.save_contacts([_contact(1)])
    with pytest.raises(StorageError):
        await store.save_contacts([("127.0.0.1", 1)])  # type: ignore[list-item]
    assert len(await store.load_contacts()) == 1  # refused save changed nothing


async def test_bad_clock_is_a_storage_error(storage: Storage) -> None:
    store = storage.dht_store(clock=lambda: float("nan"))
    with pytest.raises(StorageError):
        await store.save_contacts([_contact(1)])


async def test_contact_snapshot_is_bounded(store: dhtstore.NodeDhtStore) -> None:
    contacts = [_contact(i % 60000) for i in range(MAX_SNAPSHOT_CONTACTS + 5)]
    with structlog.testing.capture_logs() as logs:
        await store.save_contacts(contacts)
    loaded = await store.load_contacts()
    assert loaded == contacts[:MAX_SNAPSHOT_CONTACTS]
    assert store.statistics()["skipped"] == {"save_contacts_truncated": 5}
    assert any(e["event"] == "storage.dht_snapshot_truncated" for e in logs)


async def test_record_snapshot_is_bounded(
    store: dhtstore.NodeDhtStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dhtstore, "MAX_SNAPSHOT_RECORDS", 2)
    records = [_record() for _ in range(4)]
    await store.save_records(records)
    assert len(await store.load_records()) == 2
    assert store.statistics()["skipped"] == {"save_records_truncated": 2}


async def test_closed_storage_refuses(storage: Storage) -> None:
    store = storage.dht_store()
    await storage.close()
    with pytest.raises(StorageError):
        await store.load_contacts()
    with pytest.raises(StorageError):
        await store.save_records([])


# ---- corrupt rows: skipped with a counted, logged reason --------------------------------


async def _corrupt_contact(storage: Storage, position: int, column: str, value: object) -> None:
    if isinstance(storage, MemoryStorage):
        row = list(storage.dht_tables.contacts[position])
        row[("peer_id", "host", "port").index(column)] = value
        storage.dht_tables.contacts[position] = (row[0], row[1], row[2], NOW)
    else:
        assert isinstance(storage, SqliteStorage)
        sql = f"UPDATE dht_contacts SET {column} = ? WHERE position = ?"
        await storage._run(sql, (value, position))


async def _put_record_row(storage: Storage, key: object, value: object) -> None:
    if isinstance(storage, MemoryStorage):
        storage.dht_tables.records[key] = (value, NOW)
    else:
        assert isinstance(storage, SqliteStorage)
        await storage._run(
            "INSERT INTO dht_records (key, value, saved_at) VALUES (?, ?, ?)", (key, value, NOW)
        )


async def test_corrupt_contact_rows_are_skipped(
    storage: Storage, store: dhtstore.NodeDhtStore
) -> None:
    contacts = [_contact(i) for i in range(7)]
    await store.save_contacts(contacts)
    bad_version = b"\x02\xed" + os.urandom(32)
    await _corrupt_contact(storage, 0, "peer_id", bad_version)
    await _corrupt_contact(storage, 1, "peer_id", "sp-text-not-bytes")
    await _corrupt_contact(storage, 2, "host", "not a host")
    await _corrupt_contact(storage, 3, "port", 0)
    # Values SQLite's column affinity cannot coerce (a blob host, a fractional port).
    await _corrupt_contact(storage, 4, "port", 4001.5)
    await _corrupt_contact(storage, 5, "host", b"\x00\xff")
    reader = storage.dht_store()
    with structlog.testing.capture_logs() as logs:
        assert await reader.load_contacts() == [contacts[6]]
    assert reader.statistics()["skipped"] == {
        "load_contact_bad_peer_id": 2,
        "load_contact_bad_host": 2,
        "load_contact_bad_port": 2,
    }
    skipped = [e for e in logs if e["event"] == "storage.dht_row_skipped"]
    assert sorted(e["position"] for e in skipped) == [0, 1, 2, 3, 4, 5]
    assert all(e["log_level"] == "warning" for e in skipped)


async def test_corrupt_record_rows_are_skipped(storage: Storage) -> None:
    store = storage.dht_store()
    good, other = _record(), _record()
    await store.save_records([good])
    await _put_record_row(storage, b"\x01" * 19, _record())  # key of the wrong length
    await _put_record_row(storage, b"\x02" * 20, other)  # record for another key
    await _put_record_row(storage, b"\x03" * 20, b"\x83\x01")  # truncated CBOR
    await _put_record_row(storage, b"\x04" * 20, "text, not a blob")
    await _put_record_row(storage, b"\x05" * 20, b"\x00" * (MAX_RECORD_SIZE + 1))
    await _put_record_row(storage, "text-key", good)
    with structlog.testing.capture_logs() as logs:
        assert await store.load_records() == [good]
    assert store.statistics()["skipped"] == {
        "load_record_bad_key": 2,
        "load_record_wrong_key": 1,
        "load_record_undecodable": 1,
        "load_record_bad_value": 1,
        "load_record_oversized": 1,
    }
    events = [e for e in logs if e["event"] == "storage.dht_row_skipped"]
    assert len(events) == 6
    # Peer-supplied bytes never reach the log.
    assert other.hex() not in repr(events) and repr(other) not in repr(events)


# ---- SQLite only --------------------------------------------------------------------------


async def test_sqlite_snapshot_survives_reopen_with_saved_at(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    s = await SqliteStorage.open(db)
    contacts, records = [_contact(1), _contact(2)], [_record()]
    store = s.dht_store(clock=lambda: 1234.5)
    await store.save_contacts(contacts)
    await store.save_records(records)
    await s.close()
    s = await SqliteStorage.open(db)
    try:
        again = s.dht_store()
        assert await again.load_contacts() == contacts
        assert await again.load_records() == records
    finally:
        await s.close()
    with sqlite3.connect(db) as raw:
        assert {r[0] for r in raw.execute("SELECT saved_at FROM dht_contacts")} == {1234.5}
        assert raw.execute("SELECT key, saved_at FROM dht_records").fetchall() == [
            (_key(records[0]), 1234.5)
        ]


async def test_dht_service_snapshot_round_trips_through_sqlite(tmp_path: Path) -> None:
    s = await SqliteStorage.open(tmp_path / "node.db", synchronous="NORMAL")
    try:
        ident = Identity.generate()
        service = DhtService(
            ident,
            noise_static_key=os.urandom(32),
            envelope_key=os.urandom(32),
            addrs_provider=lambda: ["/ip4/127.0.0.1/tcp/4001"],
            store=s.dht_store(),
            clock=lambda: NOW,
        )
        own = _record(ident, seq=3)
        foreign = _record(seq=9)
        for data in (own, foreign):
            assert service.storage.put(record_key(PeerRecord.decode(data).peer_id), data) == (
                "stored"
            )
        await service.save_snapshot()
        assert service.counters["snapshot_failures"] == 0
        assert sorted(await s.dht_store().load_records()) == sorted([own, foreign])
    finally:
        await s.close()


# ---- properties ---------------------------------------------------------------------------

_cells = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.floats(allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(
    contacts=st.lists(st.tuples(_cells, _cells, _cells), max_size=6),
    records=st.dictionaries(_cells.filter(lambda c: c is not None), _cells, max_size=6),
)
def test_loading_arbitrary_rows_never_raises(
    contacts: list[tuple[object, object, object]], records: dict[object, object]
) -> None:
    storage = MemoryStorage()
    storage.dht_tables.contacts = [(*c, NOW) for c in contacts]
    storage.dht_tables.records = {k: (v, NOW) for k, v in records.items()}
    store = storage.dht_store()
    loaded_c = asyncio.run(store.load_contacts())
    loaded_r = asyncio.run(store.load_records())
    skipped = sum(store.statistics()["skipped"].values())
    assert len(loaded_c) + len(loaded_r) + skipped == len(contacts) + len(records)


_hosts = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(st.binary(min_size=32, max_size=32).filter(is_strict_public_key), _hosts,
                  st.integers(1, 65535)),
        max_size=8,
        unique_by=lambda r: r[0],
    )
)
def test_contacts_round_trip_property(rows: list[tuple[bytes, str, int]]) -> None:
    contacts = [ContactSnapshot(PeerId.from_public_key(k), h, p) for k, h, p in rows]
    store = MemoryStorage().dht_store()
    asyncio.run(store.save_contacts(contacts))
    assert asyncio.run(store.load_contacts()) == contacts
