"""Mesh policy: which discovered peers to dial and which links to trim (pure, no I/O).

Small networks get a full mesh; above ``full_mesh_below`` nodes each node keeps
``target_degree`` links, chosen to spread across XOR-distance buckets (as Kademlia does) so
that the mesh stays connected and short-pathed rather than clustering around one region.
Above the high watermark (``max_connections``) links are trimmed from the fullest buckets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from node.core.identity import PeerId, node_id_for

__all__ = ["MeshPlan", "MeshPolicy", "bucket_of", "plan"]


@dataclass(frozen=True)
class MeshPolicy:
    target_degree: int = 8
    full_mesh_below: int = 16
    max_connections: int = 64
    max_dials_per_round: int = 16

    def wanted_links(self, network_size: int) -> int:
        """How many links this node should hold in a network of ``network_size`` nodes."""
        others = max(network_size - 1, 0)
        want = others if network_size < self.full_mesh_below else self.target_degree
        return min(want, others, self.max_connections)


@dataclass(frozen=True)
class MeshPlan:
    dial: tuple[PeerId, ...]
    trim: tuple[PeerId, ...]
    wanted: int


def bucket_of(local: PeerId, peer: PeerId) -> int:
    """Index of the Kademlia bucket ``peer`` falls in, seen from ``local`` (0..160)."""
    a = int.from_bytes(node_id_for(local.public_key_bytes), "big")
    b = int.from_bytes(node_id_for(peer.public_key_bytes), "big")
    return (a ^ b).bit_length()


def _spread(local: PeerId, peers: Iterable[PeerId], taken: dict[int, int]) -> list[PeerId]:
    """Order ``peers`` so that buckets holding fewer links come first, round-robin."""
    by_bucket: dict[int, list[PeerId]] = defaultdict(list)
    for peer in sorted(peers):
        by_bucket[bucket_of(local, peer)].append(peer)
    counts = dict(taken)
    order: list[PeerId] = []
    while by_bucket:
        bucket = min(by_bucket, key=lambda b: (counts.get(b, 0), -b))
        order.append(by_bucket[bucket].pop(0))
        counts[bucket] = counts.get(bucket, 0) + 1
        if not by_bucket[bucket]:
            del by_bucket[bucket]
    return order


def plan(
    local: PeerId,
    *,
    connected: Iterable[PeerId],
    candidates: Iterable[PeerId],
    network_size: int,
    policy: MeshPolicy,
    dialing: Iterable[PeerId] = (),
    excluded: Iterable[PeerId] = (),
) -> MeshPlan:
    """Decide one round: dial up to the wanted degree, trim above the high watermark.

    ``dialing`` holds dials still in progress: they count towards the wanted degree, or
    every round would start another batch and overshoot. ``excluded`` holds peers backing
    off after a failure.
    """
    linked = set(connected)
    in_progress = set(dialing) - linked
    skip = linked | in_progress | set(excluded) | {local}
    wanted = policy.wanted_links(network_size)
    taken: dict[int, int] = defaultdict(int)
    for peer in linked:
        taken[bucket_of(local, peer)] += 1
    dial: list[PeerId] = []
    missing = wanted - len(linked) - len(in_progress)
    if missing > 0:
        fresh = {p for p in candidates if p not in skip}
        dial = _spread(local, fresh, taken)[: min(missing, policy.max_dials_per_round)]
    trim: list[PeerId] = []
    excess = len(linked) - policy.max_connections
    if excess > 0:
        # Trim from the most crowded buckets: reverse of the order we would fill them in.
        keep_order = _spread(local, linked, {})
        trim = keep_order[-excess:]
    return MeshPlan(tuple(dial), tuple(trim), wanted)
