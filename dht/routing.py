"""Routing table fixes on top of ``kademlia.routing`` (subclasses, no fork).

* ``find_neighbors`` ranks *every* contact by XOR distance. Upstream walks buckets outward from
  the target's bucket and stops when one side runs out, so it can return nothing while the
  table holds contacts.
* ``get_bucket_for`` uses the same inclusive bound as ``KBucket.has_in_range`` (upstream uses
  ``<`` and can disagree with where ``split`` put a node).
* Slot limits per address prefix (``subnet_prefix_v4``/``_v6``): one source cannot fill a
  bucket or the table with contacts, whatever ids it shows.
* A contact is evicted only after ``max_failures`` consecutive failures; a full bucket checks
  its head with retries before letting a replacement in.
* Bucket freshness uses the injected clock, not ``time.monotonic``.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from typing import Any

from kademlia.node import Node
from kademlia.routing import KBucket as _KBucket
from kademlia.routing import RoutingTable as _RoutingTable

from dht.limits import subnet_key
from node.identity import PeerId

__all__ = ["Contact", "KBucket", "RoutingTable"]

Clock = Callable[[], float]


class Contact(Node):  # type: ignore[misc]
    """A node whose identity key was proven over the DHT channel."""

    def __init__(self, node_id: bytes, ip: str, port: int, peer_id: PeerId) -> None:
        super().__init__(node_id, ip, port)
        self.peer_id = peer_id


class KBucket(_KBucket):  # type: ignore[misc]
    def __init__(self, lower: int, upper: int, ksize: int, clock: Clock) -> None:
        self._clock = clock
        super().__init__(lower, upper, ksize)

    def touch_last_updated(self) -> None:
        self.last_updated = self._clock()

    def split(self) -> tuple[KBucket, KBucket]:
        midpoint = (self.range[0] + self.range[1]) // 2
        one = KBucket(self.range[0], midpoint, self.ksize, self._clock)
        two = KBucket(midpoint + 1, self.range[1], self.ksize, self._clock)
        for node in [*self.nodes.values(), *self.replacement_nodes.values()]:
            (one if node.long_id <= midpoint else two).add_node(node)
        return one, two


class RoutingTable(_RoutingTable):  # type: ignore[misc]
    def __init__(
        self,
        protocol: Any,
        ksize: int,
        node: Node,
        *,
        clock: Clock,
        subnet_prefix_v4: int = 24,
        subnet_prefix_v6: int = 48,
        max_per_subnet_bucket: int = 2,
        max_per_subnet_table: int = 10,
        max_failures: int = 3,
    ) -> None:
        self._clock = clock
        self.subnet_prefix_v4 = subnet_prefix_v4
        self.subnet_prefix_v6 = subnet_prefix_v6
        self.max_per_subnet_bucket = max_per_subnet_bucket
        self.max_per_subnet_table = max_per_subnet_table
        self.max_failures = max_failures
        self.failures: Counter[bytes] = Counter()
        self.rejected: Counter[str] = Counter()
        super().__init__(protocol, ksize, node)

    def flush(self) -> None:
        self.buckets = [KBucket(0, 2**160, self.ksize, self._clock)]

    def lonely_buckets(self, age: float = 3600.0) -> list[KBucket]:
        cutoff = self._clock() - age
        return [b for b in self.buckets if b.last_updated < cutoff]

    def get_bucket_for(self, node: Node) -> int:
        for index, bucket in enumerate(self.buckets):
            if node.long_id <= bucket.range[1]:
                return index
        return len(self.buckets) - 1

    def contacts(self) -> list[Node]:
        return [n for b in self.buckets for n in b.nodes.values()]

    def find_neighbors(
        self, node: Node, k: int | None = None, exclude: Node | None = None
    ) -> list[Node]:
        k = k or self.ksize
        self.buckets[self.get_bucket_for(node)].touch_last_updated()
        candidates = [
            n
            for n in self.contacts()
            if n.id != node.id and (exclude is None or not n.same_home_as(exclude))
        ]
        return heapq.nsmallest(k, candidates, key=lambda n: n.distance_to(node))

    def _subnet(self, node: Node) -> str:
        return subnet_key(node.ip, self.subnet_prefix_v4, self.subnet_prefix_v6)

    def _subnet_full(self, node: Node, bucket: KBucket) -> bool:
        net = self._subnet(node)
        in_table = sum(1 for n in self.contacts() if n.id != node.id and self._subnet(n) == net)
        in_bucket = sum(
            1 for n in bucket.nodes.values() if n.id != node.id and self._subnet(n) == net
        )
        return in_table >= self.max_per_subnet_table or in_bucket >= self.max_per_subnet_bucket

    def add_contact(self, node: Node) -> bool:
        """Add or refresh ``node``; False if refused or parked as a replacement."""
        if node.id == self.node.id:
            return False
        index = self.get_bucket_for(node)
        bucket = self.buckets[index]
        if node.id in bucket.nodes:
            self.failures.pop(node.id, None)
            bucket.add_node(node)
            return True
        if self._subnet_full(node, bucket):
            self.rejected["subnet_limit"] += 1
            return False
        if bucket.add_node(node):
            self.failures.pop(node.id, None)
            return True
        if bucket.has_in_range(self.node) or bucket.depth() % 5 != 0:
            self.split_bucket(index)
            return self.add_contact(node)
        # Full bucket: keep the newcomer as a replacement and check the oldest contact.
        self.protocol.check_contact(bucket.head())
        return False

    def record_success(self, node: Node) -> None:
        self.failures.pop(node.id, None)

    def record_failure(self, node: Node) -> bool:
        """Count a failure; evict after ``max_failures`` in a row. True if evicted."""
        index = self.get_bucket_for(node)
        if node.id not in self.buckets[index].nodes:
            self.buckets[index].replacement_nodes.pop(node.id, None)
            return False
        self.failures[node.id] += 1
        if self.failures[node.id] < self.max_failures:
            return False
        del self.failures[node.id]
        self.buckets[index].remove_node(node)
        self.rejected["evicted"] += 1
        return True

    def remove_contact(self, node: Node) -> None:
        self.failures.pop(node.id, None)
        super().remove_contact(node)
