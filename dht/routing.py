"""Routing table fixes on top of ``kademlia.routing`` (subclasses, no fork).

* ``find_neighbors`` ranks *every* contact by XOR distance. Upstream walks buckets outward from
  the target's bucket and stops when one side runs out, so it can return nothing while the
  table holds contacts.
* ``get_bucket_for`` uses the same inclusive bound as ``KBucket.has_in_range`` (upstream uses
  ``<`` and can disagree with where ``split`` put a node).
* Slot limits per address prefix (``subnet_prefix_v4``/``_v6``): one source cannot fill a
  bucket or the table with contacts, whatever ids it shows. They apply to public addresses
  only (unless ``limit_local``): on loopback, private, link-local and CGNAT networks every
  node of a LAN, compose network or pod network shares a prefix, and a limit made for the
  internet would stop that mesh from forming (see ``docs/dht.md``).
* A contact is evicted only after ``max_failures`` consecutive failures; a full bucket checks
  its head with retries before letting a replacement in.
* Bucket freshness uses the injected clock, not ``time.monotonic``.
* Speed: every bucket change bumps a version, and the flat list of contacts, their integer
  ids and the per-prefix slot counts are rebuilt only when the version moved, so neighbour
  ranking is one list comprehension of XORs and a C-level sort instead of a Python call per
  contact, and the slot-limit check no longer recomputes every contact's prefix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from kademlia.node import Node
from kademlia.routing import KBucket as _KBucket
from kademlia.routing import RoutingTable as _RoutingTable

from dht.limits import is_local_address, subnet_key
from node.core.identity import PeerId

__all__ = ["Contact", "KBucket", "RoutingTable"]

Clock = Callable[[], float]


class Contact(Node):  # type: ignore[misc]
    """A node whose identity key was proven over the DHT channel."""

    def __init__(self, node_id: bytes, ip: str, port: int, peer_id: PeerId) -> None:
        super().__init__(node_id, ip, port)
        self.peer_id = peer_id


class _Version:
    """A change counter shared by a table and its buckets (invalidates cached views)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class KBucket(_KBucket):  # type: ignore[misc]
    def __init__(
        self, lower: int, upper: int, ksize: int, clock: Clock, version: _Version | None = None
    ) -> None:
        self._clock = clock
        self._version = version if version is not None else _Version()
        super().__init__(lower, upper, ksize)

    def touch_last_updated(self) -> None:
        self.last_updated = self._clock()

    def add_node(self, node: Node) -> bool:
        old = self.nodes.get(node.id)
        if old is None:
            if len(self.nodes) < self.ksize:  # otherwise it only becomes a replacement
                self._version.value += 1
        elif not old.same_home_as(node):
            self._version.value += 1
        added: bool = super().add_node(node)
        return added

    def remove_node(self, node: Node) -> None:
        # Upstream promotes a replacement in here too: one bump covers both changes.
        self._version.value += 1
        super().remove_node(node)

    def depth(self) -> int:
        """Bits every contact's id shares (upstream builds a 160-character string per id)."""
        ids = [n.long_id for n in self.nodes.values()]
        if not ids:
            return 0
        first = ids[0]
        spread = 0
        for i in ids:
            spread |= i ^ first
        return 160 - spread.bit_length()

    def split(self) -> tuple[KBucket, KBucket]:
        self._version.value += 1
        midpoint = (self.range[0] + self.range[1]) // 2
        one = KBucket(self.range[0], midpoint, self.ksize, self._clock, self._version)
        two = KBucket(midpoint + 1, self.range[1], self.ksize, self._clock, self._version)
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
        limit_local: bool = False,
    ) -> None:
        self._clock = clock
        self.limit_local = limit_local
        self.subnet_prefix_v4 = subnet_prefix_v4
        self.subnet_prefix_v6 = subnet_prefix_v6
        self.max_per_subnet_bucket = max_per_subnet_bucket
        self.max_per_subnet_table = max_per_subnet_table
        self.max_failures = max_failures
        self.failures: Counter[bytes] = Counter()
        self.rejected: Counter[str] = Counter()
        self._version = _Version()
        self._view_version = -1
        self._nodes: list[Node] = []
        self._ids: list[int] = []
        self._nets: Counter[str] = Counter()
        self._nets_version = -1
        super().__init__(protocol, ksize, node)

    def flush(self) -> None:
        self._version.value += 1
        self.buckets = [KBucket(0, 2**160, self.ksize, self._clock, self._version)]

    def split_bucket(self, index: int) -> None:
        self._version.value += 1
        super().split_bucket(index)

    def _view(self) -> list[Node]:
        """The contacts, rebuilt (with ids and prefix counts) only after a change."""
        if self._view_version != self._version.value:
            self._nodes = [n for b in self.buckets for n in b.nodes.values()]
            self._ids = [n.long_id for n in self._nodes]
            self._view_version = self._version.value
        return self._nodes

    def _net_counts(self) -> Counter[str]:
        """Contacts per address prefix (rebuilt lazily, only for the slot-limit check)."""
        self._view()
        if self._nets_version != self._view_version:
            p4, p6 = self.subnet_prefix_v4, self.subnet_prefix_v6
            self._nets = Counter(subnet_key(n.ip, p4, p6) for n in self._nodes)
            self._nets_version = self._view_version
        return self._nets

    def lonely_buckets(self, age: float = 3600.0) -> list[KBucket]:
        cutoff = self._clock() - age
        return [b for b in self.buckets if b.last_updated < cutoff]

    def get_bucket_for(self, node: Node) -> int:
        for index, bucket in enumerate(self.buckets):
            if node.long_id <= bucket.range[1]:
                return index
        return len(self.buckets) - 1

    def contacts(self) -> list[Node]:
        return list(self._view())

    def contact_ids(self) -> list[int]:
        """Every contact's id as an int (the cached list: read it, do not change it)."""
        self._view()
        return self._ids

    def find_neighbors(
        self, node: Node, k: int | None = None, exclude: Node | None = None
    ) -> list[Node]:
        k = k or self.ksize
        self.buckets[self.get_bucket_for(node)].touch_last_updated()
        nodes = self._view()
        dists = list(map(node.long_id.__xor__, self._ids))
        # A C-level sort of the indices beats a k-selection at table sizes (~100: 14 vs
        # 28 us). At most two entries are skipped (the target itself, the excluded address).
        order = sorted(range(len(dists)), key=dists.__getitem__)
        out = []
        for i in order:
            n = nodes[i]
            if n.id == node.id or (exclude is not None and n.same_home_as(exclude)):
                continue
            out.append(n)
            if len(out) == k:
                break
        return out

    def _subnet(self, node: Node) -> str:
        return subnet_key(node.ip, self.subnet_prefix_v4, self.subnet_prefix_v6)

    def _subnet_full(self, node: Node, bucket: KBucket) -> bool:
        if not self.limit_local and is_local_address(node.ip):
            return False
        net = self._subnet(node)
        # ``node`` is not in ``bucket`` here (add_contact checked), so the count excludes it.
        in_table = self._net_counts()[net]
        in_bucket = sum(
            1 for n in bucket.nodes.values() if n.id != node.id and self._subnet(n) == net
        )
        return in_table >= self.max_per_subnet_table or in_bucket >= self.max_per_subnet_bucket

    def would_take(self, node: Node) -> bool:
        """Whether :meth:`add_contact` would try to put ``node`` in the table now (known
        contacts included; a full bucket that may split counts as room), rather than refuse it
        or only keep it as a replacement."""
        if node.id == self.node.id:
            return False
        bucket = self.buckets[self.get_bucket_for(node)]
        if node.id in bucket.nodes:
            return True
        if self._subnet_full(node, bucket):
            return False
        return (
            len(bucket) < self.ksize
            or bucket.has_in_range(self.node)
            or bucket.depth() % 5 != 0
        )

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
