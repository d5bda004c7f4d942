"""Iterative lookups: kademlia's spider crawls with a corrected shortlist, round cap and
record validation.

Upstream ``NodeHeap.remove`` forgets a node that did not answer, so the next reply that names
it pushes it back, and since its id is still in ``contacted`` it counts as *asked*: after
churn the k "closest" can be a third dead nodes and the lookup stops before it has heard from
the k closest *responding* nodes (measured: 8 of 20 final slots dead at 30% churn, lookups
ending short of the record's holders). :class:`Shortlist` remembers failures for the whole
lookup, so a dead node never re-enters, and keeps an id set so membership is O(1) instead of a
scan of the heap on every push.

Upstream crawls run until every node in the shortlist has been asked, so a peer that keeps
inventing closer (unreachable) contacts can stall a lookup forever: we stop after
``max_rounds``. Upstream's value crawl returns the most common value; ours verifies every value
(signature, key, expiry) and returns the highest sequence number, ignoring forged answers.
A round that lost queries to dead contacts is followed by a wider one (``alpha`` plus the
number lost, at most ``k``), so dead contacts cost parallelism rather than extra rounds.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kademlia.crawling import NodeSpiderCrawl, RPCFindResponse, ValueSpiderCrawl
from kademlia.node import Node, NodeHeap

from dht.errors import RecordError
from dht.records import VerifiedPeerRecord

__all__ = ["NodeCrawl", "RecordCrawl", "Shortlist"]


class Shortlist(NodeHeap):  # type: ignore[misc]
    """A lookup's candidates by distance; nodes that failed once never come back."""

    heap: list[tuple[int, Node]]
    contacted: set[bytes]
    maxsize: int

    def __init__(self, node: Node, maxsize: int) -> None:
        super().__init__(node, maxsize)
        self._target = node.long_id
        self._ids: dict[bytes, Node] = {}
        self.failed: set[bytes] = set()

    def push(self, nodes: Node | Iterable[Node]) -> None:
        if isinstance(nodes, Node):
            nodes = [nodes]
        for node in nodes:
            if node.id in self._ids or node.id in self.failed:
                continue
            self._ids[node.id] = node
            heapq.heappush(self.heap, (node.long_id ^ self._target, node))

    def remove(self, peers: Iterable[bytes]) -> None:
        gone = set(peers)
        if not gone:
            return
        self.failed |= gone
        self.heap = [(d, n) for d, n in self.heap if n.id not in gone]
        heapq.heapify(self.heap)
        for peer in gone:
            self._ids.pop(peer, None)

    def get_node(self, node_id: bytes) -> Node | None:
        return self._ids.get(node_id)

    def popleft(self) -> Node | None:
        if not self.heap:
            return None
        node: Node = heapq.heappop(self.heap)[1]
        self._ids.pop(node.id, None)
        return node

    def __contains__(self, node: object) -> bool:
        return isinstance(node, Node) and node.id in self._ids

    def __iter__(self) -> Iterator[Node]:
        return iter([n for _, n in heapq.nsmallest(self.maxsize, self.heap)])

    def get_uncontacted(self) -> list[Node]:
        return [n for n in self if n.id not in self.contacted]


class _Rounds:
    """Round cap and adaptive width shared by both crawls (mixed in before upstream's class)."""

    nearest: Shortlist
    alpha: int
    ksize: int
    last_ids_crawled: list[bytes]
    max_rounds: int
    rounds: int
    _lost: int

    def _setup(self, node: Node, peers: list[Node], max_rounds: int) -> None:
        self.nearest = Shortlist(node, self.ksize)
        self.nearest.push(peers)
        self.max_rounds = max_rounds
        self.rounds = 0
        self._lost = 0

    async def _round(self, rpcmethod: Any) -> dict[bytes, Any]:
        """Query the next batch in parallel; the responses by node id."""
        self.rounds += 1
        count = min(self.ksize, self.alpha + self._lost)
        ids = self.nearest.get_ids()
        if ids == self.last_ids_crawled:
            # No progress last round: ask everyone in the shortlist not yet asked (upstream).
            count = len(ids)
        self.last_ids_crawled = ids
        batch = self.nearest.get_uncontacted()[:count]
        for peer in batch:
            self.nearest.mark_contacted(peer)
        results = await asyncio.gather(*(rpcmethod(peer, self.nearest.node) for peer in batch))
        self._lost = sum(1 for ok, _ in results if not ok)
        return {peer.id: result for peer, result in zip(batch, results, strict=True)}


class NodeCrawl(_Rounds, NodeSpiderCrawl):  # type: ignore[misc]
    """Find the k closest responding nodes to ``node``; ``rounds`` counts iterations."""

    def __init__(
        self, protocol: Any, node: Node, peers: list[Node], ksize: int, alpha: int, max_rounds: int
    ) -> None:
        NodeSpiderCrawl.__init__(self, protocol, node, [], ksize, alpha)
        self._setup(node, peers, max_rounds)

    async def find(self) -> list[Node]:
        while True:
            if self.rounds >= self.max_rounds:
                return [n for n in self.nearest if n.id in self.nearest.contacted]
            responses = await self._round(self.protocol.call_find_node)
            failed = []
            for peer_id, raw in responses.items():
                response = RPCFindResponse(raw)
                if response.happened():
                    self.nearest.push(response.get_node_list())
                else:
                    failed.append(peer_id)
            self.nearest.remove(failed)
            if self.nearest.have_contacted_all():
                return list(self.nearest)


class RecordCrawl(_Rounds, ValueSpiderCrawl):  # type: ignore[misc]
    """Find the highest-sequence valid record stored under ``node.id`` (or None)."""

    def __init__(
        self,
        protocol: Any,
        node: Node,
        peers: list[Node],
        ksize: int,
        alpha: int,
        max_rounds: int,
        clock: Callable[[], float],
    ) -> None:
        ValueSpiderCrawl.__init__(self, protocol, node, [], ksize, alpha)
        self._setup(node, peers, max_rounds)
        self._clock = clock

    def _check(self, value: bytes) -> VerifiedPeerRecord | None:
        try:
            verified: VerifiedPeerRecord = self.protocol.verify_record(
                self.node.id, value, self._clock()
            )
            return verified
        except RecordError:
            self.protocol.drops["bad_value"] += 1
            return None

    async def find(self) -> VerifiedPeerRecord | None:
        while True:
            if self.rounds >= self.max_rounds:
                return None
            responses = await self._round(self.protocol.call_find_value)
            toremove = []
            found: list[VerifiedPeerRecord] = []
            for peer_id, raw in responses.items():
                response = RPCFindResponse(raw)
                if not response.happened():
                    toremove.append(peer_id)
                elif response.has_value():
                    record = self._check(response.get_value())
                    if record is None:
                        toremove.append(peer_id)  # a forger is no use for this lookup
                    else:
                        found.append(record)
                else:
                    peer = self.nearest.get_node(peer_id)
                    if peer is not None:
                        self.nearest_without_value.push(peer)
                    self.nearest.push(response.get_node_list())
            self.nearest.remove(toremove)
            if found:
                best = max(found, key=lambda r: r.seq)
                # Cache at the closest node that lacked it (paper section 2.3), as upstream
                # does; in the background, so the answer is not delayed by the store.
                peer = self.nearest_without_value.popleft()
                if peer is not None:
                    self.protocol.spawn(self.protocol.call_store(peer, self.node.id, best.encode()))
                return best
            if self.nearest.have_contacted_all():
                return None
