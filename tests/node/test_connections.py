"""Nodes in one process over real TCP sockets on 127.0.0.x."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from node.config import NodeConfig
from node.daemon import Node
from node.errors import DialError, DialTimeout, PeerIdMismatch
from node.identity import Identity, PeerId
from node.keys import NodeKeys
from node.multiaddr import Multiaddr
from node.storage.memory import MemoryStorage


async def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)


class Running:
    def __init__(self, node: Node, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.node, self.stop, self.task = node, stop, task

    @property
    def addr(self) -> Multiaddr:
        return self.node.listen_addrs()[0]

    def peers(self) -> set[PeerId]:
        return set(self.node.connections.connected_peers())

    async def shutdown(self) -> None:
        self.stop.set()
        await self.task


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    running: list[Running] = []

    async def start(
        host: str = "127.0.0.1",
        identity: Identity | None = None,
        storage: MemoryStorage | None = None,
        port: int = 0,
        **overrides: object,
    ) -> Running:
        config = NodeConfig(
            data_dir=tmp_path / f"n{len(running)}",
            listen=Multiaddr.parse(f"/ip4/{host}/tcp/{port}", allow_port_zero=True),
            api=Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True),
        )
        config = replace(config, **overrides)  # type: ignore[arg-type]
        node = Node(
            config, NodeKeys.derive(identity or Identity.generate()), storage or MemoryStorage()
        )
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        await wait_for(lambda: node.started.is_set() or task.done())
        if task.done():
            task.result()
        r = Running(node, stop, task)
        running.append(r)
        return r

    yield start
    for r in running:
        if not r.task.done():
            await r.shutdown()


async def test_dial_both_sides_list_each_other(start_node: Callable[..., object]) -> None:
    a = await start_node()  # type: ignore[misc]
    b = await start_node()  # type: ignore[misc]
    info = await a.node.dial(b.addr)
    assert info.peer_id == str(b.node.peer_id) and info.direction == "outbound"
    await wait_for(lambda: a.node.peer_id in b.peers())
    assert b.node.peer_id in a.peers()
    (seen,) = b.node.peer_list()
    assert seen.direction == "inbound"


async def test_data_reaches_the_registered_protocol(start_node: Callable[..., object]) -> None:
    a = await start_node()  # type: ignore[misc]
    b = await start_node()  # type: ignore[misc]
    got: list[tuple[PeerId, bytes]] = []
    b.node.register_protocol("test/1", lambda peer, data: got.append((peer, data)))
    await a.node.dial(b.addr)
    for i in range(100):
        await a.node.send(b.node.peer_id, "test/1", b"msg%d" % i)
    await wait_for(lambda: len(got) == 100)
    assert got[0] == (a.node.peer_id, b"msg0") and got[-1][1] == b"msg99"


async def test_wrong_peer_id_is_refused(start_node: Callable[..., object]) -> None:
    a = await start_node()  # type: ignore[misc]
    b = await start_node()  # type: ignore[misc]
    impostor = b.addr.without_peer_id().with_peer_id(Identity.generate().peer_id)
    with pytest.raises(PeerIdMismatch):
        await a.node.dial(impostor)
    assert a.peers() == set() and b.peers() == set()


async def test_failed_dial_is_a_typed_error(start_node: Callable[..., object]) -> None:
    a = await start_node()  # type: ignore[misc]
    with pytest.raises(DialError):
        await a.node.dial(Multiaddr.parse("/ip4/127.0.0.1/tcp/1"))


async def test_silent_listener_times_out(start_node: Callable[..., object]) -> None:
    a = await start_node(handshake_timeout_s=0.3)  # type: ignore[misc]
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(DialTimeout):
            await a.node.dial(Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}"))
    finally:
        server.close()


async def test_garbage_and_oversize_close_only_the_offender(
    start_node: Callable[..., object],
) -> None:
    a = await start_node()  # type: ignore[misc]
    b = await start_node()  # type: ignore[misc]
    await a.node.dial(b.addr)
    host, port = b.addr.host_port()
    for junk in (b"\xff" * 100, struct.pack(">H", 0), b"GET / HTTP/1.1\r\n\r\n"):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(junk)
        await writer.drain()
        async with asyncio.timeout(5):
            rest = await reader.read()  # the node closes on us
        assert rest == b""
        writer.close()
    # The honest link is unaffected.
    got: list[bytes] = []
    b.node.register_protocol("t", lambda peer, data: got.append(data))
    await a.node.send(b.node.peer_id, "t", b"still here")
    await wait_for(lambda: got == [b"still here"])
    assert b.node.statistics()["handshake_failures"]


async def test_connection_flood_is_bounded(start_node: Callable[..., object]) -> None:
    b = await start_node(max_connections=8, handshake_timeout_s=2.0)  # type: ignore[misc]
    host, port = b.addr.host_port()
    conns = []
    for _ in range(30):
        conns.append(await asyncio.open_connection(host, port))
    await asyncio.sleep(0.2)
    refused = b.node.statistics()["refused"]
    assert isinstance(refused, dict) and sum(refused.values()) >= 20
    for _, w in conns:
        w.close()
    # After the flood, an honest peer still gets in.
    a = await start_node()  # type: ignore[misc]
    await wait_for(lambda: b.node.statistics()["pending_handshakes"] == 0)
    await a.node.dial(b.addr)


async def test_simultaneous_dial_leaves_one_link(start_node: Callable[..., object]) -> None:
    for _ in range(5):
        a = await start_node()  # type: ignore[misc]
        b = await start_node()  # type: ignore[misc]
        results = await asyncio.gather(
            a.node.dial(b.addr), b.node.dial(a.addr), return_exceptions=True
        )
        assert not [r for r in results if isinstance(r, BaseException)]
        await asyncio.sleep(0.2)
        assert len(a.node.peer_list()) == 1 and len(b.node.peer_list()) == 1
        (la,), (lb,) = a.node.connections.links(), b.node.connections.links()
        # Both ends kept the same TCP connection: one's outbound is the other's inbound.
        assert {la.direction, lb.direction} == {"inbound", "outbound"}
        winner = min(a.node.peer_id, b.node.peer_id)
        assert la.initiator_peer == winner == lb.initiator_peer


async def test_stop_is_noticed_and_restart_reconnects(start_node: Callable[..., object]) -> None:
    a_storage = MemoryStorage()
    a = await start_node(storage=a_storage)  # type: ignore[misc]
    b_identity = Identity.generate()
    b = await start_node(identity=b_identity)  # type: ignore[misc]
    b_port = b.addr.port
    await a.node.dial(b.addr)
    await b.shutdown()
    await wait_for(lambda: a.peers() == set())
    # Same identity, same port: a redials from its address book without being told.
    b2 = await start_node(identity=b_identity, port=b_port)  # type: ignore[misc]
    await wait_for(lambda: b2.node.peer_id in a.peers(), timeout=10)
    entry = await a_storage.get_peer(b2.node.peer_id)
    assert entry is not None and entry.failures == 0


async def test_operator_disconnect_forgets_the_peer(start_node: Callable[..., object]) -> None:
    a_storage = MemoryStorage()
    a = await start_node(storage=a_storage)  # type: ignore[misc]
    b = await start_node()  # type: ignore[misc]
    await a.node.dial(b.addr)
    await wait_for(lambda: a.node.peer_id in b.peers())
    b_links = b.node.connections.links()
    assert await a.node.disconnect(b.node.peer_id)
    await wait_for(lambda: all(link.closed.is_set() for link in b_links))
    assert await a_storage.get_peer(b.node.peer_id) is None
    await asyncio.sleep(1.5)  # longer than a reconnect tick: a does not redial b by itself
    assert all(link.direction == "inbound" for link in a.node.connections.links())


async def test_shutdown_sends_reason(start_node: Callable[..., object]) -> None:
    a = await start_node()  # type: ignore[misc]
    b = await start_node()  # type: ignore[misc]
    await a.node.dial(b.addr)
    await wait_for(lambda: len(b.peers()) == 1)
    (link,) = b.node.connections.links()
    await a.shutdown()
    await wait_for(lambda: link.closed.is_set())
    assert link.close_event is not None and link.close_event.by_peer
    assert link.close_event.reason == "node shutting down"


async def test_distinct_loopback_addresses(start_node: Callable[..., object]) -> None:
    nodes = [await start_node(host=f"127.0.0.{i}") for i in range(2, 6)]  # type: ignore[misc]
    for other in nodes[1:]:
        await nodes[0].node.dial(other.addr)
    await wait_for(lambda: len(nodes[0].peers()) == 3)
    assert {p.addr.split("/")[2] for p in nodes[0].node.peer_list()} == {
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
    }
