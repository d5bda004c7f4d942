"""DhtService.closest_peers: the k verified nodes closest to a key, the same from every node."""

from __future__ import annotations

import hashlib

import pytest

from dht.errors import DhtError
from tests.dht.helpers import boot_of, make_node, wait_for


async def test_every_node_names_the_same_k_closest() -> None:
    boot = make_node(2)
    await boot.start()
    nodes = [make_node(40 + i) for i in range(7)]
    everyone = [boot, *nodes]
    try:
        for n in nodes:
            await n.start([boot_of(boot)])
        await wait_for(lambda: all(n.is_ready for n in everyone))
        # Wait until each routing table knows everyone (a lookup then sees the whole net).
        await wait_for(lambda: all(len(n.known_peers()) == len(everyone) - 1 for n in everyone))
        for i in range(5):
            key = hashlib.sha256(b"key %d" % i).digest()[:20]
            target = int.from_bytes(key, "big")
            by_distance = sorted(everyone,
                                 key=lambda n: int.from_bytes(n.node_id, "big") ^ target)
            expected = [n.peer_id for n in by_distance[:3]]
            for asker in everyone:
                assert await asker.closest_peers(key, 3) == expected
            assert await nodes[0].closest_peers(key, 8) == [n.peer_id for n in by_distance]
        with pytest.raises(DhtError):
            await boot.closest_peers(bytes(19), 3)
        with pytest.raises(DhtError):
            await boot.closest_peers(bytes(20), 0)
    finally:
        for n in everyone:
            await n.stop()


async def test_alone_a_node_is_its_own_closest() -> None:
    solo = make_node(3)
    await solo.start()
    try:
        assert await solo.closest_peers(bytes(20), 3) == [solo.peer_id]
    finally:
        await solo.stop()
