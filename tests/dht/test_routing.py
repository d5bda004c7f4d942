from __future__ import annotations

from typing import Any

import pytest
from kademlia.node import Node
from kademlia.routing import RoutingTable as UpstreamTable

from dht.routing import Contact, RoutingTable
from node.core.identity import Identity

PEER = Identity.from_seed(b"\x05" * 32).peer_id


class FakeProtocol:
    def __init__(self) -> None:
        self.checked: list[Node] = []

    def check_contact(self, node: Node) -> None:
        self.checked.append(node)

    def call_ping(self, node: Node) -> Any:  # upstream's table calls this when a bucket is full
        async def noop() -> None:
            return None

        return noop()


def contact(long_id: int, ip: str = "10.0.0.1", port: int = 1) -> Contact:
    return Contact(long_id.to_bytes(20, "big"), ip, port, PEER)


def table(**kw: Any) -> RoutingTable:
    kw.setdefault("subnet_prefix_v4", 32)
    kw.setdefault("max_per_subnet_table", 1000)
    kw.setdefault("max_per_subnet_bucket", 1000)
    return RoutingTable(FakeProtocol(), 4, Node(b"\x00" * 20), clock=lambda: 0.0, **kw)


def four_buckets(t: Any) -> None:
    """Buckets [0,q) [q,2q) [2q,3q) [3q,4q) with contacts only in the first two."""
    q = 2**158
    t.split_bucket(0)
    t.split_bucket(0)
    t.split_bucket(2)
    assert len(t.buckets) == 4
    for i, base in enumerate((1, q + 1)):
        for j in range(2):
            n = contact(base + j, f"10.0.{i}.{j}")
            t.buckets[i].add_node(n)
    return None


def test_find_neighbors_sees_every_bucket() -> None:
    target = Node((2**160 - 1).to_bytes(20, "big"))  # falls in the last bucket
    upstream = UpstreamTable(FakeProtocol(), 4, Node(b"\x00" * 20))
    four_buckets(upstream)
    # Upstream's traverser stops when the left side runs out: nothing, though 4 contacts exist.
    assert upstream.find_neighbors(target) == []
    ours = table()
    four_buckets(ours)
    got = ours.find_neighbors(target)
    assert len(got) == 4
    dists = [n.distance_to(target) for n in got]
    assert dists == sorted(dists)


def test_find_neighbors_k_closest_and_exclude() -> None:
    t = table()
    nodes = [contact(i * 1000 + 5, f"10.0.0.{i}") for i in range(1, 4)]
    for n in nodes:
        assert t.add_contact(n)
    target = Node((1000 + 5).to_bytes(20, "big"))
    assert t.find_neighbors(target) == [nodes[1], nodes[2]]  # the target's own id is skipped
    assert t.find_neighbors(target, exclude=nodes[1]) == [nodes[2]]
    got = t.find_neighbors(Node((0).to_bytes(20, "big")), k=2, exclude=nodes[0])
    assert got == [nodes[1], nodes[2]]


def test_subnet_limits() -> None:
    # Public addresses (documentation ranges stand in for them).
    t = table(subnet_prefix_v4=24, max_per_subnet_table=3, max_per_subnet_bucket=2)
    added = [t.add_contact(contact(2**150 + i, f"203.0.113.{i}")) for i in range(6)]
    assert added.count(True) == 2  # one bucket, at most 2 from 203.0.113.0/24
    far = [t.add_contact(contact(2**159 + i, f"203.0.113.{50 + i}")) for i in range(3)]
    assert sum(added) + sum(far) <= 3
    assert t.rejected["subnet_limit"] >= 4
    assert t.add_contact(contact(2**150 + 99, "198.51.100.1"))  # another /24 is fine
    v6 = table(subnet_prefix_v6=48, max_per_subnet_table=3, max_per_subnet_bucket=2)
    six = [v6.add_contact(contact(2**150 + i, f"2001:db8:1:{i}::1")) for i in range(4)]
    assert six.count(True) == 2  # 2001:db8:1::/48


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.20.0.5",
        "192.168.1.9",
        "100.64.3.1",
        "169.254.1.1",
        "::1",
        "fd12:3456::1",
        "fe80::1",
        "::ffff:192.168.1.9",
    ],
)
def test_local_addresses_are_not_slot_limited(ip: str) -> None:
    # A LAN, a compose or pod network, or one host: every node shares the prefix (eight
    # nodes on 127.0.0.1 share the address itself), so the internet's limits do not apply.
    t = table(subnet_prefix_v4=24, max_per_subnet_table=3, max_per_subnet_bucket=2)
    added = [t.add_contact(contact(2**150 + i, ip, 4000 + i)) for i in range(12)]
    assert all(added) and t.rejected["subnet_limit"] == 0
    # Unless asked to (a node on a private network it does not trust).
    strict = table(
        subnet_prefix_v4=24, max_per_subnet_table=3, max_per_subnet_bucket=2, limit_local=True
    )
    added = [strict.add_contact(contact(2**150 + i, ip, 4000 + i)) for i in range(12)]
    assert added.count(True) == 2 and strict.rejected["subnet_limit"] == 10


def test_failures_evict_only_after_max_and_success_resets() -> None:
    t = table(max_failures=3)
    n = contact(12345)
    t.add_contact(n)
    assert not t.record_failure(n)
    assert not t.record_failure(n)
    t.record_success(n)
    assert not t.record_failure(n)
    assert not t.record_failure(n)
    assert t.record_failure(n)
    assert t.contacts() == []


def test_full_bucket_checks_head_instead_of_dropping() -> None:
    t = table()
    t.node = Node((2**160 - 1).to_bytes(20, "big"))  # we sit at the top of the id space
    proto = t.protocol
    # Ids sharing exactly 5 leading bits: the bucket that does not hold us cannot split.
    ids = [1, 2, 2**154 + 1, 2**154 + 2, 2**154 + 3]
    added = [t.add_contact(contact(i, f"10.0.1.{n}")) for n, i in enumerate(ids)]
    assert added == [True, True, True, True, False]
    assert [n.long_id for n in proto.checked] == [1]  # the head is checked, not dropped
    bucket = t.buckets[t.get_bucket_for(contact(1))]
    assert (2**154 + 3).to_bytes(20, "big") in bucket.replacement_nodes


def test_get_bucket_for_agrees_with_split() -> None:
    t = table()
    t.split_bucket(0)
    mid = t.buckets[0].range[1]
    n = contact(mid)
    assert t.buckets[0].has_in_range(n)
    assert t.get_bucket_for(n) == 0
    t.add_contact(n)
    t.remove_contact(n)
    assert t.contacts() == []


def test_lonely_buckets_use_injected_clock() -> None:
    now = [1000.0]
    t = RoutingTable(FakeProtocol(), 4, Node(b"\x00" * 20), clock=lambda: now[0])
    assert t.lonely_buckets() == []
    now[0] += 3601
    assert len(t.lonely_buckets()) == 1


def test_depth_matches_upstream() -> None:
    import random

    from kademlia.routing import KBucket as UpstreamBucket

    rng = random.Random(7)
    for size in (1, 2, 5, 20):
        for prefix in (0, 3, 40, 150):
            t = table()
            bucket = t.buckets[0]
            upstream = UpstreamBucket(0, 2**160, 20)
            top = rng.getrandbits(prefix) << (160 - prefix) if prefix else 0
            for _ in range(size):
                n = contact(top | rng.getrandbits(160 - prefix))
                bucket.nodes[n.id] = n
                upstream.nodes[n.id] = n
            assert bucket.depth() == upstream.depth(), (size, prefix)


def test_would_take_agrees_with_add_contact() -> None:
    import random

    rng = random.Random(11)
    t = table(subnet_prefix_v4=24, max_per_subnet_table=6, max_per_subnet_bucket=2)
    t.node = Node((2**160 - 1).to_bytes(20, "big"))
    nets = ["192.0.2", "198.51.100", "203.0.113", "10.0.0"]  # three public /24s, one LAN
    for i in range(300):
        n = contact(rng.getrandbits(160), f"{rng.choice(nets)}.{i % 250}")
        predicted = t.would_take(n)
        added = t.add_contact(n)
        assert predicted == added, i
    assert t.rejected["subnet_limit"] > 0 and t.protocol.checked  # both refusals were seen
