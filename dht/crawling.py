"""Iterative lookups: kademlia's spider crawls with a round cap and record validation.

Upstream crawls run until every node in the shortlist has been asked, so a peer that keeps
inventing closer (unreachable) contacts can stall a lookup forever: we stop after
``max_rounds``. Upstream's value crawl returns the most common value; ours verifies every value
(signature, key, expiry) and returns the highest sequence number, ignoring forged answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kademlia.crawling import NodeSpiderCrawl, RPCFindResponse, ValueSpiderCrawl
from kademlia.node import Node

from dht.errors import RecordError
from dht.records import PeerRecord, VerifiedPeerRecord

__all__ = ["NodeCrawl", "RecordCrawl"]


class NodeCrawl(NodeSpiderCrawl):  # type: ignore[misc]
    """Find the k closest responsive nodes to ``node``; ``rounds`` counts iterations."""

    def __init__(
        self, protocol: Any, node: Node, peers: list[Node], ksize: int, alpha: int, max_rounds: int
    ) -> None:
        super().__init__(protocol, node, peers, ksize, alpha)
        self.max_rounds = max_rounds
        self.rounds = 0

    async def _find(self, rpcmethod: Any) -> Any:
        if self.rounds >= self.max_rounds:
            return [n for n in self.nearest if n.id in self.nearest.contacted]
        self.rounds += 1
        return await super()._find(rpcmethod)


class RecordCrawl(ValueSpiderCrawl):  # type: ignore[misc]
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
        super().__init__(protocol, node, peers, ksize, alpha)
        self.max_rounds = max_rounds
        self.rounds = 0
        self._clock = clock

    async def _find(self, rpcmethod: Any) -> Any:
        if self.rounds >= self.max_rounds:
            return None
        self.rounds += 1
        return await super()._find(rpcmethod)

    def _check(self, value: bytes) -> VerifiedPeerRecord | None:
        try:
            record = PeerRecord.decode(value)
            if record.key != self.node.id:
                raise RecordError("record stored under another key")
            return record.verify(self._clock())
        except RecordError:
            self.protocol.drops["bad_value"] += 1
            return None

    async def _nodes_found(self, responses: dict[bytes, Any]) -> VerifiedPeerRecord | None:
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
            # Cache at the closest node that lacked it (paper section 2.3), as upstream does.
            peer = self.nearest_without_value.popleft()
            if peer is not None:
                await self.protocol.call_store(peer, self.node.id, best.encode())
            return best
        if self.nearest.have_contacted_all():
            return None
        result: VerifiedPeerRecord | None = await self.find()
        return result
