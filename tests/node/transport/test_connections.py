"""Nodes in one process over real TCP sockets on 127.0.0.x."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct

import pytest

from node.core.errors import ConnectionClosed, DialError, DialTimeout, LimitExceeded, PeerIdMismatch
from node.core.identity import Identity, PeerId
from node.core.keys import NodeKeys
from node.core.multiaddr import Multiaddr
from node.storage.memory import MemoryStorage
from node.transport.messages import MAX_CHUNKED_PAYLOAD, CloseCode
from node.transport.session import Session
from tests.harness import Running, StartNode, wait_for


async def test_dial_both_sides_list_each_other(start_node: StartNode) -> None:
    a = await start_node()
    b = await start_node()
    info = await a.node.dial(b.addr)
    assert info.peer_id == str(b.node.peer_id) and info.direction == "outbound"
    await wait_for(lambda: a.node.peer_id in b.peers())
    assert b.node.peer_id in a.peers()
    (seen,) = b.node.peer_list()
    assert seen.direction == "inbound"


async def test_data_reaches_the_registered_protocol(start_node: StartNode) -> None:
    a = await start_node()
    b = await start_node()
    got: list[tuple[PeerId, bytes]] = []
    b.node.register_protocol("test/1", lambda peer, data: got.append((peer, data)))
    await a.node.dial(b.addr)
    for i in range(100):
        await a.node.send(b.node.peer_id, "test/1", b"msg%d" % i)
    await wait_for(lambda: len(got) == 100)
    assert got[0] == (a.node.peer_id, b"msg0") and got[-1][1] == b"msg99"


async def test_wrong_peer_id_is_refused(start_node: StartNode) -> None:
    a = await start_node()
    b = await start_node()
    impostor = b.addr.without_peer_id().with_peer_id(Identity.generate().peer_id)
    with pytest.raises(PeerIdMismatch):
        await a.node.dial(impostor)
    assert a.peers() == set() and b.peers() == set()


async def test_failed_dial_is_a_typed_error(start_node: StartNode) -> None:
    a = await start_node()
    with pytest.raises(DialError):
        await a.node.dial(Multiaddr.parse("/ip4/127.0.0.1/tcp/1"))


async def test_silent_listener_times_out(start_node: StartNode) -> None:
    a = await start_node(handshake_timeout_s=0.3)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(DialTimeout):
            await a.node.dial(Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}"))
    finally:
        server.close()


async def test_garbage_and_oversize_close_only_the_offender(
    start_node: StartNode,
) -> None:
    a = await start_node()
    b = await start_node()
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


async def test_connection_flood_is_bounded(start_node: StartNode) -> None:
    b = await start_node(max_connections=8, handshake_timeout_s=2.0)
    host, port = b.addr.host_port()
    conns = []
    for _ in range(30):
        conns.append(await asyncio.open_connection(host, port))

    def refused() -> int:
        counts = b.node.statistics()["refused"]
        assert isinstance(counts, dict)
        return sum(counts.values())

    # 8 slots: every connection beyond them is refused once the node has accepted it.
    await wait_for(lambda: refused() >= 22)
    for _, w in conns:
        w.close()
    # After the flood, an honest peer still gets in.
    a = await start_node()
    await wait_for(lambda: b.node.statistics()["pending_handshakes"] == 0)
    await a.node.dial(b.addr)


async def test_simultaneous_dial_leaves_one_link(start_node: StartNode) -> None:
    for _ in range(5):
        a = await start_node()
        b = await start_node()
        results = await asyncio.gather(
            a.node.dial(b.addr), b.node.dial(a.addr), return_exceptions=True
        )
        assert not [r for r in results if isinstance(r, BaseException)]
        winner = min(a.node.peer_id, b.node.peer_id)

        def settled(x: Running, winner: PeerId = winner) -> bool:
            # Only the connection dialled by the smaller PeerId is left, at both ends (the
            # loser is closed asynchronously: wait for it rather than sleep).
            links = x.node.connections.links()
            return len(links) == 1 and links[0].initiator_peer == winner

        await wait_for(lambda: settled(a) and settled(b))  # noqa: B023
        (la,), (lb,) = a.node.connections.links(), b.node.connections.links()
        # Both ends kept the same TCP connection: one's outbound is the other's inbound.
        assert {la.direction, lb.direction} == {"inbound", "outbound"}


async def test_stop_is_noticed_and_restart_reconnects(start_node: StartNode) -> None:
    a_storage = MemoryStorage()
    a = await start_node(storage=a_storage)
    b_identity = Identity.generate()
    b = await start_node(identity=b_identity)
    b_port = b.addr.port
    await a.node.dial(b.addr)
    await b.shutdown()
    await wait_for(lambda: a.peers() == set())
    # Same identity, same port: a redials from its address book without being told.
    b2 = await start_node(identity=b_identity, port=b_port)
    await wait_for(lambda: b2.node.peer_id in a.peers(), timeout=10)
    entry = await a_storage.get_peer(b2.node.peer_id)
    assert entry is not None and entry.failures == 0


async def test_operator_disconnect_forgets_the_peer(start_node: StartNode) -> None:
    a_storage = MemoryStorage()
    a = await start_node(storage=a_storage)
    b = await start_node()
    await a.node.dial(b.addr)
    await wait_for(lambda: a.node.peer_id in b.peers())
    b_links = b.node.connections.links()
    assert await a.node.disconnect(b.node.peer_id)
    await wait_for(lambda: all(link.closed.is_set() for link in b_links))
    assert await a_storage.get_peer(b.node.peer_id) is None
    # A reconnect pass (run here directly instead of sleeping past its tick) leaves b alone.
    dialer = a.node._dialer
    assert dialer is not None
    await dialer._reconnect_once()
    assert b.node.peer_id not in dialer._dialing
    assert all(link.direction == "inbound" for link in a.node.connections.links())


async def test_shutdown_sends_reason(start_node: StartNode) -> None:
    a = await start_node()
    b = await start_node()
    await a.node.dial(b.addr)
    await wait_for(lambda: len(b.peers()) == 1)
    (link,) = b.node.connections.links()
    await a.shutdown()
    await wait_for(lambda: link.closed.is_set())
    assert link.close_event is not None and link.close_event.by_peer
    assert link.close_event.reason == "node shutting down"


async def test_distinct_loopback_addresses(start_node: StartNode) -> None:
    nodes = [await start_node(host=f"127.0.0.{i}") for i in range(2, 6)]
    for other in nodes[1:]:
        await nodes[0].node.dial(other.addr)
    await wait_for(lambda: len(nodes[0].peers()) == 3)
    assert {p.addr.split("/")[2] for p in nodes[0].node.peer_list()} == {
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
    }


async def test_full_send_queue_applies_backpressure_then_fails_on_close(
    start_node: StartNode,
) -> None:
    a = await start_node(send_queue_frames=2)
    b = await start_node()
    await a.node.dial(b.addr)
    link = a.node.connections.get(b.node.peer_id)
    assert link is not None
    # Stop the writer from draining by filling the queue faster than one event-loop turn.
    link.try_send("t", b"1")
    link.try_send("t", b"2")
    with pytest.raises(LimitExceeded):
        link.try_send("t", b"3")
    waiter = asyncio.create_task(link.send("t", b"4"))
    await asyncio.sleep(0)
    await link.close(CloseCode.NORMAL, "test")
    # Either it got room before the close or it failed with the typed error: never a hang.
    with contextlib.suppress(ConnectionClosed):
        await asyncio.wait_for(waiter, 2)
    assert waiter.done()
    with pytest.raises(ConnectionClosed):
        await link.send("t", b"5")


async def test_announced_address_is_what_peers_learn(start_node: StartNode) -> None:
    announced = Multiaddr.parse("/dns4/node.example/tcp/4999")
    a = await start_node(announce=(announced,))
    b = await start_node()
    assert [str(x) for x in a.node.listen_addrs()] == [str(announced.with_peer_id(a.node.peer_id))]
    # Dial a's real socket; b learns the announced address from the handshake.
    real = a.node.connections.listen_addrs[0].with_peer_id(a.node.peer_id)
    await b.node.dial(real)
    (link,) = b.node.connections.links()
    assert link.session.peer_listen_addrs == (str(announced),)
    record = await a.node.dht.resolve(a.node.peer_id)
    assert record is not None and record.addrs == (str(announced),)


async def _raw_handshake_then(
    addr: Multiaddr, identity: Identity, tail: list[tuple[str, bytes] | CloseCode]
) -> None:
    """Dial as a client written from PROTOCOL.md would: XX message 3 and ``tail`` (Data
    messages and a Close) leave in ONE write."""
    host, port = addr.host_port()
    reader, writer = await asyncio.open_connection(host, port)
    session = Session(NodeKeys.derive(identity), initiator=True, now=0.0)
    session.start()
    writer.write(session.data_to_send())
    try:
        async with asyncio.timeout(5):
            while not session.is_open:
                data = await reader.read(65536)
                assert data, "node closed during the handshake"
                session.receive_data(data, 0.0)
        for item in tail:
            if isinstance(item, CloseCode):
                session.close(item, "done", 0.0)
            else:
                session.send_data(item[0], item[1], 0.0)
        writer.write(session.data_to_send())  # message 3 + Data... + Close together
        await writer.drain()
    finally:
        writer.close()


async def test_data_and_close_right_behind_handshake_message_3(start_node: StartNode) -> None:
    b = await start_node()
    got: list[tuple[PeerId, bytes]] = []
    b.node.register_protocol("t", lambda peer, data: got.append((peer, data)))
    for i in range(40):
        client = Identity.generate()
        await _raw_handshake_then(
            b.addr, client, [("t", b"first %d" % i), ("t", b"second %d" % i), CloseCode.NORMAL]
        )
        want = 2 * (i + 1)
        await wait_for(lambda: len(got) == want)  # noqa: B023 (awaited at once)
        assert got[-2:] == [(client.peer_id, b"first %d" % i), (client.peer_id, b"second %d" % i)]
        # The Close was processed too: the peer is not listed as connected.
        gone = client.peer_id
        await wait_for(lambda: gone not in b.peers())  # noqa: B023


async def test_a_payload_larger_than_a_frame_arrives_whole(start_node: StartNode) -> None:
    a = await start_node()
    b = await start_node()
    got: list[bytes] = []
    b.node.register_protocol("big", lambda peer, data: got.append(data))
    await a.node.dial(b.addr)
    welcome_sized = os.urandom(300_000)
    await a.node.send(b.node.peer_id, "big", welcome_sized)
    await a.node.send(b.node.peer_id, "big", b"small")
    await wait_for(lambda: len(got) == 2)
    assert got == [welcome_sized, b"small"]
    with pytest.raises(LimitExceeded):
        await a.node.send(b.node.peer_id, "big", bytes(MAX_CHUNKED_PAYLOAD + 1))
