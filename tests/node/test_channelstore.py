"""The channel tables (node/storage/channelstore.py), one suite run against both backends.

SQLite-only at the end: transactions are atomic, the file is private, a reopen gives back
exactly what was written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from node.core.errors import StorageError
from node.core.identity import PeerId
from node.storage import MemoryStorage, SqliteStorage
from node.storage.channelstore import (
    MAX_PAGE,
    ChannelBatch,
    ChannelRow,
    ChannelStore,
    MessageRow,
    OutboxRow,
)

P1, P2, P3 = (PeerId.from_public_key(bytes((i,)) * 32) for i in (1, 2, 3))
C1, C2 = b"\x01" * 32, b"\x02" * 32


@dataclass
class Backend:
    kind: str
    store: ChannelStore
    storage: Any
    path: Path | None = None

    async def reopen(self) -> Backend:
        assert self.path is not None
        await self.storage.close()
        self.storage = await SqliteStorage.open(self.path)
        self.store = self.storage.channel_store()
        return self


@pytest.fixture(params=["sqlite", "memory"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "node.db"
        storage: Any = await SqliteStorage.open(path)
        b = Backend("sqlite", storage.channel_store(), storage, path)
    else:
        storage = MemoryStorage()
        b = Backend("memory", storage.channel_store(), storage)
    yield b
    await b.storage.close()


def msg(cid: bytes, n: int, *, text: str | None = None, sender: PeerId = P1) -> MessageRow:
    return MessageRow(cid, n.to_bytes(16, "big"), sender, f"name {n}",
                      f"text {n}" if text is None else text, 1_800_000_000_000 + n,
                      1_800_000_000.25 + n, n)


def outbox(n: int, recipients: set[PeerId], *, cid: bytes | None = C1,
           keys: tuple[bytes, bytes] | None = (b"e" * 32, b"t" * 32)) -> OutboxRow:
    """A channel envelope's payload with its keys, or (``keys=None``) a sealed invite."""
    return OutboxRow(b"item-%011d" % n, cid, b"body %d" % n, keys, frozenset(recipients),
                     1_800_000_000.5 + n)


def strip_cursor(rows: list[MessageRow]) -> list[MessageRow]:
    return [replace(r, cursor=0) for r in rows]


def strip_position(rows: list[OutboxRow]) -> list[OutboxRow]:
    return [replace(r, position=0) for r in rows]


# -- basics ---------------------------------------------------------------------------------


async def test_empty_store(backend: Backend) -> None:
    s = backend.store
    assert await s.load_channels() == []
    assert await s.load_outbox() == []
    assert await s.load_invites() == []
    assert await s.load_seen(0.0) == []
    assert await s.messages(C1) == []
    assert await s.message_count(C1) == 0
    assert await s.prune_seen(1e12) == 0
    await s.write(ChannelBatch())  # an empty batch is fine


def test_batch_truthiness() -> None:
    assert not ChannelBatch()
    for name in ChannelBatch().__dict__:
        b = ChannelBatch()
        getattr(b, name).append(object())
        assert b, name


# -- channels and epoch nodes ---------------------------------------------------------------


async def test_channels_round_trip_upsert_and_delete(backend: Backend) -> None:
    s = backend.store
    await s.write(ChannelBatch(channels=[(C2, b"group 2", b"meta 2"), (C1, b"group 1", b"")]))
    assert await s.load_channels() == [ChannelRow(C1, b"group 1", b""),
                                       ChannelRow(C2, b"group 2", b"meta 2")]
    await s.write(ChannelBatch(channels=[(C1, b"group 1'", b"meta 1'")]))
    assert (await s.load_channels())[0] == ChannelRow(C1, b"group 1'", b"meta 1'")
    await s.write(ChannelBatch(channels_deleted=[C2, b"\x09" * 32]))
    assert await s.load_channels() == [ChannelRow(C1, b"group 1'", b"meta 1'")]


async def test_nodes_load_with_their_channel_ordered_by_state_id(backend: Backend) -> None:
    s = backend.store
    await s.write(ChannelBatch(
        channels=[(C1, b"g1", b"m1"), (C2, b"g2", b"m2")],
        nodes_added=[(C1, b"\x02" * 16, b"node b"), (C1, b"\x01" * 16, b"node a"),
                     (C2, b"\x05" * 16, b"node c")],
    ))
    rows = await s.load_channels()
    assert [r.nodes for r in rows] == [(b"node a", b"node b"), (b"node c",)]
    # Same (channel, state id) again replaces; removal takes exactly one node.
    await s.write(ChannelBatch(nodes_added=[(C1, b"\x01" * 16, b"node a'")],
                               nodes_removed=[(C1, b"\x02" * 16), (C2, b"\x01" * 16)]))
    rows = await s.load_channels()
    assert [r.nodes for r in rows] == [(b"node a'",), (b"node c",)]


async def test_sent_records_load_with_their_channel(backend: Backend) -> None:
    s = backend.store
    m1, m2, m3 = (bytes((n,)) * 16 for n in (1, 2, 3))
    await s.write(ChannelBatch(
        channels=[(C1, b"g1", b"m1"), (C2, b"g2", b"m2")],
        sent_saved=[(C1, m2, b"record 2"), (C1, m1, b"record 1"), (C2, m3, b"record 3")],
    ))
    rows = await s.load_channels()
    assert [r.sent for r in rows] == [((m1, b"record 1", None, None), (m2, b"record 2", None,
                                                                         None)),
                                      ((m3, b"record 3", None, None),)]
    await s.write(ChannelBatch(sent_saved=[(C1, m1, b"record 1'")],
                               sent_deleted=[(C1, m2), (C2, m1), (C1, b"\x09" * 16)]))
    rows = await s.load_channels()
    assert [r.sent for r in rows] == [((m1, b"record 1'", None, None),),
                                      ((m3, b"record 3", None, None),)]


async def test_sent_records_of_texts_come_with_the_stored_message(backend: Backend) -> None:
    """A text's record leaves its content out: the load joins the message row (same channel
    and message id) for the text and sent_at."""
    s = backend.store
    text = msg(C1, 7, text="kept \U0001f43c")
    other_channel = msg(C2, 8)
    await s.write(ChannelBatch(
        channels=[(C1, b"g1", b"m1"), (C2, b"g2", b"m2")],
        messages=[text, other_channel, msg(C1, 9)],
        sent_saved=[(C1, text.message_id, b"record"),
                    (C1, other_channel.message_id, b"record 2")],  # not this channel's row
    ))
    (row, _) = await s.load_channels()
    assert sorted(row.sent) == sorted([
        (text.message_id, b"record", "kept \U0001f43c", text.sent_at_ms),
        (other_channel.message_id, b"record 2", None, None),
    ])


async def test_deleting_a_channel_deletes_its_nodes_and_sent_records(backend: Backend) -> None:
    s = backend.store
    await s.write(ChannelBatch(channels=[(C1, b"g", b"m"), (C2, b"g2", b"m2")],
                               nodes_added=[(C1, b"\x01" * 16, b"old node"),
                                            (C2, b"\x01" * 16, b"other node")],
                               sent_saved=[(C1, b"\x01" * 16, b"old record")]))
    await s.write(ChannelBatch(channels_deleted=[C1]))
    await s.write(ChannelBatch(channels=[(C1, b"g again", b"m")]))
    assert await s.load_channels() == [ChannelRow(C1, b"g again", b"m", (), ()),
                                       ChannelRow(C2, b"g2", b"m2", (b"other node",), ())]


@pytest.mark.parametrize("bad", [b"\x01" * 31, b"\x01" * 33, b""], ids=["31", "33", "0"])
async def test_channel_id_must_be_32_bytes(request: pytest.FixtureRequest, backend: Backend,
                                           bad: bytes) -> None:
    with pytest.raises(StorageError):
        await backend.store.write(ChannelBatch(channels=[(bad, b"g", b"m")]))
    assert await backend.store.load_channels() == []


@pytest.mark.parametrize("what", ["node", "sent"])
async def test_nodes_and_sent_records_need_their_channel(request: pytest.FixtureRequest,
                                                         backend: Backend, what: str) -> None:
    batch = (ChannelBatch(nodes_added=[(C1, bytes(16), b"node")]) if what == "node"
             else ChannelBatch(sent_saved=[(C1, bytes(16), b"record")]))
    with pytest.raises(StorageError):
        await backend.store.write(batch)


# -- messages ----------------------------------------------------------------------------


async def test_messages_round_trip_in_cursor_order(backend: Backend) -> None:
    s = backend.store
    rows = [msg(C1, 3), msg(C2, 1), msg(C1, 1, text="héllo \U0001f43c\n"), msg(C1, 2)]
    await s.write(ChannelBatch(messages=rows[:2]))
    await s.write(ChannelBatch(messages=rows[2:]))
    got = await s.messages(C1)
    assert strip_cursor(got) == [rows[0], rows[2], rows[3]]  # insertion order, not seq
    cursors = [r.cursor for r in got]
    assert cursors == sorted(cursors) and len(set(cursors)) == 3 and cursors[0] >= 1
    assert strip_cursor(await s.messages(C2)) == [rows[1]]
    assert (await s.message_count(C1), await s.message_count(C2)) == (3, 1)


async def test_duplicate_messages_are_ignored_per_channel(backend: Backend) -> None:
    s = backend.store
    first = msg(C1, 1)
    await s.write(ChannelBatch(messages=[first]))
    await s.write(ChannelBatch(messages=[replace(first, text="changed"), msg(C1, 2)]))
    # The same message id in one batch, and in another channel.
    await s.write(ChannelBatch(messages=[msg(C1, 3), msg(C1, 3, text="dup"), msg(C2, 1)]))
    got = await s.messages(C1)
    assert [r.text for r in got] == ["text 1", "text 2", "text 3"]
    assert await s.message_count(C2) == 1


async def test_paging_with_after_and_limit(backend: Backend) -> None:
    s = backend.store
    await s.write(ChannelBatch(messages=[msg(C1 if n % 3 else C2, n) for n in range(1, 31)]))
    everything = await s.messages(C1, limit=MAX_PAGE)
    assert len(everything) == 20
    pages: list[MessageRow] = []
    after = 0
    for _ in range(10):  # bounded: a store that ignored ``after`` must fail, not hang
        page = await s.messages(C1, after=after, limit=7)
        assert len(page) <= 7
        if not page:
            break
        pages += page
        after = page[-1].cursor
    assert pages == everything
    assert await s.messages(C1, after=everything[4].cursor, limit=2) == everything[5:7]
    assert await s.messages(C1, after=everything[-1].cursor) == []
    assert await s.messages(C1, after=10**12) == []
    assert len(await s.messages(C1, limit=1)) == 1


@pytest.mark.parametrize(("after", "limit"), [(-1, 10), (0, 0), (0, MAX_PAGE + 1), (0, -5),
                                              (True, 10), (0, True), ("0", 10), (0, 1.5),
                                              (None, 10)])
async def test_page_bounds_are_checked(backend: Backend, after: Any, limit: Any) -> None:
    with pytest.raises(StorageError):
        await backend.store.messages(C1, after=after, limit=limit)


# -- outbox ----------------------------------------------------------------------------------


async def test_outbox_round_trip_in_creation_order(backend: Backend) -> None:
    s = backend.store
    rows = [outbox(3, {P1, P2}), outbox(1, {P3}, cid=None, keys=None), outbox(2, {P1})]
    await s.write(ChannelBatch(outbox_added=rows[:2]))
    await s.write(ChannelBatch(outbox_added=rows[2:]))
    got = await s.load_outbox()
    assert strip_position(got) == rows
    positions = [r.position for r in got]
    assert positions == sorted(positions) and len(set(positions)) == 3


async def test_outbox_partial_acks_then_last_ack_removes(backend: Backend) -> None:
    s = backend.store
    a, b = outbox(1, {P1, P2, P3}), outbox(2, {P1})
    await s.write(ChannelBatch(outbox_added=[a, b]))
    await s.write(ChannelBatch(outbox_acked=[(a.item_id, P2)]))
    got = await s.load_outbox()
    assert [r.recipients for r in got] == [frozenset({P1, P3}), frozenset({P1})]
    # Acks of unknown items or of peers that owe nothing change nothing.
    await s.write(ChannelBatch(outbox_acked=[(a.item_id, P2), (b"nothing", P1), (b.item_id, P3)]))
    assert await s.load_outbox() == got
    await s.write(ChannelBatch(outbox_acked=[(a.item_id, P1), (a.item_id, P3)]))
    assert strip_position(await s.load_outbox()) == [b]
    await s.write(ChannelBatch(outbox_acked=[(b.item_id, P1)]))
    assert await s.load_outbox() == []


async def test_acks_only_remove_the_items_they_finish(backend: Backend) -> None:
    s = backend.store
    idle, a = outbox(1, set()), outbox(2, {P1})
    await s.write(ChannelBatch(outbox_added=[idle, a]))
    await s.write(ChannelBatch(outbox_acked=[(a.item_id, P1)]))
    assert strip_position(await s.load_outbox()) == [idle]


async def test_outbox_add_and_ack_in_one_batch(backend: Backend) -> None:
    a = outbox(1, {P1, P2})
    await backend.store.write(ChannelBatch(outbox_added=[a], outbox_acked=[(a.item_id, P1)]))
    assert strip_position(await backend.store.load_outbox()) == [replace(a, recipients=
                                                                         frozenset({P2}))]


async def test_outbox_cancel(backend: Backend) -> None:
    s = backend.store
    rows = [outbox(n, {P1, P2}) for n in range(1, 4)]
    await s.write(ChannelBatch(outbox_added=rows))
    await s.write(ChannelBatch(outbox_removed=[rows[1].item_id, b"unknown"]))
    assert strip_position(await s.load_outbox()) == [rows[0], rows[2]]


async def test_outbox_order_survives_removals(backend: Backend) -> None:
    s = backend.store
    await s.write(ChannelBatch(outbox_added=[outbox(n, {P1}) for n in (1, 2, 3)]))
    await s.write(ChannelBatch(outbox_removed=[outbox(3, set()).item_id]))
    await s.write(ChannelBatch(outbox_added=[outbox(4, {P1})]))
    await s.write(ChannelBatch(outbox_removed=[outbox(1, set()).item_id]))
    await s.write(ChannelBatch(outbox_added=[outbox(5, {P1})]))
    assert [r.item_id for r in await s.load_outbox()] == [outbox(n, set()).item_id
                                                          for n in (2, 4, 5)]


async def test_adding_an_existing_outbox_item_changes_nothing(request: pytest.FixtureRequest,
                                                              backend: Backend) -> None:
    s = backend.store
    a = outbox(1, {P1})
    await s.write(ChannelBatch(outbox_added=[a]))
    await s.write(ChannelBatch(outbox_added=[replace(a, body=b"other", recipients=
                                                     frozenset({P2, P3}))]))
    assert strip_position(await s.load_outbox()) == [a]


# -- seen envelope ids and invites --------------------------------------------------------


async def test_seen_ids_load_since_and_prune(backend: Backend) -> None:
    s = backend.store
    ids = [bytes((n,)) * 20 for n in range(5)]
    await s.write(ChannelBatch(seen=[(ids[2], 300.0), (ids[0], 100.0), (ids[1], 200.0)]))
    await s.write(ChannelBatch(seen=[(ids[3], 400.0), (ids[0], 999.0)]))  # first time kept
    assert await s.load_seen(0.0) == [ids[0], ids[1], ids[2], ids[3]]
    assert await s.load_seen(200.0) == [ids[1], ids[2], ids[3]]  # inclusive
    assert await s.load_seen(400.5) == []
    assert await s.prune_seen(300.0) == 2  # strictly older
    assert await s.load_seen(0.0) == [ids[2], ids[3]]
    assert await s.prune_seen(300.0) == 0
    assert await s.prune_seen(1e12) == 2
    assert await s.load_seen(0.0) == []


async def test_invites_save_replace_delete_in_creation_order(backend: Backend) -> None:
    s = backend.store
    await s.write(ChannelBatch(invites_saved=[(b"i2", b"record 2", 20.0),
                                              (b"i1", b"record 1", 10.0),
                                              (b"i3", b"record 3", 30.0)]))
    assert await s.load_invites() == [b"record 1", b"record 2", b"record 3"]
    await s.write(ChannelBatch(invites_saved=[(b"i1", b"record 1'", 40.0)],
                               invites_deleted=[b"i2", b"unknown"]))
    assert await s.load_invites() == [b"record 3", b"record 1'"]


async def test_closed_storage_refuses_channel_writes(request: pytest.FixtureRequest,
                                                     backend: Backend) -> None:
    await backend.storage.close()
    with pytest.raises(StorageError):
        await backend.store.write(ChannelBatch(seen=[(bytes(20), 1.0)]))


# -- SQLite only: atomicity, file modes, reopen ------------------------------------------------


def _everything() -> ChannelBatch:
    return ChannelBatch(
        channels=[(C1, b"group", b"meta"), (C2, b"group 2", b"meta 2")],
        nodes_added=[(C1, b"\x01" * 16, b"node"), (C2, b"\x02" * 16, b"node 2")],
        sent_saved=[(C1, b"\x03" * 16, b"sent record")],
        messages=[msg(C1, 1), msg(C1, 2), msg(C2, 1)],
        outbox_added=[outbox(1, {P1, P2}), outbox(2, {P3}, cid=None, keys=None)],
        seen=[(b"\x07" * 20, 5.0)],
        invites_saved=[(b"i1", b"record", 1.0)],
    )


async def _snapshot(s: ChannelStore) -> tuple[Any, ...]:
    return (await s.load_channels(), await s.load_outbox(), await s.load_invites(),
            await s.load_seen(0.0), await s.messages(C1), await s.messages(C2),
            await s.message_count(C1))


@pytest.mark.parametrize("failing", ["channel id length", "node without channel"])
async def test_sqlite_batch_is_atomic(tmp_path: Path, failing: str) -> None:
    storage = await SqliteStorage.open(tmp_path / "node.db")
    try:
        s = storage.channel_store()
        await s.write(ChannelBatch(channels=[(C2, b"kept", b"kept")]))
        before = await _snapshot(s)
        batch = _everything()
        batch.outbox_acked = [(outbox(1, set()).item_id, P1)]
        batch.invites_deleted = [b"none"]
        if failing == "channel id length":
            batch.channels.append((b"\x03" * 31, b"bad", b"bad"))  # violates the CHECK
        else:
            batch.nodes_added.append((b"\x04" * 32, b"\x01" * 16, b"orphan"))  # foreign key
        with pytest.raises(StorageError):
            await s.write(batch)
        assert await _snapshot(s) == before
        # The connection is still usable and the same batch without the bad row commits.
        good = _everything()
        await s.write(good)
        assert len(await s.load_channels()) == 2 and await s.message_count(C1) == 2
    finally:
        await storage.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_sqlite_files_are_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    old = os.umask(0)
    try:
        storage = await SqliteStorage.open(path)
        try:
            await storage.channel_store().write(_everything())
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(path) + suffix)
                assert p.exists(), suffix
                assert _mode(p) == 0o600, (suffix, oct(_mode(p)))
        finally:
            await storage.close()
    finally:
        os.umask(old)


async def test_sqlite_open_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    storage = await SqliteStorage.open(path)
    await storage.channel_store().write(_everything())
    await storage.close()
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            os.chmod(p, 0o644)
    storage = await SqliteStorage.open(path)
    try:
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(path) + suffix)
            assert p.exists() and _mode(p) == 0o600, (suffix, oct(_mode(p)))
    finally:
        await storage.close()


async def test_sqlite_reopen_gives_back_exactly_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    storage = await SqliteStorage.open(path)
    s = storage.channel_store()
    await s.write(_everything())
    await s.write(ChannelBatch(outbox_acked=[(outbox(1, set()).item_id, P2)],
                               messages=[msg(C1, 9, text="x" * 70_000)]))
    before = await _snapshot(s)
    await storage.close()
    storage = await SqliteStorage.open(path)
    try:
        assert await _snapshot(storage.channel_store()) == before
        # Cursors keep increasing after a reopen.
        await storage.channel_store().write(ChannelBatch(messages=[msg(C1, 10)]))
        got = await storage.channel_store().messages(C1)
        assert got[:-1] == before[4] and got[-1].cursor > before[4][-1].cursor
    finally:
        await storage.close()


async def test_sqlite_corrupt_peer_id_in_the_outbox_is_a_storage_error(tmp_path: Path) -> None:
    storage = await SqliteStorage.open(tmp_path / "node.db")
    try:
        await storage.channel_store().write(ChannelBatch(outbox_added=[outbox(1, {P1})]))
        async with storage._transaction():
            await storage._run("UPDATE outbox_recipients SET peer_id = ?", (b"\x00" * 34,))
        with pytest.raises(StorageError, match="corrupt PeerId"):
            await storage.channel_store().load_outbox()
    finally:
        await storage.close()
