from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from kademlia.node import Node

from dht.config import DhtConfig
from dht.persistence import ContactSnapshot, MemoryDhtStore
from dht.protocol import DhtProtocol
from dht.records import PeerRecord
from dht.routing import Contact
from dht.storage import RecordStorage
from dht.wire import encode_response
from node.core.identity import Identity, node_id_for
from tests.dht.helpers import RecordingTransport
from tests.dht.memnet import run_virtual

CONFIG = DhtConfig(
    ksize=4, subnet_prefix_v4=32, max_per_subnet_bucket=1000, max_per_subnet_table=1000
)
PEER = Identity.from_seed(b"\x0a" * 32).peer_id


def protocol() -> tuple[DhtProtocol, list[tuple[bytes, bytes]]]:
    ident = Identity.from_seed(b"\x07" * 32)
    storage = RecordStorage(time.time, CONFIG.storage)
    proto = DhtProtocol(ident, storage, CONFIG, clock=time.time)
    stores: list[tuple[bytes, bytes]] = []

    async def fake_store(node: Node, key: bytes, value: bytes) -> Any:
        stores.append((node.id, key))
        return (True, True)

    proto.call_store = fake_store  # type: ignore[method-assign,assignment]
    return proto, stores


def record() -> PeerRecord:
    return PeerRecord.create(
        Identity.from_seed(b"\x08" * 32),
        noise_static_key=bytes(32),
        envelope_key=bytes(32),
        addrs=[],
        seq=1,
        expires_at=int(time.time()) + 600,
    )


def at_distance(key: bytes, distance: int, i: int) -> Contact:
    peer = Identity.from_seed(bytes([i + 1]) * 32).peer_id
    nid = (int.from_bytes(key, "big") ^ distance).to_bytes(20, "big")
    return Contact(nid, f"10.0.0.{i + 1}", 4000, peer)


def test_node_id_is_bound_to_the_key() -> None:
    ident = Identity.from_seed(b"\x07" * 32)
    proto, _ = protocol()
    assert proto.node_id == node_id_for(ident.public_key_bytes)
    assert proto.node_id != node_id_for(Identity.from_seed(b"\x09" * 32).public_key_bytes)
    assert len(proto.node_id) == 20


async def test_welcome_if_new_uses_the_stored_key_itself() -> None:
    proto, stores = protocol()
    rec = record()
    assert proto.storage.put(rec.key, rec.encode(), None) == "stored"
    ours = int.from_bytes(proto.node_id, "big") ^ int.from_bytes(rec.key, "big")
    # The table is full of contacts farther from the key than we are.
    for i in range(CONFIG.ksize):
        proto.router.add_contact(at_distance(rec.key, ours + 1 + i, i))
    far = at_distance(rec.key, ours + 100, 10)
    proto.welcome_if_new(far)
    # welcome_if_new decides synchronously; a store would be a protocol job started here.
    assert proto._tasks == set()
    await _settle(proto)
    assert stores == []  # farther than every current neighbour: not its business
    near = at_distance(rec.key, 1, 11)  # right next to the key
    proto.welcome_if_new(near)
    assert len(proto._tasks) == 1
    await _settle(proto)
    assert stores == [(near.id, rec.key)]
    # Unproven nodes (plain kademlia Nodes) are never welcomed into the table.
    plain = Node(b"\x01" * 20, "10.0.0.99", 4000)
    proto.welcome_if_new(plain)
    assert plain.id not in {c.id for c in proto.router.contacts()}


async def test_memory_store_roundtrip() -> None:
    store = MemoryDhtStore()
    peer = Identity.generate().peer_id
    await store.save_contacts([ContactSnapshot(peer, "127.0.0.1", 5)])
    await store.save_records([b"r"])
    assert await store.load_contacts() == [ContactSnapshot(peer, "127.0.0.1", 5)]
    assert await store.load_records() == [b"r"]


async def _settle(proto: DhtProtocol) -> None:
    """Wait for every job the protocol started (they finish without I/O here)."""
    await asyncio.gather(*proto._tasks)
    assert proto._tasks == set()


def test_a_late_answer_to_the_first_transmission_completes_the_request() -> None:
    # Virtual time: the request times out exactly when its RTO is due, whatever the machine.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        config = DhtConfig(ksize=4, initial_timeout=0.5, min_timeout=0.05, max_timeout=5.0)
        proto = DhtProtocol(Identity.generate(), RecordStorage(time.time), config, clock=time.time)
        transport = RecordingTransport(("127.0.0.1", 4000))
        proto.connection_made(transport)
        peer = ("127.0.0.2", 4000)
        task = loop.create_task(proto._request(peer, "ping", [proto.node_id], bytes, retries=1))
        await asyncio.sleep(0.4)
        assert len(transport.sent) == 1
        await asyncio.sleep(0.2)  # past the 0.5 s RTO: retransmitted, same bytes (same id)
        assert [d for d, _ in transport.sent] == [transport.sent[0][0]] * 2
        assert proto.counters["retransmits"] == 1
        msg_id = transport.sent[0][0][1:21]
        # The answer to the first transmission arrives now, late: it still counts.
        proto.datagram_received(encode_response(msg_id, b"pong"), peer)
        assert await task == (True, b"pong")
        # RTT measured from the first transmission (never under-estimated).
        assert proto.rtt.timeout(peer) >= 0.6

        # A request whose every wait timed out fails; its answer, arriving later, is not
        # used but teaches the estimator (and is not counted as unexpected).
        other = ("127.0.0.3", 4000)
        task = loop.create_task(proto._request(other, "ping", [proto.node_id], bytes, retries=0))
        await asyncio.sleep(proto.rtt.timeout(other) + 0.01)
        assert task.done() and task.result() == (False, None)
        late_id = transport.sent[-1][0][1:21]
        proto.datagram_received(encode_response(late_id, b"pong"), other)
        assert proto.counters["late_replies"] == 1
        assert proto.drops["unexpected_response"] == 0
        proto.datagram_received(encode_response(late_id, b"pong"), other)  # only once
        assert proto.drops["unexpected_response"] == 1
        await proto.close()

    run_virtual(main)


RECORDS = [
    PeerRecord.create(
        Identity.from_seed(bytes([40 + i]) * 32),
        noise_static_key=bytes(32),
        envelope_key=bytes(32),
        addrs=[],
        seq=1,
        expires_at=int(time.time()) + 600,
    )
    for i in range(12)
]


async def test_welcome_hands_over_exactly_what_the_paper_rule_says() -> None:
    # Reference: rank every contact per key (the rule as written) and compare the stores.
    rng = random.Random(3)
    handed_over = 0
    for trial in range(30):
        proto, stores = protocol()
        proto.check_contact = lambda node: None  # type: ignore[method-assign]  # no pings here
        for rec in RECORDS:
            assert proto.storage.put(rec.key, rec.encode(), None) == "stored"
        size = rng.choice([0, 2, CONFIG.ksize - 1, 40])
        for i in range(size):
            peer = Identity.from_seed(rng.randbytes(32)).peer_id
            proto.router.add_contact(Contact(rng.randbytes(20), f"10.{trial}.{i}.1", 4000, peer))
        ids = [c.long_id for c in proto.router.contacts()]
        newcomer = Contact(rng.randbytes(20), "10.99.0.1", 4000, PEER)
        expected = []
        for rec in RECORDS:
            key = int.from_bytes(rec.key, "big")
            ranked = sorted(d for d in (i ^ key for i in ids) if d)
            k = CONFIG.ksize
            new_close = len(ranked) < k or (newcomer.long_id ^ key) < ranked[k - 1]
            we_closest = not ranked or (proto.source_node.long_id ^ key) < ranked[0]
            if new_close and we_closest:
                expected.append((newcomer.id, rec.key))
        proto.welcome_if_new(newcomer)
        await _settle(proto)
        assert sorted(stores) == sorted(expected), trial
        handed_over += len(stores)
    assert 0 < handed_over < 30 * len(RECORDS)  # both outcomes were exercised


async def test_a_challenge_that_cannot_start_does_not_leave_waiters_hanging() -> None:
    # The node's TaskGroup is ending: no job can start. A challenge must resolve (to None)
    # rather than sit in the pending table forever with lookups awaiting it.
    proto, _ = protocol()
    async with asyncio.TaskGroup() as tg:
        pass
    proto.task_group = tg
    addr = ("127.0.0.9", 4000)
    challenge = proto._identify_shared(addr, 1)
    assert challenge.done() and challenge.result() is None
    assert addr not in proto._proving
    assert await proto.prove(addr) is None
