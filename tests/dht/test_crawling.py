"""Lookups over a synthetic in-memory network (no sockets): the churn regressions."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from kademlia.crawling import NodeSpiderCrawl, ValueSpiderCrawl
from kademlia.node import Node

from dht.crawling import NodeCrawl, RecordCrawl, Shortlist
from dht.records import PeerRecord
from dht.storage import VerifyCache
from node.core.identity import Identity

K = 8
NOW = 1_800_000_000.0
OWNER = Identity.from_seed(b"\x11" * 32)
RECORD = PeerRecord.create(
    OWNER,
    noise_static_key=bytes(32),
    envelope_key=bytes(32),
    addrs=["/ip4/10.9.9.9/tcp/4001"],
    seq=7,
    expires_at=int(NOW) + 600,
)
TARGET = Node(RECORD.key)


def node_at(distance: int) -> Node:
    nid = (TARGET.long_id ^ distance).to_bytes(20, "big")
    return Node(nid, f"10.0.{distance >> 8 & 255}.{distance & 255}", 4000)


class Net:
    """Nodes at chosen XOR distances from the target; each answers with what it knows."""

    def __init__(self, nodes: list[Node], dead: set[bytes], holders: set[bytes]) -> None:
        self.nodes = nodes
        self.dead = dead
        self.holders = holders
        self.asked: Counter[bytes] = Counter()
        self.drops: Counter[str] = Counter()
        self.stores: list[bytes] = []
        self.cache = VerifyCache()
        self.tasks: list[asyncio.Task[Any]] = []

    def _closest(self, key: Node) -> list[list[Any]]:
        # Every live node still lists the dead ones: nobody has noticed the churn yet.
        ranked = sorted(self.nodes, key=lambda n: n.distance_to(key))[: 2 * K]
        return [[n.id, n.ip, n.port] for n in ranked]

    async def call_find_node(self, peer: Node, key: Node) -> tuple[bool, Any]:
        self.asked[peer.id] += 1
        await asyncio.sleep(0)
        if peer.id in self.dead:
            return (False, None)
        return (True, self._closest(key))

    async def call_find_value(self, peer: Node, key: Node) -> tuple[bool, Any]:
        self.asked[peer.id] += 1
        await asyncio.sleep(0)
        if peer.id in self.dead:
            return (False, None)
        if peer.id in self.holders:
            return (True, {"value": RECORD.encode()})
        return (True, self._closest(key))

    async def call_store(self, peer: Node, key: bytes, value: bytes) -> tuple[bool, Any]:
        self.stores.append(peer.id)
        return (True, True)

    def spawn(self, coro: Any) -> None:
        self.tasks.append(asyncio.ensure_future(coro))

    def verify_record(self, key: bytes, value: bytes, now: float) -> Any:
        return self.cache.verify(key, value, now)


def churned() -> tuple[list[Node], set[bytes], list[Node]]:
    """The K closest nodes to the target are dead; the next K are alive."""
    nodes = [node_at(d) for d in range(1, 4 * K + 1)]
    dead = {n.id for n in nodes[:K]}
    return nodes, dead, nodes[K : 2 * K]


def test_shortlist_never_readmits_a_failed_node() -> None:
    nodes, _, _ = churned()
    short = Shortlist(TARGET, K)
    short.push(nodes[:K])
    short.remove([n.id for n in nodes[:2]])
    short.push(nodes[:4])  # a live peer's reply names them again
    assert nodes[0] not in short and nodes[1] not in short
    assert [n.id for n in short][:2] == [nodes[2].id, nodes[3].id]
    assert short.get_node(nodes[2].id) is nodes[2]
    assert short.popleft() is nodes[2] and nodes[2] not in short


async def test_node_lookup_returns_the_k_closest_responding_nodes() -> None:
    nodes, dead, live_k = churned()
    start = nodes[-3:]  # the asker only knows far nodes
    net = Net(nodes, dead, set())
    # Upstream forgets who failed; replies re-add them as "contacted", so the result is
    # padded with dead nodes and stops short of the live ones.
    up = await NodeSpiderCrawl(net, TARGET, start, K, 3).find()
    assert any(n.id in dead for n in up)
    net = Net(nodes, dead, set())
    crawl = NodeCrawl(net, TARGET, start, K, 3, max_rounds=20)
    found = await crawl.find()
    assert [n.id for n in found] == [n.id for n in live_k]
    assert max(net.asked.values()) == 1  # nobody, dead or alive, is asked twice


async def test_record_lookup_reaches_holders_behind_dead_nodes() -> None:
    nodes, dead, live_k = churned()
    holders = {live_k[-1].id}  # only the K-th closest live node still holds the record
    start = nodes[-3:]
    up = await ValueSpiderCrawl(Net(nodes, dead, holders), TARGET, start, K, 3).find()
    assert up is None  # the upstream crawl gives up with dead nodes in its shortlist
    net = Net(nodes, dead, holders)
    crawl = RecordCrawl(net, TARGET, start, K, 3, max_rounds=20, clock=lambda: NOW)
    found = await crawl.find()
    assert found is not None and found.peer_id == OWNER.peer_id and found.seq == 7
    await asyncio.gather(*net.tasks)
    assert len(net.stores) == 1 and net.stores[0] not in dead  # cached at a live node


async def test_record_lookup_ignores_forged_values() -> None:
    nodes, _, live_k = churned()
    net = Net(nodes, set(), {live_k[0].id})
    forged = RECORD.encode()[:-1] + bytes([RECORD.encode()[-1] ^ 1])
    real = net.call_find_value

    async def lying(peer: Node, key: Node) -> tuple[bool, Any]:
        if peer.id == nodes[0].id:
            return (True, {"value": forged})
        return await real(peer, key)

    net.call_find_value = lying  # type: ignore[method-assign]
    crawl = RecordCrawl(net, TARGET, nodes[-3:], K, 3, max_rounds=20, clock=lambda: NOW)
    found = await crawl.find()
    assert found is not None and found.seq == 7
    assert net.drops["bad_value"] >= 1


async def test_lost_queries_widen_the_next_round_and_rounds_are_capped() -> None:
    rng = random.Random(5)
    nodes = [node_at(rng.getrandbits(40) + 1) for _ in range(300)]
    dead = {n.id for n in rng.sample(nodes, 90)}  # 30% churn
    net = Net(nodes, dead, set())
    crawl = NodeCrawl(net, TARGET, nodes[:K], K, 3, max_rounds=20)
    found = await crawl.find()
    live = sorted((n for n in nodes if n.id not in dead), key=lambda n: n.distance_to(TARGET))
    assert [n.id for n in found] == [n.id for n in live[:K]]
    assert crawl.rounds <= 8
    capped = NodeCrawl(Net(nodes, dead, set()), TARGET, nodes[:K], K, 1, max_rounds=2)
    result = await capped.find()
    assert capped.rounds == 2
    assert all(n.id in capped.nearest.contacted for n in result)
