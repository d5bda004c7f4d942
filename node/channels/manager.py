"""The node's channel layer as one sans-I/O object: every channel, invites, KeyPackages, the
routing-tag table, sealing and opening of envelopes.

The adapter (``node.channel_service``) feeds it envelopes from peers, local requests and the
time, and applies what comes back in a :class:`Result`: envelopes to put in the outbox (each
with its recipients), rows to save (in one transaction), events for API subscribers, and
whether the envelope just processed should be acknowledged.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from mls import Client
from node.channels import envelope as env
from node.channels import policy
from node.channels.channel import (
    Channel,
    Epoch,
    Hold,
    MembersChanged,
    MessageReceived,
    Origin,
    Outgoing,
    Removed,
    Step,
    inner_id,
)
from node.channels.check import EpochCheck, Readd, ReaddKey, decode_check
from node.channels.codec import get_bytes, get_int, get_peer, get_text
from node.channels.content import (
    CHANNEL_EXTENSION,
    MAX_DISPLAY_NAME_BYTES,
    MAX_TEXT_BYTES,
    IntentOp,
)
from node.channels.errors import (
    AlreadyMember,
    ChannelError,
    EnvelopeError,
    LastAdmin,
    NotAdmin,
    NotMember,
    PayloadError,
    Rejected,
    TextTooLong,
    UnknownChannel,
    UnknownInvite,
    UnknownMember,
)
from node.channels.state import ChannelMeta, ChannelStatus, EpochNode, SentMessage
from node.channels.wire import (
    MAX_NAME_BYTES,
    Cover,
    GroupMessage,
    InviteAnswer,
    InviteOffer,
    WelcomeMessage,
    Withdrawal,
    decode_payload,
)
from node.core import cbor
from node.core.errors import DecodeError
from node.core.identity import Identity, PeerId

__all__ = [
    "ChannelManager",
    "Envelope",
    "Invite",
    "InviteState",
    "Notice",
    "Result",
    "StoredMessage",
]

HOUR_S = 3600
# A joiner keeps the KeyPackage it joined with this long, for a competing commit's Welcome.
JOINED_GRACE_S = 3600.0
CHECK_EVERY_S = 300.0  # each member checks its epoch with an admin this often (+- 50%)
STUCK_S = 240.0  # the same unknown state reported this much later: the member is stuck
READD_EVERY_S = 600.0  # at most one repair offer per member and channel in this time


class InviteState(enum.StrEnum):
    PENDING = "pending"  # received, waiting for the user (incoming)
    ACCEPTED = "accepted"  # we answered yes, waiting for the Welcome (incoming)
    JOINED = "joined"  # the Welcome came; kept a while for a competing commit's Welcome
    OFFERED = "offered"  # sent, waiting for the answer (outgoing)
    ADDING = "adding"  # the invitee accepted; its ADD intent is with the committer (outgoing)


@dataclass(frozen=True)
class Invite:
    invite_id: bytes
    channel_id: bytes
    name: str
    peer: PeerId  # incoming: the inviter; outgoing: the invitee
    peer_key: bytes  # that peer's envelope key
    state: InviteState
    created_at: float
    # Incoming, once accepted: our KeyPackage's ref and its private storage encoding.
    key_package_ref: bytes = b""
    key_package: bytes = field(default=b"", repr=False)
    joined_at: float | None = None
    readd: bool = False  # our own re-add (12.7): not an invitation anyone sees
    @property
    def incoming(self) -> bool:
        return self.state in (InviteState.PENDING, InviteState.ACCEPTED, InviteState.JOINED)

    def moved(self, state: InviteState, **changes: object) -> Invite:
        return replace(self, state=state, **changes)  # type: ignore[arg-type]

    def encode(self) -> bytes:
        """Storage encoding (holds our KeyPackage's private keys once accepted)."""
        return cbor.encode({
            "id": self.invite_id, "channel": self.channel_id, "name": self.name,
            "peer": self.peer.binary, "key": self.peer_key, "state": self.state.value,
            "created": round(self.created_at * 1000), "kp_ref": self.key_package_ref,
            "kp": self.key_package,
            "joined": -1 if self.joined_at is None else round(self.joined_at * 1000),
            "readd": self.readd,
        })

    @classmethod
    def decode(cls, data: bytes) -> Invite:
        try:
            f = cbor.decode(data, max_depth=1, max_items=32, max_size=64 * 1024)
        except DecodeError as exc:
            raise PayloadError(f"stored invite: {exc}") from None
        fields = {"id", "channel", "name", "peer", "key", "state", "created", "kp_ref", "kp",
                  "joined", "readd"}
        if not isinstance(f, dict) or set(f) != fields:
            raise PayloadError("stored invite has the wrong fields")
        try:
            state = InviteState(get_text(f, "state", 16))
        except ValueError as exc:
            raise PayloadError(f"stored invite: {exc}") from None
        joined = get_int(f, "joined", -1, 1 << 62)
        return cls(
            get_bytes(f, "id", 16, 16), get_bytes(f, "channel", 32, 32),
            get_text(f, "name", MAX_NAME_BYTES), get_peer(f, "peer"),
            get_bytes(f, "key", 32, 32), state, get_int(f, "created", 0, 1 << 62) / 1000,
            get_bytes(f, "kp_ref", 0, 64), get_bytes(f, "kp", 0, 64 * 1024),
            None if joined < 0 else joined / 1000,
            _flag(f["readd"]),
        )


@dataclass(frozen=True)
class Envelope:
    """One envelope for the outbox. ``keys`` reseal it when its hour has passed (channel
    envelopes); None for invite envelopes (HPKE to one node, no hour in the tag)."""

    inner_id: bytes
    channel_id: bytes | None
    recipients: tuple[PeerId, ...]
    payload: bytes
    envelope: bytes
    hour: int
    keys: tuple[bytes, bytes] | None
    replaces: tuple[bytes, ...] = ()
    urgent: bool = True  # never delayed by send jitter (commits, Welcomes, invitations)
    cover: bool = False  # cover traffic: sent once to linked members, never stored


@dataclass(frozen=True)
class StoredMessage:
    channel_id: bytes
    message_id: bytes
    sender: PeerId
    sender_name: str
    text: str
    sent_at_ms: int
    received_at: float
    seq: int


@dataclass(frozen=True)
class Notice:
    """An event for API subscribers: ``kind`` is the SSE event name."""

    kind: str  # message | invite | member_added | member_removed | epoch | removed | declined
    channel_id: bytes
    data: dict[str, object]


@dataclass
class Result:
    envelopes: list[Envelope] = field(default_factory=list)
    cancelled: list[bytes] = field(default_factory=list)  # inner ids to drop from the outbox
    messages: list[StoredMessage] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    channels: set[bytes] = field(default_factory=set)  # channels whose state must be saved
    nodes_added: list[tuple[bytes, EpochNode]] = field(default_factory=list)
    nodes_removed: list[tuple[bytes, bytes]] = field(default_factory=list)
    sent_saved: list[tuple[bytes, bytes, SentMessage]] = field(default_factory=list)
    sent_deleted: list[tuple[bytes, bytes]] = field(default_factory=list)
    seen: list[tuple[bytes, bytes, int]] = field(default_factory=list)  # cid, message id, n
    invites_saved: list[Invite] = field(default_factory=list)
    invites_deleted: list[bytes] = field(default_factory=list)
    ack: bool = False  # acknowledge the envelope just received (processed or refused for good)
    drop_reason: str | None = None  # why it was refused (a counter name)
    channel_id: bytes | None = None  # what a request created or touched
    message_id: bytes | None = None
    invite_id: bytes | None = None
    # Messages for a peer's link, on the check protocol (check.PROTOCOL).
    direct: list[tuple[PeerId, bytes]] = field(default_factory=list)

    @property
    def durable(self) -> bool:
        """Anything for the database in this result."""
        return bool(
            self.envelopes or self.cancelled or self.messages or self.channels
            or self.nodes_added or self.nodes_removed or self.invites_saved
            or self.invites_deleted or self.sent_saved or self.sent_deleted or self.seen
        )


class ChannelManager:
    """All channels of one node (sans-I/O: time, randomness and keys are passed in)."""

    def __init__(
        self,
        identity: Identity,
        envelope_private: bytes,
        envelope_public: bytes,
        *,
        rng: Callable[[int], bytes],
        clock: Callable[[], float],
        display_name: str = "",
        auto_accept_invites: bool = False,
    ) -> None:
        self.identity = identity
        self.me = identity.peer_id
        self._envelope_private = envelope_private
        self.envelope_public = envelope_public
        self._rng = rng
        self.display_name = display_name
        self.auto_accept_invites = auto_accept_invites
        self.client = Client(
            self.me.binary,
            signing_key=identity.seed(),
            clock=clock,
            extensions_supported=[CHANNEL_EXTENSION],
            max_past_epochs=policy.MAX_RETAINED_EPOCHS,
        )
        self.channels: dict[bytes, Channel] = {}
        self.invites: dict[bytes, Invite] = {}
        self._tags: dict[bytes, tuple[bytes, bytes, bytes]] = {}
        self._tags_hour = -1
        self._tags_dirty = True
        self.last_channel: bytes | None = None  # the channel the last envelope was routed to
        self.check_every_s = CHECK_EVERY_S
        self._next_check: dict[bytes, float] = {}
        self._reports: dict[tuple[bytes, PeerId], tuple[int, bytes, float]] = {}
        self._readd_offered: dict[tuple[bytes, PeerId], float] = {}
        self._sealing_tags: dict[tuple[bytes, int], bytes] = {}
        # Welcomes we sent, by (channel, joiner): settled once we read anything the joiner
        # sent in the channel (its Profile, a Sync or a Text: it may have got the Welcome
        # through a relay, acknowledging nothing).
        self._welcome_items: dict[tuple[bytes, PeerId], bytes] = {}

    # -- loading ----------------------------------------------------------------------------

    def restore_channel(
        self,
        group_blob: bytes,
        meta: bytes,
        nodes: Iterable[EpochNode],
        sent: dict[bytes, SentMessage] | None = None,
    ) -> Channel:
        channel = Channel.restore(
            self.client, self.me, group_blob, nodes, ChannelMeta.decode(meta), rng=self._rng,
            sent=sent,
        )
        self.channels[channel.channel_id] = channel
        self._tags_dirty = True
        return channel

    def restore_invite(self, invite: Invite) -> None:
        self.invites[invite.invite_id] = invite

    def channel(self, channel_id: bytes) -> Channel:
        found = self.channels.get(channel_id)
        if found is None:
            raise UnknownChannel(f"no channel {channel_id.hex()}")
        return found

    # -- routing tags -------------------------------------------------------------------------

    def _route(self, tag: bytes, now: float) -> tuple[bytes, bytes, bytes] | None:
        hour = int(now // HOUR_S)
        if self._tags_dirty or hour != self._tags_hour:
            self._tags = {}
            for cid, channel in self.channels.items():
                keys = [*channel.retired.items(), *channel.state_keys().items()]
                for sid, (ekey, tkey) in keys:
                    for h in (hour - 1, hour, hour + 1):  # clock skew between members
                        self._tags[env.routing_tag(tkey, h)] = (cid, sid, ekey)
            self._tags_hour, self._tags_dirty = hour, False
        return self._tags.get(tag)

    # -- sealing ------------------------------------------------------------------------------

    def tag_keys(self) -> list[bytes]:
        """The routing-tag keys of every epoch state we can open (the current ones and those
        retired within the window): what mailbox keys are derived from."""
        keys: list[bytes] = []
        for channel in self.channels.values():
            if channel.meta.status == ChannelStatus.REMOVED:
                continue
            for _, tkey in [*channel.retired.values(), *channel.state_keys().values()]:
                if tkey not in keys:
                    keys.append(tkey)
        return keys

    def texts_by_item(self, channel_id: bytes) -> dict[bytes, bytes]:
        """Outbox item (inner id) -> message id, for our text messages still tracked in a
        channel (empty when the channel is gone). Built per call: callers look up a batch's
        items against one map."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return {}
        return {sent.inner_id: mid for mid, sent in channel.sent.items() if sent.is_text}

    def message_safe(self, channel_id: bytes, message_id: bytes) -> None:
        """Our message reached every member or the mailboxes: stop resending it."""
        channel = self.channels.get(channel_id)
        if channel is not None:
            channel.stop_resending(message_id)

    def _tag(self, tag_key: bytes, hour: int) -> bytes:
        key = (tag_key, hour)
        tag = self._sealing_tags.get(key)
        if tag is None:
            if len(self._sealing_tags) > 4096:
                self._sealing_tags.clear()
            tag = self._sealing_tags[key] = env.routing_tag(tag_key, hour)
        return tag

    def _seal(self, channel: Channel, out: Outgoing, now: float) -> Envelope:
        ekey, tkey = channel.state_keys()[out.state_id]
        hour = int(now // HOUR_S)
        sealed = env.seal_channel_envelope(ekey, self._tag(tkey, hour), out.payload,
                                           rng=self._rng)
        return Envelope(out.inner_id, channel.channel_id, out.recipients, out.payload, sealed,
                        hour, (ekey, tkey), out.replaces, out.urgent)

    def envelope_from_store(
        self,
        item_id: bytes,
        channel_id: bytes | None,
        body: bytes,
        keys: tuple[bytes, bytes] | None,
        recipients: tuple[PeerId, ...],
        now: float,
    ) -> Envelope:
        """An outbox row back as an envelope: a channel payload is sealed for this hour; an
        invite envelope was stored sealed."""
        if keys is None:
            return Envelope(item_id, channel_id, recipients, b"", body, 0, None)
        hour = int(now // HOUR_S)
        sealed = env.seal_channel_envelope(keys[0], env.routing_tag(keys[1], hour), body,
                                           rng=self._rng)
        return Envelope(item_id, channel_id, recipients, body, sealed, hour, keys)

    def reseal(self, item: Envelope, now: float) -> Envelope:
        """The same payload under the current hour's tag (for a retransmission)."""
        hour = int(now // HOUR_S)
        if item.keys is None or item.hour == hour:
            return item
        ekey, tkey = item.keys
        sealed = env.seal_channel_envelope(ekey, env.routing_tag(tkey, hour), item.payload,
                                           rng=self._rng)
        return Envelope(item.inner_id, item.channel_id, item.recipients, item.payload, sealed,
                        hour, item.keys, item.replaces, item.urgent)

    def _seal_to(self, peer: PeerId, peer_key: bytes, payload: bytes,
                 channel_id: bytes | None) -> Envelope:
        try:
            sealed = env.seal_invite_envelope(peer_key, payload, rng=self._rng)
        except EnvelopeError as exc:
            raise Rejected("bad_envelope_key", str(exc)) from None
        return Envelope(inner_id(payload), channel_id, (peer,), payload, sealed, 0, None)

    def _apply(self, channel: Channel, step: Step, result: Result, now: float) -> None:
        """Turn a channel step into outbox envelopes, rows to save and notices."""
        cid = channel.channel_id
        if step.changed:
            result.channels.add(cid)
        if step.nodes_added or step.nodes_removed:
            self._tags_dirty = True
        result.nodes_added += [(cid, n) for n in step.nodes_added]
        result.nodes_removed += [(cid, sid) for sid in step.nodes_removed]
        result.sent_saved += [(cid, mid, sent) for mid, sent in step.sent_saved]
        result.sent_deleted += [(cid, mid) for mid in step.sent_deleted]
        result.seen += [(cid, mid, n) for mid, n in step.seen]
        result.cancelled += step.cancelled
        for out in step.outgoing:
            if out.recipients:
                result.envelopes.append(self._seal(channel, out, now))
        for w in step.welcomes:
            msg = WelcomeMessage(w.invite_id, w.welcome, w.origin.committer,
                                 w.origin.commit_hash, w.origin.slot,
                                 tuple(sorted(w.origin.removed)))
            try:
                sealed = self._seal_to(w.peer, w.envelope_key, msg.encode(), cid)
            except Rejected:
                continue  # a bad key from the invitee's record: the invite cannot complete
            result.envelopes.append(sealed)
            if len(self._welcome_items) < 4096:
                self._welcome_items[(cid, w.peer)] = sealed.inner_id
        for u in step.unwelcomes:
            notice = Withdrawal(u.invite_id, cid, u.commit_hash, self.me, u.peer).signed(
                self.identity)
            try:
                result.envelopes.append(self._seal_to(u.peer, u.envelope_key, notice.encode(),
                                                      cid))
            except Rejected:
                continue
        for ev in step.events:
            self._notice(channel, ev, result, now)
        for peer in step.heard_from:
            welcome = self._welcome_items.pop((cid, peer), None)
            if welcome is not None:
                result.cancelled.append(welcome)
        if step.welcomes or any(isinstance(e, MembersChanged) for e in step.events):
            self._finish_outgoing_invites(channel, result)

    def _notice(self, channel: Channel, ev: object, result: Result, now: float) -> None:
        cid = channel.channel_id
        if isinstance(ev, MessageReceived):
            name = channel.meta.profiles.get(ev.sender, "")
            stored = StoredMessage(cid, ev.message_id, ev.sender, name, ev.text, ev.sent_at_ms,
                                   now, ev.seq)
            result.messages.append(stored)
            result.notices.append(_message_notice(stored))
        elif isinstance(ev, MembersChanged):
            for peer in ev.added:
                result.notices.append(Notice("member_added", cid, {"peer_id": str(peer)}))
            for peer in ev.removed:
                result.notices.append(Notice("member_removed", cid, {"peer_id": str(peer)}))
        elif isinstance(ev, Epoch):
            result.notices.append(Notice("epoch", cid, {
                "epoch": ev.epoch, "epoch_fingerprint": ev.fingerprint.hex()}))
        elif isinstance(ev, Removed):
            result.notices.append(Notice("member_removed", cid, {"peer_id": str(self.me)}))

    def _finish_outgoing_invites(self, channel: Channel, result: Result) -> None:
        members = set(channel.member_peers())
        for inv in list(self.invites.values()):
            if inv.channel_id == channel.channel_id and inv.state == InviteState.ADDING and (
                inv.peer in members
            ):
                del self.invites[inv.invite_id]
                result.invites_deleted.append(inv.invite_id)

    # -- local requests -------------------------------------------------------------------------

    def create_channel(self, name: str, now: float) -> Result:
        _check_text("channel name", name, MAX_NAME_BYTES, min_len=1)
        channel = Channel.create(self.client, self.me, name, rng=self._rng,
                                 display_name=self.display_name)
        self.channels[channel.channel_id] = channel
        self._tags_dirty = True
        result = Result(channel_id=channel.channel_id)
        result.channels.add(channel.channel_id)
        result.nodes_added += [(channel.channel_id, n) for n in channel.nodes()]
        return result

    def invite(self, channel_id: bytes, peer: PeerId, peer_key: bytes, now: float) -> Result:
        """Offer ``peer`` (whose envelope key is ``peer_key``, from its signed record) a place
        in the channel; the invitee must accept (consent) before anything else happens."""
        channel = self._active(channel_id)
        if not channel.is_admin(self.me):
            raise NotAdmin("only an admin of this channel can invite")
        if peer == self.me or peer in channel.member_peers():
            raise AlreadyMember(f"{peer} is already a member of this channel")
        invite_id = self._rng(16)
        offer = InviteOffer(invite_id, channel_id, channel.name, self.me, self.envelope_public,
                            peer).signed(self.identity)
        result = Result(channel_id=channel_id, invite_id=invite_id)
        result.envelopes.append(self._seal_to(peer, peer_key, offer.encode(), channel_id))
        invite = Invite(invite_id, channel_id, channel.name, peer, peer_key,
                        InviteState.OFFERED, now)
        self.invites[invite_id] = invite
        result.invites_saved.append(invite)
        return result

    def accept_invite(self, invite_id: bytes, now: float) -> Result:
        invite = self.invites.get(invite_id)
        if invite is None or invite.state != InviteState.PENDING:
            raise UnknownInvite(f"no pending invite {invite_id.hex()}")
        kp = self.client.key_package()
        ref = self.client.key_package_ref(kp)
        blob = bytes(self.client.unused_key_packages()[ref])
        answer = InviteAnswer(invite_id, self.me, invite.peer, kp).signed(self.identity)
        result = Result(channel_id=invite.channel_id, invite_id=invite_id)
        result.envelopes.append(self._seal_to(invite.peer, invite.peer_key, answer.encode(),
                                              None))
        accepted = invite.moved(InviteState.ACCEPTED, key_package_ref=ref, key_package=blob)
        self.invites[invite_id] = accepted
        result.invites_saved.append(accepted)
        return result

    def decline_invite(self, invite_id: bytes, now: float) -> Result:
        invite = self.invites.get(invite_id)
        if invite is None or invite.state != InviteState.PENDING:
            raise UnknownInvite(f"no pending invite {invite_id.hex()}")
        del self.invites[invite_id]
        result = Result(invite_id=invite_id, channel_id=invite.channel_id)
        result.invites_deleted.append(invite_id)
        answer = InviteAnswer(invite_id, self.me, invite.peer, b"").signed(self.identity)
        result.envelopes.append(self._seal_to(invite.peer, invite.peer_key, answer.encode(),
                                              None))
        return result

    def send_text(self, channel_id: bytes, text: str, now: float) -> Result:
        _check_text("text", text, MAX_TEXT_BYTES)
        channel = self._active(channel_id)
        sent_at_ms = int(now * 1000)
        step = channel.send_text(text, sent_at_ms=sent_at_ms)
        result = Result(channel_id=channel_id, message_id=step.message_id)
        self._apply(channel, step, result, now)
        assert step.message_id is not None
        stored = StoredMessage(channel_id, step.message_id, self.me, self.display_name, text,
                               sent_at_ms, now, channel.meta.my_seq)
        result.messages.append(stored)
        result.notices.append(_message_notice(stored))
        return result

    def remove_member(self, channel_id: bytes, peer: PeerId, now: float) -> Result:
        channel = self._active(channel_id)
        if peer not in channel.member_peers():
            raise UnknownMember(f"{peer} is not a member of this channel")
        if peer == self.me:
            return self.leave(channel_id, now)
        return self._ask(channel, IntentOp.REMOVE, now, target=peer)

    def make_admin(self, channel_id: bytes, peer: PeerId, now: float) -> Result:
        channel = self._active(channel_id)
        if peer not in channel.member_peers():
            raise UnknownMember(f"{peer} is not a member of this channel")
        return self._ask(channel, IntentOp.ADMIN, now, target=peer)

    def leave(self, channel_id: bytes, now: float) -> Result:
        channel = self._active(channel_id)
        others = channel.others()
        if not others:
            # The last member: nobody left to commit our removal.
            channel.meta.status = ChannelStatus.REMOVED
            result = Result(channel_id=channel_id)
            result.channels.add(channel_id)
            result.notices.append(Notice("member_removed", channel_id, {"peer_id": str(self.me)}))
            self._tags_dirty = True
            return result
        admins = set(channel.info.admins)
        if admins == {self.me}:
            raise LastAdmin("the last admin cannot leave: make another member an admin first")
        return self._ask(channel, IntentOp.LEAVE, now)

    def set_display_name(self, name: str, now: float) -> Result:
        _check_text("display name", name, MAX_DISPLAY_NAME_BYTES)
        self.display_name = name
        result = Result()
        for channel in self.channels.values():
            if channel.active:
                self._apply(channel, channel.set_display_name(name), result, now)
        return result

    def _ask(self, channel: Channel, op: IntentOp, now: float, **kw: object) -> Result:
        step = channel.ask(op, now, **kw)  # type: ignore[arg-type]
        result = Result(channel_id=channel.channel_id)
        self._apply(channel, step, result, now)
        return result

    def _active(self, channel_id: bytes) -> Channel:
        channel = self.channel(channel_id)
        if channel.meta.status != ChannelStatus.ACTIVE:
            raise NotMember(f"this node is {channel.meta.status.value} in this channel")
        return channel

    # -- time -------------------------------------------------------------------------------

    def tick(self, now: float) -> Result:
        result = Result()
        for channel in list(self.channels.values()):
            self._apply(channel, channel.tick(now), result, now)
        for inv in list(self.invites.values()):
            if inv.joined_at is not None and now - inv.joined_at > JOINED_GRACE_S:
                del self.invites[inv.invite_id]
                result.invites_deleted.append(inv.invite_id)
        return result

    def cover(self, now: float) -> Result:
        """One cover envelope to the members of one active channel (jitter mode "high")."""
        result = Result()
        active = sorted(c for c, ch in self.channels.items()
                        if ch.meta.status == ChannelStatus.ACTIVE and ch.others())
        if active:
            channel = self.channels[active[self._rng(1)[0] % len(active)]]
            out = channel.cover()
            if out is not None:
                result.envelopes.append(replace(self._seal(channel, out, now), cover=True))
        return result

    def next_deadline(self, now: float) -> float | None:
        deadlines = [d for c in self.channels.values() if (d := c.next_deadline(now)) is not None]
        return min(deadlines, default=None)

    def acknowledged(self, channel_id: bytes, inner: bytes, peer: PeerId, now: float) -> Result:
        result = Result()
        channel = self.channels.get(channel_id)
        if channel is not None:
            self._apply(channel, channel.acknowledged(inner, peer, now), result, now)
        return result

    # -- receiving --------------------------------------------------------------------------------

    def receive(self, envelope: bytes, sender: PeerId, now: float, *,
                allow_gap: bool = False) -> Result:
        """Process one envelope from ``sender`` (the link it came on). Raises Hold when it
        cannot be processed yet (unknown tag: perhaps a future epoch); the caller keeps it
        and offers it again after the channels change."""
        self.last_channel = None
        try:
            tag, _ = env.split(envelope)
        except EnvelopeError as exc:
            return _refused(exc)
        route = self._route(tag, now)
        try:
            if route is not None:
                cid, sid, ekey = route
                self.last_channel = cid
                payload = decode_payload(env.open_channel_envelope(ekey, envelope))
                if isinstance(payload, Cover):
                    return Result(ack=True, channel_id=cid, drop_reason="cover")
                if not isinstance(payload, GroupMessage):
                    raise PayloadError("a channel envelope carries group messages only")
                channel = self.channels[cid]
                result = Result(ack=True, channel_id=cid)
                step = channel.receive(sid, payload.mls, now, allow_gap=allow_gap)
                self._apply(channel, step, result, now)
                return result
            try:
                opened = env.open_invite_envelope(self._envelope_private, envelope)
            except EnvelopeError:
                raise Hold("no key opens this envelope (yet)") from None
            return self._receive_direct(decode_payload(opened), sender, now)
        except Rejected as exc:
            return _refused(exc)

    def _receive_direct(self, payload: object, sender: PeerId, now: float) -> Result:
        if isinstance(payload, InviteOffer):
            return self._offer(payload, now)
        if isinstance(payload, InviteAnswer):
            return self._answer(payload, now)
        if isinstance(payload, WelcomeMessage):
            return self._welcome(payload, now)
        if isinstance(payload, Withdrawal):
            return self._withdrawal(payload, now)
        raise PayloadError("a group message must come in a channel envelope")

    def _offer(self, offer: InviteOffer, now: float) -> Result:
        offer.verify(self.me)
        existing = self.channels.get(offer.channel_id)
        if existing is not None and existing.active:
            raise Rejected("already_member", "invited to a channel we are in")
        if offer.invite_id in self.invites:
            raise Rejected("duplicate", "invite already received")
        invite = Invite(offer.invite_id, offer.channel_id, offer.name, offer.inviter,
                        offer.inviter_key, InviteState.PENDING, now)
        self.invites[invite.invite_id] = invite
        result = Result(ack=True, channel_id=offer.channel_id, invite_id=offer.invite_id)
        result.invites_saved.append(invite)
        result.notices.append(Notice("invite", offer.channel_id, {
            "invite_id": offer.invite_id.hex(), "channel_id": offer.channel_id.hex(),
            "name": offer.name, "from": str(offer.inviter)}))
        if self.auto_accept_invites:
            accepted = self.accept_invite(invite.invite_id, now)
            _merge(result, accepted)
        return result

    def _answer(self, answer: InviteAnswer, now: float) -> Result:
        answer.verify(self.me)
        invite = self.invites.get(answer.invite_id)
        if invite is None or invite.state != InviteState.OFFERED or invite.peer != answer.invitee:
            raise Rejected("unknown_invite", "answer to no invite of ours")
        result = Result(ack=True, channel_id=invite.channel_id, invite_id=invite.invite_id)
        # An answer means the offer arrived (perhaps through a relay): stop sending it. The
        # offer's bytes are those invite() sealed (Ed25519 signatures are deterministic).
        offer = InviteOffer(invite.invite_id, invite.channel_id, invite.name, self.me,
                            self.envelope_public, invite.peer).signed(self.identity)
        result.cancelled.append(inner_id(offer.encode()))
        if not answer.accepted:
            del self.invites[invite.invite_id]
            result.invites_deleted.append(invite.invite_id)
            result.notices.append(Notice("declined", invite.channel_id, {
                "invite_id": invite.invite_id.hex(), "peer_id": str(invite.peer)}))
            return result
        channel = self.channels.get(invite.channel_id)
        if channel is None or channel.meta.status != ChannelStatus.ACTIVE or not (
            channel.is_admin(self.me)
        ):
            raise Rejected("unknown_invite", "we can no longer add to that channel")
        step = channel.ask(IntentOp.ADD, now, target=invite.peer, key_package=answer.key_package,
                           invite_id=invite.invite_id, envelope_key=invite.peer_key)
        adding = invite.moved(InviteState.ADDING)
        self.invites[invite.invite_id] = adding
        result.invites_saved.append(adding)
        self._apply(channel, step, result, now)
        return result

    def _welcome(self, msg: WelcomeMessage, now: float) -> Result:
        invite = self.invites.get(msg.invite_id)
        if invite is None or invite.state not in (InviteState.ACCEPTED, InviteState.JOINED):
            raise Rejected("unknown_invite", "Welcome for no invite we accepted")
        origin = Origin(msg.commit_hash, msg.committer, msg.slot, frozenset(msg.removed))
        result = Result(ack=True, invite_id=msg.invite_id, channel_id=invite.channel_id)
        current = self.channels.get(invite.channel_id)
        # The KeyPackage is used once per Welcome: put it back for each (a competing
        # commit's Welcome names the same one), and take it out again if unused.
        self.client.restore_key_package(invite.key_package)
        if invite.state == InviteState.ACCEPTED:
            # The Welcome shows our answer arrived (perhaps through a relay, acknowledging
            # nothing): settle its outbox item. The answer is rebuilt byte for byte (Ed25519
            # signatures are deterministic) to find the item's id.
            kp = self.client.key_package_message(invite.key_package_ref)
            if kp is not None:
                answer = InviteAnswer(invite.invite_id, self.me, invite.peer, kp)
                result.cancelled.append(inner_id(answer.signed(self.identity).encode()))
        try:
            if current is not None and current.active:
                step = current.add_welcome(msg.welcome, origin, now)
                self._apply(current, step, result, now)
                return result
            channel = Channel.join(self.client, self.me, msg.welcome, origin, rng=self._rng,
                                   display_name=self.display_name)
        finally:
            self.client.discard_key_package(invite.key_package_ref)
        if channel.channel_id != invite.channel_id:
            raise Rejected("bad_welcome", "Welcome for another channel than the invite's")
        self.channels[channel.channel_id] = channel
        self._tags_dirty = True
        result.channels.add(channel.channel_id)
        result.nodes_added += [(channel.channel_id, n) for n in channel.nodes()]
        if self.display_name:
            self._apply(channel, channel.set_display_name(self.display_name), result, now)
        result.notices.append(Notice("member_added", channel.channel_id,
                                     {"peer_id": str(self.me)}))
        joined = invite.moved(InviteState.JOINED, joined_at=now)
        self.invites[invite.invite_id] = joined
        result.invites_saved.append(joined)
        return result

    def _withdrawal(self, notice: Withdrawal, now: float) -> Result:
        notice.verify(self.me)
        channel = self.channels.get(notice.channel_id)
        if channel is None or not channel.is_admin(notice.admin):
            raise Rejected("unknown_invite", "withdrawal for no channel of ours")
        result = Result(ack=True, channel_id=channel.channel_id)
        self._apply(channel, channel.withdraw_welcome(notice.commit_hash, now), result, now)
        return result

    # -- fork detection and repair (12.7) ---------------------------------------------------------

    def checks(self, now: float) -> Result:
        """Members tell a random admin, now and then, which epoch state they are at."""
        result = Result()
        for cid, channel in self.channels.items():
            if channel.meta.status != ChannelStatus.ACTIVE:
                continue
            due = self._next_check.setdefault(cid, now + self._check_delay())
            if now < due:
                continue
            self._next_check[cid] = now + self._check_delay()
            members = set(channel.member_peers())
            admins = sorted(a for a in channel.info.admins if a != self.me and a in members)
            if not admins:
                continue
            admin = admins[self._rng(1)[0] % len(admins)]
            check = EpochCheck(cid, channel.epoch, channel.fingerprint)
            result.direct.append((admin, check.encode()))
        return result

    def _check_delay(self) -> float:
        return self.check_every_s * (0.5 + self._rng(1)[0] / 255)

    def on_check(self, peer: PeerId, data: bytes, now: float) -> Result:
        """A check-protocol message from ``peer`` (the link authenticated it)."""
        message = decode_check(data)
        channel = self.channels.get(message.channel_id)
        if channel is None:
            raise Rejected("unknown_channel", "check for a channel we are not in")
        if isinstance(message, EpochCheck):
            return self._on_epoch_check(channel, peer, message, now)
        if isinstance(message, Readd):
            return self._on_readd(channel, peer, now)
        return self._on_readd_key(channel, peer, message, now)

    def _on_epoch_check(self, channel: Channel, peer: PeerId, check: EpochCheck,
                        now: float) -> Result:
        result = Result()
        cid = channel.channel_id
        if (not channel.active or not channel.is_admin(self.me)
                or peer not in channel.member_peers()):
            return result
        key = (cid, peer)
        if channel.knows_state(check.epoch, check.fingerprint) or check.epoch > channel.epoch:
            self._reports.pop(key, None)  # in step, catching up, or ahead of us
            return result
        previous = self._reports.get(key)
        if previous is None or previous[:2] != (check.epoch, check.fingerprint):
            previous = (check.epoch, check.fingerprint, now)  # first seen at this state
            self._reports[key] = previous
        forked = check.epoch >= channel.window_floor()
        stuck = now - previous[2] >= STUCK_S
        if not (forked or stuck) or now - self._readd_offered.get(key, -1e18) < READD_EVERY_S:
            return result
        self._readd_offered[key] = now
        result.direct.append((peer, Readd(cid).encode()))
        result.notices.append(Notice("repair", cid, {
            "peer_id": str(peer), "reason": "fork" if forked else "stuck",
            "their_epoch": check.epoch, "our_epoch": channel.epoch}))
        return result

    def _on_readd(self, channel: Channel, peer: PeerId, now: float) -> Result:
        if not channel.is_admin(peer):
            raise Rejected("not_admin", "a re-add offer from a non-admin")
        cid = channel.channel_id
        result = Result(channel_id=cid)
        for old in [i for i in self.invites.values()
                    if i.channel_id == cid and i.state == InviteState.ACCEPTED and i.readd]:
            del self.invites[old.invite_id]  # a newer offer replaces an unanswered one
            result.invites_deleted.append(old.invite_id)
        kp = self.client.key_package()
        ref = self.client.key_package_ref(kp)
        blob = bytes(self.client.unused_key_packages()[ref])
        self.client.discard_key_package(ref)  # restored from the invite for the Welcome
        invite = Invite(self._rng(16), cid, channel.name, peer, bytes(32),
                        InviteState.ACCEPTED, now, ref, blob, readd=True)
        self.invites[invite.invite_id] = invite
        result.invites_saved.append(invite)
        answer = ReaddKey(cid, invite.invite_id, kp, self.envelope_public)
        result.direct.append((peer, answer.encode()))
        result.notices.append(Notice("repair", cid, {"peer_id": str(peer),
                                                     "reason": "re-add requested"}))
        return result

    def _on_readd_key(self, channel: Channel, peer: PeerId, key: ReaddKey,
                      now: float) -> Result:
        if (not channel.active or not channel.is_admin(self.me)
                or peer not in channel.member_peers()
                or (channel.channel_id, peer) not in self._readd_offered):
            raise Rejected("unexpected_readd", "a re-add KeyPackage we did not ask for")
        del self._readd_offered[(channel.channel_id, peer)]
        return self._ask(channel, IntentOp.READD, now, target=peer,
                         key_package=key.key_package, invite_id=key.invite_id,
                         envelope_key=key.envelope_key)

    # -- views ------------------------------------------------------------------------------------

    def statistics(self) -> dict[str, object]:
        return {
            "channels": sum(1 for c in self.channels.values() if c.active),
            "invites_pending": sum(1 for i in self.invites.values()
                                   if i.state == InviteState.PENDING),
        }


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise PayloadError("stored invite: readd must be a boolean")
    return value


def _message_notice(m: StoredMessage) -> Notice:
    return Notice("message", m.channel_id, {
        "message_id": m.message_id.hex(), "sender": str(m.sender), "sender_name": m.sender_name,
        "text": m.text, "sent_at": m.sent_at_ms / 1000, "received_at": m.received_at,
    })


def _refused(exc: Rejected) -> Result:
    return Result(ack=True, drop_reason=exc.reason)


def _merge(into: Result, other: Result) -> None:
    into.envelopes += other.envelopes
    into.cancelled += other.cancelled
    into.messages += other.messages
    into.notices += other.notices
    into.channels |= other.channels
    into.nodes_added += other.nodes_added
    into.nodes_removed += other.nodes_removed
    into.sent_saved += other.sent_saved
    into.sent_deleted += other.sent_deleted
    into.seen += other.seen
    into.invites_saved += other.invites_saved
    into.invites_deleted += other.invites_deleted
    into.direct += other.direct


def _check_text(what: str, value: object, max_bytes: int, *, min_len: int = 0) -> None:
    if not isinstance(value, str):
        raise PayloadError(f"{what} must be text")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise TextTooLong(f"{what} is {size} bytes; the limit is {max_bytes}")
    if size < min_len:
        raise ChannelError(f"{what} must not be empty")

