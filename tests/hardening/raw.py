"""Raw attackers on real loopback sockets: a hand-driven Noise initiator (to send payloads the
node itself would never build) and idle TCP clients bound to chosen 127.0.0.x sources."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

from node.core import cbor
from node.transport.frames import FrameDecoder, encode_frame
from node.transport.noise import CipherState, HandshakeState
from node.transport.session import NOISE_PROTOCOL, PROLOGUE

__all__ = ["RawLink", "forged_handshake", "idle_connection", "read_frame"]


async def read_frame(reader: asyncio.StreamReader, decoder: FrameDecoder) -> bytes:
    while True:
        data = await reader.read(1 << 16)
        if not data:
            raise ConnectionError("closed before a whole frame arrived")
        frames = decoder.feed(data)
        if frames:
            return frames[0]


class RawLink:
    """The initiator's end after a hand-driven handshake (for tests that keep it open)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        send: CipherState,
        recv: CipherState,
    ) -> None:
        self.reader, self.writer, self.send, self.recv = reader, writer, send, recv

    async def closed(self) -> None:
        """Return once the node closed the connection (reads and drops everything)."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(1 << 16):
                pass

    def close(self) -> None:
        self.writer.close()


async def forged_handshake(
    host: str,
    port: int,
    payload: dict[str, Any],
    *,
    source: str = "127.0.0.1",
) -> RawLink:
    """Run Noise XX as the initiator, sending ``payload`` (any CBOR map) in message 3."""
    hs = HandshakeState(
        NOISE_PROTOCOL, initiator=True, prologue=PROLOGUE, s=os.urandom(32), rng=os.urandom
    )
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    writer.write(encode_frame(hs.write_message(b"")))
    decoder = FrameDecoder()
    hs.read_message(await read_frame(reader, decoder))
    writer.write(encode_frame(hs.write_message(cbor.encode(payload))))
    await writer.drain()
    send, recv = hs.split()
    return RawLink(reader, writer, send, recv)


async def idle_connection(host: str, port: int, source: str) -> socket.socket | None:
    """A TCP connection from ``source`` that never sends a byte (None if refused at once)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.bind((source, 0))
        await loop.sock_connect(sock, (host, port))
    except OSError:
        sock.close()
        return None
    return sock
