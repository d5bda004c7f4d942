"""An in-memory world of channel members: delivery with loss, delay and reordering, a fake
clock and seeded randomness. Drives :class:`node.channels.channel.Channel` directly."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mls import Client
from node.channels import policy
from node.channels.channel import Channel, Hold, MessageReceived, Step, Welcome
from node.channels.content import CHANNEL_EXTENSION, IntentOp
from node.channels.errors import Rejected
from node.channels.wire import GroupMessage, decode_payload
from node.core.identity import Identity, PeerId

T0 = 1_800_000_000.0


@dataclass
class Member:
    name: str
    identity: Identity
    client: Client
    channel: Channel | None = None
    online: bool = True
    texts: list[tuple[PeerId, str]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def peer(self) -> PeerId:
        return self.identity.peer_id


@dataclass(order=True)
class _Packet:
    at: float
    order: int
    to: PeerId = field(compare=False)
    sender: PeerId = field(compare=False)
    state_id: bytes = field(compare=False)
    payload: bytes = field(compare=False)
    inner_id: bytes = field(compare=False)


class World:
    """``loss``: chance a packet is lost (the sender retries until acknowledged);
    ``delay``: (min, max) seconds in flight, drawn per packet, so packets reorder."""

    def __init__(
        self, seed: int, *, loss: float = 0.0, delay: tuple[float, float] = (0.01, 0.05)
    ) -> None:
        self.rand = random.Random(seed)
        self.now = T0
        self.loss = loss
        self.delay = delay
        self.members: dict[PeerId, Member] = {}
        self.in_flight: list[_Packet] = []
        self.unacked: dict[tuple[PeerId, bytes], tuple[float, PeerId, bytes, bytes]] = {}
        self.cut: set[tuple[PeerId, PeerId]] = set()  # (from, to) pairs that lose everything
        self._order = 0

    def rng(self, n: int) -> bytes:
        return self.rand.randbytes(n)

    def add_member(self, name: str) -> Member:
        ident = Identity.from_seed(self.rand.randbytes(32))
        client = Client(
            ident.peer_id.binary,
            signing_key=ident.seed(),
            rng=self.rng,
            clock=lambda: self.now,
            extensions_supported=[CHANNEL_EXTENSION],
            max_past_epochs=policy.MAX_RETAINED_EPOCHS,
        )
        m = Member(name, ident, client)
        self.members[m.peer] = m
        return m

    def create(self, owner: Member, name: str = "chan") -> None:
        owner.channel = Channel.create(owner.client, owner.peer, name, rng=self.rng,
                                       display_name=owner.name)

    # -- driving ---------------------------------------------------------------------------

    def apply(self, who: Member, step: Step) -> None:
        for out in step.outgoing:
            for to in out.recipients:
                self.unacked[(to, out.inner_id)] = (self.now, who.peer, out.state_id, out.payload)
                self._send(who.peer, to, out.state_id, out.payload, out.inner_id)
        for iid in step.cancelled:
            for key in [k for k in self.unacked if k[1] == iid]:
                del self.unacked[key]
        for welcome in step.welcomes:
            self._welcome(welcome)
        for unwelcome in step.unwelcomes:
            joiner = self.members[unwelcome.peer]
            if joiner.channel is not None:
                try:
                    self.apply(joiner, joiner.channel.withdraw_welcome(unwelcome.commit_hash,
                                                                       self.now))
                except Rejected as exc:
                    joiner.dropped[exc.reason] = joiner.dropped.get(exc.reason, 0) + 1

    def _welcome(self, w: Welcome) -> None:
        joiner = self.members[w.peer]
        # Keep the KeyPackage: a Welcome from a losing branch may be followed by the winner's
        # for the same KeyPackage (the node keeps them until the channel moves on).
        kept = joiner.client.unused_key_packages()
        old = joiner.channel
        try:
            if old is not None and old.active:
                # A Welcome from a competing commit: a candidate root, R6 decides.
                self.apply(joiner, old.add_welcome(w.welcome, w.origin, self.now))
                return
            joiner.channel = Channel.join(joiner.client, joiner.peer, w.welcome, w.origin,
                                          rng=self.rng, display_name=joiner.name)
        except Rejected as exc:
            joiner.dropped[exc.reason] = joiner.dropped.get(exc.reason, 0) + 1
            return
        finally:
            for blob in kept.values():
                joiner.client.restore_key_package(blob)
        self.apply(joiner, joiner.channel.set_display_name(joiner.name))

    def _send(
        self, sender: PeerId, to: PeerId, state_id: bytes, payload: bytes, iid: bytes
    ) -> None:
        if self.rand.random() < self.loss or (sender, to) in self.cut:
            return
        self._order += 1
        at = self.now + self.rand.uniform(*self.delay)
        self.in_flight.append(_Packet(at, self._order, to, sender, state_id, payload, iid))

    def invite(self, admin: Member, joiner: Member) -> None:
        assert admin.channel is not None
        kp = joiner.client.key_package()
        step = admin.channel.ask(IntentOp.ADD, self.now, target=joiner.peer, key_package=kp,
                                 invite_id=self.rng(16), envelope_key=b"\x01" * 32)
        self.apply(admin, step)

    def ask(self, m: Member, op: IntentOp, target: Member | None = None) -> None:
        assert m.channel is not None
        self.apply(m, m.channel.ask(op, self.now, target=None if target is None else target.peer))

    def say(self, m: Member, text: str) -> None:
        assert m.channel is not None
        self.apply(m, m.channel.send_text(text, sent_at_ms=int(self.now * 1000)))

    def run(self, seconds: float, step_s: float = 0.05) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + step_s, 6)
            self.in_flight.sort()
            while self.in_flight and self.in_flight[0].at <= self.now:
                self._deliver(self.in_flight.pop(0))
            for m in self.members.values():
                if m.online and m.channel is not None:
                    self.apply(m, m.channel.tick(self.now))
            self._retry()

    def _retry(self) -> None:
        for (to, iid), (sent_at, sender, sid, payload) in list(self.unacked.items()):
            if self.now - sent_at >= 2.0 and self.members[sender].online:
                self.unacked[(to, iid)] = (self.now, sender, sid, payload)
                self._send(sender, to, sid, payload, iid)

    def _deliver(self, p: _Packet) -> None:
        m = self.members[p.to]
        if not m.online or m.channel is None:
            return  # lost; the sender retries
        ch = m.channel
        payload = decode_payload(p.payload)
        assert isinstance(payload, GroupMessage)
        try:
            step = ch.receive(p.state_id, payload.mls, self.now)
        except Hold:
            return  # not acknowledged: the sender tries again
        except Rejected as exc:
            m.dropped[exc.reason] = m.dropped.get(exc.reason, 0) + 1
            self._ack(p)
            return
        self._ack(p)
        for ev in step.events:
            if isinstance(ev, MessageReceived):
                m.texts.append((ev.sender, ev.text))
        self.apply(m, step)

    def _ack(self, p: _Packet) -> None:
        self.unacked.pop((p.to, p.inner_id), None)
        sender = self.members[p.sender]
        if sender.channel is not None:
            self.apply(sender, sender.channel.acknowledged(p.inner_id, p.to, self.now))

    def settle(self, seconds: float = 60.0) -> None:
        self.run(seconds)

    def converged(self) -> bool:
        chans = [
            m.channel for m in self.members.values() if m.channel is not None and m.channel.active
        ]
        if not chans:
            return True
        heads = {(c.epoch, c.fingerprint, tuple(sorted(c.member_peers()))) for c in chans}
        return len(heads) == 1
