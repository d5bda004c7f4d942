"""Hands received Data to protocol consumers through bounded queues (one per protocol).

A link's read loop calls :meth:`Dispatcher.deliver`, which only enqueues: no protocol handler
ever runs inside a read loop, so a slow handler cannot stall other links and a failing one
cannot close a link. Each protocol's queue is drained by one task in the node's TaskGroup.
When a queue is full, ``deliver`` returns an awaitable and the read loop waits on it: that
link stops reading (TCP backpressure to the sender) until the consumer catches up.

A handler that raises :class:`node.core.errors.SpacePandaError` rejected what the peer sent:
counted as ``bad_payload`` and dropped. Any other exception is our bug: logged with its
traceback and counted as ``handler_failed``; the consumer keeps running either way.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from node.core.errors import SpacePandaError
from node.core.identity import PeerId

__all__ = ["DEFAULT_QUEUE_SIZE", "Dispatcher", "ProtocolHandler"]

log = structlog.get_logger("node.transport.dispatch")

ProtocolHandler = Callable[[PeerId, bytes], Awaitable[None] | None]
DEFAULT_QUEUE_SIZE = 1024


@dataclass
class _Route:
    handler: ProtocolHandler
    queue: asyncio.Queue[tuple[PeerId, bytes]]
    running: bool = False
    consumer: asyncio.Task[None] | None = None


class Dispatcher:
    """Per-protocol bounded queues; consumers run in the TaskGroup given to :meth:`start`."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}
        self._tg: asyncio.TaskGroup | None = None
        self.received: Counter[str] = Counter()
        self.bad_payload: Counter[str] = Counter()
        self.handler_failed: Counter[str] = Counter()
        self.unknown_protocol = 0

    def register(
        self, protocol: str, handler: ProtocolHandler, *, queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        if protocol in self._routes:
            raise ValueError(f"protocol {protocol!r} already has a handler")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        route = _Route(handler, asyncio.Queue(queue_size))
        self._routes[protocol] = route
        if self._tg is not None:
            self._spawn(protocol, route)

    def unregister(self, protocol: str) -> None:
        """Stop handing ``protocol`` to its handler (a stopped service); Data for it is then
        counted as an unknown protocol. Queued items are dropped."""
        route = self._routes.pop(protocol, None)
        if route is not None and route.consumer is not None:
            route.consumer.cancel()

    def start(self, task_group: asyncio.TaskGroup) -> None:
        """Start one consumer per protocol (and for protocols registered later)."""
        self._tg = task_group
        for protocol, route in self._routes.items():
            self._spawn(protocol, route)

    def stop(self) -> None:
        """Forget the TaskGroup (its tasks end with it); queued items are dropped."""
        self._tg = None
        for route in self._routes.values():
            route.running = False

    def _spawn(self, protocol: str, route: _Route) -> None:
        assert self._tg is not None
        if not route.running:
            route.running = True
            route.consumer = self._tg.create_task(self._consume(protocol, route),
                                                  name=f"proto-{protocol}")

    def deliver(self, peer: PeerId, protocol: str, payload: bytes) -> Awaitable[None] | None:
        """Enqueue; returns an awaitable only when the protocol's queue is full."""
        route = self._routes.get(protocol)
        if route is None:
            self.unknown_protocol += 1
            log.debug("unknown_protocol", peer=str(peer), protocol=protocol)
            return None
        self.received[protocol] += 1
        try:
            route.queue.put_nowait((peer, payload))
        except asyncio.QueueFull:
            return route.queue.put((peer, payload))
        return None

    async def _consume(self, protocol: str, route: _Route) -> None:
        while True:
            peer, payload = await route.queue.get()
            try:
                result = route.handler(peer, payload)
                if inspect.isawaitable(result):
                    await result
            except SpacePandaError as exc:
                self.bad_payload[protocol] += 1
                log.debug("bad_payload", peer=str(peer), protocol=protocol, error=str(exc),
                          kind=type(exc).__name__)
            except Exception:
                self.handler_failed[protocol] += 1
                log.exception("protocol_handler_failed", peer=str(peer), protocol=protocol)

    def queue_depths(self) -> dict[str, int]:
        return {name: route.queue.qsize() for name, route in self._routes.items()}

    def statistics(self) -> dict[str, object]:
        return {
            "unknown_protocol_frames": self.unknown_protocol,
            "received": dict(self.received),
            "bad_payload": dict(self.bad_payload),
            "handler_failed": dict(self.handler_failed),
            "queued": self.queue_depths(),
        }
