"""Partition and heal two nodes in their own network namespaces (a veth pair between them
goes down, then up): both notice the partition, and they find each other again after it."""

from __future__ import annotations

from pathlib import Path

from tests.faults.netns import Namespaces, NsNode, wait_until


def test_partition_then_heal(tmp_path: Path, namespaces: Namespaces) -> None:
    ns_a, ns_b = namespaces.ns("a"), namespaces.ns("b")
    namespaces.link(ns_a, ns_b, "10.77.0.1", "10.77.0.2")
    a = NsNode(ns_a, tmp_path / "a", "/ip4/10.77.0.1/tcp/4001")
    b = NsNode(ns_b, tmp_path / "b", "/ip4/10.77.0.2/tcp/4001")
    try:
        a.start()
        b.start()
        a_id, b_id = a.peer_id, b.peer_id
        assert a.cli("connect", f"/ip4/10.77.0.2/tcp/4001/p2p/{b_id}", "--json") is not None
        wait_until(lambda: a.peers() == {b_id} and b.peers() == {a_id}, 20, "the link")
        namespaces.cut(ns_a, ns_b)
        wait_until(lambda: a.peers() == set() and b.peers() == set(), 30,
                   "both sides to notice the partition (idle timeout)")
        namespaces.heal(ns_a, ns_b)
        # a dialled b, so b's address is in a's address book: a redials it with backoff.
        wait_until(lambda: a.peers() == {b_id} and b.peers() == {a_id}, 90,
                   "the link to come back after the partition heals")
    finally:
        a.stop()
        b.stop()
