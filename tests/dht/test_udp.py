"""The DHT's datagram transport drains its socket on each wake-up (asyncio's reads one)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from dht.udp import UdpTransport, open_udp
from tests.dht.helpers import wait_for


class Counting(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost = False

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


async def test_a_burst_is_read_in_one_wake_up() -> None:
    # A datagram socketpair queues every datagram synchronously, so all 100 are waiting
    # before the loop first looks at the socket.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    proto = Counting()
    transport = UdpTransport(asyncio.get_running_loop(), ours, proto, batch=256)
    try:
        for i in range(100):
            theirs.send(i.to_bytes(2, "big"))
        await wait_for(lambda: len(proto.received) == 100)
        assert transport.wakeups == 1
        assert proto.received == [i.to_bytes(2, "big") for i in range(100)]
        # At most ``batch`` per wake-up: the rest waits for the next one.
        transport._batch = 30
        for _ in range(100):
            theirs.send(b"x")
        await wait_for(lambda: len(proto.received) == 200)
        assert transport.wakeups == 1 + 4
    finally:
        transport.close()
        theirs.close()
    await wait_for(lambda: proto.lost)
    assert transport.is_closing()


async def test_open_udp_binds_and_exchanges() -> None:
    a, pa = await open_udp(Counting, "127.0.0.1", 0)
    b, pb = await open_udp(Counting, "127.0.0.1", 0)
    try:
        b.sendto(b"hello", a.get_extra_info("sockname"))
        await wait_for(lambda: pa.received == [b"hello"])  # type: ignore[attr-defined]
        assert pb.received == []  # type: ignore[attr-defined]
    finally:
        a.close()
        b.close()
