"""A hostile DHT peer on a real UDP socket: crafted datagrams, optionally a real identity."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import umsgpack

from dht.protocol import IDENTIFY_DOMAIN
from dht.wire import REQUEST, RESPONSE, WireError, parse_datagram
from node.core.identity import Identity, node_id_for


class HostilePeer(asyncio.DatagramProtocol):
    """Answers ``identify`` truthfully (if it has an identity) and everything else from
    ``answers`` (rpc name -> raw msgpack-able reply); records what it received."""

    def __init__(self, identity: Identity | None = None) -> None:
        self.identity = identity or Identity.generate()
        self.node_id = node_id_for(self.identity.public_key_bytes)
        self.answers: dict[str, Any] = {}
        self.received: list[tuple[str, list[Any]]] = []
        self.responses: list[tuple[bytes, int]] = []  # (raw datagram, size)
        self.transport: asyncio.DatagramTransport | None = None
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            dgram = parse_datagram(data, 65535)
        except WireError:
            return
        if dgram.kind == RESPONSE:
            self.responses.append((data, len(data)))
            self.inbox.put_nowait(data)
            return
        name, args = dgram.body
        self.received.append((name, args))
        if name == "identify":
            sig = self.identity.sign(IDENTIFY_DOMAIN + args[1] + self.node_id)
            reply: Any = [self.identity.public_key_bytes, sig]
        elif name in self.answers:
            reply = self.answers[name]
            if callable(reply):
                reply = reply(args)
        elif name == "ping":
            reply = self.node_id
        else:
            return
        assert self.transport is not None
        self.transport.sendto(bytes([RESPONSE]) + dgram.msg_id + umsgpack.packb(reply), addr)

    def send_raw(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def request(self, name: str, args: list[Any], addr: tuple[str, int]) -> bytes:
        data = bytes([REQUEST]) + os.urandom(20) + bytes(umsgpack.packb([name, args]))
        self.send_raw(data, addr)
        return data

    async def call(self, name: str, args: list[Any], addr: tuple[str, int]) -> Any:
        self.request(name, args, addr)
        raw = await asyncio.wait_for(self.inbox.get(), 2.0)
        return umsgpack.unpackb(raw[21:])

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def hostile(host: str, identity: Identity | None = None) -> HostilePeer:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(
        lambda: HostilePeer(identity), local_addr=(host, 0)
    )
    return proto
