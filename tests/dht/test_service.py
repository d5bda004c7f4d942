from __future__ import annotations

import asyncio

from dht.config import DhtConfig
from dht.persistence import MemoryDhtStore
from dht.records import record_key
from dht.service import DhtService
from node.core.identity import Identity
from tests.dht.helpers import FAST, boot_of, make_node, wait_for
from tests.dht.memnet import MemNet, run_virtual, unix_clock


async def test_ten_nodes_bootstrap_through_one_and_resolve_everyone() -> None:
    boot = make_node(2)
    await boot.start()
    assert boot.is_ready  # no bootstrap list: it is a bootstrap node
    nodes = [make_node(10 + i) for i in range(9)]
    try:
        for n in nodes:
            await n.start([boot_of(boot)])
        everyone = [boot, *nodes]
        await wait_for(lambda: all(n.is_ready for n in everyone))
        await wait_for(lambda: all(n.counters["publishes"] >= 1 for n in everyone))
        for n in everyone:
            await n.publish()
        for asker in everyone:
            for target in everyone:
                rec = await asker.resolve(target.peer_id)
                assert rec is not None, (asker.peer_id, target.peer_id)
                assert rec.peer_id == target.peer_id
                assert rec.addrs == tuple(target._addrs_provider())
        # Discovery: routing-table reads and random walks only name proven peers.
        all_ids = {n.peer_id for n in everyone}
        for n in everyone:
            known = set(n.known_peers())
            assert known and known <= all_ids - {n.peer_id}
            walked = set(await n.random_walk())
            assert walked <= all_ids - {n.peer_id}
        stats = nodes[0].statistics()
        assert stats["ready"] and stats["contacts"] >= 1
        assert stats["lookups"]["found"] >= 10
        assert stats["node_id"] == nodes[0].node_id.hex()
        assert sum(stats["buckets"]) == stats["contacts"]
        # The bootstrap node dies: the rest still resolve each other, and a newcomer that
        # knows only a non-bootstrap node joins and resolves everyone alive.
        await boot.stop()
        for n in nodes:
            await n.publish()
        late = make_node(30)
        nodes.append(late)
        await late.start([boot_of(nodes[3])])
        await wait_for(lambda: late.is_ready)
        # Its own publish (started when it became ready) may still be in flight: publish
        # explicitly rather than race it.
        assert await late.publish() >= 1
        for target in nodes[:-1]:
            rec = await late.resolve(target.peer_id)
            assert rec is not None and rec.peer_id == target.peer_id
        rec = await nodes[0].resolve(late.peer_id)
        assert rec is not None
    finally:
        for n in [*nodes, boot]:
            await n.stop()


async def test_bootstrap_by_dns_name() -> None:
    boot = make_node(1)  # 127.0.0.1, which "localhost" resolves to
    await boot.start()
    joiner = make_node(27)
    try:
        await joiner.start([("localhost", boot.address[1], boot.peer_id)])
        await wait_for(lambda: joiner.is_ready)
        assert boot.peer_id in joiner.known_peers()
    finally:
        await joiner.stop()
        await boot.stop()


async def test_republish_on_address_change_increments_seq() -> None:
    boot = make_node(3)
    await boot.start()
    addrs = ["/ip4/127.0.0.21/tcp/4001"]
    node = make_node(21, addrs=lambda: list(addrs))
    other = make_node(22)
    try:
        await node.start([boot_of(boot)])
        await other.start([boot_of(boot)])
        await wait_for(lambda: node.is_ready and other.is_ready)
        await wait_for(lambda: node.counters["publishes"] >= 1)
        first = await other.resolve(node.peer_id)
        assert first is not None and first.addrs == ("/ip4/127.0.0.21/tcp/4001",)
        addrs[0] = "/ip4/127.0.0.21/tcp/4002"
        await wait_for(lambda: node.counters["publishes"] >= 2)
        second = await other.resolve(node.peer_id)
        assert second is not None and second.addrs == ("/ip4/127.0.0.21/tcp/4002",)
        assert second.seq > first.seq
    finally:
        for n in (node, other, boot):
            await n.stop()


async def test_bootstrap_retries_until_bootstrap_node_is_up() -> None:
    ident = Identity.generate()
    probe = make_node(4, identity=ident)
    await probe.start()
    host, port = probe.address
    await probe.stop()  # free the port, keep the identity: the node is "down" for now
    joiner = make_node(23)
    try:
        await joiner.start([(host, port, ident.peer_id)])
        await wait_for(lambda: joiner.counters["bootstrap_failures"] >= 2)
        assert not joiner.is_ready
        late = make_node(4, identity=ident, port=port)
        await late.start()
        try:
            await wait_for(lambda: joiner.is_ready)
            assert ident.peer_id in joiner.known_peers()
        finally:
            await late.stop()
    finally:
        await joiner.stop()


async def test_bootstrap_peer_id_is_enforced() -> None:
    boot = make_node(5)
    await boot.start()
    joiner = make_node(24)
    try:
        host, port = boot.address
        await joiner.start([(host, port, Identity.generate().peer_id)])
        # A finished join attempt that failed (not a guess at how long one takes).
        await wait_for(lambda: joiner.counters["bootstrap_failures"] >= 1)
        assert not joiner.is_ready
        assert joiner.protocol.drops["peer_id_mismatch"] >= 1
        # The node at that address may still enter the table under its *own* proven PeerId
        # (it contacted us back), never under the one the bootstrap address claimed.
        assert set(joiner.known_peers()) <= {boot.peer_id}
    finally:
        await joiner.stop()
        await boot.stop()


async def test_restart_rejoins_from_snapshot_without_bootstrap() -> None:
    boot = make_node(6)
    await boot.start()
    store = MemoryDhtStore()
    ident = Identity.generate()
    a = make_node(25, store=store, identity=ident)
    try:
        await a.start([boot_of(boot)])
        await wait_for(lambda: a.is_ready and a.counters["publishes"] >= 1)
        seq_before = a.statistics()["seq"]
        await a.stop()
        assert [c.peer_id for c in store.contacts] == [boot.peer_id]
        assert store.records  # own record (and any others) saved as bytes, no pickle
        a2 = make_node(25, store=store, identity=ident)
        await a2.start([])  # no bootstrap address given
        try:
            await wait_for(lambda: a2.is_ready)
            assert boot.peer_id in a2.known_peers()
            await wait_for(lambda: a2.counters["publishes"] >= 1)
            assert a2.statistics()["seq"] > seq_before
            rec = await boot.resolve(ident.peer_id)
            assert rec is not None and rec.seq == a2.statistics()["seq"]
        finally:
            await a2.stop()
    finally:
        await boot.stop()


async def test_stop_cancels_everything() -> None:
    boot = make_node(7)
    await boot.start()
    n = make_node(26)
    await n.start([boot_of(boot)])
    await wait_for(lambda: n.is_ready)
    await n.stop()
    await boot.stop()
    assert n.protocol._tasks == set()
    assert n._runner is None
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


def test_record_key_matches_storage_key() -> None:
    ident = Identity.generate()
    assert len(record_key(ident.peer_id)) == 20
    assert FAST.subnet_prefix_v4 == 32


async def test_join_refreshes_sparse_buckets_with_short_lookups() -> None:
    from kademlia.node import Node

    from dht.routing import Contact

    svc = make_node(40)
    router = svc.protocol.router
    me = router.node.long_id
    # Split until our own bucket is a small range, so there are far buckets to refresh.
    while True:
        own = router.get_bucket_for(router.node)
        lo, hi = router.buckets[own].range
        if hi - lo <= 2**150:
            break
        router.split_bucket(own)
    far = [b for b in router.buckets if not b.has_in_range(router.node)]
    full = far[0]
    peer = Identity.generate().peer_id
    for i in range(FAST.ksize):  # one far bucket is already full: nothing to refresh there
        nid = (full.range[0] + i + 1).to_bytes(20, "big")
        assert router.add_contact(Contact(nid, f"127.0.1.{i}", 4000, peer))
    calls: list[tuple[bytes, int | None]] = []

    async def fake_lookup(key: bytes, max_rounds: int | None = None) -> list[Node]:
        calls.append((key, max_rounds))
        return []

    svc._lookup_nodes = fake_lookup  # type: ignore[method-assign]
    await svc._refresh_sparse_buckets()
    refreshed = [b for b in far if b is not full]
    assert len(calls) == len(refreshed) >= 5
    for (key, rounds), bucket in zip(calls, refreshed, strict=True):
        assert bucket.range[0] <= int.from_bytes(key, "big") <= bucket.range[1]
        assert int.from_bytes(key, "big") != me and rounds == FAST.join_refresh_rounds
    assert svc.counters["bucket_refreshes"] == len(refreshed)


def test_random_id_in_stays_inside_upstreams_open_top_bucket() -> None:
    svc = make_node(41)
    top = (2**160 - 2, 2**160)  # upstream's first bucket ends at 2**160, one past the max id
    for _ in range(50):
        assert int.from_bytes(svc.protocol.random_id_in(top), "big") >= 2**160 - 2


def test_a_publish_that_reached_no_one_is_placed_again_once_contacts_appear() -> None:
    # A bootstrap node is ready at once and publishes into an empty table: its record is
    # stored nowhere until it is placed again. That happens on the next maintenance tick
    # after its table grew, not at the next republish half an hour later.
    config = DhtConfig(**{**FAST.__dict__, "addr_check_interval": 1.0})

    async def main() -> None:
        net = MemNet()
        boot = make_node(2, config, endpoint_factory=net.endpoint, clock=unix_clock)
        await boot.start()
        await wait_for(lambda: boot.counters["publishes"] == 1 and not boot.protocol._tasks)
        assert boot._publish_reach == 0
        late = make_node(3, config, endpoint_factory=net.endpoint, clock=unix_clock)
        late._addrs_provider = list  # publishes nothing itself
        await late.start([boot_of(boot)])
        await wait_for(lambda: late.is_ready)
        # Placed again (same record, no new seq) within a maintenance tick or two.
        await wait_for(lambda: boot._publish_reach == 1, timeout=3 * config.addr_check_interval)
        assert boot.counters["record_top_ups"] >= 1 and boot.counters["publishes"] == 1
        assert late.storage.get_verified(record_key(boot.peer_id)) is not None
        top_ups = boot.counters["record_top_ups"]
        await asyncio.sleep(5 * config.addr_check_interval)
        assert boot.counters["record_top_ups"] == top_ups  # the table did not grow: no more
        await late.stop()
        await boot.stop()

    run_virtual(main)


async def test_nodes_on_one_loopback_address_discover_each_other_with_defaults() -> None:
    # Eight processes on 127.0.0.1 with one bootstrap address, default settings: each must
    # end up knowing all seven others. With per-/24 slot limits applied to loopback, a
    # joining node kept only two (max_per_subnet_bucket) of the six it met in a bucket.
    nodes = [
        DhtService(
            Identity.generate(),
            noise_static_key=bytes(32),
            envelope_key=bytes(32),
            addrs_provider=list,
        )
        for _ in range(10)
    ]
    boot, rest = nodes[0], nodes[1:]
    await boot.start()
    try:
        for n in rest:
            await n.start([boot_of(boot)])
        everyone = {n.peer_id for n in nodes}
        await wait_for(
            lambda: all(set(n.known_peers()) == everyone - {n.peer_id} for n in nodes),
            timeout=30,
        )
        assert all(n.address[0] == "127.0.0.1" for n in nodes)
        assert all(n.statistics()["routing"].get("subnet_limit", 0) == 0 for n in nodes)
    finally:
        for n in nodes:
            await n.stop()


def test_a_closer_contact_that_was_not_offered_our_record_calls_for_a_top_up() -> None:
    from dht.routing import Contact

    svc = make_node(42)
    router = svc.protocol.router
    key = record_key(svc.peer_id)
    keyint = int.from_bytes(key, "big")
    peer = Identity.generate().peer_id

    def at(distance: int, i: int) -> Contact:
        return Contact((keyint ^ distance).to_bytes(20, "big"), f"127.0.2.{i}", 4000, peer)

    holders = [at(1000 + i, i) for i in range(FAST.ksize)]
    for c in holders:
        assert router.add_contact(c)
    svc._placed = (key, b"record")
    svc._stored_at = {c.id for c in holders}
    svc._offered = set(svc._stored_at)
    svc._publish_reach = FAST.ksize
    svc._publish_table = len(router.contacts())
    assert not svc._underplaced()
    farther = at(5000, 50)  # farther than every holder: nothing to fix
    assert router.add_contact(farther)
    assert not svc._underplaced()
    closer = at(3, 51)  # closer than the k-th holder and never offered the record
    assert router.add_contact(closer)
    assert svc._underplaced()
    svc._offered.add(closer.id)  # offered (say it refused): not asked again
    assert not svc._underplaced()
