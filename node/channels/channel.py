"""One channel: an MLS group kept in step by the no-fork rule (sans-I/O).

Inputs are MLS messages already opened from their envelopes, local requests and time;
outputs are a :class:`Step`: MLS messages to send (with the epoch state whose envelope keys
seal them), events for the application, Welcomes to send, and whether the channel's stored
state changed. Nothing here touches a socket, a file or a clock.

The rule (PROTOCOL.md section 12), in short: members ask for membership changes with
*intents* (application messages); the epoch's designated committer (the admins sorted by
SHA-256(epoch || leaf || group id)) turns all pending intents into one commit at most once a
second, publishes it, waits for acknowledgements and one quiet second, then merges (R4).
Backups take over after 10 s x their place. Every member keeps the epoch states of the last
K = 5 epochs as a tree; when two commits compete, R6 picks the same branch everywhere and
members on the losing one rewind, and our application messages sent on a losing branch are
sent again (R7).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from mls import (
    ApplicationMessage,
    Client,
    CommitApplied,
    CommitOutput,
    ContentType,
    Group,
    InboundCheck,
    MlsError,
)
from mls.messages import KeyPackage, MLSMessage, PrivateMessage
from node.channels import policy
from node.channels.causal import RECENT_IDS, Bloom, RecentIds, positions
from node.channels.content import (
    CHANNEL_EXTENSION,
    MAX_INTENTS_PER_COMMIT,
    AppHeader,
    ChannelInfo,
    CommitHeader,
    Content,
    Intent,
    IntentOp,
    Profile,
    Sync,
    Text,
    decode_content,
)
from node.channels.errors import NotAdmin, NotMember, PayloadError, Rejected
from node.channels.state import (
    REMOVED_BLOB,
    ChannelMeta,
    ChannelStatus,
    EpochNode,
    PendingCommit,
    PendingIntent,
    SentMessage,
)
from node.channels.wire import COVER_PREFIX, GroupMessage
from node.core.identity import PeerId

__all__ = [
    "ENVELOPE_LABEL",
    "ROUTE_LABEL",
    "Channel",
    "ChannelEvent",
    "Epoch",
    "Hold",
    "Member",
    "MembersChanged",
    "MessageReceived",
    "Origin",
    "Outgoing",
    "Removed",
    "Step",
    "Unwelcome",
    "Welcome",
    "inner_id",
]

ENVELOPE_LABEL = "spacepanda/v1/envelope"
ROUTE_LABEL = "spacepanda/v1/route"
_MAX_CHILDREN = 8  # competing commits kept per epoch state
_MAX_PENDING_INTENTS = 1024
MAX_SENT_KEPT = 4096  # our messages kept per channel for R7
_TRACKED = 512  # our latest messages whose "seen by" we follow
RESEND_FIRST_S = 30.0  # SDS: a member still lacks it after this: send it again...
RESEND_AGAIN_S = 120.0  # ...then at this interval...
RESEND_MAX = 5  # ...at most this many times
SYNC_AFTER_S = 30.0  # a Sync after 30 s +- 50% of quiet, when we received something
_RETIRED_KEPT = 32
# A cover payload's size: random, within the envelope size class (2048) of a short text
# message (MLS framing, signature and the causal bloom filter take it past 512).
COVER_BYTES = (600, 1800)


def inner_id(payload: bytes) -> bytes:
    """What acknowledgements and de-duplication name: SHA-256 of an envelope's payload."""
    return hashlib.sha256(payload).digest()[:16]


def _hash(message: bytes) -> bytes:
    return hashlib.sha256(message).digest()


# -- outputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """An MLS message to seal with ``state_id``'s envelope keys and send to ``recipients``."""

    state_id: bytes
    payload: bytes  # GroupMessage encoding
    recipients: tuple[PeerId, ...]
    inner_id: bytes
    replaces: tuple[bytes, ...] = ()  # inner ids this one supersedes (stop sending those)
    urgent: bool = False  # a commit: never held back by send jitter


@dataclass(frozen=True)
class Origin:
    """What R6 compares of the commit a Welcome comes from (sent along with it)."""

    commit_hash: bytes
    committer: PeerId
    slot: int
    removed: frozenset[PeerId]


@dataclass(frozen=True)
class Welcome:
    invite_id: bytes
    peer: PeerId
    envelope_key: bytes
    welcome: bytes
    origin: Origin


@dataclass(frozen=True)
class Unwelcome:
    """Tell ``peer`` that the commit that added it lost the branch choice (it is not a member
    of the winning branch): it should drop the state it joined."""

    invite_id: bytes
    peer: PeerId
    envelope_key: bytes
    commit_hash: bytes


@dataclass(frozen=True)
class MessageReceived:
    message_id: bytes
    sender: PeerId
    text: str
    sent_at_ms: int
    seq: int


@dataclass(frozen=True)
class MembersChanged:
    added: tuple[PeerId, ...]
    removed: tuple[PeerId, ...]


@dataclass(frozen=True)
class Epoch:
    epoch: int
    fingerprint: bytes


@dataclass(frozen=True)
class Removed:
    """We are no longer a member (removed by an admin, or our leave went through)."""


ChannelEvent = MessageReceived | MembersChanged | Epoch | Removed


@dataclass
class Step:
    outgoing: list[Outgoing] = field(default_factory=list)
    events: list[ChannelEvent] = field(default_factory=list)
    welcomes: list[Welcome] = field(default_factory=list)
    unwelcomes: list[Unwelcome] = field(default_factory=list)
    cancelled: list[bytes] = field(default_factory=list)  # inner ids no longer worth sending
    changed: bool = False  # the stored state (group, meta or nodes) must be saved
    nodes_added: list[EpochNode] = field(default_factory=list)
    nodes_removed: list[bytes] = field(default_factory=list)
    # Our messages kept for R7 (stored beside the channel, not in its meta).
    sent_saved: list[tuple[bytes, SentMessage]] = field(default_factory=list)
    sent_deleted: list[bytes] = field(default_factory=list)
    # Our messages whose "seen by" count grew: (message id, members that have it).
    seen: list[tuple[bytes, int]] = field(default_factory=list)
    message_id: bytes | None = None  # for send_text: the new message's id
    # Members whose application message (any content) we read in this step: they hold the
    # epoch's secrets, so a Welcome we sent them arrived.
    heard_from: list[PeerId] = field(default_factory=list)

    def extend(self, other: Step) -> None:
        self.outgoing += other.outgoing
        self.events += other.events
        self.welcomes += other.welcomes
        self.unwelcomes += other.unwelcomes
        self.cancelled += other.cancelled
        self.changed = self.changed or other.changed
        self.nodes_added += other.nodes_added
        self.nodes_removed += other.nodes_removed
        self.sent_saved += other.sent_saved
        self.sent_deleted += other.sent_deleted
        self.seen += other.seen
        self.heard_from += other.heard_from


class Hold(Exception):
    """This message cannot be processed yet: keep it, offer it again later, do not
    acknowledge it. ``waiting_for`` names what it waits for when that is known: (sender,
    sequence number) for a gap in that sender's messages (retry once that message is in);
    None means "a new epoch state" (retry when the channel's epochs change).
    """

    def __init__(self, reason: str, waiting_for: tuple[PeerId, int] | None = None) -> None:
        super().__init__(reason)
        self.waiting_for = waiting_for


@dataclass(frozen=True)
class Member:
    peer: PeerId
    display_name: str
    admin: bool


# -- the channel ------------------------------------------------------------------------------


class Channel:
    """One member's view of one channel. Create with :meth:`create`, :meth:`join` or
    :meth:`restore`."""

    def __init__(
        self,
        client: Client,
        me: PeerId,
        group: Group,
        nodes: dict[bytes, EpochNode],
        head: bytes,
        meta: ChannelMeta,
        *,
        rng: Callable[[int], bytes],
        sent: dict[bytes, SentMessage] | None = None,
    ) -> None:
        self._client = client
        self.me = me
        self._group = group
        self._nodes = nodes
        self._head = head
        self.meta = meta
        self._rng = rng
        self._keys: dict[bytes, tuple[bytes, bytes]] = {}
        self._keys_fresh = False
        self._members: tuple[int, Group, list[PeerId]] | None = None
        # Our application messages, by message id, while their epoch could still lose (R7).
        self.sent: dict[bytes, SentMessage] = dict(sent or {})
        # Keys of epoch states pruned from the window (in memory only): their envelopes are
        # refused as "beyond_window" (acknowledged) instead of being held.
        self.retired: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()
        # Our recent messages: who has them (from their Bloom filters), and our resends of
        # those some member still lacks (in memory: after a restart counts start from the
        # stored "seen by" and no old message is resent).
        self.seen_by: OrderedDict[bytes, set[PeerId]] = OrderedDict()
        self._bits: dict[bytes, tuple[int, ...]] = {}  # message id -> its filter bits
        self._resend: dict[bytes, tuple[float, int]] = {}  # message id -> (next at, attempts)
        self._recent = RecentIds(meta.recent)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        client: Client,
        me: PeerId,
        name: str,
        *,
        rng: Callable[[int], bytes],
        display_name: str = "",
    ) -> Channel:
        info = ChannelInfo(name, (me,))
        group = client.create_group(rng(32), extensions=[(CHANNEL_EXTENSION, info.encode())])
        root = _root_node(group)
        meta = ChannelMeta(display_name=display_name, profile_epoch=0)
        return cls(client, me, group, {root.state_id: root}, root.state_id, meta, rng=rng)

    @classmethod
    def join(
        cls,
        client: Client,
        me: PeerId,
        welcome: bytes,
        origin: Origin,
        *,
        rng: Callable[[int], bytes],
        display_name: str = "",
    ) -> Channel:
        """Join from a Welcome. Raises Rejected if the group breaks our rules (a member leaf
        that is not verifiably its PeerId, no channel extension, admins not members)."""
        root, group = _welcome_node(client, me, welcome, origin)
        meta = ChannelMeta(display_name=display_name)
        return cls(client, me, group, {root.state_id: root}, root.state_id, meta, rng=rng)

    def withdraw_welcome(self, commit_hash: bytes, now: float) -> Step:
        """An admin told us the commit that added us lost: drop the root it gave us."""
        roots = [r for r in self._roots() if r.commit_hash == commit_hash]
        if not roots or not self.active:
            raise Rejected("unknown_welcome", "no state joined from that commit")
        step = Step(changed=True)
        doomed = {roots[0].state_id}
        stack = [roots[0].state_id]
        while stack:
            children = [n.state_id for n in self._children(stack.pop())]
            doomed.update(children)
            stack.extend(children)
        if len(doomed) == len(self._nodes):
            self.meta.status = ChannelStatus.REMOVED
            step.events.append(Removed())
            return step
        for sid in doomed:
            self._drop_node(sid)
        step.nodes_removed += sorted(doomed)
        if self._head in doomed:
            tip = self._best_path(self._root())[-1]
            self._group = self._load(tip)
            self._head = tip.state_id
            step.events.append(Epoch(self.epoch, self.fingerprint))
        return step

    def add_welcome(self, welcome: bytes, origin: Origin, now: float) -> Step:
        """Another Welcome into this channel (a commit that added us competed with the one
        we joined by): keep it as a candidate root; R6 picks among roots as among children.
        The caller must still hold the KeyPackage the Welcome is for."""
        if not self.active:
            raise Rejected("not_member", "re-added to a channel we left: join afresh")
        root, group = _welcome_node(self._client, self.me, welcome, origin)
        if group.group_id != self.channel_id:
            raise Rejected("bad_welcome", "Welcome for another channel")
        if root.state_id in self._nodes:
            raise Rejected("duplicate", "Welcome already applied")
        if len(self._roots()) >= _MAX_CHILDREN:
            raise Rejected("too_many_branches", "too many Welcomes for one channel")
        self._add_node(root)
        step = Step(changed=True, nodes_added=[root])
        step.extend(self._choose_head(now))
        return step

    @classmethod
    def restore(
        cls,
        client: Client,
        me: PeerId,
        group_blob: bytes,
        nodes: Iterable[EpochNode],
        meta: ChannelMeta,
        *,
        rng: Callable[[int], bytes],
        sent: dict[bytes, SentMessage] | None = None,
    ) -> Channel:
        group = client.group_from_bytes(group_blob)
        by_id = {n.state_id: n for n in nodes}
        head = group.epoch_authenticator[:16]
        if head not in by_id:
            raise PayloadError("stored channel: the live group's epoch has no stored node")
        return cls(client, me, group, by_id, head, meta, rng=rng, sent=sent)

    # -- queries ------------------------------------------------------------------------

    @property
    def channel_id(self) -> bytes:
        return self._group.group_id

    @property
    def group(self) -> Group:
        return self._group

    @property
    def head(self) -> EpochNode:
        return self._nodes[self._head]

    @property
    def epoch(self) -> int:
        return self._group.epoch

    @property
    def fingerprint(self) -> bytes:
        """The first 8 bytes of the epoch authenticator (what members compare)."""
        return self._group.epoch_authenticator[:8]

    @property
    def info(self) -> ChannelInfo:
        return policy.channel_info(self._group.extensions)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def active(self) -> bool:
        return self.meta.status != ChannelStatus.REMOVED

    def nodes(self) -> list[EpochNode]:
        return list(self._nodes.values())

    def member_peers(self, group: Group | None = None) -> list[PeerId]:
        g = group or self._group
        cached = self._members
        if cached is not None and cached[1] is g and cached[0] == g.epoch:
            return cached[2]
        peers = [PeerId.from_bytes(i) for _, i, _ in g.member_leaves()]
        if group is None:
            self._members = (g.epoch, g, peers)
        return peers

    def members(self) -> list[Member]:
        admins = set(self.info.admins)
        return [
            Member(p, self.meta.profiles.get(p, "") if p != self.me else self.meta.display_name,
                   p in admins)
            for p in self.member_peers()
        ]

    def knows_state(self, epoch: int, fingerprint: bytes) -> bool:
        """Whether (epoch, first 8 bytes of its authenticator) is a state we retain."""
        return any(n.epoch == epoch and n.state_id[:8] == fingerprint
                   for n in self._nodes.values())

    def window_floor(self) -> int:
        """The oldest epoch we retain."""
        return min(n.epoch for n in self._nodes.values())

    def is_admin(self, peer: PeerId) -> bool:
        return peer in self.info.admins

    def others(self, group: Group | None = None) -> tuple[PeerId, ...]:
        return tuple(p for p in self.member_peers(group) if p != self.me)

    def state_keys(self) -> dict[bytes, tuple[bytes, bytes]]:
        """state_id -> (envelope key, tag key) for every retained epoch state we can read
        (kept after a removal too: a competing branch may still win). Cached: do not modify.
        """
        if self._keys_fresh:
            return self._keys
        self._keys_fresh = True
        for sid, node in self._nodes.items():
            if sid not in self._keys and node.blob != REMOVED_BLOB:
                group = self._group if sid == self._head else self._load(node)
                self._keys[sid] = _keys_of(group)
        for gone in set(self._keys) - set(self._nodes):
            del self._keys[gone]
        return self._keys

    def _add_node(self, node: EpochNode) -> None:
        self._nodes[node.state_id] = node
        self._keys_fresh = False

    def _drop_node(self, state_id: bytes) -> None:
        node = self._nodes.pop(state_id)
        keys = self._keys.pop(state_id, None)
        if keys is None and node.blob != REMOVED_BLOB:
            keys = _keys_of(self._load(node))
        if keys is not None:
            # Remembered a while, so late envelopes of it are recognised and refused at once.
            self.retired[state_id] = keys
            while len(self.retired) > _RETIRED_KEPT:
                self.retired.popitem(last=False)
        self._keys_fresh = False

    def committers(self, group: Group | None = None) -> list[PeerId]:
        g = group or self._group
        info = policy.channel_info(g.extensions)
        admins = set(info.admins)
        leaves = [(i, PeerId.from_bytes(ident)) for i, ident, _ in g.member_leaves()]
        return policy.committer_order(g.epoch, g.group_id, [e for e in leaves if e[1] in admins])

    # -- sending ------------------------------------------------------------------------

    def _check_can_send(self) -> None:
        if self.meta.status != ChannelStatus.ACTIVE:
            raise NotMember(f"this node is {self.meta.status.value} in this channel")

    def _app(self, content: Content, *, message_id: bytes | None = None) -> Step:
        """Encrypt one application message for the current epoch; remember it for R7."""
        self.meta.my_seq += 1
        seq = self.meta.my_seq
        data = content.encode()
        mls = self._group.encrypt(data, aad=AppHeader(seq).encode())
        payload = GroupMessage(mls).encode()
        iid = inner_id(payload)
        key = message_id or iid
        step = Step(outgoing=[Outgoing(self._head, payload, self.others(), iid)], changed=True,
                    message_id=key)
        sent = SentMessage(self._head, seq, data, iid, is_text=isinstance(content, Text))
        self._keep_sent(key, sent, step)
        return step

    def _keep_sent(self, message_id: bytes, sent: SentMessage, step: Step) -> None:
        self.sent.pop(message_id, None)
        self.sent[message_id] = sent  # insertion order = the order we (re)sent them
        step.sent_saved.append((message_id, sent))
        while len(self.sent) > MAX_SENT_KEPT:
            # Bounded: a fork undoing more than this many of our messages re-sends the newest.
            oldest = next(iter(self.sent))
            del self.sent[oldest]
            step.sent_deleted.append(oldest)

    def send_text(self, text: str, *, sent_at_ms: int) -> Step:
        self._check_can_send()
        message_id = self._rng(16)
        recent = self._recent
        content = Text(message_id, text, sent_at_ms, recent.last(2), recent.bloom())
        step = self._app(content, message_id=message_id)
        recent.add(message_id)
        self.meta.sync_due = -1.0  # this message says what we have
        self.seen_by[message_id] = set()
        self._bits[message_id] = positions(message_id)
        while len(self.seen_by) > _TRACKED:
            old, _ = self.seen_by.popitem(last=False)
            self._bits.pop(old, None)
        self._resend[message_id] = (sent_at_ms / 1000 + RESEND_FIRST_S, 0)
        return step

    def cover(self) -> Outgoing | None:
        """A cover envelope's payload for jitter mode "high": sealed like any message of the
        current epoch, so only members can tell it apart (and drop it)."""
        if not self.active:
            return None
        low, high = COVER_BYTES
        size = low + int.from_bytes(self._rng(2), "big") % (high - low)
        payload = COVER_PREFIX + self._rng(size)
        return Outgoing(self._head, payload, self.others(), inner_id(payload))

    def set_display_name(self, name: str) -> Step:
        self.meta.display_name = name
        if self.meta.status != ChannelStatus.ACTIVE:
            return Step(changed=True)
        self.meta.profile_epoch = self.epoch
        return self._app(Profile(name))

    def ask(self, op: IntentOp, now: float, *, target: PeerId | None = None,
            key_package: bytes = b"", invite_id: bytes = b"", envelope_key: bytes = b"") -> Step:
        """Send an intent (R1); admins only, but any member may LEAVE."""
        self._check_can_send()
        if op != IntentOp.LEAVE and not self.is_admin(self.me):
            raise NotAdmin("only an admin of this channel can do that")
        intent = Intent(self._rng(16), op, target, key_package, invite_id, envelope_key)
        step = self._app(intent)
        # Our own message never comes back to us: record the intent as received.
        self.meta.intents[intent.intent_id] = PendingIntent(intent.encode(), self.me, now)
        if op == IntentOp.LEAVE:
            self.meta.status = ChannelStatus.LEAVING
        return step

    # -- receiving ----------------------------------------------------------------------

    def receive(self, state_id: bytes, mls_message: bytes, now: float, *,
                allow_gap: bool = False) -> Step:
        """Process one MLS message of ``state_id``'s epoch (found from its envelope tag).

        Raises Rejected (drop, counted), Hold (keep, offer again later)."""
        node = self._nodes.get(state_id)
        if node is None:
            if state_id in self.retired:
                raise Rejected("beyond_window", "an epoch older than the retained window")
            raise Hold("epoch state not retained (yet)")
        if node.blob == REMOVED_BLOB:
            raise Rejected("not_member", "we are not in that epoch")
        content_type = _content_type(mls_message)
        if content_type == ContentType.COMMIT:
            # Even once removed: a competing commit may still win the branch choice (R6).
            return self._receive_commit(node, mls_message, now)
        if content_type != ContentType.APPLICATION:
            raise Rejected("unexpected_content", "MLS proposals are not used by channels")
        if not self.active:
            raise Rejected("not_member", "we are no longer in this channel")
        if not self._on_head_chain(state_id):
            raise Hold("application message of an epoch on a competing branch")
        return self._receive_app(mls_message, now, allow_gap=allow_gap)

    def _receive_app(self, mls_message: bytes, now: float, *, allow_gap: bool) -> Step:
        seen: dict[str, object] = {}

        def check(c: InboundCheck) -> None:
            if c.content_type != ContentType.APPLICATION or c.sender is None:
                raise Rejected("unexpected_content", "not a member's application message")
            try:
                seq = AppHeader.decode(c.authenticated_data).seq
            except PayloadError as exc:
                raise Rejected("bad_payload", str(exc)) from None
            sender = PeerId.from_bytes(c.sender)
            last = self.meta.sender_seq.get(sender)
            if last is not None and seq <= last:
                raise Rejected("duplicate", f"sequence {seq} from {sender.short()} already seen")
            if last is not None and seq > last + 1 and not allow_gap:
                raise Hold(f"sequence {seq} from {sender.short()} before {last + 1}",
                           waiting_for=(sender, seq - 1))
            seen["seq"], seen["sender"] = seq, sender

        try:
            result = self._group.process(mls_message, check=check)
        except (Rejected, Hold):
            raise
        except MlsError as exc:
            raise Rejected("mls_rejected", str(exc)) from None
        assert isinstance(result, ApplicationMessage)
        sender, seq = seen["sender"], seen["seq"]
        assert isinstance(sender, PeerId) and isinstance(seq, int)
        self.meta.sender_seq[sender] = seq
        step = Step(changed=True, heard_from=[sender])
        try:
            content = decode_content(result.data)
        except PayloadError as exc:
            # The key is spent and the sequence advanced (saved): a replay stays a replay.
            raise Rejected("bad_payload", str(exc)) from exc
        if isinstance(content, Text | Sync):
            self._note_seen(sender, Bloom(content.seen), step)
        if isinstance(content, Text):
            step.events.append(
                MessageReceived(content.message_id, sender, content.text, content.sent_at_ms, seq)
            )
            self._recent.add(content.message_id)
            if self.meta.sync_due < 0:
                # We owe the others word of what we have, if we stay quiet.
                self.meta.sync_due = now + SYNC_AFTER_S * (0.5 + self._rng(1)[0] / 255)
        elif isinstance(content, Profile):
            self.meta.profiles[sender] = content.display_name
        elif (
            isinstance(content, Intent)
            and len(self.meta.intents) < _MAX_PENDING_INTENTS
            and not self._intent_done(content.intent_id)
        ):
            self.meta.intents.setdefault(
                content.intent_id, PendingIntent(content.encode(), sender, now)
            )
        return step

    def stop_resending(self, message_id: bytes) -> None:
        """Our message is safe without us (every member acknowledged its envelope, or mailbox
        holders store it for those away): no more SDS resends, each of which would be stored
        at the mailboxes again."""
        self._resend.pop(message_id, None)

    def _note_seen(self, member: PeerId, seen: Bloom, step: Step) -> None:
        # Only our messages still in the sender's window can be in its filter: the newest.
        for mid in list(reversed(self.seen_by))[:RECENT_IDS]:
            holders = self.seen_by[mid]
            if member not in holders and seen.has(self._bits[mid]):
                holders.add(member)
                step.seen.append((mid, len(holders)))

    def _reliability(self, now: float) -> Step:
        """SDS: resend our messages some current member still lacks; a Sync when quiet."""
        step = Step()
        others = set(self.others())
        for mid, (due, attempts) in list(self._resend.items()):
            if mid not in self.sent or others <= self.seen_by.get(mid, set()):
                del self._resend[mid]
                continue
            if now < due:
                continue
            if attempts >= RESEND_MAX:
                del self._resend[mid]
                continue
            sent = self.sent[mid]
            mls = self._group.encrypt(sent.content, aad=AppHeader(sent.seq).encode())
            payload = GroupMessage(mls).encode()
            iid = inner_id(payload)
            lacking = tuple(p for p in self.others() if p not in self.seen_by.get(mid, ()))
            step.outgoing.append(Outgoing(self._head, payload, lacking, iid))
            self._resend[mid] = (now + RESEND_AGAIN_S, attempts + 1)
        if 0 <= self.meta.sync_due <= now and self.meta.status == ChannelStatus.ACTIVE:
            step.extend(self._app(Sync(self._recent.last(2), self._recent.bloom())))
            self.meta.sync_due = -1.0
        return step

    def _receive_commit(self, parent: EpochNode, mls_message: bytes, now: float) -> Step:
        commit_hash = _hash(mls_message)
        if any(n.commit_hash == commit_hash for n in self._nodes.values()):
            raise Rejected("duplicate", "commit already known")
        if sum(1 for n in self._nodes.values() if n.parent == parent.state_id) >= _MAX_CHILDREN:
            raise Rejected("too_many_branches", "too many competing commits for one epoch")
        live = (
            parent.state_id == self._head
            and not self._group.has_pending_commit
            and self.active
            and not self._children(parent.state_id)
        )
        group = self._group if live else self._load(parent)
        committers = self.committers(group)
        info = policy.channel_info(group.extensions)
        members = set(self.member_peers(group))
        header: list[CommitHeader] = []

        def check(c: InboundCheck) -> None:
            header.append(policy.check_commit(c, info, members))

        try:
            result = group.process(mls_message, check=check)
        except Rejected:
            raise
        except MlsError as exc:
            raise Rejected("mls_rejected", str(exc)) from None
        assert isinstance(result, CommitApplied)
        committer = PeerId.from_bytes(result.committer)
        node = EpochNode(
            state_id=_removed_branch_id(parent, commit_hash)
            if result.removed_self
            else group.epoch_authenticator[:16],
            epoch=parent.epoch + 1,
            parent=parent.state_id,
            commit_hash=commit_hash,
            committer=committer,
            slot=committers.index(committer) if committer in committers else len(committers),
            removed=frozenset(PeerId.from_bytes(r) for r in result.removed),
            done=frozenset(header[0].done),
            # A branch that removes us cannot be read; it still counts for the choice.
            blob=REMOVED_BLOB if result.removed_self else group.to_bytes(),
        )
        self._add_node(node)
        step = Step(changed=True, nodes_added=[node])
        if live:
            # The common case: the commit for our head epoch, nothing competing.
            step.extend(self._moved_to(node, group, previous=parent, applied=result))
            return step
        step.extend(self._choose_head(now))
        return step

    # -- branch choice --------------------------------------------------------------------

    def _children(self, state_id: bytes) -> list[EpochNode]:
        return [n for n in self._nodes.values() if n.parent == state_id]

    def _best_path(self, node: EpochNode) -> list[EpochNode]:
        """The chosen chain from ``node`` down (R6 at every fork), ``node`` first."""
        path = [node]
        while True:
            children = self._children(path[-1].state_id)
            if not children:
                return path
            path.append(self._pick(children))

    def _branch(self, node: EpochNode) -> policy.Branch:
        path = self._best_path(node)
        authors = frozenset(n.committer for n in path if n.committer is not None)
        return policy.Branch(node.commit_hash, node.committer or self.me, node.slot,
                             node.removed, authors, len(path))

    def _pick(self, children: list[EpochNode]) -> EpochNode:
        best = children[0]
        for other in children[1:]:
            winner = policy.better_branch(self._branch(best), self._branch(other))
            best = best if winner.commit_hash == best.commit_hash else other
        return best

    def _roots(self) -> list[EpochNode]:
        return [n for n in self._nodes.values() if n.parent not in self._nodes]

    def _root(self) -> EpochNode:
        """The root whose branch wins: the one reaching the highest epoch, then R6 (several
        roots exist only for a joiner holding Welcomes from competing commits)."""
        roots = self._roots()
        if len(roots) == 1:
            return roots[0]
        tips = {r.state_id: self._best_path(r)[-1].epoch for r in roots}
        top = max(tips.values())
        return self._pick([r for r in roots if tips[r.state_id] == top])

    def _on_head_chain(self, state_id: bytes) -> bool:
        sid: bytes | None = self._head
        while sid is not None and sid in self._nodes:
            if sid == state_id:
                return True
            sid = self._nodes[sid].parent
        return False

    def _choose_head(self, now: float) -> Step:
        """Recompute the head from the retained tree; rewind when it moved to another branch."""
        path = self._best_path(self._root())
        tip = path[-1]
        pending = self.meta.pending_commit
        if pending is not None:
            # Our own commit is not a node yet: it competes with the children of our head.
            rivals = self._children(self._head)
            if rivals:
                ours = policy.Branch(pending.commit_hash, self.me, pending.slot,
                                     pending.removed, frozenset({self.me}), 1)
                best_rival = self._pick(rivals)
                if policy.better_branch(ours, self._branch(best_rival)) is ours:
                    return Step()  # ours wins: keep waiting to merge it
                step = self._drop_pending_commit()
                step.extend(self._choose_head(now))
                return step
            return Step()
        step = Step(changed=True)
        if tip.blob == REMOVED_BLOB:
            # The winning branch removes us: the last epoch we can read stays our head.
            if self.meta.status != ChannelStatus.REMOVED:
                self.meta.status = ChannelStatus.REMOVED
                step.events.append(Removed())
            if tip.parent is not None and tip.parent != self._head:
                self._group = self._load(self._nodes[tip.parent])
                self._head = tip.parent
            return step
        if self.meta.status == ChannelStatus.REMOVED:
            # The branch that removed us lost: we are a member after all.
            leaving = any(pi.sender == self.me and _is_leave(pi.payload)
                          for pi in self.meta.intents.values())
            self.meta.status = ChannelStatus.LEAVING if leaving else ChannelStatus.ACTIVE
        elif tip.state_id == self._head:
            return Step()
        before = set(self.member_peers())
        lost = set(self._chain_ids())
        self._group = self._load(tip)
        self._head = tip.state_id
        after = set(self.member_peers())
        lost -= set(self._chain_ids())
        for sid in lost:
            lost_node = self._nodes[sid]
            for invite_id, peer, key in lost_node.welcomed:
                if peer not in after:
                    step.unwelcomes.append(
                        Unwelcome(invite_id, peer, key, lost_node.commit_hash)
                    )
        if before != after:
            step.events.append(MembersChanged(tuple(sorted(after - before)),
                                              tuple(sorted(before - after))))
        step.events.append(Epoch(self.epoch, self.fingerprint))
        step.extend(self._resend_lost())
        step.extend(self._after_epoch_change(new_members=bool(after - before)))
        return step

    def _moved_to(self, node: EpochNode, group: Group, *, previous: EpochNode,
                  applied: CommitApplied) -> Step:
        step = Step(changed=True)
        if applied.removed_self:
            self.meta.status = ChannelStatus.REMOVED
            step.events.append(Removed())
            return step
        self._group = group
        self._head = node.state_id
        if applied.added or applied.removed:
            step.events.append(MembersChanged(
                tuple(PeerId.from_bytes(a) for a in applied.added),
                tuple(PeerId.from_bytes(r) for r in applied.removed),
            ))
        step.events.append(Epoch(self.epoch, self.fingerprint))
        step.extend(self._after_epoch_change(new_members=bool(applied.added)))
        return step

    def _after_epoch_change(self, *, new_members: bool) -> Step:
        """Prune what the window no longer needs; announce our profile to new members."""
        step = Step(changed=True)
        done = self._done_on_chain()
        for iid in [i for i in self.meta.intents if i in done]:
            del self.meta.intents[iid]
        for member in set(self.meta.profiles) - set(self.member_peers()):
            del self.meta.profiles[member]
        step.nodes_removed += self._prune()
        # A message whose epoch left the window can no longer lose (R7 is over for it).
        for mid in [m for m, sent in self.sent.items() if sent.state_id not in self._nodes]:
            del self.sent[mid]
            step.sent_deleted.append(mid)
        if (
            self.meta.status == ChannelStatus.ACTIVE
            and self.meta.display_name
            and new_members
            and self.meta.profile_epoch < self.epoch
        ):
            # New members learn our display name from us (names travel inside the group).
            self.meta.profile_epoch = self.epoch
            step.extend(self._app(Profile(self.meta.display_name)))
        return step

    def _chain_ids(self) -> list[bytes]:
        out = []
        sid: bytes | None = self._head
        while sid is not None and sid in self._nodes:
            out.append(sid)
            sid = self._nodes[sid].parent
        return out

    def _done_on_chain(self) -> set[bytes]:
        done: set[bytes] = set()
        for sid in self._chain_ids():
            done |= self._nodes[sid].done
        return done

    def _intent_done(self, intent_id: bytes) -> bool:
        return intent_id in self._done_on_chain()

    def _prune(self) -> list[bytes]:
        """Keep the head chain's last K epochs and the branches off it; drop the rest."""
        floor = self.head.epoch - policy.MAX_RETAINED_EPOCHS
        chain = self._chain_ids()
        anchor = next((sid for sid in chain if self._nodes[sid].epoch <= floor), None)
        if anchor is None:
            return []  # the window reaches back past every retained state
        keep: set[bytes] = set()
        stack = [anchor]
        while stack:
            sid = stack.pop()
            keep.add(sid)
            stack.extend(n.state_id for n in self._children(sid))
        removed = [sid for sid in self._nodes if sid not in keep]
        for sid in removed:
            self._drop_node(sid)
        return removed

    def _resend_lost(self) -> Step:
        """R7: our application messages sent on epochs no longer on the head chain are
        encrypted again in the new head epoch (same message id, same sequence number)."""
        chain = set(self._chain_ids())
        lost = sorted(
            ((mid, s) for mid, s in self.sent.items() if s.state_id not in chain),
            key=lambda item: item[1].seq,
        )
        step = Step(changed=True)
        for mid, sent in lost:
            mls = self._group.encrypt(sent.content, aad=AppHeader(sent.seq).encode())
            payload = GroupMessage(mls).encode()
            iid = inner_id(payload)
            again = SentMessage(self._head, sent.seq, sent.content, iid, is_text=sent.is_text)
            self._keep_sent(mid, again, step)
            step.cancelled.append(sent.inner_id)
            step.outgoing.append(Outgoing(self._head, payload, self.others(), iid))
        return step

    # -- committing ---------------------------------------------------------------------

    def _my_slot(self) -> int:
        order = self.committers()
        return order.index(self.me) if self.me in order else len(order)

    def tick(self, now: float) -> Step:
        """Timers: merge our published commit (R4), commit pending intents (R2, R3), resend
        what members lack and send a Sync when quiet (SDS)."""
        if not self.active:
            return Step()
        step = self._reliability(now)
        pending = self.meta.pending_commit
        if pending is not None:
            if now >= self._merge_time(pending):
                step.extend(self._merge(now))
            return step
        step.extend(self._maybe_commit(now))
        return step

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`tick` has something to do next (None: nothing scheduled)."""
        if not self.active:
            return None
        due = [d for d, _ in self._resend.values()]
        if self.meta.sync_due >= 0:
            due.append(self.meta.sync_due)
        pending = self.meta.pending_commit
        due.append(self._merge_time(pending) if pending is not None else self._commit_due() or -1)
        due = [d for d in due if d >= 0]
        return min(due) if due else None

    @staticmethod
    def _merge_time(p: PendingCommit) -> float:
        acked = p.acked_at if p.acked_at is not None else p.sent_at + policy.ACK_WAIT_S
        return min(acked, p.sent_at + policy.ACK_WAIT_S) + policy.QUIET_S

    def acknowledged(self, inner: bytes, peer: PeerId, now: float) -> Step:
        """A member acknowledged one of our envelopes (R4 waits for the commit's acks)."""
        p = self.meta.pending_commit
        if p is None or p.inner_id != inner or peer not in p.recipients or peer in p.acked:
            return Step()
        acked = p.acked | {peer}
        self.meta.pending_commit = replace(
            p, acked=acked, acked_at=now if acked >= p.recipients else None
        )
        return Step(changed=True)

    def _pending_intents(self) -> list[tuple[bytes, Intent, PeerId, float]]:
        done = self._done_on_chain()
        out = []
        for iid, pi in self.meta.intents.items():
            if iid in done:
                continue
            content = decode_content(pi.payload)
            assert isinstance(content, Intent)
            out.append((iid, content, pi.sender, pi.seen_at))
        out.sort(key=lambda item: (item[3], item[0]))
        return out

    def _commit_due(self) -> float | None:
        if self.meta.status == ChannelStatus.REMOVED or not self.is_admin(self.me):
            return None
        pending = self._pending_intents()
        if not pending:
            return None
        slot = self._my_slot()
        if any(self._targets_me(i, s) for _, i, s, _ in pending):
            return None  # R2: a committer never commits its own removal; a backup does
        oldest = pending[0][3]
        if slot == 0:
            return max(oldest + policy.BATCH_DELAY_S,
                       self.meta.last_commit_at + policy.COMMIT_INTERVAL_S)
        return oldest + policy.BACKUP_DELAY_S * slot

    def _targets_me(self, intent: Intent, sender: PeerId) -> bool:
        if intent.op == IntentOp.LEAVE:
            return sender == self.me
        return intent.op == IntentOp.REMOVE and intent.target == self.me

    def _maybe_commit(self, now: float) -> Step:
        due = self._commit_due()
        if due is None or now < due:
            return Step()
        return self._commit(now)

    def _commit(self, now: float) -> Step:
        """Turn every pending intent into one commit (R1-R3) and publish it (R4)."""
        group = self._group
        info = self.info
        members = set(self.member_peers())
        admins = set(info.admins)
        add: list[bytes] = []
        added: set[PeerId] = set()
        remove: set[PeerId] = set()
        welcomes: list[tuple[bytes, PeerId, bytes]] = []
        done: list[bytes] = []
        for iid, intent, sender, _ in self._pending_intents()[:MAX_INTENTS_PER_COMMIT]:
            done.append(iid)
            authorised = sender in admins and sender in members
            if intent.op == IntentOp.READD and authorised and intent.target in members:
                # Repair (12.7): the member's leaf goes and its fresh KeyPackage comes in.
                assert intent.target is not None
                if intent.target == self.me or intent.target in added:
                    continue
                try:
                    self._check_key_package(intent.key_package, intent.target)
                except (Rejected, MlsError):
                    continue
                remove.add(intent.target)
                add.append(intent.key_package)
                added.add(intent.target)
                welcomes.append((intent.invite_id, intent.target, intent.envelope_key))
            elif intent.op == IntentOp.ADD and authorised and intent.target is not None:
                if intent.target in members or intent.target in added:
                    continue
                try:
                    self._check_key_package(intent.key_package, intent.target)
                except (Rejected, MlsError):
                    continue  # refused: listed as done, the rest of the batch goes on
                add.append(intent.key_package)
                added.add(intent.target)
                welcomes.append((intent.invite_id, intent.target, intent.envelope_key))
            elif intent.op == IntentOp.REMOVE and authorised and intent.target in members:
                assert intent.target is not None
                if intent.target != self.me:
                    remove.add(intent.target)
            elif intent.op == IntentOp.ADMIN and authorised and intent.target in members:
                assert intent.target is not None
                admins.add(intent.target)
            elif intent.op == IntentOp.LEAVE and sender in members and sender != self.me:
                remove.add(sender)
        admins -= remove - added  # a re-added member keeps its role
        admins &= (members - remove) | added
        if not admins:
            admins = {self.me}  # the last admin cannot be removed (R2 keeps a committer)
        new_info = ChannelInfo(info.name, tuple(sorted(admins)))
        extensions = None if new_info == info else [(CHANNEL_EXTENSION, new_info.encode())]
        header = CommitHeader(tuple(done)).encode()
        output: CommitOutput = group.change(
            add=add, remove=[p.binary for p in sorted(remove)], extensions=extensions,
            authenticated_data=header,
        )
        payload = GroupMessage(output.commit).encode()
        recipients = self.others()
        iid = inner_id(payload)
        self.meta.pending_commit = PendingCommit(
            iid, _hash(output.commit), now, frozenset(recipients), frozenset(),
            now if not recipients else None, tuple(welcomes) if output.welcome else (),
            self._my_slot(), frozenset(remove),
        )
        self.meta.last_commit_at = now
        return Step(outgoing=[Outgoing(self._head, payload, recipients, iid, urgent=True)],
                    changed=True)

    def _check_key_package(self, key_package: bytes, target: PeerId) -> None:
        try:
            kp = MLSMessage.from_bytes(key_package).payload
        except MlsError as exc:
            raise Rejected("bad_key_package", str(exc)) from None
        if not isinstance(kp, KeyPackage):
            raise Rejected("bad_key_package", "not a KeyPackage")
        peer = policy.leaf_is_peer(kp.leaf_node.credential.identity, kp.leaf_node.signature_key)
        if peer != target:
            raise Rejected("bad_key_package", "KeyPackage of another node")
        self._group.check_key_package(kp)  # what MLS itself would refuse (expired, ...)

    def _merge(self, now: float) -> Step:
        pending = self.meta.pending_commit
        assert pending is not None
        previous = self.head
        output = self._group.pending_commit
        welcome = None if output is None else output.welcome
        applied = self._group.merge_pending_commit()
        self.meta.pending_commit = None
        group = self._group
        node = EpochNode(
            state_id=group.epoch_authenticator[:16],
            epoch=group.epoch,
            parent=previous.state_id,
            commit_hash=pending.commit_hash,
            committer=self.me,
            slot=pending.slot,
            removed=frozenset(PeerId.from_bytes(r) for r in applied.removed),
            done=frozenset(CommitHeader.decode(applied.authenticated_data).done),
            blob=group.to_bytes(),
            welcomed=pending.welcomes if welcome is not None else (),
        )
        self._add_node(node)
        step = Step(changed=True, nodes_added=[node])
        step.extend(self._moved_to(node, group, previous=previous, applied=applied))
        if welcome is not None:
            origin = Origin(pending.commit_hash, self.me, pending.slot, pending.removed)
            for invite_id, peer, key in pending.welcomes:
                step.welcomes.append(Welcome(invite_id, peer, key, welcome, origin))
        return step

    def _drop_pending_commit(self) -> Step:
        """R6 chose a competing commit over ours: forget ours (its intents stay pending)."""
        pending = self.meta.pending_commit
        assert pending is not None
        self._group.clear_pending_commit()
        self.meta.pending_commit = None
        return Step(changed=True, cancelled=[pending.inner_id])

    # -- storage --------------------------------------------------------------------------

    def _load(self, node: EpochNode) -> Group:
        return self._client.group_from_bytes(node.blob)

    def group_blob(self) -> bytes:
        return self._group.to_bytes()

    def meta_blob(self) -> bytes:
        """The bookkeeping to store beside the group (ChannelMeta's encoding)."""
        self.meta.recent = self._recent.ids
        return self.meta.encode()


def _keys_of(group: Group) -> tuple[bytes, bytes]:
    return (group.export_secret(ENVELOPE_LABEL, b"", 32), group.export_secret(ROUTE_LABEL, b"", 32))


def _welcome_node(
    client: Client, me: PeerId, welcome: bytes, origin: Origin
) -> tuple[EpochNode, Group]:
    try:
        group = client.join(welcome)
    except MlsError as exc:
        raise Rejected("bad_welcome", str(exc)) from None
    members = {policy.leaf_is_peer(i, k) for _, i, k in group.member_leaves()}
    info = policy.channel_info(group.extensions)
    if not set(info.admins) <= members or me not in members:
        raise Rejected("bad_welcome", "admins are not members, or we are not in the group")
    if origin.committer not in info.admins:
        raise Rejected("bad_welcome", "the Welcome's committer is not an admin")
    node = EpochNode(group.epoch_authenticator[:16], group.epoch, None, origin.commit_hash,
                     origin.committer, origin.slot, origin.removed, frozenset(), group.to_bytes())
    return node, group


def _root_node(group: Group) -> EpochNode:
    return EpochNode(group.epoch_authenticator[:16], group.epoch, None, b"", None, 0,
                     frozenset(), frozenset(), group.to_bytes())


def _removed_branch_id(parent: EpochNode, commit_hash: bytes) -> bytes:
    # A branch that removes us has no epoch state we can read: name it by its commit.
    return hashlib.sha256(parent.state_id + commit_hash).digest()[:16]


def _is_leave(intent_payload: bytes) -> bool:
    content = decode_content(intent_payload)
    return isinstance(content, Intent) and content.op == IntentOp.LEAVE


def _content_type(mls_message: bytes) -> ContentType:
    try:
        payload = MLSMessage.from_bytes(mls_message).payload
    except MlsError as exc:
        raise Rejected("bad_payload", f"not an MLS message: {exc}") from None
    if not isinstance(payload, PrivateMessage):
        raise Rejected("unexpected_content", "channels accept PrivateMessage only")
    return ContentType(payload.content_type)
