"""Outbox items that nobody acknowledges (they may travel through relays) are settled by
what answers them: the invitee's answer by the Welcome, the Welcome by the joiner's first
message in the channel."""

from __future__ import annotations

from node.channels.manager import ChannelManager, Result
from tests.node.channels.mnet import Net


class Recording(Net):
    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.sent: dict[bytes, list[bytes]] = {}  # node (binary PeerId) -> inner ids sent
        self.cancelled: dict[bytes, list[bytes]] = {}
        self.welcomes: set[bytes] = set()  # Welcome items any node was waiting to settle

    def apply(self, src: ChannelManager, result: Result) -> None:
        me = src.me.binary
        self.sent.setdefault(me, []).extend(e.inner_id for e in result.envelopes)
        self.cancelled.setdefault(me, []).extend(result.cancelled)
        self.welcomes |= set(src._welcome_items.values())
        super().apply(src, result)


def test_answer_settled_by_the_welcome_and_welcome_by_the_joiners_first_message() -> None:
    net = Recording(5)
    a, b = net.add(), net.add()
    created = a.create_channel("settle", net.now)
    net.apply(a, created)
    assert created.channel_id is not None
    cid = created.channel_id
    net.apply(a, a.invite(cid, b.me, b.envelope_public, net.now))
    net.flush()
    net.run(5)
    assert cid in b.channels and b.channels[cid].active
    (answer,) = net.sent[b.me.binary][:1]  # auto-accepted: b's first envelope is its answer
    assert answer in net.cancelled[b.me.binary]
    # b's Profile, sent as it joined, already told a that the Welcome arrived.
    assert len(net.welcomes) == 1 and net.welcomes <= set(net.cancelled[a.me.binary])
    assert a._welcome_items == {}
