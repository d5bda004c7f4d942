"""Deterministic DHT tests: an in-memory datagram network on an event loop with virtual time.

``MemNet.endpoint`` is a :data:`dht.service.EndpointFactory`, so real ``DhtService`` s (and
``HostilePeer`` s) run on any address, public-looking ones included, with no socket: a
datagram is delivered after a fixed ``latency`` and nothing is lost unless a test says so.
``run_virtual`` runs a coroutine on a loop whose clock jumps to the next timer whenever
nothing is ready, so timeouts fire exactly when they are due however loaded the machine is,
and a test's timing assertions are about virtual seconds, not CPU speed.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from node.core.identity import Identity
from tests.dht.hostile import HostilePeer

__all__ = [
    "BASE_UNIX",
    "MemNet",
    "MemTransport",
    "VirtualLoop",
    "run_virtual",
    "unix_clock",
]

T = TypeVar("T")
Addr = tuple[str, int]

# Unix time at virtual time 0 (records carry unix expiry times).
BASE_UNIX = 1_800_000_000.0


class _VirtualSelector(selectors.SelectSelector):
    """Never waits: advancing virtual time by the requested timeout is the wait."""

    def __init__(self, loop: VirtualLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("virtual loop deadlock: nothing ready and no timer scheduled")
        if timeout > 0:
            self._loop.now += timeout
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self.now


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on a fresh :class:`VirtualLoop`."""
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def unix_clock() -> float:
    """Unix seconds that follow the running (virtual) loop."""
    return BASE_UNIX + asyncio.get_running_loop().time()


class MemTransport(asyncio.DatagramTransport):
    def __init__(self, net: MemNet, addr: Addr) -> None:
        super().__init__()
        self._net = net
        self._addr = addr
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        self._net.send(self._addr, (str(addr[0]), int(addr[1])), bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._addr if name == "sockname" else default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True
        self._net.endpoints.pop(self._addr, None)


class MemNet:
    """Endpoints by (host, port); ``sent`` lists every datagram handed to the network."""

    def __init__(self, latency: float = 0.002) -> None:
        self.latency = latency
        self.endpoints: dict[Addr, asyncio.DatagramProtocol] = {}
        self.sent: list[tuple[Addr, Addr, bytes]] = []
        self._next_port = 40000

    def send(self, src: Addr, dst: Addr, data: bytes) -> None:
        self.sent.append((src, dst, data))
        asyncio.get_running_loop().call_later(self.latency, self._deliver, src, dst, data)

    def _deliver(self, src: Addr, dst: Addr, data: bytes) -> None:
        proto = self.endpoints.get(dst)
        if proto is not None:  # nobody listening: the datagram is gone, as over UDP
            proto.datagram_received(data, src)

    async def endpoint(
        self, factory: Callable[[], Any], host: str, port: int
    ) -> tuple[MemTransport, Any]:
        if port == 0:
            self._next_port += 1
            port = self._next_port
        if (host, port) in self.endpoints:
            raise OSError(f"address in use: {host}:{port}")
        proto = factory()
        transport = MemTransport(self, (host, port))
        self.endpoints[(host, port)] = proto
        proto.connection_made(transport)
        return transport, proto

    async def hostile(self, host: str, identity: Identity | None = None) -> HostilePeer:
        _, proto = await self.endpoint(lambda: HostilePeer(identity), host, 0)
        peer: HostilePeer = proto
        return peer
