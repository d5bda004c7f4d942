"""asyncio adapter that runs one :class:`node.transport.session.Session` over a TCP stream.

All protocol decisions live in the session; this module only moves bytes, sleeps until the
session's next deadline, and applies backpressure through a bounded per-peer send queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from node.core.errors import (
    ConnectionClosed,
    DialTimeout,
    HandshakeError,
    LimitExceeded,
)
from node.core.identity import PeerId
from node.transport.messages import MAX_CHUNKED_PAYLOAD, CloseCode
from node.transport.session import Authenticated, Closed, DataReceived, Event, Session

__all__ = ["Direction", "Link", "LinkStats"]

log = structlog.get_logger("node.transport.link")

Direction = Literal["inbound", "outbound"]
DataHandler = Callable[["Link", str, bytes], Awaitable[None] | None]
_READ_SIZE = 1 << 17
_MAX_COALESCE = 1 << 18


def _check_size(payload: bytes) -> None:
    if len(payload) > MAX_CHUNKED_PAYLOAD:
        raise LimitExceeded(f"payload of {len(payload)} bytes exceeds {MAX_CHUNKED_PAYLOAD}")


@dataclass(frozen=True)
class LinkStats:
    bytes_in: int
    bytes_out: int
    frames_in: int
    frames_out: int
    rtt_ms: float | None
    queued: int


class Link:
    """One authenticated (or authenticating) connection to a peer."""

    def __init__(
        self,
        session: Session,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        direction: Direction,
        remote: tuple[str, int],
        send_queue_frames: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self._reader = reader
        self._writer = writer
        self.direction: Direction = direction
        self.remote = remote
        self._clock = clock
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(send_queue_frames)
        self.closed = asyncio.Event()
        self.close_event: Closed | None = None
        self.connected_since = time.time()
        self.opened_at = clock()
        # When the peer last sent application Data (Ping/Pong do not count): idle,
        # never-active inbound links are the first to go when the node is full.
        self.last_data_at: float | None = None
        self.dialed_addr: str | None = None
        self._deliver: DataHandler | None = None
        # Events that arrived in the same read as the last handshake message (a peer may send
        # Data or Close right behind XX message 3): handled first when the link starts running.
        self._backlog: list[Event] = []

    # -- properties ------------------------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        pid = self.session.peer_id
        if pid is None:
            raise ConnectionClosed("link is not authenticated")
        return pid

    @property
    def initiator_peer(self) -> PeerId:
        """The PeerId of whoever dialled this link (used for the duplicate tie-break)."""
        return self.session.local_peer_id if self.direction == "outbound" else self.peer_id

    def stats(self) -> LinkStats:
        s = self.session
        rtt = None if s.rtt_s is None else s.rtt_s * 1000.0
        return LinkStats(
            s.bytes_in, s.bytes_out, s.frames_in, s.frames_out, rtt, self._queue.qsize()
        )

    # -- handshake -------------------------------------------------------------------------

    async def handshake(self, timeout: float) -> Authenticated:
        """Drive the handshake to completion or raise the typed reason it failed."""
        if self.session.initiator:
            self.session.start()
            await self._flush()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self._reader.read(_READ_SIZE)
                    events = self.session.receive_data(data, self._clock())
                    await self._flush()
                    for i, event in enumerate(events):
                        if isinstance(event, Authenticated):
                            self._backlog = events[i + 1 :]
                            return event
                        if isinstance(event, Closed):
                            await self._abort()
                            raise event.error or HandshakeError(event.reason)
        except TimeoutError:
            self.session.handle_timeout(self._clock() + timeout)
            await self._abort()
            where = f"{self.remote[0]}:{self.remote[1]}"
            raise DialTimeout(f"handshake with {where} timed out") from None
        except OSError as exc:
            await self._abort()
            raise HandshakeError(f"connection failed during handshake: {exc}") from None

    # -- running ---------------------------------------------------------------------------

    async def run(self, deliver: DataHandler) -> Closed:
        """Pump bytes until the link closes; returns how it closed.

        ``deliver`` receives every Data message. It must only hand the message on (enqueue):
        it runs inside the read loop, and when it returns an awaitable the read loop waits on
        it, which is how a full consumer queue pushes back on the peer.
        """
        self._deliver = deliver
        backlog, self._backlog = self._backlog, []
        try:
            await self._handle(backlog)
            if not self.session.is_live:
                self._finish(Closed(CloseCode.NORMAL, "connection closed", by_peer=True))
            # The pumps are children of this task, which runs in the node's TaskGroup.
            async with asyncio.TaskGroup() as tg:
                short = self.peer_id.short()
                pumps = [
                    tg.create_task(self._guarded(self._read_loop), name=f"link-read-{short}"),
                    tg.create_task(self._guarded(self._write_loop), name=f"link-write-{short}"),
                    tg.create_task(self._guarded(self._timer_loop), name=f"link-timer-{short}"),
                ]
                await self.closed.wait()
                for pump in pumps:
                    pump.cancel()
        finally:
            await self._abort()
        assert self.close_event is not None
        return self.close_event

    async def _guarded(self, pump: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A bug in one pump closes this link (INTERNAL_ERROR), never the node's TaskGroup."""
        try:
            await pump()
        except Exception as exc:
            log.exception("link_pump_failed", peer=str(self.session.peer_id))
            self._finish(Closed(CloseCode.INTERNAL_ERROR, f"internal error: {exc}", False))

    async def _read_loop(self) -> None:
        while not self.closed.is_set():
            try:
                data = await self._reader.read(_READ_SIZE)
            except OSError as exc:
                self._finish(Closed(CloseCode.NORMAL, f"read failed: {exc}", by_peer=True))
                return
            await self._handle(self.session.receive_data(data, self._clock()))
            if not data or not self.session.is_live:
                # EOF, or the session ended without an event reaching us (closed locally).
                self._finish(Closed(CloseCode.NORMAL, "connection closed", by_peer=not data))
                return

    async def _write_loop(self) -> None:
        while not self.closed.is_set():
            protocol, payload = await self._queue.get()
            try:
                self.session.send_data(protocol, payload, self._clock())
                # Coalesce what is already queued into one write, up to a bound so one flush
                # never builds a huge buffer.
                budget = _MAX_COALESCE - len(payload)
                while budget > 0 and not self._queue.empty():
                    protocol, payload = self._queue.get_nowait()
                    self.session.send_data(protocol, payload, self._clock())
                    budget -= len(payload)
            except ConnectionClosed:
                return
            await self._flush()

    async def _timer_loop(self) -> None:
        while not self.closed.is_set():
            deadline = self.session.next_deadline()
            if deadline is None:
                return
            delay = deadline - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            await self._handle(self.session.handle_timeout(self._clock()))

    async def _handle(self, events: list[Event]) -> None:
        await self._flush()
        for event in events:
            if isinstance(event, DataReceived) and self._deliver is not None:
                self.last_data_at = self._clock()
                result = self._deliver(self, event.protocol, event.payload)
                if result is not None:
                    await result
            elif isinstance(event, Closed):
                self._finish(event)

    async def _flush(self) -> None:
        out = self.session.data_to_send()
        if not out or self._writer.is_closing():
            return
        self._writer.write(out)
        try:
            await self._writer.drain()
        except OSError as exc:
            self._finish(Closed(CloseCode.NORMAL, f"write failed: {exc}", by_peer=True))

    def _finish(self, event: Closed) -> None:
        if self.close_event is None:
            self.close_event = event
        self.closed.set()

    async def _abort(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)

    # -- API for the connection manager ---------------------------------------------------

    async def send(self, protocol: str, payload: bytes) -> None:
        """Queue a message, waiting while the peer's queue is full (backpressure).

        Raises ConnectionClosed if the link closes before there is room, LimitExceeded for a
        payload above MAX_CHUNKED_PAYLOAD.
        """
        _check_size(payload)
        if self.closed.is_set():
            raise ConnectionClosed("link is closed")
        if not self._queue.full():
            self._queue.put_nowait((protocol, payload))
            return
        put = asyncio.ensure_future(self._queue.put((protocol, payload)))
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait({put, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not put.done():
                put.cancel()
        if not put.done() or put.cancelled():
            raise ConnectionClosed("link closed while waiting to send")

    def try_send(self, protocol: str, payload: bytes) -> None:
        """Queue a message or raise LimitExceeded when the peer's queue is full."""
        _check_size(payload)
        if self.closed.is_set():
            raise ConnectionClosed("link is closed")
        try:
            self._queue.put_nowait((protocol, payload))
        except asyncio.QueueFull:
            raise LimitExceeded(f"send queue to {self.peer_id.short()} is full") from None

    async def close(self, code: CloseCode, reason: str) -> None:
        """Send Close with a reason, flush, and end the link."""
        events = self.session.close(code, reason, self._clock())
        with contextlib.suppress(OSError):
            await self._flush()
        for event in events:
            if isinstance(event, Closed):
                self._finish(event)
        if self.close_event is None:
            self._finish(Closed(code, reason, by_peer=False))
        await self._abort()
