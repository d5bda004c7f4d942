"""Mailboxes between real in-process nodes (node/mailbox_service.py): placement at the three
closest, fetching with a cursor, refusals, dialling a holder, a holder's restart."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.core.identity import Identity, PeerId
from node.mailbox_service import (
    MailboxRefused,
    MailboxService,
    MailboxStopped,
    MailboxTimeout,
    MailboxUnreachable,
)
from node.network.mailbox import MailboxSettings, day_of, mailbox_key, uploader_pseudonym
from node.network.mailbox_wire import (
    PROTOCOL,
    Batch,
    Fetch,
    MailboxWireError,
    Status,
    Store,
    Stored,
    decode_mailbox,
)
from node.storage import MemoryStorage, SqliteStorage
from tests.harness import Running, StartNode, wait_for

TODAY = day_of(time.time())


def envelope(size: int = 512) -> bytes:
    return b"\x01" + os.urandom(size - 1)


def key_of(name: bytes, day: int = TODAY) -> bytes:
    return mailbox_key(name.ljust(32, b"\x00"), day)


class Host:
    """Runs MailboxServices beside in-process nodes, each in its own TaskGroup (as the node
    would run it in its own)."""

    def __init__(self) -> None:
        self._running: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}

    async def attach(self, r: Running, **kw: Any) -> MailboxService:
        # The node runs its own service; this one, with the test's settings, replaces it.
        own = r.node.mailboxes
        if own is not None:
            own.stop()
        store = kw.pop("store", None) or r.node.storage.mailbox_store()
        svc = MailboxService(r.node, store, **kw)
        up, down = asyncio.Event(), asyncio.Event()

        async def run() -> None:
            async with asyncio.TaskGroup() as tg:
                svc.start(tg)
                up.set()
                await down.wait()
                svc.stop()

        task = asyncio.create_task(run())
        await up.wait()
        self._running[id(svc)] = (down, task)
        return svc

    async def detach(self, svc: MailboxService) -> None:
        down, task = self._running.pop(id(svc))
        down.set()
        await task

    async def close(self) -> None:
        for down, task in self._running.values():
            down.set()
            await task


@pytest.fixture
async def host(start_node: StartNode) -> AsyncIterator[Host]:
    h = Host()
    yield h
    await h.close()


async def network(start_node: StartNode, n: int, **overrides: Any) -> list[Running]:
    """``n`` nodes joined through the first; returns once every DHT knows everyone."""
    boot = await start_node(host="127.0.0.1", **overrides)
    nodes = [boot]
    for i in range(1, n):
        nodes.append(await start_node(host=f"127.0.0.{i + 1}", bootstrap=(boot.addr,),
                                      **overrides))
    await wait_for(lambda: all(r.node.is_ready() for r in nodes), timeout=20)
    await wait_for(lambda: all(len(r.node.dht.known_peers()) == n - 1 for r in nodes),
                   timeout=20)
    return nodes


def closest(nodes: list[Running], key: bytes, k: int = 3, *,
            asked_by: Running | None = None) -> list[PeerId]:
    """The ``k`` nodes closest to ``key``, leaving out the node that asks (it never places
    at or fetches from itself)."""
    target = int.from_bytes(key, "big")
    ranked = sorted((r for r in nodes if r is not asked_by),
                    key=lambda r: int.from_bytes(r.node.dht.node_id, "big") ^ target)
    return [r.node.peer_id for r in ranked[:k]]


async def held(r: Running, key: bytes) -> list[bytes]:
    page = await r.node.storage.mailbox_store().fetch(key, 0, 1000, 1 << 24, time.time())
    return [env for _, env in page.items]


async def test_place_at_the_three_closest_then_fetch_with_a_cursor_elsewhere(
    start_node: StartNode, host: Host
) -> None:
    nodes = await network(start_node, 6)
    services = [await host.attach(r) for r in nodes]
    by_peer = {r.node.peer_id: r for r in nodes}
    key = key_of(b"channel epoch 1")
    expected = closest(nodes, key, asked_by=nodes[1])
    sender, fetcher = services[1], services[4]

    sent = [envelope(512), envelope(2048), envelope(512), envelope(8192), envelope(512)]
    for env in sent:
        assert await sender.place(key, env) == expected
    for peer, r in by_peer.items():
        assert await held(r, key) == (sent if peer in expected else []), peer.short()

    # A repeat is acknowledged by every holder and stored nowhere twice.
    assert await sender.place(key, sent[0]) == expected
    assert await held(by_peer[expected[0]], key) == sent

    # Another node pages through one holder with a cursor.
    holder = expected[0] if expected[0] != nodes[4].node.peer_id else expected[1]
    got: list[bytes] = []
    cursor, more = 0, True
    while more:
        batch = await fetcher.fetch(holder, key, cursor, limit=2)
        assert [s for s, _ in batch.items] == list(range(cursor + 1, cursor + 1 +
                                                         len(batch.items)))
        got += [env for _, env in batch.items]
        cursor, more = batch.next_cursor, batch.more
    assert got == sent and cursor == 5
    # Nothing new after the end; a new envelope comes with the next seq.
    assert (await fetcher.fetch(holder, key, cursor)).items == ()
    late = envelope()
    assert await sender.place(key, late) == expected
    assert (await fetcher.fetch(holder, key, cursor)).items == ((6, late),)

    # collect(): every holder from its cursor, each envelope once.
    c = await services[5].collect(key)
    assert list(c.envelopes) == [*sent, late] and c.complete and not c.failed
    asked = closest(nodes, key, 4, asked_by=nodes[5])
    assert set(expected) - {nodes[5].node.peer_id} <= set(asked)
    assert c.cursors == {p: 6 if p in expected else 0 for p in asked}
    again = await services[5].collect(key, cursors=c.cursors)
    assert again.envelopes == () and again.complete
    # Another day's key is another mailbox.
    assert (await services[5].collect(key_of(b"channel epoch 1", TODAY - 1))).envelopes == ()
    stats = sender.statistics()
    assert stats["client"]["placed_copies"] == 3 * 7


async def test_refusals_are_typed(start_node: StartNode, host: Host) -> None:
    a, b, c = await network(start_node, 3)
    settings = MailboxSettings(key_envelopes=2, uploader_bytes=4 * 512, store_rate=1e-6,
                               store_burst=8, fetch_rate=1e-6, fetch_burst=2)
    holder = await host.attach(a, settings=settings)
    up1, up2 = await host.attach(b), await host.attach(c)
    hp = a.node.peer_id
    k1, k2, k3 = key_of(b"k1"), key_of(b"k2"), key_of(b"k3")

    assert await up1.store(hp, k1, envelope()) == Status.OK
    assert await up1.store(hp, k1, envelope()) == Status.OK
    assert await up1.store(hp, k1, envelope()) == Status.KEY_FULL
    assert await up1.store(hp, k2, envelope()) == Status.OK
    assert await up1.store(hp, k2, envelope()) == Status.OK
    # One uploader cannot take more than its share; another still can.
    assert await up1.store(hp, k3, envelope()) == Status.UPLOADER_FULL
    assert await up2.store(hp, k3, envelope()) == Status.OK
    assert await up1.store(hp, k3, b"\x01" * 100) == Status.BAD_SIZE
    assert await up1.store(hp, k3, envelope(), day=TODAY - 3) == Status.EXPIRED
    # Eight requests used up1's burst (the refused ones count too).
    assert await up1.store(hp, k3, envelope()) == Status.RATE_LIMITED
    assert await up2.store(hp, k3, envelope()) == Status.OK

    await up2.fetch(hp, k1)
    await up2.fetch(hp, k1)
    with pytest.raises(MailboxRefused) as refused:
        await up2.fetch(hp, k1)
    assert refused.value.status == Status.RATE_LIMITED
    stats = holder.statistics()["holder"]
    assert stats["refused_key_full"] == 1 and stats["refused_rate_limited"] == 1
    assert (await holder.usage()).envelopes == 6


async def test_a_holder_without_a_link_is_dialled_from_its_record(
    start_node: StartNode, host: Host
) -> None:
    boot = await start_node(host="127.0.0.1")
    other = await start_node(host="127.0.0.2", bootstrap=(boot.addr,))
    # A and B want one link each; boot and the other node dial them (full mesh), so they
    # never need to dial anyone themselves once those links are up.
    a = await start_node(host="127.0.0.3", bootstrap=(boot.addr,), target_degree=1,
                         full_mesh_below=0)
    b = await start_node(host="127.0.0.4", bootstrap=(boot.addr,), target_degree=1,
                         full_mesh_below=0)
    pids = {r.node.peer_id for r in (boot, other)}
    await wait_for(lambda: pids <= a.peers() and pids <= b.peers(), timeout=20)
    await wait_for(lambda: a.node.is_ready() and b.node.is_ready(), timeout=20)
    await a.node.disconnect(b.node.peer_id)
    await b.node.disconnect(a.node.peer_id)
    await wait_for(lambda: b.node.peer_id not in a.peers() and a.node.peer_id not in b.peers())

    client = await host.attach(a)
    await host.attach(b)
    key = key_of(b"dial")
    env = envelope()
    assert await client.store(b.node.peer_id, key, env) == Status.OK
    assert client.counters["dials"] == 1
    assert b.node.peer_id in a.peers()
    assert (await client.fetch(b.node.peer_id, key)).items == ((1, env),)

    # A peer with no record cannot be reached; one that runs no mailbox does not answer.
    with pytest.raises(MailboxUnreachable):
        await client.store(Identity.generate().peer_id, key, env)
    quiet = await host.attach(other, request_timeout_s=0.5)
    assert boot.node.mailboxes is not None
    boot.node.mailboxes.stop()  # boot runs no mailbox now: sp/mbx/1 goes unanswered
    with pytest.raises(MailboxTimeout):
        await quiet.store(boot.node.peer_id, key, env)
    assert boot.node.dispatcher.unknown_protocol >= 1


async def test_a_holder_keeps_its_envelopes_across_a_restart(
    start_node: StartNode, host: Host, tmp_path: Path
) -> None:
    boot = await start_node(host="127.0.0.1")
    client_node = await start_node(host="127.0.0.2", bootstrap=(boot.addr,))
    identity = Identity.generate()
    db = tmp_path / "holder.db"
    storage = await SqliteStorage.open(db)
    h = await start_node(host="127.0.0.3", identity=identity, storage=storage,
                         bootstrap=(boot.addr,))
    port = h.addr.port
    await wait_for(lambda: all(r.node.is_ready() for r in (boot, client_node, h)), timeout=20)
    client = await host.attach(client_node)
    svc = await host.attach(h)
    hp = identity.peer_id
    key = key_of(b"restart")
    sent = [envelope() for _ in range(3)]
    for env in sent:
        assert await client.store(hp, key, env) == Status.OK

    await host.detach(svc)
    await h.shutdown()
    await storage.close()
    storage = await SqliteStorage.open(db)
    try:
        h2 = await start_node(host="127.0.0.3", identity=identity, storage=storage, port=port,
                              bootstrap=(boot.addr,))
        await wait_for(lambda: h2.node.is_ready(), timeout=20)
        await host.attach(h2)
        batch = await client.fetch(hp, key)
        assert [env for _, env in batch.items] == sent
        assert await client.store(hp, key, sent[1]) == Status.DUPLICATE
        assert await client.store(hp, key, envelope()) == Status.OK
        assert [s for s, _ in (await client.fetch(hp, key, 3)).items] == [4]
        await h2.shutdown()
    finally:
        await storage.close()


def peer_id_forms(peer: PeerId) -> list[bytes]:
    """Every way a PeerId could sit in a file: binary, its key alone, text (UTF-8 and the
    UTF-16 SQLite may use for text), hex."""
    text = peer.to_string()
    return [peer.binary, peer.public_key_bytes, text.encode(), text.encode("utf-16-le"),
            peer.binary.hex().encode()]


def file_bytes(db: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists()}


async def test_a_holders_disk_names_no_uploader_and_its_quotas_survive_a_restart(
    start_node: StartNode, host: Host, tmp_path: Path
) -> None:
    identity = Identity.generate()
    db = tmp_path / "holder.db"
    storage = await SqliteStorage.open(db)
    settings = MailboxSettings(uploader_envelopes=3)
    h = await start_node(identity=identity, storage=storage)
    svc = await host.attach(h, settings=settings)
    uploaders = [Identity.generate().peer_id for _ in range(4)]
    keys = [key_of(b"seized a"), key_of(b"seized b")]
    sent = [(p, Store(10 * i + j, keys[j % 2], TODAY, envelope()))
            for i, p in enumerate(uploaders) for j in range(3)]
    replies = await svc.serve_stores(sent)
    assert [r.status for r in replies] == [Status.OK] * 12

    def assert_no_uploader_in(files: dict[str, bytes]) -> None:
        # What was stored is there (so the scan reads the right bytes)...
        assert any(sent[0][1].envelope in data for data in files.values())
        # ...and no uploader's PeerId, in any form, in any file.
        found = [(name, str(peer)) for name, data in files.items() for peer in uploaders
                 if any(form in data for form in peer_id_forms(peer))]
        assert found == []

    files = file_bytes(db)
    assert len(files.get("holder.db-wal", b"")) > 0  # the stores are in the WAL for now
    assert_no_uploader_in(files)
    async with storage._lock:
        busy, frames, done = (await storage._run("PRAGMA wal_checkpoint(FULL)"))[0]
    assert busy == 0 and frames == done > 0
    assert_no_uploader_in(file_bytes(db))
    # The tables name each uploader by its pseudonym under the secret kept in meta.
    secret = await storage.mailbox_store().holder_secret(bytes(32))
    rows = await storage._run("SELECT DISTINCT uploader FROM mailbox_uploaders")
    assert {bytes(r[0]) for r in rows} == {uploader_pseudonym(secret, p) for p in uploaders}

    await host.detach(svc)
    await h.shutdown()
    await storage.close()
    assert_no_uploader_in(file_bytes(db))
    storage = await SqliteStorage.open(db)
    try:
        h2 = await start_node(identity=identity, storage=storage)
        svc2 = await host.attach(h2, settings=settings)
        # The same uploaders are the same rows after the restart: each one's quota is used.
        late = [(p, Store(100 + i, keys[0], TODAY, envelope())) for i, p in enumerate(uploaders)]
        newcomer = (Identity.generate().peer_id, Store(200, keys[0], TODAY, envelope()))
        replies = await svc2.serve_stores([*late, newcomer])
        assert [r.status for r in replies] == [Status.UPLOADER_FULL] * 4 + [Status.OK]
        await h2.shutdown()
    finally:
        await storage.close()


async def test_bad_payloads_and_stray_replies_are_counted(start_node: StartNode,
                                                          host: Host) -> None:
    a, b = await network(start_node, 2)
    svc_a = await host.attach(a)
    await host.attach(b)
    await wait_for(lambda: a.node.peer_id in b.peers(), timeout=20)
    before = a.node.dispatcher.bad_payload[PROTOCOL]
    await b.node.send(a.node.peer_id, PROTOCOL, b"\x01\x09junk")
    await wait_for(lambda: a.node.dispatcher.bad_payload[PROTOCOL] == before + 1)
    # A STORED nobody asked for.
    await b.node.send(a.node.peer_id, PROTOCOL, bytes.fromhex("0102") + bytes(8) + b"\x00"
                      + (1).to_bytes(8, "big"))
    await wait_for(lambda: svc_a.counters["unexpected_replies"] == 1)


async def test_calls_fail_fast_after_stop(start_node: StartNode, host: Host) -> None:
    (a,) = await network(start_node, 1)
    svc = await host.attach(a)
    key = key_of(b"self")
    env = envelope()
    # A node alone has no holder but itself, and never places at itself...
    assert await svc.place(key, env) == []
    assert (await svc.collect(key)).envelopes == ()
    # ...though a request to itself is served locally.
    assert await svc.store(a.node.peer_id, key, env) == Status.OK
    assert [e for _, e in (await svc.fetch(a.node.peer_id, key)).items] == [env]
    await host.detach(svc)
    with pytest.raises(MailboxStopped):
        await svc.store(a.node.peer_id, key, env)


async def test_a_holder_that_breaks_the_protocol_raises_the_wire_error(
    start_node: StartNode, host: Host
) -> None:
    a, evil = await network(start_node, 2)
    await wait_for(lambda: a.node.peer_id in evil.peers(), timeout=20)
    client = await host.attach(a)
    replies = iter([
        lambda f: Batch(f.request_id, Status.OK, ((f.cursor, envelope()),), f.cursor, False),
        lambda f: Batch(f.request_id, Status.OK, ((f.cursor + 1, b"\x01" * 100),),
                        f.cursor + 1, False),
        lambda f: Stored(f.request_id, Status.OK, 1),
    ])

    async def lie(peer: PeerId, payload: bytes) -> None:
        request = decode_mailbox(payload)
        assert isinstance(request, Fetch)
        await evil.node.send(peer, PROTOCOL, next(replies)(request).encode())

    assert evil.node.mailboxes is not None
    evil.node.mailboxes.stop()
    evil.node.register_protocol(PROTOCOL, lie)
    for _ in range(3):
        with pytest.raises(MailboxWireError):
            await client.fetch(evil.node.peer_id, key_of(b"lies"), 5)


async def test_the_sweep_deletes_what_expired(start_node: StartNode, host: Host) -> None:
    (a,) = await network(start_node, 1)
    clock = [time.time()]
    svc = await host.attach(a, wall=lambda: clock[0])
    key = key_of(b"sweep")
    assert await svc.store(a.node.peer_id, key, envelope()) == Status.OK
    assert await svc.sweep() == 0
    clock[0] += 15 * 86400  # past the end of day + 14 days
    assert (await svc.fetch(a.node.peer_id, key)).items == ()  # expired: never served again
    assert await svc.sweep() == 1
    assert (await svc.usage()).envelopes == 0


async def test_concurrent_stores_are_all_acknowledged_once(start_node: StartNode,
                                                           host: Host) -> None:
    a, b, c = await network(start_node, 3)
    holder = await host.attach(a)
    up1, up2 = await host.attach(b), await host.attach(c)
    key = key_of(b"busy")
    sent = [envelope() for _ in range(120)]
    statuses = await asyncio.gather(
        *(up.store(a.node.peer_id, key, env) for env in sent for up in (up1, up2)))
    assert statuses.count(Status.OK) == 120 and statuses.count(Status.DUPLICATE) == 120
    page = await a.node.storage.mailbox_store().fetch(key, 0, 1000, 1 << 26, time.time())
    assert [s for s, _ in page.items] == list(range(1, 121))
    assert sorted(env for _, env in page.items) == sorted(sent)
    assert holder.statistics()["holder"]["stored"] == 120


async def test_serve_stores_answers_in_order_with_one_append(start_node: StartNode,
                                                             host: Host) -> None:
    (a,) = await network(start_node, 1)
    svc = await host.attach(a, settings=MailboxSettings(key_envelopes=2))
    p1, p2 = Identity.generate().peer_id, Identity.generate().peer_id
    key = key_of(b"order")
    e1, e2, e3 = envelope(), envelope(), envelope()
    replies = await svc.serve_stores([
        (p1, Store(1, key, TODAY, e1)), (p2, Store(2, key, TODAY, e1)),
        (p1, Store(3, key, TODAY, b"\x01" * 7)), (p2, Store(4, key, TODAY, e2)),
        (p1, Store(5, key, TODAY, e3)),
    ])
    assert replies == [Stored(1, Status.OK, 1), Stored(2, Status.DUPLICATE, 1),
                       Stored(3, Status.BAD_SIZE, 0), Stored(4, Status.OK, 2),
                       Stored(5, Status.KEY_FULL, 0)]


async def test_stores_are_unavailable_while_the_holder_secret_cannot_be_read(
    start_node: StartNode, host: Host
) -> None:
    (a,) = await network(start_node, 1)
    broken = MemoryStorage()
    await broken.close()  # every call on its tables now raises StorageError
    svc = await host.attach(a, store=broken.mailbox_store())
    key = key_of(b"no secret")
    replies = await svc.serve_stores([(Identity.generate().peer_id, Store(1, key, TODAY,
                                                                           envelope()))])
    assert replies == [Stored(1, Status.UNAVAILABLE, 0)]
    assert svc.statistics()["holder"] == {"refused_unavailable": 1}
