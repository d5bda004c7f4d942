"""Members offline at send time, back later: mailboxes in the in-memory simulation.

On top of the relay simulation (tests/node/network/gossip_sim.py: routers, links, fake clock),
every node runs the real sans-I/O cores of delivery beyond direct links:

* :class:`~node.network.fallback.Fallback`: which outbox items to relay and place, and when;
* :class:`~node.network.mailbox.Mailbox` over a
  :class:`~node.storage.mailboxstore.MemoryMailboxStore`: the holder's rules and its log;
* the mailbox keys, days and batch checks of ``node.network.mailbox``, and the ``sp/mbx/1``
  codec: every STORE, STORED, FETCH and BATCH is encoded, carried and decoded, so byte counts
  are the wire's.

What is modelled rather than run, following ``node/channel_service.py`` and
``node/mailbox_service.py``:

* **Channels**: one epoch each (one routing-tag key); a message is an outbox item owed to the
  channel's other members. Its envelope is random bytes of the 512-byte bucket.
* **Direct delivery**: co-members online have a link (lossless, a fixed latency per pair drawn
  like the relay's); the member acknowledges at once. A member offline has no link.
* **Ticks**: every online node ticks each second (``_TICK_S``); a tick hands the items owed to
  a member without a link, or owed for ``grace_s``, to ``Fallback.due``. A Relay is a
  publication on the node's router (stem unless urgent); a Place stores the envelope at the
  ``PLACEMENT_K`` nodes closest to the day's mailbox key, and ``Fallback.placed`` decides when
  the item is stored (then it leaves the outbox, as in ``ChannelService._commit``).
* **The DHT**: ``closest(key, k)`` is the ``k`` nodes online at that moment whose node ids are
  nearest the key by XOR (a converged DHT, as every lookup of the real one should find),
  minus the asking node, cached 300 s as ``MailboxService._closest`` does; a lookup that is
  not cached costs ``lookup_rtts`` round trips.
* **SDS resends** (PROTOCOL.md 12.6): 30 s after a message, then every 120 s, at most 5 times,
  while some other member is not known to have it. A member is known to have it once its next
  Text, or its Sync (15 to 45 s after it received something), could have reached the sender.
  A resend is a new outbox item with a new envelope, owed to every other member.
* **Catch-up** (``ChannelService._catch_up``): a node that comes back reads, once its DHT is
  ready, the key of each of its channels for every day since it last read them
  (``fetch_days``), one key after another, each key from its ``collect_k`` closest nodes in
  parallel with a cursor and ``more``, then processes what it found.
* **Time**: the relay runs on the simulation clock. Mailboxes and fallback see a wall clock,
  ``start_wall`` plus the simulation time plus a *warp*: once everything sent has been
  acknowledged or stored and the resends are over, nothing happens until the next node comes
  back, so the wall clock jumps to each return (days later) while the simulation clock moves
  a few seconds. Latencies are measured on the simulation clock.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from node.channels.channel import RESEND_AGAIN_S, RESEND_FIRST_S, RESEND_MAX, SYNC_AFTER_S
from node.core.identity import node_id_for
from node.network.fallback import Fallback, Place, Relay, Straggler
from node.network.gossip import Deliver
from node.network.mailbox import (
    COLLECT_K,
    DAY_S,
    PLACEMENT_K,
    Append,
    Mailbox,
    check_batch,
    day_of,
    envelope_digest,
    fetch_days,
    mailbox_key,
    uploader_pseudonym,
)
from node.network.mailbox_wire import (
    ACCEPTED,
    MAX_LIMIT,
    Batch,
    Fetch,
    Status,
    Store,
    Stored,
    decode_mailbox,
)
from node.network.wire import envelope_id
from node.storage.mailboxstore import MemoryMailboxStore
from tests.node.network.gossip_sim import SimConfig, Simulation, envelope

__all__ = ["OfflineConfig", "OfflineSimulation", "Pair"]

T = TypeVar("T")

_TICK_S = 1.0  # ChannelService ticks once a second
_CLOSEST_TTL_S = 300.0  # MailboxService caches a key's closest nodes this long
_REQUEST_TIMEOUT_S = 10.0
# The last SDS resend of the last message, plus room for its placement: after this, nothing
# is owed any more (checked) and the wall clock may jump.
_QUIET_AFTER_S = RESEND_FIRST_S + RESEND_AGAIN_S * (RESEND_MAX - 1) + 60.0


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the in-memory store's) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the coroutine suspended")


@dataclass(frozen=True)
class OfflineConfig:
    sim: SimConfig = field(default_factory=SimConfig)
    channels: int = 4
    members: int = 5
    offline: float = 0.3  # share of the nodes (with every member they host) away at send time
    rate: float = 2.0  # messages per second network-wide, from members online
    seconds: float = 10.0  # how long messages are sent, after the warm-up
    warmup_s: float = 10.0
    away_s: tuple[float, float] = (3600.0, 13 * DAY_S)  # absence, uniform (retention: 14 d)
    return_gap_s: float = 30.0  # simulation time between two returns
    ready_s: float = 1.0  # a returning node's DHT is ready this long after it starts
    lookup_rtts: int = 3  # round trips of one DHT lookup
    collect_k: int = COLLECT_K
    resends: bool = True
    # Sends start 30 s before a UTC midnight: envelopes go under two days' keys.
    start_wall: float = 20001 * DAY_S - 40.0
    seed: int = 1


@dataclass
class _Item:
    item_id: bytes
    message: bytes
    channel: int
    envelope: bytes
    pending: set[int]
    added_at: float  # simulation time


@dataclass
class _Node:
    index: int
    node_id: int
    channels: list[int]
    mailbox: Mailbox = field(default_factory=Mailbox)
    # The holder's pseudonym secret; its value does not matter to the simulation.
    secret: bytes = bytes(32)
    store: MemoryMailboxStore = field(default_factory=MemoryMailboxStore)
    fallback: Fallback = field(default_factory=Fallback)
    outbox: dict[bytes, _Item] = field(default_factory=dict)
    online: bool = True
    synced_at: float = 0.0  # wall time of its last complete catch-up
    closest: dict[bytes, tuple[float, list[int]]] = field(default_factory=dict)
    returned_at: float | None = None  # simulation time its DHT was ready after coming back


@dataclass
class _Message:
    message: bytes
    channel: int
    origin: int
    sent_at: float
    got: dict[int, tuple[float, str]] = field(default_factory=dict)  # member -> (time, route)
    seen_at: dict[int, float] = field(default_factory=dict)  # when the sender could know
    envelopes: int = 0  # the first one and its resends


@dataclass(frozen=True)
class Pair:
    """One (message, member) the member was owed."""

    message: bytes
    member: int
    offline: bool  # the member was away when the message was sent
    delivered: float | None  # simulation time
    route: str | None  # direct, relay, mailbox
    since: float  # sent (online members) or back and ready (offline ones)


class OfflineSimulation:
    def __init__(self, config: OfflineConfig | None = None) -> None:
        self.config = c = config or OfflineConfig()
        self.sim = Simulation(c.sim)
        self.sim.on_deliver = self._relayed
        self.rng = random.Random(c.seed)
        n = c.sim.nodes
        self.channels = [self.rng.sample(range(n), c.members) for _ in range(c.channels)]
        self.tag_keys = [self.rng.randbytes(32) for _ in range(c.channels)]
        self.nodes = [
            _Node(i, int.from_bytes(node_id_for(self.sim.nodes[i].peer.public_key_bytes), "big"),
                  [ch for ch, members in enumerate(self.channels) if i in members],
                  synced_at=c.start_wall)
            for i in range(n)
        ]
        self.away = sorted(self.rng.sample(range(n), round(c.offline * n)))
        self.messages: dict[bytes, _Message] = {}
        self._by_envelope: dict[bytes, bytes] = {}
        self._direct: dict[tuple[int, int], float] = {}
        self._texts: dict[tuple[int, int], list[float]] = {}  # (member, channel) -> send times
        self._warp = 0.0
        self._request = 0
        self.counters: Counter[str] = Counter()
        self.stored_copies: dict[bytes, int] = {}  # envelope id -> holders that acknowledged
        self.holders_read: Counter[int] = Counter()  # keys read, by nodes read that held them
        self.held_at_quiet: list[tuple[int, int]] = []  # per node: (envelopes, bytes) held
        self.quiet_at = 0.0
        self._schedule()

    # -- clocks and links ---------------------------------------------------------------------

    def wall(self) -> float:
        return self.config.start_wall + self.sim.now + self._warp

    def _latency(self, a: int, b: int) -> float:
        pair = (min(a, b), max(a, b))
        base = self._direct.get(pair)
        if base is None:
            lo, hi = self.config.sim.latency
            base = self._direct[pair] = self.rng.uniform(lo, hi)
        return base

    def _lookup_s(self, i: int) -> float:
        online = [n.index for n in self.nodes if n.online and n.index != i]
        return sum(2 * self._latency(i, self.rng.choice(online))
                   for _ in range(self.config.lookup_rtts))

    def _after(self, delay: float, fn: Callable[[], None]) -> None:
        self.sim.at(self.sim.now + delay, fn)

    # -- the scenario -------------------------------------------------------------------------

    def _schedule(self) -> None:
        c = self.config
        for i in self.away:
            self.nodes[i].online = False
            self.sim.leave(i)
        t = c.warmup_s
        end = c.warmup_s + c.seconds
        plan: list[tuple[float, int, int]] = []
        while True:
            t += self.rng.expovariate(c.rate)
            if t >= end:
                break
            ch = self.rng.randrange(c.channels)
            present = [m for m in self.channels[ch] if self.nodes[m].online]
            if not present:
                continue
            origin = self.rng.choice(present)
            plan.append((t, ch, origin))
            self._texts.setdefault((origin, ch), []).append(t)
        for t, ch, origin in plan:
            self.sim.at(t, lambda ch=ch, origin=origin: self._send(origin, ch))
        for i in range(len(self.nodes)):
            self.sim.at(self.rng.uniform(0, _TICK_S), lambda i=i: self._tick(i))
        self.quiet_at = end + _QUIET_AFTER_S
        self.sim.at(self.quiet_at, self._quiet)
        absences = sorted((self.rng.uniform(*c.away_s), i) for i in self.away)
        for k, (absence, i) in enumerate(absences):
            at = self.quiet_at + (k + 1) * c.return_gap_s
            self.sim.at(at, lambda i=i, absence=absence: self._come_back(i, absence))
        self.end_at = self.quiet_at + (len(absences) + 1) * c.return_gap_s

    def run(self) -> None:
        self.sim.run_until(self.end_at)

    # -- sending ------------------------------------------------------------------------------

    def _send(self, origin: int, channel: int) -> None:
        mid = self.rng.randbytes(16)
        msg = self.messages[mid] = _Message(mid, channel, origin, self.sim.now)
        self._enqueue(origin, msg)
        if self.config.resends:
            self._after(RESEND_FIRST_S, lambda: self._resend(msg, 1))

    def _enqueue(self, origin: int, msg: _Message) -> None:
        env = envelope(self.rng)
        eid = envelope_id(env)
        self._by_envelope[eid] = msg.message
        msg.envelopes += 1
        others = {m for m in self.channels[msg.channel] if m != origin}
        item = _Item(eid, msg.message, msg.channel, env, others, self.sim.now)
        self.nodes[origin].outbox[eid] = item
        for m in sorted(others):
            if self.nodes[m].online:
                lat = self._latency(origin, m)
                self._after(lat, lambda m=m: self._receive(m, msg.message, "direct"))
                self._after(2 * lat, lambda m=m: self._acked(origin, eid, m))

    def _resend(self, msg: _Message, attempt: int) -> None:
        now = self.sim.now
        others = [m for m in self.channels[msg.channel] if m != msg.origin]
        if all(self._known(msg, m, now) for m in others):
            return
        self.counters["resends"] += 1
        self._enqueue(msg.origin, msg)
        if attempt < RESEND_MAX:
            self._after(RESEND_AGAIN_S, lambda: self._resend(msg, attempt + 1))

    def _known(self, msg: _Message, member: int, now: float) -> bool:
        """Whether ``msg``'s sender can know by ``now`` that ``member`` has it (from the
        member's next Text or its Sync, whichever reached the sender first)."""
        got = msg.got.get(member)
        if got is None:
            return False
        back = self._latency(member, msg.origin)
        sync = msg.seen_at.get(member)
        if sync is not None and sync + back <= now:
            return True
        texts = self._texts.get((member, msg.channel), [])
        k = bisect.bisect_right(texts, got[0])
        return k < len(texts) and texts[k] + back <= now

    def _acked(self, origin: int, item_id: bytes, member: int) -> None:
        node = self.nodes[origin]
        item = node.outbox.get(item_id)
        if item is None:
            return
        item.pending.discard(member)
        if not item.pending:
            del node.outbox[item_id]
            node.fallback.forget(item_id)

    # -- receiving ----------------------------------------------------------------------------

    def _receive(self, member: int, mid: bytes, route: str) -> None:
        node = self.nodes[member]
        msg = self.messages.get(mid)
        if msg is None or not node.online or member not in self.channels[msg.channel]:
            return
        if member == msg.origin or member in msg.got:
            self.counters[f"duplicate_{route}"] += 1
            return
        msg.got[member] = (self.sim.now, route)
        lo, hi = 0.5 * SYNC_AFTER_S, 1.5 * SYNC_AFTER_S
        msg.seen_at[member] = self.sim.now + self.rng.uniform(lo, hi)

    def _relayed(self, i: int, effect: Deliver) -> None:
        mid = self._by_envelope.get(effect.msg_id)
        if mid is not None:
            self._receive(i, mid, "relay")

    # -- fallback: relay and place ------------------------------------------------------------

    def _tick(self, i: int) -> None:
        node = self.nodes[i]
        if node.online and node.outbox:
            now = self.sim.now
            grace = node.fallback.settings.grace_s
            stragglers = [
                Straggler(item.item_id, item.envelope, urgent=False, placeable=True)
                for item in node.outbox.values()
                if now - item.added_at >= grace
                or any(not self.nodes[m].online for m in item.pending)
            ]
            for effect in node.fallback.due(stragglers, self.wall()):
                if isinstance(effect, Relay):
                    self.counters["relayed"] += 1
                    self.sim.publish(i, effect.envelope, stem=effect.stem)
                elif isinstance(effect, Place):
                    item = node.outbox[effect.item_id]
                    key = mailbox_key(self.tag_keys[item.channel], day_of(self.wall()))
                    self._place(i, item.item_id, key, effect.envelope)
        self._after(_TICK_S, lambda: self._tick(i))

    def _closest(self, i: int, key: bytes, k: int, then: Callable[[list[int]], None]) -> None:
        """``then(holders)`` once node ``i`` knows the ``k`` nodes closest to ``key``."""
        node = self.nodes[i]
        cached = node.closest.get(key)
        if cached is not None and cached[0] > self.wall() and len(cached[1]) >= k:
            then(cached[1][:k])
            return
        target = int.from_bytes(key, "big")
        online = sorted((n for n in self.nodes if n.online), key=lambda n: n.node_id ^ target)
        others = [n.index for n in online[: k + 1] if n.index != i][:k]
        self.counters["lookups"] += 1

        def found() -> None:
            node.closest[key] = (self.wall() + _CLOSEST_TTL_S, others)
            then(others)

        self._after(self._lookup_s(i), found)

    def _next_request(self) -> int:
        self._request += 1
        return self._request

    def _place(self, i: int, item_id: bytes, key: bytes, env: bytes) -> None:
        self.counters["placements"] += 1

        def store_at(holders: list[int]) -> None:
            answers: dict[int, Status | None] = {}
            for h in holders:
                request = Store(self._next_request(), key, day_of(self.wall()), env)
                self._request_to(i, h, request.encode(),
                                 lambda reply, h=h: done(h, reply, holders, answers))

        def done(h: int, reply: bytes | None, holders: list[int],
                 answers: dict[int, Status | None]) -> None:
            status = None
            if reply is not None:
                stored = decode_mailbox(reply)
                assert isinstance(stored, Stored)
                status = stored.status
                self.counters[f"store_{status.name.lower()}"] += 1
            answers[h] = status
            if len(answers) == len(holders):
                self._placed(i, item_id, env, sum(s in ACCEPTED for s in answers.values()))

        self._closest(i, key, PLACEMENT_K, store_at)

    def _placed(self, i: int, item_id: bytes, env: bytes, holders: int) -> None:
        node = self.nodes[i]
        eid = envelope_id(env)
        self.stored_copies[eid] = max(self.stored_copies.get(eid, 0), holders)
        if node.fallback.placed(item_id, holders) and item_id in node.outbox:
            del node.outbox[item_id]
            node.fallback.forget(item_id)
            self.counters["items_stored"] += 1

    # -- the holder -----------------------------------------------------------------------------

    def _request_to(self, i: int, h: int, payload: bytes,
                    answer: Callable[[bytes | None], None]) -> None:
        """Carry an ``sp/mbx/1`` request from ``i`` to holder ``h`` and its reply back;
        ``answer(reply bytes)``, or ``answer(None)`` after the timeout if ``h`` is away."""
        lat = self._latency(i, h)
        self.counters["request_bytes"] += len(payload)
        self.counters["requests"] += 1

        def arrive() -> None:
            if not self.nodes[h].online:
                self._after(_REQUEST_TIMEOUT_S - lat, lambda: answer(None))
                return
            reply = self._serve(i, h, payload)
            self.counters["reply_bytes"] += len(reply)
            self._after(lat, lambda: answer(reply))

        self._after(lat, arrive)

    def _serve(self, i: int, h: int, payload: bytes) -> bytes:
        holder = self.nodes[h]
        peer = self.sim.nodes[i].peer
        request = decode_mailbox(payload)
        now = self.wall()
        if isinstance(request, Store):
            pseudonym = uploader_pseudonym(holder.secret, peer)
            decided = holder.mailbox.on_store(peer, pseudonym, request, now)
            if isinstance(decided, Append):
                appended = run_now(holder.store.append_many([decided.entry],
                                                            holder.mailbox.admit, now))[0]
                decided = holder.mailbox.stored(request, appended)
            return decided.encode()
        assert isinstance(request, Fetch)
        read = holder.mailbox.on_fetch(peer, request, now)
        if isinstance(read, Batch):
            return read.encode()
        page = run_now(holder.store.fetch(request.key, request.cursor, request.limit,
                                          read.max_bytes, now))
        return holder.mailbox.batch(read, page).encode()

    # -- quiet, away and back -----------------------------------------------------------------

    def _quiet(self) -> None:
        """Everything sent is acknowledged or stored: what every node holds for others."""
        self.counters["owed_at_quiet"] = sum(len(n.outbox) for n in self.nodes)
        for n in self.nodes:
            totals = run_now(n.store.totals())
            self.held_at_quiet.append((totals.envelopes, totals.bytes))

    def _come_back(self, i: int, absence: float) -> None:
        # The wall clock jumps to the return (never back): nothing is owed meanwhile.
        self._warp = max(self._warp, absence - self.sim.now)
        node = self.nodes[i]
        node.online = True
        self.sim.join(i)
        for sender in self.nodes:
            for item in list(sender.outbox.values()):
                if i in item.pending:  # still owed directly: the sender's link does it
                    lat = self._latency(sender.index, i)
                    self._after(lat, lambda mid=item.message: self._receive(i, mid, "direct"))
        self._after(self.config.ready_s, lambda: self._catch_up(i))

    def _catch_up(self, i: int) -> None:
        node = self.nodes[i]
        node.returned_at = self.sim.now
        started = self.wall()
        if node.synced_at < started - 14 * DAY_S:
            self.counters["mailbox_gap"] += 1
        days = fetch_days(min(node.synced_at, started), started)
        keys = [mailbox_key(self.tag_keys[ch], d) for ch in node.channels for d in days]
        self.counters["catch_up_keys"] += len(keys)
        complete = [True]

        def next_key(k: int) -> None:
            if k == len(keys):
                if complete[0]:
                    node.synced_at = started
                return
            self._collect(i, keys[k], complete, lambda: next_key(k + 1))

        next_key(0)

    def _collect(self, i: int, key: bytes, complete: list[bool],
                 then: Callable[[], None]) -> None:
        """``MailboxService.collect``: every holder from cursor 0, following ``more``."""
        found: dict[int, list[bytes]] = {}

        def from_holders(holders: list[int]) -> None:
            if not holders:
                then()
                return
            for h in holders:
                found[h] = []
                page(h, 0, holders)

        def page(h: int, cursor: int, holders: list[int]) -> None:
            request = Fetch(self._next_request(), key, cursor, MAX_LIMIT)
            self._request_to(i, h, request.encode(),
                             lambda reply: batch(h, request, reply, holders))

        def batch(h: int, request: Fetch, reply: bytes | None, holders: list[int]) -> None:
            ok = False
            if reply is not None:
                answer = decode_mailbox(reply)
                assert isinstance(answer, Batch)
                got = check_batch(request, answer)
                if got.status == Status.OK:
                    ok = True
                    found[h] += [env for _, env in got.items]
                    self.counters["fetched"] += len(got.items)
                    if got.more:
                        page(h, got.next_cursor, holders)
                        return
            if not ok:
                complete[0] = False
                self.counters["fetch_failed"] += 1
            finished.add(h)
            if len(finished) == len(holders):
                process(holders)

        def process(holders: list[int]) -> None:
            # How many of the nodes read held this key (3 when the holders a sender chose are
            # all among them); 0 while some node holds it would be a key missed.
            holding = sum(1 for h in holders if found[h])
            if holding or self._held_anywhere(key):
                self.holders_read[holding] += 1
            seen: set[bytes] = set()
            for h in holders:
                for env in found[h]:
                    digest = envelope_digest(env)
                    if digest in seen:
                        continue
                    seen.add(digest)
                    mid = self._by_envelope.get(envelope_id(env))
                    if mid is not None:
                        self._receive(i, mid, "mailbox")
            then()

        finished: set[int] = set()
        self._closest(i, key, self.config.collect_k, from_holders)

    def _held_anywhere(self, key: bytes) -> bool:
        now = self.wall()
        return any(run_now(n.store.fetch(key, 0, 1, MAX_LIMIT * 1024, now)).items
                   for n in self.nodes)

    # -- figures ------------------------------------------------------------------------------

    def pairs(self) -> list[Pair]:
        out = []
        away = set(self.away)
        for msg in self.messages.values():
            for m in self.channels[msg.channel]:
                if m == msg.origin:
                    continue
                got = msg.got.get(m)
                back = self.nodes[m].returned_at
                since = msg.sent_at if m not in away else (back if back is not None else -1.0)
                out.append(Pair(msg.message, m, m in away, None if got is None else got[0],
                                None if got is None else got[1], since))
        return out
