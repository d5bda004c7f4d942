"""An in-memory network of :class:`GossipRouter` nodes on a fake clock.

One process, one event queue. Each node is a router plus a link table; a link has a fixed base
latency drawn from ``latency`` and every frame on it is delayed by that base times a jitter
factor, kept in order per direction (a TCP link does not reorder) and dropped with probability
``loss``. Heartbeats run every ``heartbeat_s`` per node at a random phase. Nothing here sleeps:
time only moves when the next event is popped.

The overlay is a random graph in which every node dials random nodes until it has ``degree``
links (a node accepts up to ``max_degree``), about what the node's mesh keeps. Churn: ``leave``
takes a node down (its neighbours see the links go), ``join`` brings a node (back) with a fresh
router and new links. Adversaries are honest routers whose traffic the harness tampers with:

* ``DROPPER``: forwards nothing (its PUBLISH, STEM and IHAVE items are removed), but grafts;
* ``INVALID_FLOODER``: also sends malformed envelopes to every neighbour, ``flood_rate`` a
  second;
* ``GOSSIP_SPAMMER``: also sends IHAVEs of made-up ids, IWANTs of random ids and GRAFTs,
  ``flood_rate`` frames a second to every neighbour.

Used by tests/node/network/test_gossip_sim.py (small, seconds) and bench/delivery.py (big).
"""

from __future__ import annotations

import enum
import heapq
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from node.core.identity import PeerId
from node.network.gossip import Deliver, Effect, GossipRouter, GossipSettings, Send
from node.network.gossip_wire import (
    Graft,
    IHave,
    Item,
    IWant,
    Publish,
    Stem,
    decode_frame,
    encode_frame,
    message_id,
)

__all__ = ["Behaviour", "SimConfig", "Simulation", "envelope"]


class Behaviour(enum.Enum):
    HONEST = "honest"
    DROPPER = "dropper"
    INVALID_FLOODER = "invalid_flooder"
    GOSSIP_SPAMMER = "gossip_spammer"


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 30
    degree: int = 8
    max_degree: int = 12
    latency: tuple[float, float] = (0.02, 0.06)  # base latency per link, uniform
    jitter: float = 0.1  # each frame: base * uniform(1 - jitter, 1 + jitter)
    loss: float = 0.0  # per frame
    heartbeat_s: float = 1.0
    flood_rate: float = 20.0  # adversaries' extra frames per second per neighbour
    seed: int = 1
    settings: GossipSettings = field(default_factory=GossipSettings)


def envelope(rng: random.Random, size: int = 512) -> bytes:
    """A well-formed stand-in for a sealed envelope (version 1, a bucket size, random bytes)."""
    return b"\x01" + rng.randbytes(size - 1)


@dataclass
class Node:
    index: int
    peer: PeerId
    router: GossipRouter
    behaviour: Behaviour = Behaviour.HONEST
    alive: bool = True
    generation: int = 0  # bumped on each join: stale heartbeats are skipped
    links: dict[int, float] = field(default_factory=dict)  # neighbour -> base latency
    sent_bytes: int = 0
    received_bytes: int = 0
    sent_frames: int = 0


@dataclass
class MessageRecord:
    origin: int
    published: float
    stem: bool
    delivered: dict[int, float] = field(default_factory=dict)  # node -> first Deliver
    first_gossiper: int | None = None  # first node to send a PUBLISH of it
    publish_copies: int = 0  # PUBLISH items received (every copy, duplicates included)
    stem_copies: int = 0  # STEM items received


class Simulation:
    def __init__(self, config: SimConfig | None = None,
                 adversaries: dict[int, Behaviour] | None = None) -> None:
        self.config = c = config or SimConfig()
        self.rng = random.Random(c.seed)
        self.now = 0.0
        self._queue: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self.nodes: list[Node] = []
        self._index: dict[PeerId, int] = {}
        self._last: dict[tuple[int, int], float] = {}
        self.messages: dict[bytes, MessageRecord] = {}
        self.lost_frames = 0
        self.on_deliver: Callable[[int, Deliver], None] | None = None
        adversaries = adversaries or {}
        for i in range(c.nodes):
            peer = PeerId(b"\x01\xed" + self.rng.randbytes(32))
            node = Node(i, peer, self._router(), adversaries.get(i, Behaviour.HONEST))
            self.nodes.append(node)
            self._index[peer] = i
        self._wire_overlay(range(c.nodes))
        for node in self.nodes:
            self._start(node)

    # -- setup --------------------------------------------------------------------------------

    def _router(self) -> GossipRouter:
        return GossipRouter(self.config.settings, rng=random.Random(self.rng.getrandbits(64)))

    def _wire_overlay(self, joining: range | list[int]) -> None:
        c = self.config
        order = list(joining)
        self.rng.shuffle(order)
        for i in order:
            node = self.nodes[i]
            alive = [j for j in range(len(self.nodes)) if j != i and self.nodes[j].alive]
            self.rng.shuffle(alive)
            for j in alive:
                if len(node.links) >= c.degree:
                    break
                if j not in node.links and len(self.nodes[j].links) < c.max_degree:
                    self._connect(i, j)
        self._ensure_connected()

    def _ensure_connected(self) -> None:
        alive = [n.index for n in self.nodes if n.alive]
        if not alive:
            return
        seen = {alive[0]}
        stack = [alive[0]]
        while stack:
            for j in self.nodes[stack.pop()].links:
                if j not in seen:
                    seen.add(j)
                    stack.append(j)
        for i in alive:
            if i not in seen:  # join the stray component to the main one
                self._connect(i, self.rng.choice(sorted(seen)))
                self._ensure_connected()
                return

    def _connect(self, i: int, j: int) -> None:
        lo, hi = self.config.latency
        base = self.rng.uniform(lo, hi)
        a, b = self.nodes[i], self.nodes[j]
        a.links[j] = b.links[i] = base
        self._apply(i, a.router.add_peer(b.peer, self.now, outbound=True))
        self._apply(j, b.router.add_peer(a.peer, self.now, outbound=False))

    def _start(self, node: Node) -> None:
        node.generation += 1
        self._push(self.now + self.rng.uniform(0, self.config.heartbeat_s), 0,
                   (node.index, node.generation))
        if node.behaviour in (Behaviour.INVALID_FLOODER, Behaviour.GOSSIP_SPAMMER):
            self._push(self.now + self.rng.uniform(0, 1 / self.config.flood_rate), 2,
                       (node.index, node.generation))

    # -- events -------------------------------------------------------------------------------

    def _push(self, at: float, kind: int, data: object) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, data))

    def run_until(self, t: float) -> None:
        q = self._queue
        while q and q[0][0] <= t:
            at, _, kind, data = heapq.heappop(q)
            self.now = at
            if kind == 1:
                src, dst, payload, ids = data  # type: ignore[misc]
                self._arrive(src, dst, payload, ids)
            elif kind == 0:
                i, gen = data  # type: ignore[misc]
                node = self.nodes[i]
                if node.alive and node.generation == gen:
                    self._apply(i, node.router.heartbeat(at))
                    self._push(at + self.config.heartbeat_s, 0, data)
            elif kind == 2:
                i, gen = data  # type: ignore[misc]
                node = self.nodes[i]
                if node.alive and node.generation == gen:
                    self._misbehave(node)
                    self._push(at + 1 / self.config.flood_rate, 2, data)
            else:
                data()  # type: ignore[operator]
        self.now = max(self.now, t)

    def at(self, t: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at simulated time ``t``."""
        self._push(t, 3, fn)

    def _arrive(self, src: int, dst: int, payload: bytes, ids: list[tuple[int, bytes]]) -> None:
        node = self.nodes[dst]
        if not node.alive or src not in node.links:
            return
        node.received_bytes += len(payload)
        for kind, mid in ids:
            rec = self.messages.get(mid)
            if rec is not None:
                if kind == 1:
                    rec.publish_copies += 1
                else:
                    rec.stem_copies += 1
        self._apply(dst, node.router.receive(self.nodes[src].peer, payload, self.now))

    def _apply(self, i: int, effects: list[Effect]) -> None:
        node = self.nodes[i]
        for e in effects:
            if isinstance(e, Send):
                self._send(node, self._index[e.peer], e.payload)
            else:
                rec = self.messages.get(e.msg_id)
                if rec is not None and i not in rec.delivered:
                    rec.delivered[i] = self.now
                if self.on_deliver is not None:
                    self.on_deliver(i, e)

    def _send(self, node: Node, dst: int, payload: bytes) -> None:
        if node.behaviour is Behaviour.DROPPER:
            kept = [x for x in decode_frame(payload)
                    if not isinstance(x, Publish | Stem | IHave)]
            if not kept:
                return
            payload = encode_frame(kept)
        self._transmit(node, dst, payload)

    def _transmit(self, node: Node, dst: int, payload: bytes) -> None:
        base = node.links.get(dst)
        if base is None:
            return
        node.sent_bytes += len(payload)
        node.sent_frames += 1
        ids: list[tuple[int, bytes]] = []
        if self.messages:
            for x in decode_frame(payload):
                if isinstance(x, Publish | Stem):
                    mid = message_id(x.envelope)
                    rec = self.messages.get(mid)
                    if rec is None:
                        continue
                    if isinstance(x, Publish):
                        ids.append((1, mid))
                        if rec.first_gossiper is None:
                            rec.first_gossiper = node.index
                    else:
                        ids.append((2, mid))
        if self.config.loss and self.rng.random() < self.config.loss:
            self.lost_frames += 1
            return
        j = self.config.jitter
        at = self.now + base * self.rng.uniform(1 - j, 1 + j)
        key = (node.index, dst)
        at = max(at, self._last.get(key, 0.0) + 1e-9)
        self._last[key] = at
        self._push(at, 1, (node.index, dst, payload, ids))

    def _misbehave(self, node: Node) -> None:
        rng = self.rng
        for dst in list(node.links):
            items: list[Item]
            if node.behaviour is Behaviour.INVALID_FLOODER:
                bad = rng.choice([b"\x02" + rng.randbytes(511), b"\x01" + rng.randbytes(600),
                                  b"\x01" + rng.randbytes(99)])
                items = [Publish(0, bad)]
            else:
                items = [IHave(0, tuple(rng.randbytes(20) for _ in range(50))) for _ in range(3)]
                items += [IWant(tuple(rng.randbytes(20) for _ in range(100))), Graft(0)]
            self._transmit(node, dst, encode_frame(items))

    # -- what a test or benchmark does --------------------------------------------------------

    def publish(self, i: int, env: bytes, *, stem: bool = False, topic: int = 0) -> bytes:
        """Node ``i`` publishes ``env`` now; returns its message id."""
        mid = message_id(env)
        self.messages[mid] = MessageRecord(i, self.now, stem)
        self._apply(i, self.nodes[i].router.publish(topic, env, self.now, stem=stem))
        return mid

    def leave(self, i: int) -> None:
        node = self.nodes[i]
        node.alive = False
        for j in list(node.links):
            other = self.nodes[j]
            del other.links[i]
            self._apply(j, other.router.remove_peer(node.peer, self.now))
        node.links.clear()

    def join(self, i: int) -> None:
        node = self.nodes[i]
        node.alive = True
        node.router = self._router()
        self._wire_overlay([i])
        self._start(node)

    def alive(self) -> list[int]:
        return [n.index for n in self.nodes if n.alive]

    def honest(self) -> list[int]:
        return [n.index for n in self.nodes if n.alive and n.behaviour is Behaviour.HONEST]

    def degree_stats(self) -> tuple[int, float, int]:
        degrees = [len(n.links) for n in self.nodes if n.alive]
        return min(degrees), sum(degrees) / len(degrees), max(degrees)

    def mesh_sizes(self, topic: int = 0) -> list[int]:
        return [len(n.router.mesh(topic)) for n in self.nodes if n.alive]

    def delivery_ratio(self, targets: Callable[[MessageRecord], list[int]]) -> float:
        want = got = 0
        for rec in self.messages.values():
            for t in targets(rec):
                want += 1
                got += t in rec.delivered
        return got / want if want else 1.0

    def scores_of(self, i: int) -> dict[int, float]:
        """What ``i``'s neighbours think of it."""
        out: dict[int, float] = defaultdict(float)
        for j in self.nodes[i].links:
            score = self.nodes[j].router.score(self.nodes[i].peer)
            if score is not None:
                out[j] = score
        return dict(out)
