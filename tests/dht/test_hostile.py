"""Each hostile case from issue 3, played by a peer against a real node.

Cases that depend on how many datagrams arrive or on how long something takes run on the
in-memory network with virtual time (:mod:`tests.dht.memnet`) or call the datagram handler
directly with a fake clock, so nothing depends on the kernel's socket buffers or the CPU's
speed. The rest use real UDP sockets on 127.0.0.x, request by request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import umsgpack

from dht.config import DhtConfig
from dht.protocol import DhtProtocol
from dht.records import PeerRecord, record_key
from dht.routing import Contact
from dht.service import DhtService
from dht.storage import RecordStorage, StorageLimits
from node.core import cbor
from node.core.identity import Identity, node_id_for
from tests.dht.helpers import FAST, RecordingTransport, boot_of, make_node, wait_for
from tests.dht.hostile import hostile
from tests.dht.memnet import BASE_UNIX, MemNet, run_virtual, unix_clock


@pytest.fixture
def loop_errors() -> list[dict[str, Any]]:
    """Everything that reaches the event loop's exception handler (must stay empty): this is
    where upstream's "Task exception was never retrieved" would land."""
    return []


@pytest.fixture
async def victim(loop_errors: list[dict[str, Any]]) -> AsyncIterator[DhtService]:
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    node = make_node(40)
    await node.start()
    yield node
    await node.stop()
    assert loop_errors == []


def run_hostile(main: Callable[[MemNet], Coroutine[Any, Any, None]]) -> None:
    """Run ``main(net)`` on the in-memory network in virtual time; nothing may reach the
    loop's exception handler."""
    errors: list[dict[str, Any]] = []

    async def go() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        await main(MemNet())

    run_virtual(go)
    assert errors == []


def mem_node(net: MemNet, i: int, config: DhtConfig = FAST, host: str | None = None) -> DhtService:
    return make_node(i, config, host=host, endpoint_factory=net.endpoint, clock=unix_clock)


async def assert_still_serves(node: DhtService, net: MemNet | None = None) -> None:
    """An honest peer (a fresh node) can still join through ``node`` and resolve it."""
    honest = make_node(41) if net is None else mem_node(net, 41)
    await honest.start([boot_of(node)])
    try:
        await wait_for(lambda: honest.is_ready)
        await node.publish()
        rec = await honest.resolve(node.peer_id)
        assert rec is not None and rec.peer_id == node.peer_id
    finally:
        await honest.stop()
    assert not node.protocol.transport.is_closing()


def req(name: Any, args: Any) -> bytes:
    return b"\x00" + os.urandom(20) + bytes(umsgpack.packb([name, args]))


async def test_malformed_datagrams_are_dropped_and_counted(victim: DhtService) -> None:
    # Each datagram goes straight into the handler (no socket in between), one at a time, so
    # we know exactly which reason each one is counted under and that none was answered.
    evil = await hostile("127.0.0.60")
    nid = os.urandom(20)
    deep: Any = nid
    for _ in range(200):
        deep = [deep]
    cases = [
        (b"\x00" + os.urandom(20) + b"\xc1", "bad_msgpack"),
        (b"\x00abc", "too_short"),
        (b"\x07" + os.urandom(20) + umsgpack.packb(["ping", [nid]]), "bad_kind"),
        (req("ping", []), "bad_arity"),
        (req("ping", [b"\x01" * 200]), "bad_node_id"),
        (req("ping", [deep]), "too_deep"),
        (b"\x00" + os.urandom(20) + umsgpack.packb(["ping", [b"x" * 3000]]), "oversized"),
        (req("stun", [nid]), "unknown_rpc"),
        (req("ping", [12345]), "bad_node_id"),  # non-bytes id
        (req("ping", ["text-id"]), "bad_node_id"),
        (req("find_node", [nid, b"short-key"]), "bad_key"),
        (req("ping", "notalist"), "bad_arity"),
        (umsgpack.packb(["ping", [nid]]), "bad_kind"),  # no header at all
        (b"\x00" + os.urandom(20) + umsgpack.packb(["ping", [nid]]) + b"trailing", "bad_msgpack"),
    ]
    proto = victim.protocol
    for data, reason in cases:
        drops_before = sum(proto.drops.values())
        before = proto.drops[reason]
        sent = proto.counters["datagrams_out"]
        proto.datagram_received(data, evil.address)
        assert proto.drops[reason] == before + 1, reason
        assert sum(proto.drops.values()) == drops_before + 1, reason
        assert proto.counters["datagrams_out"] == sent, reason  # nothing malformed is answered
    assert proto.counters["datagrams_in"] >= len(cases)
    evil.close()
    await assert_still_serves(victim)


async def test_bad_contacts_in_find_node_reply_never_reach_sendto(victim: DhtService) -> None:
    evil = await hostile("127.0.0.61")
    evil.answers["find_node"] = [
        [os.urandom(20), "127.0.0.1", 70000],
        [os.urandom(20), "127.0.0.1", 0],
        [os.urandom(20), "127.0.0.1", -1],
        [os.urandom(20), "999.1.1.1", 4000],
        [os.urandom(20), "0.0.0.0", 4000],
        [os.urandom(20), "224.0.0.1", 4000],
        [os.urandom(20), "::1", 4000],  # wrong family for an IPv4 socket
        [os.urandom(20), "localhost", 4000],
        [os.urandom(5), "127.0.0.1", 4000],
        [os.urandom(20), "127.0.0.1", True],
        "junk",
        [victim.node_id, "127.0.0.1", 4000],  # ourselves
    ]
    # The victim learns about the hostile peer as a bootstrap contact and crawls through it.
    victim._bootstrap = [(*evil.address, evil.identity.peer_id)]
    assert await victim._join_once()
    assert victim.protocol.drops["bad_contact"] == 12
    assert victim.protocol.drops.get("send_error", 0) == 0
    assert not victim.protocol.transport.is_closing()
    evil.close()
    await assert_still_serves(victim)


async def test_unauthenticated_or_oversized_values_refused(victim: DhtService) -> None:
    evil = await hostile("127.0.0.62")
    owner = Identity.generate()
    good = PeerRecord.create(
        owner,
        noise_static_key=b"\x01" * 32,
        envelope_key=b"\x02" * 32,
        addrs=["/ip4/127.0.0.9/tcp/1"],
        seq=5,
        expires_at=int(time.time()) + 600,
    )
    key = good.key
    fields = cbor.decode(good.body)
    fields["seq"] = 6  # changed after signing
    forged_bytes = cbor.encode([1, cbor.encode(fields), good.signature])
    mallory = Identity.generate()
    other_key = PeerRecord.create(
        mallory,
        noise_static_key=b"\x01" * 32,
        envelope_key=b"\x02" * 32,
        addrs=[],
        seq=99,
        expires_at=int(time.time()) + 600,
    )
    nid = evil.node_id
    assert await evil.call("store", [nid, key, good.encode()], victim.address) is True
    assert await evil.call("store", [nid, key, b"x" * 1000], victim.address) is False
    assert await evil.call("store", [nid, key, [1, 2, 3]], victim.address) is False
    assert await evil.call("store", [nid, key, forged_bytes], victim.address) is False
    assert await evil.call("store", [nid, key, other_key.encode()], victim.address) is False
    old = PeerRecord.create(
        owner,
        noise_static_key=b"\x01" * 32,
        envelope_key=b"\x02" * 32,
        addrs=["/ip4/127.0.0.9/tcp/666"],
        seq=4,
        expires_at=int(time.time()) + 600,
    )
    assert await evil.call("store", [nid, key, old.encode()], victim.address) is False
    evil.send_raw(req("store", [nid, key, b"x" * 60_000])[:1400], victim.address)
    evil.send_raw(
        b"\x00" + os.urandom(20) + umsgpack.packb(["store", [nid, key, b"x" * 60_000]]),
        victim.address,
    )
    await wait_for(lambda: victim.protocol.drops["oversized"] >= 1)
    got = victim.storage.get_verified(key)
    assert got is not None and got.seq == 5 and got.addrs == ("/ip4/127.0.0.9/tcp/1",)
    drops = victim.statistics()["drops"]
    assert drops["store_malformed"] == 2
    assert drops["store_invalid"] == 1
    assert drops["store_wrong_key"] == 1
    assert drops["store_replayed_seq"] == 1
    evil.close()


async def test_forged_find_value_answer_does_not_poison_resolve(victim: DhtService) -> None:
    # Mallory answers every FIND_VALUE for the victim's key with a record signed by herself.
    await victim.publish()
    evil = await hostile("127.0.0.63")
    mallory = evil.identity
    forged = PeerRecord.create(
        mallory,
        noise_static_key=b"\x66" * 32,
        envelope_key=b"\x66" * 32,
        addrs=["/ip4/6.6.6.6/tcp/666"],
        seq=2**63,
        expires_at=int(time.time()) + 600,
    )
    evil.answers["find_value"] = {"value": forged.encode()}
    evil.answers["find_node"] = []
    asker = make_node(42)
    await asker.start([boot_of(victim), (*evil.address, mallory.peer_id)])
    try:
        await wait_for(lambda: asker.is_ready)
        rec = await asker.resolve(victim.peer_id)
        assert rec is not None and rec.peer_id == victim.peer_id
        assert rec.addrs == tuple(victim._addrs_provider())
        # Both contacts are asked in the first round: Mallory was asked and ignored.
        assert any(n == "find_value" for n, _ in evil.received)
        assert asker.protocol.drops["bad_value"] >= 1
    finally:
        await asker.stop()
        evil.close()


def test_unproven_ids_never_enter_routing_table_eclipse() -> None:
    # 200 pings with chosen ids (all next to a target key) from a peer that cannot prove them.
    async def main(net: MemNet) -> None:
        victim = mem_node(net, 40)
        await victim.start()
        evil = await net.hostile("127.0.0.64")
        target = record_key(Identity.generate().peer_id)
        base = int.from_bytes(target, "big")
        for i in range(200):
            chosen = (base ^ (i + 1)).to_bytes(20, "big")
            evil.send_raw(req("ping", [chosen]), victim.address)
        proto = victim.protocol
        await wait_for(lambda: proto.counters["rpc_in_ping"] == 200 and not proto._tasks)
        # One challenge for the whole burst; its answer proves another id, so no chosen id
        # gets in (and neither does the prover: it never claimed its own id).
        assert [n for n, _ in evil.received] == ["identify"]
        assert proto.drops["node_id_mismatch"] == 1
        ids = {c.id for c in proto.router.contacts()}
        assert not any((int.from_bytes(i, "big") ^ base) <= 200 for i in ids)
        assert ids == set()
        evil.close()
        await assert_still_serves(victim, net)
        await victim.stop()

    run_hostile(main)


def test_one_address_holds_a_bounded_number_of_slots() -> None:
    # Twelve real identities on one public address, each able to prove its key; slots per
    # address are limited (FAST: 4 per /32 in the table, 2 per bucket). Once the address is
    # at its limit the victim does not even challenge further identities from it.
    async def main(net: MemNet) -> None:
        victim = mem_node(net, 40, host="203.0.113.40")
        await victim.start()
        evils = [await net.hostile("198.51.100.65") for _ in range(12)]
        for e in evils:
            await e.call("ping", [e.node_id], victim.address)
        proto = victim.protocol
        await wait_for(lambda: proto.counters["rpc_in_ping"] == 12 and not proto._tasks)
        on_addr = [c for c in proto.router.contacts() if c.ip == "198.51.100.65"]
        assert 1 <= len(on_addr) <= FAST.max_per_subnet_table
        refused = proto.router.rejected["subnet_limit"]
        skipped = proto.counters["identify_skipped"]
        assert refused + skipped >= 12 - FAST.max_per_subnet_table
        assert proto.counters["identified"] + skipped == 12
        assert len(on_addr) + refused + skipped == 12
        for e in evils:
            e.close()
        await victim.stop()

    run_hostile(main)


async def test_store_flood_from_one_source_is_bounded() -> None:
    # The limiter is driven directly: every datagram goes into the handler at a time we set,
    # so exactly the burst passes, then exactly rate x elapsed.
    now = [0.0]
    config = DhtConfig(**{**FAST.__dict__, "storage": StorageLimits(max_per_source=16)})
    storage = RecordStorage(lambda: BASE_UNIX, config.storage)
    proto = DhtProtocol(
        Identity.generate(), storage, config, clock=lambda: BASE_UNIX, monotonic=lambda: now[0]
    )
    transport = RecordingTransport(("127.0.0.43", 4000))
    proto.connection_made(transport)  # type: ignore[arg-type]
    evil_addr = ("127.0.0.66", 5000)
    evil_id = os.urandom(20)

    def store(i: int) -> bytes:
        rec = PeerRecord.create(
            Identity.from_seed(i.to_bytes(32, "big")),
            noise_static_key=b"\x01" * 32,
            envelope_key=b"\x02" * 32,
            addrs=[],
            seq=1,
            expires_at=int(BASE_UNIX) + 600,
        )
        return req("store", [evil_id, rec.key, rec.encode()])

    def answered_to(addr: tuple[str, int]) -> int:
        return sum(1 for data, to in transport.sent if to == addr and data[0] == 1)

    try:
        burst = int(config.burst_per_source)
        for i in range(2000):
            proto.datagram_received(store(i), evil_addr)
        assert proto.drops["rate_limited"] == 2000 - burst
        assert storage.statistics()["records"] == 16  # the per-source quota
        assert storage.drops["source_quota"] == burst - 16
        assert answered_to(evil_addr) == burst  # every STORE let through got its answer
        # Another source is served in the middle of the flood.
        other = ("127.0.0.67", 5000)
        proto.datagram_received(req("ping", [os.urandom(20)]), other)
        assert answered_to(other) == 1
        # One second later the flooder has rate_per_source tokens again, and no more.
        now[0] += 1.0
        for i in range(2000, 2300):
            proto.datagram_received(store(i), evil_addr)
        assert proto.drops["rate_limited"] == 2000 - burst + 300 - int(config.rate_per_source)
        assert storage.statistics()["records"] == 16
        assert not proto.transport.is_closing()
    finally:
        await proto.close()


async def test_reply_to_unvalidated_source_is_bounded(victim: DhtService) -> None:
    # Fill the table with proven-looking contacts so a full FIND_NODE reply would be large.
    for i in range(30):
        ident = Identity.generate()
        victim.protocol.router.add_contact(
            Contact(node_id_for(ident.public_key_bytes), f"198.51.100.{i + 1}", 4000, ident.peer_id)
        )
    assert len(victim.protocol.router.contacts()) >= 8
    evil = await hostile("127.0.0.67")
    small = evil.request("find_node", [os.urandom(20), os.urandom(20)], victim.address)
    await wait_for(lambda: len(evil.responses) == 1)
    reply = evil.responses[0][1]
    assert reply <= 3 * len(small)
    # A padded request (what honest nodes send before the peer validated them) gets more.
    big = evil.request("find_node", [os.urandom(20), os.urandom(20), bytes(400)], victim.address)
    await wait_for(lambda: len(evil.responses) == 2)
    assert 3 * len(small) < evil.responses[1][1] <= 3 * len(big)
    assert victim.protocol.counters["reply_truncated"] >= 1
    evil.close()


def test_lost_replies_do_not_evict_and_dead_contacts_do_not_stall() -> None:
    config = DhtConfig(**{**FAST.__dict__, "max_timeout": 5.0, "initial_timeout": 1.0})

    async def main(net: MemNet) -> None:
        loop = asyncio.get_running_loop()
        boot = mem_node(net, 44, config)
        await boot.start()
        nodes = [mem_node(net, 70 + i, config) for i in range(7)]
        try:
            for n in nodes:
                await n.start([boot_of(boot)])
            await wait_for(lambda: all(n.is_ready for n in nodes))
            for n in nodes:
                await n.publish()
            asker = nodes[0]
            # One missed reply is not an eviction.
            c = asker.protocol.contacts()[0]
            asker.protocol.router.record_failure(c)
            assert c.id in {x.id for x in asker.protocol.router.contacts()}
            # Kill three nodes; lookups must not wait out 5 s per dead contact.
            for dead in nodes[4:]:
                await dead.stop()
            start = loop.time()  # virtual seconds: independent of the machine's speed
            for target in nodes[1:4]:
                rec = await asker.resolve(target.peer_id)
                assert rec is not None
            for dead in nodes[4:]:
                await asker.resolve(dead.peer_id)  # still stored on live nodes, or None
            # Six lookups, some through dead contacts, take less than one maximum timeout.
            assert loop.time() - start < config.max_timeout
            assert asker.protocol.rtt.timeout(boot.address) < 0.5
            # publish() with every neighbour dead returns 0 instead of raising (upstream:
            # max([])).
            for n in [boot, *nodes[1:4]]:
                await n.stop()
            assert await asker.publish() == 0
        finally:
            for n in [boot, *nodes]:
                await n.stop()

    run_hostile(main)


async def test_values_are_not_logged(victim: DhtService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    evil = await hostile("127.0.0.68")
    rec = PeerRecord.create(
        evil.identity,
        noise_static_key=b"\x01" * 32,
        envelope_key=b"\x02" * 32,
        addrs=["/ip4/127.0.0.68/tcp/1"],
        seq=1,
        expires_at=int(time.time()) + 600,
    )
    assert await evil.call("store", [evil.node_id, rec.key, rec.encode()], victim.address) is True
    text = caplog.text
    assert rec.encode().hex() not in text and repr(rec.encode())[:40] not in text
    evil.close()


async def test_default_bind_is_loopback() -> None:
    svc = DhtService(
        Identity.generate(),
        noise_static_key=bytes(32),
        envelope_key=bytes(32),
        addrs_provider=list,
    )
    await svc.start()
    try:
        assert svc.address[0] == "127.0.0.1"
    finally:
        await svc.stop()


def test_lookup_rounds_are_capped_against_endless_fake_contacts() -> None:
    # Mallory answers every FIND_NODE with fresh, ever closer contacts that do not exist.
    config = DhtConfig(**{**FAST.__dict__, "max_lookup_rounds": 3, "max_timeout": 0.2})

    async def main(net: MemNet) -> None:
        loop = asyncio.get_running_loop()
        node = mem_node(net, 45, config)
        await node.start()
        evil = await net.hostile("127.0.0.69")
        port = [20000]

        def fresh(args: list[Any]) -> list[Any]:
            key = int.from_bytes(args[1], "big")
            out = []
            for i in range(3):
                port[0] += 1
                nid = (key ^ (port[0] % 7 + i + 1)).to_bytes(20, "big")
                out.append([nid, "127.0.0.70", port[0]])
            return out

        evil.answers["find_node"] = fresh
        try:
            node._bootstrap = [(*evil.address, evil.identity.peer_id)]
            start = loop.time()
            assert await node._join_once()
            # Three rounds of (at most) a few timeouts of 0.2 s each, in virtual seconds.
            assert loop.time() - start < 3.0
            assert node.statistics()["lookups"]["mean_rounds"] <= 3
            assert sum(1 for n, _ in evil.received if n == "find_node") <= 3
        finally:
            evil.close()
            await node.stop()

    run_hostile(main)
