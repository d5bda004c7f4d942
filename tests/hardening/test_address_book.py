"""Issue 11 item 3: the address book is bounded and only redials addresses that worked.

Identities that connect, claim a listen address and leave must not grow the address book or
make the node dial what they claimed (real sockets; the claimed address is a trap listener
that counts connections). And however the book was filled, it stays within its bounds by age,
per source network and in total.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from node.config import NodeConfig
from node.core.identity import Identity
from node.core.keys import NodeKeys
from node.core.multiaddr import Multiaddr
from node.daemon import Node
from node.dialer import MeshDialer
from node.storage.base import PeerEntry
from node.storage.memory import MemoryStorage
from tests.hardening.raw import Sybil
from tests.harness import StartNode, wait_for


def _passes(dialer: MeshDialer) -> int:
    return dialer.statistics()["reconnect_passes"]


class _CountingStorage(MemoryStorage):
    """Counts address-book reads: the reconnect loop reads it once per pass."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def list_peers(self) -> list[PeerEntry]:
        self.reads += 1
        return await super().list_peers()


async def test_claimed_listen_addresses_are_neither_stored_nor_redialled(
    start_node: StartNode,
) -> None:
    trapped: list[str] = []

    def trap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        trapped.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(trap, "127.0.60.1", 0)
    claim = f"/ip4/127.0.60.1/tcp/{server.sockets[0].getsockname()[1]}"
    storage = _CountingStorage()
    victim = await start_node(host="127.0.0.30", storage=storage)
    host, port = victim.addr.host_port()
    try:
        for i in range(300):
            sybil = Sybil(listen_addrs=(claim,))
            task = asyncio.create_task(sybil.run(host, port, f"127.0.{61 + i % 4}.1"))
            await wait_for(lambda s=sybil: s.admitted.is_set() or s.closed.is_set(), 10.0)
            assert sybil.admitted.is_set()
            await wait_for(lambda s=sybil: s.peer_id in victim.peers(), 5.0)
            sybil.close()  # and leave
            await task
        # Two whole reconnect passes after the last one left.
        await wait_for(lambda: victim.peers() == set(), 5.0)
        seen = storage.reads
        await wait_for(lambda: storage.reads >= seen + 3, 10.0)
        assert len(await storage.list_peers()) == 0
        assert trapped == []
    finally:
        server.close()


async def test_the_address_book_stays_within_its_bounds(tmp_path: Path) -> None:
    storage = MemoryStorage()
    now = 1_900_000_000.0
    day = 86_400.0
    # 1,500 entries as a long-running node could have gathered: most in one /24, some in
    # others, some not seen for 40 days, some failing for days.
    for i in range(1500):
        peer = Identity.generate().peer_id
        net = 70 if i < 1000 else 71 + i % 20
        addr = Multiaddr.parse(f"/ip4/127.0.{net}.{1 + i % 250}/tcp/{1000 + i}")
        added = now - (40 * day if i % 10 == 0 else 3 * day if i % 7 == 0 else day)
        await storage.upsert_peer(peer, [addr], added)
        await storage.mark_seen(peer, added)
        if i % 7 == 0:
            for _ in range(12):
                await storage.mark_failure(peer, now - 2 * day)
    config = NodeConfig(
        data_dir=tmp_path / "n", dht_subnet_prefix=32,
        listen=Multiaddr.parse("/ip4/127.0.0.31/tcp/0", allow_port_zero=True),
        api=Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True),
    )
    node = Node(config, NodeKeys.derive(Identity.generate()), storage, wall=lambda: now)
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    try:
        await wait_for(lambda: node._dialer is not None, 10.0)
        dialer = node._dialer
        assert dialer is not None
        await wait_for(lambda: _passes(dialer) >= 1, 10.0)
    finally:
        stop.set()
        await task
    from node.storage.addrbook import AddressBookLimits, entry_source

    entries = await storage.list_peers()
    limits = AddressBookLimits()
    assert len(entries) <= limits.max_entries
    per_source: dict[str, int] = {}
    for entry in entries:
        per_source[entry_source(entry)] = per_source.get(entry_source(entry), 0) + 1
        assert entry.last_seen is not None and now - entry.last_seen <= limits.max_age_s
        assert entry.failures < limits.max_failures
    assert max(per_source.values()) <= limits.max_per_prefix
    assert dialer.statistics()["address_book_forgotten"] == 1500 - len(entries)
