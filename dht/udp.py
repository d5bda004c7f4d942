"""The DHT's UDP socket: a datagram transport that drains its socket on every wake-up.

asyncio's own datagram transport reads *one* datagram per event-loop iteration. A DHT node
under a burst (a bootstrap node while a network starts, or many nodes sharing one loop in a
benchmark) then answers at the pace of loop iterations: datagrams wait in the kernel buffer
for seconds, requests time out although their answers exist, and a full buffer drops the
rest. This transport reads until the socket is empty (at most ``batch`` per wake-up, so other
work still runs), sends directly, and asks for a larger receive buffer (best effort; the
kernel caps it at ``net.core.rmem_max``). A send the kernel refuses raises ``OSError`` to the
caller (the protocol counts it): UDP is lossy and the requester retransmits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["UdpTransport", "open_udp"]

RECEIVE_BUFFER = 1 << 20
_MAX_DATAGRAM = 65535


class UdpTransport(asyncio.DatagramTransport):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.DatagramProtocol,
        batch: int = 256,
    ) -> None:
        super().__init__(extra={"sockname": sock.getsockname(), "socket": sock})
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._batch = batch
        self._closing = False
        self.wakeups = 0
        protocol.connection_made(self)
        loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        recv = self._sock.recvfrom
        deliver = self._protocol.datagram_received
        self.wakeups += 1
        for _ in range(self._batch):
            if self._closing:
                return
            try:
                data, addr = recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            deliver(data, addr)

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            raise OSError("DHT socket closed")
        self._sock.sendto(data, addr)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0


async def open_udp(
    factory: Callable[[], asyncio.DatagramProtocol], host: str, port: int
) -> tuple[UdpTransport, asyncio.DatagramProtocol]:
    """Bind a non-blocking UDP socket to (host, port) and attach ``factory()`` to it."""
    loop = asyncio.get_running_loop()
    try:  # an IP literal (the usual case) needs no resolver thread
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        address: Any = (host, port)
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {host!r}") from None
        family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    protocol = factory()
    return UdpTransport(loop, sock, protocol), protocol
