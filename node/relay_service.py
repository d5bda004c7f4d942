"""The relay's asyncio adapter: links, frames and the heartbeat in, frames and envelopes out.

The gossip router (``node.network.gossip``, docs/PROTOCOL.md section 14) is sans-I/O; this
adapter feeds it every link that comes up or goes down, every ``sp/gossip/1`` payload and a
heartbeat each second, sends the frames it returns on the peers' links (a full send queue
drops the frame: gossip repairs loss with IHAVE/IWANT), and hands each new envelope to the
consumer through a bounded queue that the consumer drains in the node's TaskGroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from node.core.errors import TransportError
from node.core.identity import PeerId
from node.network.gossip import Deliver, Effect, GossipRouter, GossipSettings, Send
from node.network.gossip_wire import PROTOCOL
from node.network.hopdelay import HopDelay, HopDelaySettings
from node.transport.connections import LinkDown, LinkEvent, LinkUp

if TYPE_CHECKING:
    from node.daemon import Node

__all__ = ["RelayService", "shard_of"]

log = structlog.get_logger("node.relay")

_FRAME_QUEUE = 1024  # sp/gossip/1 payloads waiting for the router (the dispatcher's queue)
_DELIVER_QUEUE = 4096  # new envelopes waiting for the channel layer
_HEARTBEAT_S = 1.0


def shard_of(envelope: bytes, shards: int) -> int:
    """The relay shard of a sealed envelope: its routing tag (bytes 1..16) modulo the shard
    count. Tags change hourly, so a channel moves between shards; relays cannot follow it."""
    return int.from_bytes(envelope[1:17], "big") % shards


class RelayService:
    """One node's relay: runs the router for every shard it relays."""

    def __init__(
        self,
        node: Node,
        *,
        shards: int = 1,
        settings: GossipSettings | None = None,
        rand: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        hop_delay: HopDelaySettings | None = None,
    ) -> None:
        self.settings = replace(settings or GossipSettings(), shards=shards)
        self._node = node
        self._wall = wall
        rand = rand or random.Random()
        # `high` jitter: every frame leaves after a random per-hop delay (hopdelay.py).
        self.hop_delay = (None if hop_delay is None
                          else HopDelay(hop_delay, random.Random(rand.getrandbits(64))))
        self._held = asyncio.Event()
        # Every node relays every shard for now: with few shards that is what keeps the
        # meshes full (PROTOCOL.md 14.1 foresees partial relaying above ~1,000 nodes).
        self.router = GossipRouter(self.settings, rng=rand)
        self.delivered: asyncio.Queue[bytes] = asyncio.Queue(_DELIVER_QUEUE)
        self.counters: Counter[str] = Counter()

    @property
    def shards(self) -> int:
        return self.settings.shards

    def start(self, task_group: asyncio.TaskGroup) -> None:
        self._node.register_protocol(PROTOCOL, self._on_frame, queue_size=_FRAME_QUEUE)
        self._node.observe_links(self._on_link)
        now = self._wall()
        for link in self._node.connections.links():
            self._apply(self.router.add_peer(link.peer_id, now,
                                             outbound=link.direction == "outbound"))
        task_group.create_task(self._heartbeat(), name="relay-heartbeat")
        if self.hop_delay is not None:
            task_group.create_task(self._release_held(self.hop_delay), name="relay-hop-delay")

    # -- inputs --------------------------------------------------------------------------------

    def _on_link(self, event: LinkEvent) -> None:
        now = self._wall()
        peer = event.link.peer_id
        if isinstance(event, LinkUp):
            self._apply(self.router.add_peer(peer, now,
                                             outbound=event.link.direction == "outbound"))
        elif isinstance(event, LinkDown):
            self._apply(self.router.remove_peer(peer, now))

    async def _on_frame(self, peer: PeerId, payload: bytes) -> None:
        now = self._wall()
        if not self.router.knows(peer):
            # A new link's first frames (its SUBSCRIBE and GRAFT) can be read before its LinkUp
            # reaches us: dropping them would leave the peer out of our meshes.
            link = self._node.connections.get(peer)
            if link is not None:
                self.counters["peers_added_on_frame"] += 1
                self._apply(self.router.add_peer(peer, now,
                                                 outbound=link.direction == "outbound"))
        self._apply(self.router.receive(peer, bytes(payload), now))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(_HEARTBEAT_S)
            self._apply(self.router.heartbeat(self._wall()))

    # -- our envelopes ---------------------------------------------------------------------------

    def publish(self, envelope: bytes, *, stem: bool) -> bool:
        """Relay one of our envelopes (``stem``: first along a random path, hiding that it is
        ours). False when the router refused it (malformed; or published within the seen
        window, which the caller treats as done)."""
        try:
            effects = self.router.publish(shard_of(envelope, self.shards), envelope,
                                          self._wall(), stem=stem)
        except ValueError as exc:
            log.warning("relay_publish_refused", error=str(exc))
            self.counters["publish_refused"] += 1
            return False
        self.counters["published"] += 1
        self._apply(effects)
        return True

    # -- effects ---------------------------------------------------------------------------------

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                delay = self.hop_delay
                if delay is not None and delay.hold(effect.peer, effect.payload,
                                                    asyncio.get_running_loop().time()):
                    self._held.set()
                    continue
                self._send_frame(effect.peer, effect.payload)
            elif isinstance(effect, Deliver):
                try:
                    self.delivered.put_nowait(effect.envelope)
                    self.counters["delivered"] += 1
                except asyncio.QueueFull:
                    self.counters["delivered_dropped"] += 1

    def statistics(self) -> dict[str, object]:
        delayed = {} if self.hop_delay is None else {
            "hop_delay_held_now": len(self.hop_delay),
            **{f"hop_delay_{k}": v for k, v in self.hop_delay.counters.items()}}
        return {**self.router.statistics(), **{f"adapter_{k}": v for k, v in
                                                self.counters.items()}, **delayed}

    def _send_frame(self, peer: PeerId, frame: bytes) -> None:
        link = self._node.connections.get(peer)
        if link is None:
            self.counters["frames_no_link"] += 1
            return
        try:
            link.try_send(PROTOCOL, frame)
            self.counters["frames_sent"] += 1
        except TransportError:
            self.counters["frames_dropped"] += 1  # queue full: gossip repairs it

    async def _release_held(self, delay: HopDelay) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._held.clear()
            at = delay.next_at()
            if at is None:
                await self._held.wait()
                continue
            wait = at - loop.time()
            if wait > 0:
                # Woken early when a frame is held: it may be due before the one awaited.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._held.wait()
                continue
            for peer, frame in delay.due(loop.time()):
                self._send_frame(peer, frame)

    def view(self) -> dict[str, object]:
        """For GET /v1/network: shard meshes and peers' scores."""
        return {
            "shards": self.shards,
            "meshes": {str(t): [str(p) for p in self.router.mesh(t)]
                       for t in self.router.topics},
            "peers": [{"peer_id": str(p), "score": round(self.router.score(p) or 0.0, 3)}
                      for p in self.router.peers()],
        }
