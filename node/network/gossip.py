"""Relay through the mesh, sans-I/O: gossipsub v1.1 in spirit over shard topics, with a
Dandelion++-style stem phase for our own envelopes (specified in docs/PROTOCOL.md section 14).

Feed a :class:`GossipRouter` with what happens and apply what it returns:

* ``add_peer(peer, now, outbound=...)`` / ``remove_peer(peer, now)`` when a link to a peer
  that speaks ``sp/gossip/1`` comes up or goes down;
* ``receive(peer, data, now)`` for each ``sp/gossip/1`` payload from ``peer``;
* ``publish(topic, envelope, now, stem=...)`` for an envelope of ours;
* ``heartbeat(now)`` every second (mesh upkeep, gossip, scores, timers);
* ``report(msg_id, valid, now)`` when the application judged a delivered envelope.

Every call returns a list of effects: :class:`Send` (bytes for one peer, in order) and
:class:`Deliver` (a new envelope for the application, which filters by routing tag). The
router never blocks and never queues without bound: what a call returns is all it wants done.
Randomness comes from the ``rng`` given; time only from ``now``.
"""

from __future__ import annotations

import random
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from node.core.identity import PeerId
from node.core.ratelimit import RateLimiter
from node.network.gossip_score import PeerStats, ScoreParams
from node.network.gossip_wire import (
    MAX_FRAME,
    MAX_IDS,
    MAX_ITEMS,
    MAX_TOPICS,
    GossipError,
    Graft,
    IHave,
    Item,
    IWant,
    Prune,
    Publish,
    Stem,
    Subscribe,
    Unsubscribe,
    decode_frame,
    encode_frame,
    is_envelope,
    message_id,
)

__all__ = ["Deliver", "Effect", "GossipRouter", "GossipSettings", "Send"]


@dataclass(frozen=True)
class Send:
    """Send ``payload`` (one ``sp/gossip/1`` frame) to ``peer``."""

    peer: PeerId
    payload: bytes


@dataclass(frozen=True)
class Deliver:
    """An envelope we had not seen, for the application (it may be for none of our channels)."""

    topic: int
    msg_id: bytes
    envelope: bytes = field(repr=False)


Effect = Send | Deliver


@dataclass(frozen=True)
class GossipSettings:
    shards: int = 1  # topics are 0..shards-1
    d: int = 6
    d_lo: int = 4
    d_hi: int = 12
    d_lazy: int = 6
    d_score: int = 4
    d_out: int = 2
    gossip_factor: float = 0.25
    mcache_len: int = 5  # heartbeat windows a message stays in the cache...
    mcache_gossip: int = 3  # ...and the windows advertised in IHAVE
    seen_ttl_s: float = 120.0
    prune_backoff_s: int = 60
    unsubscribe_backoff_s: int = 10
    max_backoff_s: int = 3600
    opportunistic_graft_every: int = 60  # heartbeats
    opportunistic_graft_peers: int = 2
    resubscribe_every: int = 30  # heartbeats between repeats of our SUBSCRIBE (0: never)
    flood_publish: bool = True
    # Gossip limits, per peer per heartbeat.
    max_ihave_messages: int = 10  # IHAVE items accepted
    max_ihave_length: int = 1024  # ids advertised to a peer, and ids asked of it
    max_iwant_ids: int = 1024  # ids a peer may ask of us
    gossip_retransmission: int = 3  # times one message is sent to one peer for IWANTs
    iwant_followup_s: float = 3.0  # an IWANT not answered by then is a broken promise
    # Rate limits per peer (token buckets).
    message_rate: float = 200.0  # PUBLISH/STEM items per second...
    message_burst: float = 1000.0
    frame_rate: float = 500.0  # frames per second...
    frame_burst: float = 2000.0
    # Bounds on memory.
    max_peers: int = 2048
    seen_capacity: int = 65536
    mcache_capacity: int = 8192
    mcache_bytes: int = 64 << 20
    max_promises: int = 8192
    retain_score_s: float = 600.0
    max_retained: int = 4096
    # Stem phase (Dandelion++).
    stem_fluff_p: float = 0.25
    stem_epoch_s: float = 600.0
    embargo_min_s: float = 2.0
    embargo_max_s: float = 5.0
    max_stem: int = 1024
    score: ScoreParams = field(default_factory=ScoreParams)

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_TOPICS:
            raise ValueError(f"shards must be 1..{MAX_TOPICS}")
        if not 0 < self.d_lo <= self.d <= self.d_hi:
            raise ValueError("need 0 < d_lo <= d <= d_hi")
        if not (0 <= self.d_out < self.d_lo and 2 * self.d_out <= self.d):
            raise ValueError("need d_out < d_lo and d_out <= d / 2")
        if not 0 <= self.d_score <= self.d:
            raise ValueError("need d_score <= d")
        if not 1 <= self.mcache_gossip <= self.mcache_len:
            raise ValueError("need 1 <= mcache_gossip <= mcache_len")
        if not 0 < self.max_ihave_length <= MAX_IDS:
            raise ValueError(f"max_ihave_length is 1..{MAX_IDS}")
        if not 0 <= self.stem_fluff_p <= 1 or not 0 <= self.embargo_min_s <= self.embargo_max_s:
            raise ValueError("bad stem settings")
        if not 0 <= self.prune_backoff_s <= self.max_backoff_s <= 0xFFFF:
            raise ValueError("backoffs are 0..65535 s")


@dataclass
class _Peer:
    peer: PeerId
    key: str  # rate limiter key
    outbound: bool
    stats: PeerStats
    score: float = 0.0
    topics: set[int] = field(default_factory=set)
    backoff: dict[int, float] = field(default_factory=dict)  # topic -> no GRAFT before
    ihaves: int = 0  # this heartbeat: IHAVE items received...
    asked: int = 0  # ...ids we asked it for...
    iwanted: int = 0  # ...ids it asked us for
    limited: bool = False  # it went over a rate limit this heartbeat


@dataclass
class _Cached:
    topic: int
    item: Publish
    source: PeerId | None  # who brought it first (None: ours)
    served: dict[PeerId, int] = field(default_factory=dict)  # IWANT answers per peer


@dataclass
class _Embargo:
    topic: int
    envelope: bytes
    deadline: float
    own: bool


@dataclass
class _Route:
    until: float
    dests: tuple[PeerId, ...]
    by_inbound: dict[PeerId, PeerId] = field(default_factory=dict)


class GossipRouter:
    """One node's relay state for every shard topic (see the module docstring)."""

    def __init__(self, settings: GossipSettings | None = None, *, rng: random.Random,
                 topics: Iterable[int] | None = None) -> None:
        self.settings = s = settings or GossipSettings()
        self._rng = rng
        self._peers: dict[PeerId, _Peer] = {}
        self._retained: OrderedDict[PeerId, tuple[float, PeerStats]] = OrderedDict()
        self._topics: dict[int, None] = {}
        self._mesh: dict[int, dict[PeerId, None]] = {}
        self._topic_peers: dict[int, dict[PeerId, None]] = defaultdict(dict)
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._mcache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._mcache_size = 0
        self._windows: deque[list[bytes]] = deque([[]])
        self._promises: OrderedDict[bytes, tuple[PeerId, float]] = OrderedDict()
        self._requested: OrderedDict[bytes, float] = OrderedDict()
        self._stem: OrderedDict[bytes, _Embargo] = OrderedDict()
        self._routes: dict[int, _Route] = {}
        self._msg_limit = RateLimiter(s.message_rate, s.message_burst, s.max_peers)
        self._frame_limit = RateLimiter(s.frame_rate, s.frame_burst, s.max_peers)
        self._heartbeats = 0
        self._out: dict[PeerId, list[Item]] = {}
        self._deliver: list[Deliver] = []
        self.counters: dict[str, int] = defaultdict(int)
        for topic in range(s.shards) if topics is None else topics:
            self._check_topic(topic)
            self._topics[topic] = None
            self._mesh[topic] = {}

    # -- peers --------------------------------------------------------------------------------

    def add_peer(self, peer: PeerId, now: float, *, outbound: bool = False) -> list[Effect]:
        """A link to ``peer`` is up (``outbound``: we dialled it). Tells it our topics."""
        if peer in self._peers:
            return []
        if len(self._peers) >= self.settings.max_peers:
            self.counters["peers_refused"] += 1
            return []
        kept = self._retained.pop(peer, None)
        stats = kept[1] if kept is not None and kept[0] > now else PeerStats()
        p = _Peer(peer, peer.binary.hex(), outbound, stats)
        p.score = stats.score(self.settings.score, now)
        self._peers[peer] = p
        if self._topics:
            self._queue(peer, Subscribe(tuple(sorted(self._topics))))
        return self._flush()

    def knows(self, peer: PeerId) -> bool:
        """Whether ``peer`` was added (and not removed since)."""
        return peer in self._peers

    def remove_peer(self, peer: PeerId, now: float) -> list[Effect]:
        """The link to ``peer`` is down. Its score is kept a while so that reconnecting does not
        wash a penalty away."""
        p = self._peers.pop(peer, None)
        if p is None:
            return []
        for topic in p.topics:
            self._topic_peers[topic].pop(peer, None)
        for topic in self._mesh:
            self._leave_mesh(p, topic)
        for route in self._routes.values():
            route.by_inbound.pop(peer, None)
            if peer in route.dests:
                route.until = now  # choose new stem peers
        self._out.pop(peer, None)
        if not p.stats.forgettable():
            self._retained[peer] = (now + self.settings.retain_score_s, p.stats)
            while len(self._retained) > self.settings.max_retained:
                self._retained.popitem(last=False)
        return []

    def set_app_score(self, peer: PeerId, value: float, now: float) -> None:
        """The application's opinion of ``peer`` (P5), e.g. a boost for a co-member."""
        p = self._peers.get(peer)
        if p is not None:
            p.stats.app = value
            self._rescore(p, now)

    # -- topics -------------------------------------------------------------------------------

    def subscribe(self, topic: int, now: float) -> list[Effect]:
        """Relay ``topic`` from now on: tell every peer, graft up to D of them."""
        self._check_topic(topic)
        if topic in self._topics:
            return []
        self._topics[topic] = None
        self._mesh[topic] = {}
        for peer in self._peers:
            self._queue(peer, Subscribe((topic,)))
        self._fill_mesh(topic, now)
        return self._flush()

    def unsubscribe(self, topic: int, now: float) -> list[Effect]:
        if topic not in self._topics:
            return []
        del self._topics[topic]
        for peer in self._mesh.pop(topic):
            self._prune(self._peers[peer], topic, now, self.settings.unsubscribe_backoff_s,
                        mesh=None)
        for peer in self._peers:
            self._queue(peer, Unsubscribe((topic,)))
        return self._flush()

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, topic: int, envelope: bytes, now: float, *,
                stem: bool = False) -> list[Effect]:
        """Send our own envelope: flood-published to every peer of the topic, or first along a
        stem (one peer per epoch) when ``stem``. Publishing the same envelope twice does
        nothing; a malformed envelope or a topic outside 0..shards-1 is a ValueError."""
        self._check_topic(topic)
        if not is_envelope(envelope):
            raise ValueError("not a well-formed sealed envelope")
        mid = message_id(envelope)
        if mid in self._seen or mid in self._stem:
            return []
        self.counters["published"] += 1
        if stem:
            dest = self._stem_dest(topic, None, now)
            if dest is not None:
                self._embargo(mid, topic, envelope, now, own=True)
                self._queue(dest, Stem(topic, envelope))
                self.counters["stem_sent"] += 1
                return self._flush()
        self._fluff(topic, mid, envelope, now, own=True)
        return self._flush()

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, peer: PeerId, data: bytes, now: float) -> list[Effect]:
        """One ``sp/gossip/1`` payload from ``peer``. Bad bytes are counted and penalised;
        nothing a peer sends raises."""
        p = self._peers.get(peer)
        if p is None:
            self.counters["unknown_peer"] += 1
            return []
        if p.score < self.settings.score.graylist_threshold:
            self.counters["graylisted_frames"] += 1
            return []
        if not self._frame_limit.allow(p.key, now):
            self.counters["frames_rate_limited"] += 1
            p.limited = True
            return []
        try:
            items = decode_frame(data)
        except GossipError:
            self.counters["bad_frames"] += 1
            self._penalise(p, now)
            return self._flush()
        graylist = self.settings.score.graylist_threshold
        for item in items:
            if isinstance(item, Publish):
                self._on_publish(p, item, now)
            elif isinstance(item, IHave):
                self._on_ihave(p, item, now)
            elif isinstance(item, IWant):
                self._on_iwant(p, item, now)
            elif isinstance(item, Stem):
                self._on_stem(p, item, now)
            elif isinstance(item, Graft):
                self._on_graft(p, item.topic, now)
            elif isinstance(item, Prune):
                self._on_prune(p, item, now)
            elif isinstance(item, Subscribe):
                self._on_subscribe(p, item.topics)
            else:
                self._on_unsubscribe(p, item.topics)
            if p.score < graylist:
                self.counters["graylisted_frames"] += 1
                break
        return self._flush()

    def report(self, msg_id: bytes, valid: bool, now: float) -> list[Effect]:
        """The application's verdict on a delivered envelope. Invalid: the peer that brought it
        first is penalised (P4) and the message is no longer advertised or served. Valid:
        nothing changes. Unknown or expired ids are ignored."""
        entry = self._mcache.get(msg_id)
        if entry is None:
            self.counters["report_unknown"] += 1
            return []
        if valid:
            self.counters["reported_valid"] += 1
            return []
        self.counters["reported_invalid"] += 1
        self._uncache(msg_id)
        p = None if entry.source is None else self._peers.get(entry.source)
        if p is not None:
            p.stats.invalid_message(entry.topic)
            self._rescore(p, now)
        return []

    def _admit(self, p: _Peer, item: Publish | Stem, now: float) -> bytes | None:
        """The checks a PUBLISH and a STEM share: the peer's rate, our topics, the seen
        cache and the envelope's form. The message id when the item goes on, else None."""
        if not self._msg_limit.allow(p.key, now):
            self.counters["messages_rate_limited"] += 1
            p.limited = True
            return None
        if item.topic not in self._topics:
            self.counters["unsubscribed_topic"] += 1
            return None
        mid = message_id(item.envelope)
        if mid in self._seen:
            self.counters["duplicates"] += 1
            return None
        if not is_envelope(item.envelope):
            self._invalid(p, item.topic, now)
            return None
        return mid

    def _on_publish(self, p: _Peer, item: Publish, now: float) -> None:
        mid = self._admit(p, item, now)
        if mid is None:
            return
        topic = item.topic
        embargo = self._stem.pop(mid, None)
        own = embargo is not None and embargo.own
        self.counters["received"] += 1
        self._remember(mid, topic, item, p.peer, now)
        p.stats.first_delivery(self.settings.score, topic)
        if not own:
            self._deliver.append(Deliver(topic, mid, item.envelope))
        for q in self._mesh[topic]:
            if q != p.peer:
                self._queue(q, item)

    def _on_stem(self, p: _Peer, item: Stem, now: float) -> None:
        mid = self._admit(p, item, now)
        if mid is None:
            return
        topic = item.topic
        looped = self._stem.pop(mid, None)
        if looped is not None:  # back on a node of its own stem: fluff it now
            self.counters["stem_loops"] += 1
            self._fluff(topic, mid, item.envelope, now, own=looped.own)
            return
        self.counters["stem_received"] += 1
        dest = None
        if self._rng.random() >= self.settings.stem_fluff_p:
            dest = self._stem_dest(topic, p.peer, now)
        if dest is None:
            self._fluff(topic, mid, item.envelope, now, own=False)
            return
        self._embargo(mid, topic, item.envelope, now, own=False)
        self._queue(dest, item)
        self.counters["stem_relayed"] += 1

    def _on_ihave(self, p: _Peer, item: IHave, now: float) -> None:
        s = self.settings
        p.ihaves += 1
        if p.ihaves > s.max_ihave_messages:
            self.counters["ihave_flood"] += 1
            self._penalise(p, now)
            return
        if p.score < s.score.gossip_threshold:
            return
        if item.topic not in self._topics:
            return
        budget = s.max_ihave_length - p.asked
        want: list[bytes] = []
        for mid in item.ids:
            if len(want) >= budget:
                break
            if mid in self._seen or mid in self._stem:
                continue
            until = self._requested.get(mid)
            if until is not None and until > now:
                continue  # asked of another peer a moment ago
            want.append(mid)
        if not want:
            return
        p.asked += len(want)
        for mid in want:
            self._requested[mid] = now + s.iwant_followup_s
            self._requested.move_to_end(mid)
        while len(self._requested) > s.max_promises:
            self._requested.popitem(last=False)
        # One promise per IWANT, on a random id of it (gossipsub v1.1): if that message has not
        # come (from anyone) within iwant_followup_s, the advertiser is penalised.
        promised = self._rng.choice(want)
        if promised not in self._promises and len(self._promises) < s.max_promises:
            self._promises[promised] = (p.peer, now + s.iwant_followup_s)
        self._queue(p.peer, IWant(tuple(want)))
        self.counters["iwant_sent"] += 1

    def _on_iwant(self, p: _Peer, item: IWant, now: float) -> None:
        s = self.settings
        p.iwanted += len(item.ids)
        if p.iwanted > s.max_iwant_ids:
            self.counters["iwant_flood"] += 1
            self._penalise(p, now)
            return
        if p.score < s.score.gossip_threshold:
            return
        for mid in item.ids:
            entry = self._mcache.get(mid)
            if entry is None:
                self.counters["iwant_missing"] += 1
                continue
            served = entry.served.get(p.peer, 0)
            if served >= s.gossip_retransmission:
                self.counters["iwant_repeated"] += 1
                continue
            entry.served[p.peer] = served + 1
            self._queue(p.peer, entry.item)
            self.counters["iwant_served"] += 1

    def _on_graft(self, p: _Peer, topic: int, now: float) -> None:
        mesh = self._mesh.get(topic)
        if mesh is None or p.peer in mesh:
            return  # a topic we do not relay: ignored (no PRUNE to answer spam with)
        self._on_subscribe(p, (topic,))
        s = self.settings
        if now < p.backoff.get(topic, 0.0):
            self.counters["graft_in_backoff"] += 1
            self._penalise(p, now)
            self._prune(p, topic, now, s.prune_backoff_s, mesh=None)
        elif p.score < 0 or (len(mesh) >= s.d_hi and not p.outbound):
            self._prune(p, topic, now, s.prune_backoff_s, mesh=None)
        else:
            mesh[p.peer] = None
            p.stats.topic(topic).mesh_since = now
            self._offer_recent(p.peer, topic)

    def _on_prune(self, p: _Peer, item: Prune, now: float) -> None:
        self._leave_mesh(p, item.topic)
        if item.topic in self._topics:
            backoff = min(item.backoff, self.settings.max_backoff_s)
            p.backoff[item.topic] = max(p.backoff.get(item.topic, 0.0), now + backoff)

    def _on_subscribe(self, p: _Peer, topics: Iterable[int]) -> None:
        for topic in topics:
            if topic < self.settings.shards and topic not in p.topics:
                p.topics.add(topic)
                self._topic_peers[topic][p.peer] = None

    def _on_unsubscribe(self, p: _Peer, topics: Iterable[int]) -> None:
        for topic in topics:
            if topic in p.topics:
                p.topics.discard(topic)
                self._topic_peers[topic].pop(p.peer, None)
                self._leave_mesh(p, topic)

    # -- the heartbeat ------------------------------------------------------------------------

    def heartbeat(self, now: float) -> list[Effect]:
        """Call every second: scores decay, broken promises are penalised, meshes are kept
        between D_lo and D_hi, gossip goes out, caches age, stem embargoes run out."""
        s = self.settings
        self._heartbeats += 1
        while self._promises:
            mid, (peer, deadline) = next(iter(self._promises.items()))
            if deadline > now:
                break
            del self._promises[mid]
            p = self._peers.get(peer)
            if mid not in self._seen and p is not None:
                self.counters["broken_promises"] += 1
                p.stats.penalise()
        while self._requested and next(iter(self._requested.values())) <= now:
            self._requested.popitem(last=False)
        while self._retained and next(iter(self._retained.values()))[0] <= now:
            self._retained.popitem(last=False)
        for p in self._peers.values():
            if p.limited:
                p.stats.penalise()
            p.ihaves = p.asked = p.iwanted = 0
            p.limited = False
            p.stats.decay(s.score)
            p.score = p.stats.score(s.score, now)
            for topic in [t for t, until in p.backoff.items() if until + 1.0 <= now]:
                del p.backoff[topic]
        if s.resubscribe_every and self._heartbeats % s.resubscribe_every == 0 and self._topics:
            # A frame can be lost (a full link queue drops it): say our topics again now and
            # then, so a peer never misses a subscription for long.
            hello = Subscribe(tuple(sorted(self._topics)))
            for peer in self._peers:
                self._queue(peer, hello)
        for topic in self._topics:
            self._maintain(topic, now)
            if s.opportunistic_graft_every and self._heartbeats % s.opportunistic_graft_every == 0:
                self._opportunistic_graft(topic, now)
            self._gossip(topic)
        self._windows.appendleft([])
        while len(self._windows) > s.mcache_len:
            for mid in self._windows.pop():
                self._uncache(mid)
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        for mid in [m for m, e in self._stem.items() if e.deadline <= now]:
            e = self._stem.pop(mid)
            self.counters["embargo_fluffs"] += 1
            self._fluff(e.topic, mid, e.envelope, now, own=e.own)
        return self._flush()

    def _maintain(self, topic: int, now: float) -> None:
        s = self.settings
        mesh = self._mesh[topic]
        for peer in [q for q in mesh if self._peers[q].score < 0]:
            self._prune(self._peers[peer], topic, now, s.prune_backoff_s, mesh=mesh)
        if len(mesh) < s.d_lo:
            self._fill_mesh(topic, now)
        elif len(mesh) > s.d_hi:
            members = list(mesh)
            self._rng.shuffle(members)
            members.sort(key=lambda q: self._peers[q].score, reverse=True)
            rest = members[s.d_score:]
            self._rng.shuffle(rest)
            keep = members[: s.d_score] + rest[: s.d - s.d_score]
            short = s.d_out - sum(self._peers[q].outbound for q in keep)
            if short > 0:
                spare = [q for q in members if q not in keep and self._peers[q].outbound]
                inbound = [q for q in reversed(keep) if not self._peers[q].outbound]
                for new, old in zip(spare[:short], inbound, strict=False):
                    keep[keep.index(old)] = new
            kept = set(keep)
            for peer in [q for q in members if q not in kept]:
                self._prune(self._peers[peer], topic, now, s.prune_backoff_s, mesh=mesh)
        if len(mesh) >= s.d_lo:
            short = s.d_out - sum(self._peers[q].outbound for q in mesh)
            if short > 0:
                spare = [q for q in self._graftable(topic, now) if self._peers[q].outbound]
                for peer in self._rng.sample(spare, min(short, len(spare))):
                    self._graft(peer, topic, now)

    def _fill_mesh(self, topic: int, now: float) -> None:
        mesh = self._mesh[topic]
        spare = self._graftable(topic, now)
        for peer in self._rng.sample(spare, min(self.settings.d - len(mesh), len(spare))):
            self._graft(peer, topic, now)

    def _opportunistic_graft(self, topic: int, now: float) -> None:
        mesh = self._mesh[topic]
        if len(mesh) < 2:
            return
        scores = sorted(self._peers[q].score for q in mesh)
        median = scores[len(scores) // 2]
        if median >= self.settings.score.opportunistic_graft_threshold:
            return
        better = [q for q in self._graftable(topic, now) if self._peers[q].score > median]
        n = min(self.settings.opportunistic_graft_peers, len(better))
        for peer in self._rng.sample(better, n):
            self.counters["opportunistic_grafts"] += 1
            self._graft(peer, topic, now)

    def _graftable(self, topic: int, now: float) -> list[PeerId]:
        mesh = self._mesh[topic]
        return [q for q in self._topic_peers[topic]
                if q not in mesh and self._peers[q].score >= 0
                and self._peers[q].backoff.get(topic, 0.0) + 1.0 <= now]

    def _recent_ids(self, topic: int) -> list[bytes]:
        return [mid for window in list(self._windows)[: self.settings.mcache_gossip]
                for mid in window
                if (e := self._mcache.get(mid)) is not None and e.topic == topic]

    def _offer_recent(self, peer: PeerId, topic: int) -> None:
        # A peer that just joined our mesh missed what we forwarded before: mesh peers get no
        # IHAVE at heartbeats, so without this it would lose what was published just before.
        ids = self._recent_ids(topic)[: self.settings.max_ihave_length]
        if ids:
            self._queue(peer, IHave(topic, tuple(ids)))
            self.counters["ihave_sent_on_graft"] += 1

    def _gossip(self, topic: int) -> None:
        s = self.settings
        ids = self._recent_ids(topic)
        if not ids:
            return
        mesh = self._mesh[topic]
        threshold = s.score.gossip_threshold
        cands = [q for q in self._topic_peers[topic]
                 if q not in mesh and self._peers[q].score >= threshold]
        n = max(s.d_lazy, int(s.gossip_factor * len(cands)))
        for peer in self._rng.sample(cands, min(n, len(cands))):
            chosen = ids
            if len(ids) > s.max_ihave_length:
                chosen = self._rng.sample(ids, s.max_ihave_length)
            self._queue(peer, IHave(topic, tuple(chosen)))
            self.counters["ihave_sent"] += 1

    # -- helpers ------------------------------------------------------------------------------

    def _check_topic(self, topic: int) -> None:
        if not isinstance(topic, int) or not 0 <= topic < self.settings.shards:
            raise ValueError(f"topic must be 0..{self.settings.shards - 1}, not {topic!r}")

    def _graft(self, peer: PeerId, topic: int, now: float) -> None:
        self._mesh[topic][peer] = None
        self._peers[peer].stats.topic(topic).mesh_since = now
        self._queue(peer, Graft(topic))
        self._offer_recent(peer, topic)

    def _leave_mesh(self, p: _Peer, topic: int) -> None:
        mesh = self._mesh.get(topic)
        if mesh is not None and p.peer in mesh:
            del mesh[p.peer]
            p.stats.topic(topic).mesh_since = None

    def _prune(self, p: _Peer, topic: int, now: float, backoff: int,
               mesh: dict[PeerId, None] | None) -> None:
        if mesh is not None:
            mesh.pop(p.peer, None)
        p.stats.topic(topic).mesh_since = None
        p.backoff[topic] = max(p.backoff.get(topic, 0.0), now + backoff)
        self._queue(p.peer, Prune(topic, backoff))

    def _penalise(self, p: _Peer, now: float, amount: float = 1.0) -> None:
        p.stats.penalise(amount)
        self._rescore(p, now)

    def _invalid(self, p: _Peer, topic: int, now: float) -> None:
        self.counters["invalid"] += 1
        p.stats.invalid_message(topic)
        self._rescore(p, now)

    def _rescore(self, p: _Peer, now: float) -> None:
        p.score = p.stats.score(self.settings.score, now)

    def _remember(self, mid: bytes, topic: int, item: Publish, source: PeerId | None,
                  now: float) -> None:
        s = self.settings
        self._seen[mid] = now + s.seen_ttl_s
        while len(self._seen) > s.seen_capacity:
            self._seen.popitem(last=False)
        self._promises.pop(mid, None)
        self._requested.pop(mid, None)
        self._mcache[mid] = _Cached(topic, item, source)
        self._mcache_size += len(item.envelope)
        self._windows[0].append(mid)
        while len(self._mcache) > s.mcache_capacity or self._mcache_size > s.mcache_bytes:
            _, entry = self._mcache.popitem(last=False)
            self._mcache_size -= len(entry.item.envelope)

    def _uncache(self, mid: bytes) -> None:
        entry = self._mcache.pop(mid, None)
        if entry is not None:
            self._mcache_size -= len(entry.item.envelope)

    def _fluff(self, topic: int, mid: bytes, envelope: bytes, now: float, *, own: bool) -> None:
        """Start gossiping a message as its origin would: flood it to the topic's peers."""
        item = Publish(topic, envelope)
        self._remember(mid, topic, item, None, now)
        if not own:
            self._deliver.append(Deliver(topic, mid, envelope))
            self.counters["fluffed"] += 1
        s = self.settings
        if s.flood_publish:
            threshold = s.score.publish_threshold
            targets = [q for q in self._topic_peers[topic] if self._peers[q].score >= threshold]
        elif self._mesh.get(topic):
            targets = list(self._mesh[topic])
        else:
            cands = [q for q in self._topic_peers[topic] if self._peers[q].score >= 0]
            targets = self._rng.sample(cands, min(s.d, len(cands)))
        for peer in targets:
            self._queue(peer, item)

    def _embargo(self, mid: bytes, topic: int, envelope: bytes, now: float, *, own: bool) -> None:
        s = self.settings
        deadline = now + self._rng.uniform(s.embargo_min_s, s.embargo_max_s)
        self._stem[mid] = _Embargo(topic, envelope, deadline, own)
        while len(self._stem) > s.max_stem:
            old, e = self._stem.popitem(last=False)
            self.counters["embargo_evicted"] += 1
            self._fluff(e.topic, old, e.envelope, now, own=e.own)

    def _stem_dest(self, topic: int, inbound: PeerId | None, now: float) -> PeerId | None:
        """The stem peer: per epoch two random peers of the topic; our own envelopes go to the
        first, those relayed from an inbound peer to one fixed per inbound peer and epoch
        (Dandelion++'s per-edge routing, which stops the fingerprinting of paths)."""
        route = self._routes.get(topic)
        peers = self._topic_peers[topic]
        if route is None or now >= route.until or not route.dests or any(
                d not in peers or self._peers[d].score < 0 for d in route.dests):
            cands = [q for q in peers if self._peers[q].score >= 0]
            s = self.settings
            route = _Route(now + s.stem_epoch_s * self._rng.uniform(0.9, 1.1),
                           tuple(self._rng.sample(cands, min(2, len(cands)))))
            self._routes[topic] = route
            self.counters["stem_epochs"] += 1
        if inbound is None:
            return route.dests[0] if route.dests else None
        dest = route.by_inbound.get(inbound)
        if dest is None:
            choices = [d for d in route.dests if d != inbound]
            if not choices:
                return None
            dest = route.by_inbound[inbound] = self._rng.choice(choices)
        return dest

    def _queue(self, peer: PeerId, item: Item) -> None:
        self._out.setdefault(peer, []).append(item)

    def _flush(self) -> list[Effect]:
        effects: list[Effect] = list(self._deliver)
        self._deliver.clear()
        for peer, items in self._out.items():
            if peer not in self._peers:
                continue
            batch: list[Item] = []
            size = 1
            for item in items:
                n = item.size()
                if batch and (size + n > MAX_FRAME or len(batch) == MAX_ITEMS):
                    effects.append(Send(peer, encode_frame(batch)))
                    batch, size = [], 1
                batch.append(item)
                size += n
            effects.append(Send(peer, encode_frame(batch)))
        self._out.clear()
        return effects

    # -- inspection ---------------------------------------------------------------------------

    def score(self, peer: PeerId) -> float | None:
        p = self._peers.get(peer)
        return None if p is None else p.score

    def mesh(self, topic: int) -> tuple[PeerId, ...]:
        return tuple(self._mesh.get(topic, ()))

    def peers(self) -> tuple[PeerId, ...]:
        return tuple(self._peers)

    def subscribers(self, topic: int) -> tuple[PeerId, ...]:
        """Peers that told us they relay ``topic`` (flood-publishing reaches those of them
        at or above the publish threshold)."""
        return tuple(self._topic_peers.get(topic, ()))

    @property
    def topics(self) -> tuple[int, ...]:
        return tuple(self._topics)

    def statistics(self) -> dict[str, object]:
        return {
            "peers": len(self._peers),
            "topics": {t: {"mesh": len(self._mesh[t]), "peers": len(self._topic_peers[t])}
                       for t in self._topics},
            "seen": len(self._seen),
            "mcache": len(self._mcache),
            "mcache_bytes": self._mcache_size,
            "stem_pending": len(self._stem),
            "promises": len(self._promises),
            "graylisted": sum(p.score < self.settings.score.graylist_threshold
                              for p in self._peers.values()),
            "retained_scores": len(self._retained),
            **self.counters,
        }
