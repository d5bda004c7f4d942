"""The channel layer's asyncio adapter: one task owns the channel core and the delivery core.

Everything that changes channel state (envelopes from peers, acknowledgements, links coming
and going, API requests, timers) becomes a *job* on one bounded queue. The actor takes a
batch of jobs, runs each through the sans-I/O cores, writes everything the batch changed in
ONE SQLite transaction, and only then sends envelopes and acknowledgements, answers the API
callers and publishes events. So:

* a message is acknowledged to its sender only once it (and the group state that decrypted
  it) is on disk; ``POST .../messages`` answers only once the outbox entry is;
* a kill -9 at any moment loses nothing acknowledged and delivers nothing twice (the sender
  resends what was not acknowledged; the receiver's stored state rejects what it already had).

Batching jobs into one transaction is what makes durable storage fast (one fsync per batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from dht.errors import DhtError
from node.channels.channel import Hold
from node.channels.check import PROTOCOL as CHECK_PROTOCOL
from node.channels.content import Text
from node.channels.errors import ChannelError, InviteeNotFound, Rejected, UnknownInvite
from node.channels.manager import ChannelManager, Envelope, Invite, InviteState, Notice, Result
from node.channels.state import ChannelStatus, EpochNode, SentMessage
from node.core.errors import SpacePandaError, TransportError
from node.core.identity import PeerId
from node.network.delivery import Delivery, DeliverySettings, Dial, Effect, Inbound, Transmit
from node.network.fallback import Fallback, FallbackSettings, Place, Relay, Straggler
from node.network.jitter import Jitter
from node.network.mailbox import DAY_S, RETENTION_DAYS, day_of, fetch_days, mailbox_key
from node.network.wire import PROTOCOL, EnvelopeMsg, decode_net, envelope_id
from node.storage.channelstore import ChannelBatch, ChannelStore, MessageRow, OutboxRow
from node.transport.connections import LinkDown, LinkEvent, LinkUp

if TYPE_CHECKING:
    from node.daemon import Node
    from node.mailbox_service import Collection, MailboxService
    from node.relay_service import RelayService

__all__ = ["ChannelService", "ChannelView", "ChannelsStopped", "MemberView"]

log = structlog.get_logger("node.channels")

T = TypeVar("T")

_MAX_BATCH = 256
_CALLS_PER_BATCH = 64
_JOB_QUEUE = 4096
_HELD_MAX = 4096
_HELD_TTL_S = 600.0
_GAP_WAIT_S = 30.0  # a sender's sequence gap older than this is let through (out of order)
_TICK_S = 1.0
_SEEN_RETENTION_S = 14 * 86400.0
_PRUNE_EVERY_S = 3600.0
_MAX_DIALS = 8
_EVENT_QUEUE = 1024
_UNROUTED_MAX = 1024  # relayed envelopes no key opens yet (perhaps a future epoch of ours)
_UNROUTED_TTL_S = 120.0
_CATCH_UP_EVERY_S = 600.0  # mailboxes are read again this often while running...
_CATCH_UP_ROUNDS = 8  # ...following new epochs found on the way, at most this many times
_CATCH_UP_PARALLEL = 8  # mailbox keys read at once
_SYNCED_META = "mailbox_synced_at"  # up to when this node has read its mailboxes
_MAX_PLACING = 16  # mailbox placements under way at once


class ChannelsStopped(SpacePandaError):
    """The channel service is not running (the node is starting or stopping)."""


@dataclass(frozen=True)
class MemberView:
    peer_id: str
    display_name: str
    role: str

    def to_json(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "display_name": self.display_name, "role": self.role}


@dataclass(frozen=True)
class ChannelView:
    channel_id: str
    name: str
    epoch: int
    epoch_fingerprint: str
    status: str
    members: list[MemberView]
    dropped: dict[str, int]
    committers: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "channel_id": self.channel_id,
            "name": self.name,
            "epoch": self.epoch,
            "epoch_fingerprint": self.epoch_fingerprint,
            "status": self.status,
            "members": [m.to_json() for m in self.members],
            "committers": list(self.committers),
            "dropped": dict(self.dropped),
        }


@dataclass
class _Held:
    """An envelope that cannot be processed yet (see ``Hold``): retried when what it waits
    for may have come (a sender's previous message, or new epoch states)."""

    peer: PeerId | None  # None: it came through a relay or a mailbox (nobody to acknowledge)
    envelope: bytes
    eid: bytes
    since: float
    channel_id: bytes | None = None
    waiting_for: tuple[PeerId, int] | None = None


@dataclass
class _Batch:
    result: Result = field(default_factory=Result)
    acked: list[tuple[bytes, PeerId]] = field(default_factory=list)
    finished: list[bytes] = field(default_factory=list)  # outbox items nobody is owed
    stored: list[bytes] = field(default_factory=list)  # items enough mailbox holders have
    seen: list[bytes] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    done: list[tuple[asyncio.Future[Any], Any]] = field(default_factory=list)
    failed: list[tuple[asyncio.Future[Any], BaseException]] = field(default_factory=list)
    changed_channels: bool = False
    epochs_changed: bool = False  # epoch states were added or removed (new routing tags)


_Job = Callable[[_Batch, float], None]


class ChannelService:
    """Runs the channel layer of one node inside the node's TaskGroup."""

    def __init__(
        self,
        node: Node,
        store: ChannelStore,
        *,
        display_name: str = "",
        auto_accept_invites: bool = False,
        delivery: DeliverySettings | None = None,
        jitter: str = "off",
        relay: RelayService | None = None,
        mailboxes: MailboxService | None = None,
        fallback: FallbackSettings | None = None,
        wall: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._node = node
        self._store = store
        self._wall = wall
        self.manager = ChannelManager(
            node.keys.identity,
            node.keys.envelope_private,
            node.keys.envelope_public,
            rng=rng,
            clock=wall,
            display_name=display_name,
            auto_accept_invites=auto_accept_invites,
        )
        self.delivery = Delivery(delivery, rand=random.Random(int.from_bytes(rng(8), "big")))
        self.jitter = Jitter(jitter, random.Random(int.from_bytes(rng(8), "big")))
        self.relay = relay
        self.mailboxes = mailboxes
        self.fallback = Fallback(fallback)
        self._unrouted: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self._placing = asyncio.Semaphore(_MAX_PLACING)
        self._cursors: dict[bytes, dict[PeerId, int]] = {}  # mailbox key -> holder cursors
        # Peer input, timers and dial results go first; API calls fill the rest of a batch,
        # at most _CALLS_PER_BATCH, so a burst of sends never delays acknowledgements.
        self._net: asyncio.Queue[_Job] = asyncio.Queue(_JOB_QUEUE)
        self._calls: asyncio.Queue[_Job] = asyncio.Queue(_JOB_QUEUE)
        self._wake = asyncio.Event()
        self._links_changed: dict[PeerId, bool] = {}
        self._held: dict[bytes, _Held] = {}
        self._outbox: dict[bytes, Envelope] = {}
        self._subscribers: set[asyncio.Queue[Notice]] = set()
        self._dials = asyncio.Semaphore(_MAX_DIALS)
        self._dialing: set[PeerId] = set()
        self._tg: asyncio.TaskGroup | None = None
        self.drops: Counter[tuple[str, str]] = Counter()  # (channel id hex or "", reason)
        self.counters: Counter[str] = Counter()
        self.ready = asyncio.Event()
        self._pruned_at = 0.0
        self._waiting: set[asyncio.Future[Any]] = set()
        self._timer_at = 0.0  # when the timer task next wakes up...
        self._timer_kick = asyncio.Event()  # ...unless this wakes it earlier
        # Peers sharing an active channel with us, and how many channels each shares: the
        # connection trim asks about every candidate, so it reads a set kept up to date as
        # membership changes (per channel, only when its group state or status moved).
        self._co_members: Counter[PeerId] = Counter()
        self._roster: dict[bytes, tuple[tuple[int, bytes, bool], frozenset[PeerId]]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Read every channel, invite and outbox item back from the database."""
        m = self.manager
        for row in await self._store.load_channels():
            nodes = [EpochNode.decode(n) for n in row.nodes]
            sent = {}
            for mid, rec, text, at in row.sent:
                rebuilt = None if text is None or at is None else Text(mid, text, at).encode()
                try:
                    sent[mid] = SentMessage.decode(rec, rebuilt)
                except ChannelError as exc:
                    log.warning("sent_message_unreadable", error=str(exc))
            m.restore_channel(row.group_state, row.meta, nodes, sent)
        for record in await self._store.load_invites():
            m.restore_invite(Invite.decode(record))
        now = self._wall()
        for item in await self._store.load_outbox():
            self._restore_outbox(item, now)
        for eid in await self._store.load_seen(now - _SEEN_RETENTION_S):
            self.delivery.remember(eid)
        self._roster.clear()
        self._co_members.clear()
        self._track_members(m.channels)
        log.info("channels_loaded", channels=len(m.channels), invites=len(m.invites),
                 outbox=len(self._outbox))

    def _restore_outbox(self, row: OutboxRow, now: float) -> None:
        env = self.manager.envelope_from_store(row.item_id, row.channel_id, row.body, row.keys,
                                               tuple(sorted(row.recipients)), now)
        self._outbox[row.item_id] = env
        self.delivery.add(row.item_id, env.envelope, row.recipients, now, tag=row.channel_id)

    def start(self, task_group: asyncio.TaskGroup) -> None:
        self._tg = task_group
        self._node.register_protocol(PROTOCOL, self._on_network, queue_size=_JOB_QUEUE)
        self._node.register_protocol(CHECK_PROTOCOL, self._on_check)
        self._node.observe_links(self._on_link)
        for link in self._node.connections.links():
            self._links_changed[link.peer_id] = True
        task_group.create_task(self._actor(), name="channels")
        task_group.create_task(self._timer(), name="channels-timer")
        if self.relay is not None:
            task_group.create_task(self._relayed(self.relay), name="channels-relayed")
        if self.mailboxes is not None:
            task_group.create_task(self._catch_up_loop(self.mailboxes), name="channels-catch-up")
        self._wake.set()
        self.ready.set()

    # -- inputs from the node ------------------------------------------------------------------

    async def _on_network(self, peer: PeerId, payload: bytes) -> None:
        message = decode_net(payload)  # NetworkError: counted by the dispatcher as bad_payload
        if isinstance(message, EnvelopeMsg):
            env_bytes = message.envelope
            await self._put(lambda batch, now: self._envelope(batch, peer, env_bytes, now))
        else:
            ids = message.ids
            await self._put(lambda batch, now: self._ack(batch, peer, ids, now))

    async def _on_check(self, peer: PeerId, payload: bytes) -> None:
        await self._put(lambda batch, now: self._check(batch, peer, payload, now))

    def _check(self, batch: _Batch, peer: PeerId, payload: bytes, now: float) -> None:
        try:
            self._merge(batch, self.manager.on_check(peer, payload, now))
        except Rejected as exc:
            self.drops[("", exc.reason)] += 1

    async def _put(self, job: _Job) -> None:
        await self._net.put(job)
        self._wake.set()

    def _on_link(self, event: LinkEvent) -> None:
        # Never blocks: the actor reads the latest state of each peer's link.
        peer = event.link.peer_id
        self._links_changed[peer] = isinstance(event, LinkUp)
        if isinstance(event, LinkDown):
            self._dialing.discard(peer)
        self._wake.set()

    # -- the actor -----------------------------------------------------------------------------

    async def _actor(self) -> None:
        while True:
            jobs = await self._next_jobs()
            now = self._wall()
            batch = _Batch()
            self._apply_link_changes(batch, now)
            for job in jobs:
                job(batch, now)
            if (batch.changed_channels or batch.epochs_changed) and self._held:
                self._retry_held(batch, now)
            if batch.epochs_changed and self._unrouted:
                self._retry_unrouted(batch, now)
            await self._commit(batch, now)

    async def _next_jobs(self) -> list[_Job]:
        while self._net.empty() and self._calls.empty() and not self._links_changed:
            await self._wake.wait()
            self._wake.clear()
        jobs: list[_Job] = []
        while len(jobs) < _MAX_BATCH and not self._net.empty():
            jobs.append(self._net.get_nowait())
        calls = 0
        while calls < _CALLS_PER_BATCH and len(jobs) < _MAX_BATCH and not self._calls.empty():
            jobs.append(self._calls.get_nowait())
            calls += 1
        return jobs

    def _apply_link_changes(self, batch: _Batch, now: float) -> None:
        changes, self._links_changed = self._links_changed, {}
        for peer, up in changes.items():
            if up and self._node.connections.get(peer) is not None:
                batch.effects += self.delivery.link_up(peer, now)
            else:
                self.delivery.link_down(peer)

    def _merge(self, batch: _Batch, result: Result) -> None:
        r = batch.result
        r.envelopes += result.envelopes
        r.cancelled += result.cancelled
        r.messages += result.messages
        r.notices += result.notices
        r.channels |= result.channels
        r.nodes_added += result.nodes_added
        r.nodes_removed += result.nodes_removed
        r.sent_saved += result.sent_saved
        r.sent_deleted += result.sent_deleted
        r.seen += result.seen
        r.invites_saved += result.invites_saved
        r.invites_deleted += result.invites_deleted
        r.direct += result.direct
        if result.channels or result.nodes_added or result.invites_saved:
            batch.changed_channels = True
        if result.nodes_added or result.nodes_removed:
            batch.epochs_changed = True

    def _envelope(self, batch: _Batch, peer: PeerId | None, env_bytes: bytes, now: float,
                  *, allow_gap: bool = False) -> None:
        """One envelope: from ``peer`` over a link, or (``peer`` None) from a relay or a
        mailbox, which nobody acknowledges and which may well not be for us."""
        eid = envelope_id(env_bytes)
        if peer is not None:
            verdict = self.delivery.on_envelope(peer, env_bytes, now)
            if verdict != Inbound.PROCESS:
                self.counters[f"envelopes_{verdict}"] += 1
                return
        elif self.delivery.is_seen(eid):
            self.counters["envelopes_duplicate_indirect"] += 1
            return
        try:
            result = self.manager.receive(env_bytes, peer or self.manager.me, now,
                                          allow_gap=allow_gap)
        except Hold as hold:
            if peer is None and self.manager.last_channel is None:
                # No key of ours opens it: most relayed traffic is for other channels. Kept a
                # little while in case it is from an epoch of ours we have not reached yet.
                if eid not in self._unrouted:
                    self._unrouted[eid] = (env_bytes, now)
                    while len(self._unrouted) > _UNROUTED_MAX:
                        self._unrouted.popitem(last=False)
                self.counters["envelopes_not_ours"] += 1
                return
            old = self._held.get(eid)
            if old is None and len(self._held) < _HELD_MAX:
                self._held[eid] = _Held(peer, env_bytes, eid, now, self.manager.last_channel,
                                        hold.waiting_for)
            elif old is not None:
                old.channel_id, old.waiting_for = self.manager.last_channel, hold.waiting_for
            self.counters["envelopes_held"] += 1
            return
        self._held.pop(eid, None)
        if result.drop_reason is not None:
            cid = "" if result.channel_id is None else result.channel_id.hex()
            self.drops[(cid, result.drop_reason)] += 1
            log.debug("envelope_dropped", peer=str(peer or "indirect"),
                      reason=result.drop_reason)
        self.counters["envelopes_processed"] += 1
        self._merge(batch, result)
        if result.ack:
            self.delivery.remember(eid)
            if peer is not None:
                self.delivery.acknowledge(peer, eid)
            else:
                self.counters["envelopes_indirect"] += 1
            batch.seen.append(eid)

    def _retry_unrouted(self, batch: _Batch, now: float) -> None:
        """New epoch states: relayed envelopes no key opened may be for one of them."""
        waiting, self._unrouted = self._unrouted, OrderedDict()
        for eid, (envelope, since) in waiting.items():
            if now - since <= _UNROUTED_TTL_S:
                self._envelope(batch, None, envelope, now)
                if eid in self._unrouted:
                    self._unrouted[eid] = (envelope, since)  # still not ours: keep its age

    def _retry_held(self, batch: _Batch, now: float, *, timers: bool = False) -> None:
        """Offer held envelopes again, but only those whose wait may be over: retrying one
        costs a decryption, and thousands can be held while a sender's gap is open."""
        epochs_changed = batch.epochs_changed or timers
        for _ in range(3):  # what one retry lets through may release others
            progressed = False
            for held in list(self._held.values()):
                if now - held.since > _HELD_TTL_S:
                    self._held.pop(held.eid, None)
                    self.drops[("", "held_too_long")] += 1
                    continue
                overdue = now - held.since > _GAP_WAIT_S
                if held.waiting_for is not None and not overdue:
                    channel = self.manager.channels.get(held.channel_id or b"")
                    sender, seq = held.waiting_for
                    if channel is None or channel.meta.sender_seq.get(sender, 0) < seq:
                        continue
                elif held.waiting_for is None and not epochs_changed and not overdue:
                    continue
                self._held.pop(held.eid, None)
                self._envelope(batch, held.peer, held.envelope, now, allow_gap=overdue)
                progressed = progressed or held.eid not in self._held
            if not progressed:
                return

    def _ack(self, batch: _Batch, peer: PeerId, ids: tuple[bytes, ...], now: float) -> None:
        effects, acked, finished = self.delivery.on_ack(peer, ids, now)
        batch.effects += effects
        batch.finished += finished
        for item_id, tag in acked:
            batch.acked.append((item_id, peer))
            if isinstance(tag, bytes):
                self._merge(batch, self.manager.acknowledged(tag, item_id, peer, now))

    def _tick(self, batch: _Batch, now: float) -> None:
        self._merge(batch, self.manager.tick(now))
        self._merge(batch, self.manager.checks(now))
        if self.jitter.cover_due(now):
            self._merge(batch, self.manager.cover(now))
        if now - self._pruned_at > _PRUNE_EVERY_S:
            self._pruned_at = now
            assert self._tg is not None
            self._tg.create_task(self._prune_seen(now - _SEEN_RETENTION_S), name="prune-seen")
        for item_id, item in list(self._outbox.items()):
            fresh = self.manager.reseal(item, now)
            if fresh is not item:
                self._outbox[item_id] = fresh
                self.delivery.reseal(item_id, fresh.envelope)
        batch.effects += self.delivery.tick(now)
        self._fall_back(now)
        if self._held:
            self._retry_held(batch, now, timers=True)

    async def _commit(self, batch: _Batch, now: float) -> None:
        """Persist the batch in one transaction, then act on it."""
        r = batch.result
        m = self.manager
        rows = ChannelBatch()
        for cid in sorted(r.channels):
            channel = m.channels.get(cid)
            if channel is not None:
                rows.channels.append((cid, channel.group_blob(), channel.meta_blob()))
        rows.nodes_added = [(cid, n.state_id, n.encode()) for cid, n in r.nodes_added]
        rows.nodes_removed = list(r.nodes_removed)
        rows.sent_saved = [(cid, mid, sent.encode()) for cid, mid, sent in r.sent_saved]
        rows.sent_deleted = list(r.sent_deleted)
        rows.seen_by = list(r.seen)
        rows.messages = [
            MessageRow(x.channel_id, x.message_id, x.sender, x.sender_name, x.text,
                       x.sent_at_ms, x.received_at, x.seq)
            for x in r.messages
        ]
        for e in r.envelopes:
            if e.cover:
                continue  # cover traffic is never stored (nor resent)
            body = e.payload if e.keys is not None else e.envelope
            rows.outbox_added.append(OutboxRow(e.inner_id, e.channel_id, body, e.keys,
                                               frozenset(e.recipients), now))
        rows.outbox_removed = [*r.cancelled, *batch.stored]
        rows.stored = self._stored_messages(batch)
        for cid, mid in rows.stored:
            self.manager.message_safe(cid, mid)  # no more resends of what is safe
        rows.outbox_acked = list(batch.acked)
        rows.seen = [(eid, now) for eid in batch.seen]
        rows.invites_saved = [(i.invite_id, i.encode(), i.created_at) for i in r.invites_saved]
        rows.invites_deleted = list(r.invites_deleted)
        if rows:
            try:
                await self._store.write(rows)
            except SpacePandaError as exc:
                # Nothing of the batch is durable: answer callers with the error, send nothing.
                log.error("channel_batch_not_saved", error=str(exc))
                self.counters["batches_failed"] += 1
                for fut, _ in batch.done:
                    if not fut.done():
                        fut.set_exception(exc)
                for fut, err in batch.failed:
                    if not fut.done():
                        fut.set_exception(err)
                await self._reload_after_failure()
                return
        # Durable: now the world may see it.
        self._track_members(r.channels)
        for iid in r.cancelled:
            self.delivery.cancel(iid)
            self._outbox.pop(iid, None)
        for item_id in batch.finished:
            self._outbox.pop(item_id, None)
            self.fallback.forget(item_id)
        for item_id in batch.stored:
            self.delivery.cancel(item_id)
            self._outbox.pop(item_id, None)
            self.fallback.forget(item_id)
        for iid in r.cancelled:
            self.fallback.forget(iid)
        effects = list(batch.effects)
        for e in r.envelopes:
            if e.cover:
                self._send_cover(e)
                continue
            self._outbox[e.inner_id] = e
            release = self.jitter.release_at(now, urgent=e.urgent)
            effects += self.delivery.add(e.inner_id, e.envelope, e.recipients, now,
                                         tag=e.channel_id, not_before=release)
            if release > now:
                self._kick_timer(release)
        effects += self.delivery.take_acks()
        self._act(effects)
        for peer, payload in r.direct:
            link = self._node.connections.get(peer)
            if link is None:
                # No link: ask for one; the check is simply made again next time.
                if peer not in self._dialing and self._tg is not None:
                    self._dialing.add(peer)
                    self._tg.create_task(self._dial(peer), name="channel-dial")
                continue
            try:
                link.try_send(CHECK_PROTOCOL, payload)
            except TransportError:
                self.counters["send_queue_full"] += 1
        for notice in r.notices:
            self._publish(notice)
        self.counters["messages_stored"] += len(r.messages)
        for fut, value in batch.done:
            if not fut.done():
                fut.set_result(value)
        for fut, err in batch.failed:
            if not fut.done():
                fut.set_exception(err)

    def is_co_member(self, peer: PeerId) -> bool:
        """Whether ``peer`` is a member of one of our active channels (cheap: a set lookup)."""
        return peer in self._co_members

    def _track_members(self, channel_ids: Iterable[bytes]) -> None:
        for cid in channel_ids:
            channel = self.manager.channels.get(cid)
            old = self._roster.get(cid)
            peers: frozenset[PeerId] = frozenset()
            if channel is None:
                self._roster.pop(cid, None)
            else:
                # A fork resolved to another state of the same epoch has another authenticator.
                key = (channel.epoch, channel.fingerprint, channel.active)
                if old is not None and old[0] == key:
                    continue
                if channel.active:
                    peers = frozenset(channel.member_peers()) - {self.manager.me}
                self._roster[cid] = (key, peers)
            before = frozenset() if old is None else old[1]
            self._co_members.update(peers - before)
            self._co_members.subtract(before - peers)
            for peer in before - peers:
                if self._co_members[peer] <= 0:
                    del self._co_members[peer]

    async def _reload_after_failure(self) -> None:
        """The database refused a batch: our in-memory state ran ahead of it. Start over
        from what is on disk (peers resend what we did not acknowledge)."""
        m = self.manager
        m.channels.clear()
        m.invites.clear()
        self._outbox.clear()
        self.delivery = Delivery(self.delivery.settings)
        self._held.clear()
        with contextlib.suppress(SpacePandaError):
            await self.load()
        for link in self._node.connections.links():
            self._links_changed[link.peer_id] = True

    def _stored_messages(self, batch: _Batch) -> list[tuple[bytes, bytes]]:
        """Our text messages whose outbox items no longer need this node: every member
        acknowledged them, or enough mailbox holders did."""
        marks = []
        texts: dict[bytes, dict[bytes, bytes]] = {}  # per channel, built once per batch
        for item_id in [*batch.finished, *batch.stored]:
            item = self._outbox.get(item_id)
            if item is None or item.channel_id is None:
                continue
            if item.channel_id not in texts:
                texts[item.channel_id] = self.manager.texts_by_item(item.channel_id)
            mid = texts[item.channel_id].get(item_id)
            if mid is not None:
                marks.append((item.channel_id, mid))
        return marks

    # -- beyond direct links: relay and mailboxes ----------------------------------------------

    def _fall_back(self, now: float) -> None:
        """Relay and place what direct delivery has not brought to every member yet."""
        if self.relay is None and self.mailboxes is None:
            return
        grace = self.fallback.settings.grace_s
        stragglers = []
        for item_id in self.delivery.stragglers(now, grace):
            item = self._outbox.get(item_id)
            if item is not None:
                stragglers.append(Straggler(item_id, item.envelope, item.urgent,
                                            placeable=item.keys is not None))
        for effect in self.fallback.due(stragglers, now):
            if isinstance(effect, Relay):
                if self.relay is not None:
                    self.relay.publish(effect.envelope, stem=effect.stem)
            elif isinstance(effect, Place):
                item = self._outbox.get(effect.item_id)
                if self.mailboxes is None or item is None or item.keys is None:
                    self.fallback.placed(effect.item_id, 0)
                    continue
                key = mailbox_key(item.keys[1], day_of(now))
                assert self._tg is not None
                self._tg.create_task(self._place(self.mailboxes, effect.item_id, key,
                                                 effect.envelope), name="mailbox-place")

    async def _place(self, mailboxes: MailboxService, item_id: bytes, key: bytes,
                     envelope: bytes) -> None:
        holders: list[PeerId] = []
        try:
            async with self._placing:
                holders = await mailboxes.place(key, envelope)
        except SpacePandaError as exc:
            log.debug("mailbox_place_failed", error=str(exc))
        self.counters["mailbox_placements"] += 1
        self.counters["mailbox_copies"] += len(holders)
        await self._put(lambda batch, now: self._placed(batch, item_id, len(holders)))

    def _placed(self, batch: _Batch, item_id: bytes, holders: int) -> None:
        if self.fallback.placed(item_id, holders) and item_id in self._outbox:
            batch.stored.append(item_id)
            self.counters["outbox_items_stored"] += 1

    async def _relayed(self, relay: RelayService) -> None:
        """Envelopes the relay delivered: each one tried like any other (most are not ours)."""
        while True:
            envelope = await relay.delivered.get()
            await self._put(self._indirect(envelope))

    def _indirect(self, envelope: bytes) -> _Job:
        return lambda batch, now: self._envelope(batch, None, envelope, now)

    async def _catch_up_loop(self, mailboxes: MailboxService) -> None:
        """Read the mailboxes of every day this node may have missed: once the DHT is
        ready after a start, then every ``_CATCH_UP_EVERY_S`` (what a relay lost)."""
        while not self._node.is_ready():
            await asyncio.sleep(0.5)
        while True:
            try:
                await self._catch_up(mailboxes)
            except SpacePandaError as exc:
                log.info("mailbox_catch_up_failed", error=str(exc))
            await asyncio.sleep(_CATCH_UP_EVERY_S)

    async def _catch_up(self, mailboxes: MailboxService) -> None:
        started = self._wall()
        raw = await self._node.storage.get_meta(_SYNCED_META)
        since = started if raw is None else float(raw.decode())
        days = fetch_days(min(since, started), started)
        if since < started - RETENTION_DAYS * DAY_S:
            for cid in self.manager.channels:
                self._publish(Notice("mailbox_gap", cid, {
                    "away_since": since,
                    "detail": "away longer than mailboxes keep envelopes (14 days): what was "
                              "sent before then is lost unless a member still has it; an "
                              "admin re-adds this node if the channel moved on without it",
                }))
        complete, read, found = True, set[bytes](), 0
        limit = asyncio.Semaphore(_CATCH_UP_PARALLEL)

        async def one(key: bytes) -> Collection | None:
            async with limit:
                try:
                    return await mailboxes.collect(key, cursors=self._cursors.get(key))
                except SpacePandaError as exc:
                    log.debug("mailbox_collect_failed", error=str(exc))
                    return None

        for _ in range(_CATCH_UP_ROUNDS):
            keys = [mailbox_key(t, d) for t in self.manager.tag_keys() for d in days]
            keys = [k for k in keys if k not in read]
            if not keys:
                break
            read.update(keys)
            # Keys are read in parallel (each is a DHT lookup and a few round trips), then
            # processed in order: a channel's days oldest first.
            collected = await asyncio.gather(*(one(key) for key in keys))
            for key, got in zip(keys, collected, strict=True):
                if got is None:
                    complete = False
                    continue
                self._cursors[key] = {**self._cursors.get(key, {}), **got.cursors}
                complete = complete and got.complete and not got.failed
                for envelope in got.envelopes:
                    found += 1
                    await self._put(self._indirect(envelope))
            await self.call(lambda now: None)  # what was found is processed (new epochs?)
        if len(self._cursors) > 4 * _CATCH_UP_ROUNDS * 1024:
            self._cursors.clear()
        if complete:
            await self._node.storage.set_meta(_SYNCED_META, repr(started).encode())
        self.counters["mailbox_catch_ups"] += 1
        log.info("mailbox_catch_up", days=len(days), keys=len(read), envelopes=found,
                 complete=complete)

    def _send_cover(self, e: Envelope) -> None:
        """Cover goes once, to members with a link now: members acknowledge and drop it, so
        on the wire it looks like a message; nobody owes it to anyone."""
        payload = EnvelopeMsg(e.envelope).encode()
        for peer in e.recipients:
            link = self._node.connections.get(peer)
            if link is None:
                continue
            try:
                link.try_send(PROTOCOL, payload)
                self.counters["cover_sent"] += 1
            except TransportError:
                self.counters["send_queue_full"] += 1

    def _act(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Transmit):
                link = self._node.connections.get(effect.peer)
                if link is None:
                    continue  # retransmitted once a link is back
                try:
                    link.try_send(PROTOCOL, effect.payload)
                    self.counters["envelopes_sent" if effect.item_id else "acks_sent"] += 1
                except TransportError:
                    self.counters["send_queue_full"] += 1
                    if effect.item_id is not None:
                        self.delivery.unsent(effect.peer, effect.item_id)
            elif isinstance(effect, Dial) and effect.peer not in self._dialing:
                assert self._tg is not None
                self._dialing.add(effect.peer)
                self._tg.create_task(self._dial(effect.peer), name="channel-dial")

    async def _dial(self, peer: PeerId) -> None:
        """Reach a member we owe envelopes: its signed record from the DHT, expected PeerId."""
        try:
            async with self._dials:
                if self._node.connections.get(peer) is not None:
                    return
                record = await self._node.dht.resolve(peer)
                if record is not None:
                    for addr in record.multiaddrs():
                        try:
                            await self._node.connections.dial(addr.with_peer_id(peer))
                            return
                        except TransportError as exc:
                            log.debug("member_dial_failed", peer=str(peer), error=str(exc))
            await self._put(lambda batch, now: self.delivery.dial_failed(peer, now))
        except (SpacePandaError, DhtError, OSError) as exc:
            log.debug("member_dial_aborted", peer=str(peer), error=str(exc))
            await self._put(lambda batch, now: self.delivery.dial_failed(peer, now))
        finally:
            self._dialing.discard(peer)

    async def _prune_seen(self, before: float) -> None:
        try:
            removed = await self._store.prune_seen(before)
        except SpacePandaError as exc:
            log.warning("seen_prune_failed", error=str(exc))
            return
        if removed:
            log.info("seen_envelopes_pruned", removed=removed)

    async def _timer(self) -> None:
        while True:
            now = self._wall()
            deadlines = (self.manager.next_deadline(now), self.delivery.next_release(),
                         self.jitter.next_cover(now), now + _TICK_S)
            due = min(d for d in deadlines if d is not None)
            self._timer_at = due
            self._timer_kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_kick.wait(), max(0.01, due - now))
            if self._timer_kick.is_set():
                continue  # something is due earlier than we were waiting for
            await self._put(self._tick)

    def _kick_timer(self, at: float) -> None:
        if at < self._timer_at:
            self._timer_at = at
            self._timer_kick.set()

    # -- API calls (each one a job, answered once its batch is durable) ------------------------

    def stop(self) -> None:
        """The node is stopping: refuse new calls and fail those still waiting (their
        batch will never be written)."""
        self.ready.clear()
        for fut in list(self._waiting):
            if not fut.done():
                fut.set_exception(ChannelsStopped("the node is shutting down"))
        self._waiting.clear()

    async def call(self, fn: Callable[[float], T]) -> T:
        """Run ``fn(now)`` in the actor; it returns a value and may raise ChannelError."""
        if not self.ready.is_set():
            raise ChannelsStopped("channels are not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._waiting.add(fut)
        fut.add_done_callback(self._waiting.discard)

        def job(batch: _Batch, now: float) -> None:
            try:
                value = fn(now)
            except ChannelError as exc:
                batch.failed.append((fut, exc))
                return
            except Exception as exc:  # our bug: the caller gets a 500, the actor lives
                log.exception("channel_call_failed")
                batch.failed.append((fut, exc))
                return
            if isinstance(value, Result):
                self._merge(batch, value)
            batch.done.append((fut, value))

        await self._calls.put(job)
        self._wake.set()
        return await fut

    async def create(self, name: str) -> ChannelView:
        result = await self.call(lambda now: self.manager.create_channel(name, now))
        assert result.channel_id is not None
        return self.view(result.channel_id)

    async def invite(self, channel_id: bytes, peer: PeerId) -> bytes:
        self.manager.channel(channel_id)  # 404 before a DHT lookup
        record = await self._node.dht.resolve(peer)
        if record is None:
            raise InviteeNotFound(
                f"no signed peer record for {peer} in the DHT (has it ever been online?)"
            )
        key = record.envelope_key
        result = await self.call(lambda now: self.manager.invite(channel_id, peer, key, now))
        assert result.invite_id is not None
        return result.invite_id

    async def remove(self, channel_id: bytes, peer: PeerId) -> None:
        await self.call(lambda now: self.manager.remove_member(channel_id, peer, now))

    async def make_admin(self, channel_id: bytes, peer: PeerId) -> None:
        await self.call(lambda now: self.manager.make_admin(channel_id, peer, now))

    async def leave(self, channel_id: bytes) -> None:
        await self.call(lambda now: self.manager.leave(channel_id, now))

    async def send(self, channel_id: bytes, text: str) -> bytes:
        result = await self.call(lambda now: self.manager.send_text(channel_id, text, now))
        assert result.message_id is not None
        return result.message_id

    async def accept(self, invite_id: bytes) -> str:
        result = await self.call(lambda now: self.manager.accept_invite(invite_id, now))
        assert result.channel_id is not None
        return result.channel_id.hex()

    async def decline(self, invite_id: bytes) -> None:
        await self.call(lambda now: self.manager.decline_invite(invite_id, now))

    async def set_profile(self, name: str) -> None:
        await self.call(lambda now: self.manager.set_display_name(name, now))

    async def messages(self, channel_id: bytes, after: int, limit: int) -> list[MessageRow]:
        self.manager.channel(channel_id)
        return await self._store.messages(channel_id, after, limit)

    # -- views --------------------------------------------------------------------------------

    def view(self, channel_id: bytes) -> ChannelView:
        c = self.manager.channel(channel_id)
        members = [
            MemberView(str(mem.peer), mem.display_name, "admin" if mem.admin else "member")
            for mem in c.members()
        ]
        cid = channel_id.hex()
        dropped = {reason: n for (ch, reason), n in self.drops.items() if ch == cid}
        status = c.meta.status.value
        committers = [str(p) for p in c.committers()] if c.active else []
        return ChannelView(cid, c.name, c.epoch, c.fingerprint.hex(), status, members, dropped,
                           committers)

    def views(self) -> list[ChannelView]:
        return [self.view(cid) for cid in sorted(self.manager.channels)]

    def invites(self) -> list[dict[str, str]]:
        return [
            {"invite_id": i.invite_id.hex(), "channel_id": i.channel_id.hex(), "name": i.name,
             "from": str(i.peer)}
            for i in sorted(self.manager.invites.values(), key=lambda i: i.created_at)
            if i.state == InviteState.PENDING
        ]

    def invite_exists(self, invite_id: bytes) -> None:
        inv = self.manager.invites.get(invite_id)
        if inv is None or inv.state != InviteState.PENDING:
            raise UnknownInvite(f"no pending invite {invite_id.hex()}")

    # -- events -------------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Notice]:
        queue: asyncio.Queue[Notice] = asyncio.Queue(_EVENT_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Notice]) -> None:
        self._subscribers.discard(queue)

    def _publish(self, notice: Notice) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(notice)
            except asyncio.QueueFull:
                # A subscriber that does not keep up loses its stream, not the node.
                self._subscribers.discard(queue)
                self.counters["subscribers_dropped"] += 1

    def statistics(self) -> dict[str, object]:
        stats: dict[str, object] = {
            **self.manager.statistics(),
            **{f"delivery_{k}": v for k, v in self.delivery.statistics().items()},
            **dict(self.counters),
            "held": len(self._held),
            "dropped": {f"{r}": n for (_, r), n in self.drops.items()},
        }
        return stats

    def backlog(self) -> dict[str, int]:
        """Read-only depths for GET /v1/network and the metrics: envelopes held for what
        they depend on, relayed ones no key opens yet, jobs waiting for the actor."""
        return {"held": len(self._held), "unrouted": len(self._unrouted),
                "jobs": self._net.qsize(), "calls": self._calls.qsize(),
                "mailbox_keys_followed": len(self._cursors)}

    async def mailbox_synced_at(self) -> float | None:
        """Up to when (Unix seconds) the mailboxes were read completely; None: never."""
        raw = await self._node.storage.get_meta(_SYNCED_META)
        return None if raw is None else float(raw.decode())

    def active_channels(self) -> int:
        return sum(1 for c in self.manager.channels.values()
                   if c.meta.status == ChannelStatus.ACTIVE)
