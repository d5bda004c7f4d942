"""Direct delivery to channel members, sans-I/O: per-member outboxes, windows, acknowledgements,
retransmission, dial requests, inbound de-duplication and per-link rate limits.

Every envelope for a channel is an *item* with a set of recipients still owing an
acknowledgement. Items go to each recipient in the order they were created, at most
``window`` unacknowledged at a time, over the recipient's link when there is one; a recipient
without a link is asked for (:class:`Dial`, with backoff). What is not acknowledged within
``retry_s`` is sent again (the receiver may have held it: a future epoch, a gap in a sender's
sequence), backing off to ``max_retry_s``. An item leaves the outbox when every recipient has
acknowledged it (or it is cancelled).

The caller persists items before calling :meth:`Delivery.add` and deletes them when
:meth:`Delivery.on_ack` reports them done, so a restart resends exactly what was owed.
"""

from __future__ import annotations

import random
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from node.core.backoff import backoff_delay
from node.core.identity import PeerId
from node.core.ratelimit import RateLimiter
from node.network.wire import MAX_ACK_IDS, AckMsg, EnvelopeMsg, envelope_id

__all__ = ["Delivery", "DeliverySettings", "Dial", "Inbound", "Transmit"]


@dataclass(frozen=True)
class Transmit:
    peer: PeerId
    payload: bytes  # an encoded NetworkLayer message
    item_id: bytes | None = None  # the outbox item, for an envelope


@dataclass(frozen=True)
class Dial:
    """Get a link to ``peer``: it is owed envelopes."""

    peer: PeerId


Effect = Transmit | Dial


@dataclass(frozen=True)
class DeliverySettings:
    # Unacknowledged envelopes in flight per peer. Well below a link's send queue (256
    # frames by default), so a full window fits in it; ~1 ms round trips on a LAN make 128
    # in flight enough for thousands of messages a second.
    window: int = 128
    retry_s: float = 5.0
    max_retry_s: float = 120.0
    inbound_rate: float = 5000.0  # envelopes per second per link...
    inbound_burst: float = 10000.0  # ...with this burst
    seen_capacity: int = 200_000  # envelope ids remembered in memory


@dataclass
class _Item:
    item_id: bytes
    order: int
    envelope: bytes
    pending: set[PeerId]
    tag: object  # opaque to delivery (the channel it belongs to)
    envelope_ids: list[bytes] = field(default_factory=list)
    not_before: float = 0.0  # send jitter: it stays queued until then
    added_at: float = 0.0


@dataclass
class _Flight:
    sent_at: float
    attempts: int


class Inbound:
    """What :meth:`Delivery.on_envelope` says to do with a received envelope."""

    PROCESS = "process"
    DUPLICATE = "duplicate"  # already processed: acknowledge again, do nothing else
    RATE_LIMITED = "rate_limited"  # over the link's limit: drop, no acknowledgement


class Delivery:
    def __init__(self, settings: DeliverySettings | None = None, *,
                 rand: random.Random | None = None) -> None:
        self.settings = settings or DeliverySettings()
        self._rand = rand or random.Random()
        self._items: dict[bytes, _Item] = {}
        self._by_envelope: dict[bytes, bytes] = {}
        self._order = 0
        self._queue: dict[PeerId, OrderedDict[bytes, None]] = defaultdict(OrderedDict)
        self._flight: dict[PeerId, dict[bytes, _Flight]] = defaultdict(dict)
        self._linked: set[PeerId] = set()
        self._dial_after: dict[PeerId, float] = {}
        self._dial_failures: dict[PeerId, int] = {}
        self._acks: dict[PeerId, list[bytes]] = defaultdict(list)
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._limiter = RateLimiter(self.settings.inbound_rate, self.settings.inbound_burst)
        # Items held back by send jitter: peer -> {item id: release time}.
        self._jittered: dict[PeerId, dict[bytes, float]] = defaultdict(dict)
        self.counters: dict[str, int] = defaultdict(int)

    # -- outbox ---------------------------------------------------------------------------------

    def add(self, item_id: bytes, envelope: bytes, recipients: Iterable[PeerId], now: float,
            tag: object = None, *, not_before: float = 0.0) -> list[Effect]:
        """A new (already persisted) item; returns what to send or dial now. An item with
        ``not_before`` in the future (send jitter) waits in the queues until a pump at or
        after that time; items behind it are not held up."""
        rcpt = set(recipients)
        if item_id in self._items or not rcpt:
            return []
        self._order += 1
        item = _Item(item_id, self._order, envelope, rcpt, tag, not_before=not_before,
                     added_at=now)
        self._items[item_id] = item
        self._track(item, envelope)
        effects: list[Effect] = []
        for peer in sorted(rcpt):
            self._queue[peer][item_id] = None
            effects += self._pump(peer, now)
        return effects

    def _track(self, item: _Item, envelope: bytes) -> None:
        eid = envelope_id(envelope)
        item.envelope = envelope
        item.envelope_ids.append(eid)
        self._by_envelope[eid] = item.item_id

    def reseal(self, item_id: bytes, envelope: bytes) -> None:
        """The item's envelope was sealed again (a new hour's tag); acks of either count."""
        item = self._items.get(item_id)
        if item is not None and item.envelope != envelope:
            self._track(item, envelope)

    def cancel(self, item_id: bytes) -> bool:
        item = self._items.pop(item_id, None)
        if item is None:
            return False
        for eid in item.envelope_ids:
            self._by_envelope.pop(eid, None)
        for peer in item.pending:
            self._queue[peer].pop(item_id, None)
            self._flight[peer].pop(item_id, None)
            if peer in self._jittered:
                self._jittered[peer].pop(item_id, None)
        return True

    def drop_recipient(self, peer: PeerId) -> list[bytes]:
        """Stop owing ``peer`` anything (e.g. it left every channel); returns finished items."""
        done = []
        for item_id in [*self._queue.pop(peer, {}), *self._flight.pop(peer, {}),
                        *self._jittered.pop(peer, {})]:
            item = self._items.get(item_id)
            if item is not None:
                item.pending.discard(peer)
                if not item.pending:
                    self.cancel(item_id)
                    done.append(item_id)
        self._dial_after.pop(peer, None)
        return done

    def stragglers(self, now: float, grace_s: float) -> list[bytes]:
        """Items (released by jitter) still owed to a recipient that has no link, or owed
        for longer than ``grace_s``: what direct delivery alone may not bring soon. Cheap
        with a long outbox: items are kept in the order they were added (``added_at`` never
        decreases), so the scan for old ones stops at the first young one."""
        found: dict[bytes, None] = {}
        for item in self._items.values():
            if now - item.added_at < grace_s:
                break
            if item.not_before <= now:
                found[item.item_id] = None
        for peer, queue in self._queue.items():
            if peer in self._linked:
                continue
            for item_id in queue:
                owed = self._items.get(item_id)
                if owed is not None and owed.not_before <= now:
                    found[item_id] = None
        return list(found)

    def jittered(self, now: float) -> int:
        """Items send jitter still holds back at ``now`` (read-only, for visibility)."""
        return sum(1 for item in self._items.values() if item.not_before > now)

    def items(self) -> list[tuple[bytes, object, frozenset[PeerId]]]:
        return [(i.item_id, i.tag, frozenset(i.pending)) for i in self._items.values()]

    def owed(self, peer: PeerId) -> int:
        return (len(self._queue.get(peer, ())) + len(self._flight.get(peer, ()))
                + len(self._jittered.get(peer, ())))

    def _pump(self, peer: PeerId, now: float) -> list[Effect]:
        if not self.owed(peer):
            return []
        if peer not in self._linked:
            if now >= self._dial_after.get(peer, 0.0):
                self._dial_after[peer] = now + self._dial_delay(peer)
                return [Dial(peer)]
            return []
        flight = self._flight[peer]
        queue = self._queue[peer]
        effects: list[Effect] = []
        while queue and len(flight) < self.settings.window:
            item_id, _ = queue.popitem(last=False)
            item = self._items.get(item_id)
            if item is None or peer not in item.pending:
                continue
            if item.not_before > now:
                # Send jitter: it waits aside (released by a tick); later items may pass it.
                self._jittered[peer][item_id] = item.not_before
                continue
            flight[item_id] = _Flight(now, 1)
            effects.append(Transmit(peer, EnvelopeMsg(item.envelope).encode(), item_id))
        return effects

    def next_release(self) -> float | None:
        """The earliest time a jitter-held item may leave (None: nothing is held)."""
        return min((t for held in self._jittered.values() for t in held.values()), default=None)

    def _release(self, now: float) -> None:
        """Jitter-held items whose time has come go back into their queues, in order."""
        for peer in list(self._jittered):
            held = self._jittered[peer]
            due = [i for i, t in held.items() if t <= now]
            for item_id in due:
                del held[item_id]
            if not held:
                del self._jittered[peer]
            if due:
                self._requeue_in_order(peer, due)

    def _requeue_in_order(self, peer: PeerId, item_ids: Iterable[bytes]) -> None:
        merged = sorted(
            {*self._queue[peer], *item_ids},
            key=lambda i: self._items[i].order if i in self._items else -1,
        )
        self._queue[peer] = OrderedDict((i, None) for i in merged if i in self._items)

    def _dial_delay(self, peer: PeerId) -> float:
        failures = self._dial_failures.get(peer, 0)
        return max(1.0, backoff_delay(failures, uniform=self._rand.random))

    def unsent(self, peer: PeerId, item_id: bytes) -> None:
        """A Transmit could not be queued on the link (full): it goes back to the front of
        the peer's queue and leaves with the next pump (an ack or a tick)."""
        flight = self._flight.get(peer)
        if flight is None or flight.pop(item_id, None) is None:
            return
        # Back in creation order (a refused burst is refused oldest first).
        self._requeue_in_order(peer, [item_id])
        self.counters["unsent"] += 1

    # -- links ------------------------------------------------------------------------------

    def link_up(self, peer: PeerId, now: float) -> list[Effect]:
        """A link to ``peer`` is up: what was in flight on an older link goes again first."""
        self._linked.add(peer)
        self._dial_failures.pop(peer, None)
        self._dial_after.pop(peer, None)
        return self._requeue(peer, now)

    def link_down(self, peer: PeerId) -> None:
        self._linked.discard(peer)

    def dial_failed(self, peer: PeerId, now: float) -> None:
        self._dial_failures[peer] = self._dial_failures.get(peer, 0) + 1
        self._dial_after[peer] = now + self._dial_delay(peer)

    def _requeue(self, peer: PeerId, now: float) -> list[Effect]:
        # In creation order: what was in flight is older than anything still queued.
        self._requeue_in_order(peer, self._flight.pop(peer, {}))
        return self._pump(peer, now)

    # -- acknowledgements ---------------------------------------------------------------------

    def on_ack(self, peer: PeerId, ids: Iterable[bytes], now: float
               ) -> tuple[list[Effect], list[tuple[bytes, object]], list[bytes]]:
        """An AckMsg from ``peer``: (effects, [(item, tag) acknowledged by it], [items done])."""
        acked: list[tuple[bytes, object]] = []
        done: list[bytes] = []
        flight = self._flight[peer]
        for eid in ids:
            item_id = self._by_envelope.get(eid)
            item = None if item_id is None else self._items.get(item_id)
            if item is None or peer not in item.pending:
                continue
            item.pending.discard(peer)
            flight.pop(item.item_id, None)
            self._queue[peer].pop(item.item_id, None)
            acked.append((item.item_id, item.tag))
            if not item.pending:
                self.cancel(item.item_id)
                done.append(item.item_id)
        return self._pump(peer, now), acked, done

    # -- inbound ------------------------------------------------------------------------------

    def on_envelope(self, peer: PeerId, envelope: bytes, now: float) -> str:
        if not self._limiter.allow(peer.binary.hex(), now):
            self.counters["rate_limited"] += 1
            return Inbound.RATE_LIMITED
        eid = envelope_id(envelope)
        if eid in self._seen:
            self.counters["duplicate"] += 1
            self.acknowledge(peer, eid)
            return Inbound.DUPLICATE
        return Inbound.PROCESS

    def is_seen(self, eid: bytes) -> bool:
        return eid in self._seen

    def remember(self, eid: bytes) -> None:
        """``eid`` was processed (or refused for good): later copies are duplicates."""
        self._seen[eid] = None
        self._seen.move_to_end(eid)
        while len(self._seen) > self.settings.seen_capacity:
            self._seen.popitem(last=False)

    def acknowledge(self, peer: PeerId, eid: bytes) -> None:
        self._acks[peer].append(eid)

    def take_acks(self) -> list[Effect]:
        effects: list[Effect] = []
        for peer, ids in self._acks.items():
            for i in range(0, len(ids), MAX_ACK_IDS):
                effects.append(Transmit(peer, AckMsg(tuple(ids[i : i + MAX_ACK_IDS])).encode()))
        self._acks.clear()
        return effects

    # -- time -----------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        """Retransmit what waited too long for an acknowledgement; ask for links again."""
        effects: list[Effect] = []
        s = self.settings
        self._release(now)
        for peer in list(self._flight):
            if peer not in self._linked:
                continue
            for item_id, flight in list(self._flight[peer].items()):
                wait = min(s.max_retry_s, s.retry_s * (2 ** (flight.attempts - 1)))
                if now - flight.sent_at < wait:
                    continue
                item = self._items.get(item_id)
                if item is None:
                    del self._flight[peer][item_id]
                    continue
                flight.sent_at, flight.attempts = now, flight.attempts + 1
                self.counters["retransmitted"] += 1
                effects.append(Transmit(peer, EnvelopeMsg(item.envelope).encode(), item_id))
        # Peers owed something: unlinked ones are dialled (with backoff); linked ones get what
        # fits their window (e.g. what the link refused while it was full).
        owed = {p for p, q in self._queue.items() if q} | {p for p, f in self._flight.items() if f}
        for peer in sorted(owed):
            effects += self._pump(peer, now)
        return effects

    def statistics(self) -> dict[str, object]:
        return {
            "outbox_items": len(self._items),
            "outbox_owed": sum(len(i.pending) for i in self._items.values()),
            "in_flight": sum(len(f) for f in self._flight.values()),
            **self.counters,
        }
