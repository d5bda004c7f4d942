"""Raw attackers on real loopback sockets: a hand-driven Noise initiator (to send payloads the
node itself would never build) and idle TCP clients bound to chosen 127.0.0.x sources."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.core import cbor
from node.core.identity import Identity, PeerId
from node.core.keys import NodeKeys
from node.transport.frames import FrameDecoder, encode_frame
from node.transport.noise import CipherState, HandshakeState
from node.transport.session import NOISE_PROTOCOL, PROLOGUE, Authenticated, Closed, Session

__all__ = ["RawLink", "Sybil", "forged_handshake", "idle_connection", "read_frame"]


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
    payload: dict[str, Any] | Callable[[bytes], dict[str, Any]],
    *,
    source: str = "127.0.0.1",
) -> RawLink:
    """Run Noise XX as the initiator, sending ``payload`` (any CBOR map, or a function of our
    Noise static public key returning one) in message 3."""
    static = os.urandom(32)
    hs = HandshakeState(
        NOISE_PROTOCOL, initiator=True, prologue=PROLOGUE, s=static, rng=os.urandom
    )
    if callable(payload):
        payload = payload(X25519PrivateKey.from_private_bytes(static).public_key()
                          .public_bytes_raw())
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


class Sybil:
    """A fresh identity that completes the real handshake, then sits: it answers Pings (the
    session does) and sends nothing else. ``closed`` is set when the node drops it."""

    def __init__(self, listen_addrs: tuple[str, ...] = ()) -> None:
        self.keys = NodeKeys.derive(Identity.generate())
        self.listen_addrs = listen_addrs
        self.admitted = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def peer_id(self) -> PeerId:
        return self.keys.identity.peer_id

    async def run(self, host: str, port: int, source: str) -> None:
        loop = asyncio.get_running_loop()
        session = Session(self.keys, initiator=True, now=loop.time(),
                          listen_addrs=self.listen_addrs)
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            self.closed.set()
            return
        self._writer = writer
        try:
            session.start()
            writer.write(session.data_to_send())
            while session.is_live:
                data = await reader.read(1 << 16)
                events = session.receive_data(data, loop.time())
                out = session.data_to_send()
                if out and not writer.is_closing():
                    writer.write(out)
                for event in events:
                    if isinstance(event, Authenticated):
                        self.admitted.set()
                    elif isinstance(event, Closed):
                        self.close_code = int(event.code)
        except OSError:
            pass
        finally:
            self.closed.set()
            writer.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class IdleFlood:
    """Idle TCP connections from ``sources`` (``per_source`` each) that reconnect as soon as
    the node closes them, until :meth:`stop` or ``max_connects`` connects in all."""

    def __init__(self, host: str, port: int, sources: list[str], per_source: int,
                 max_connects: int = 20_000) -> None:
        self.host, self.port = host, port
        self.sources, self.per_source = sources, per_source
        self.max_connects = max_connects
        self.connects = 0
        self.refused = 0  # connections the node closed or reset without a byte
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for source in self.sources:
            for _ in range(self.per_source):
                self._tasks.append(asyncio.create_task(self._hold(source)))

    async def _hold(self, source: str) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set() and self.connects < self.max_connects:
            self.connects += 1
            sock = await idle_connection(self.host, self.port, source)
            if sock is None:
                self.refused += 1
                await asyncio.sleep(0.01)
                continue
            stop = asyncio.ensure_future(self._stop.wait())
            eof = asyncio.ensure_future(loop.sock_recv(sock, 1))
            try:
                await asyncio.wait({stop, eof}, return_when=asyncio.FIRST_COMPLETED)
                if eof.done():
                    self.refused += 1  # the node closed it (or reset it)
            finally:
                for task in (stop, eof):
                    task.cancel()
                await asyncio.gather(stop, eof, return_exceptions=True)
                sock.close()
            await asyncio.sleep(0.005)  # a tiny pause: bounded, not a busy loop

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
