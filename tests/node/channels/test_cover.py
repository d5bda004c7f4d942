"""Cover traffic (jitter mode "high"): sealed like a message of the channel, acknowledged and
dropped by members, unreadable to anyone else, and never stored as a message."""

from __future__ import annotations

import pytest

from node.channels.channel import Hold
from node.channels.manager import ChannelManager
from node.channels.wire import COVER_PREFIX, Cover, decode_payload
from tests.node.channels.mnet import Net


def _pair(net: Net) -> tuple[bytes, ChannelManager, ChannelManager]:
    a, b = net.add(), net.add()
    cid = a.create_channel("cover", net.now).channel_id
    assert cid is not None
    net.apply(a, a.invite(cid, b.me, b.envelope_public, net.now))
    net.flush()
    net.run(3)
    assert cid in b.channels
    return cid, a, b


def test_cover_is_sealed_to_members_and_dropped_unread() -> None:
    net = Net(3)
    cid, a, b = _pair(net)
    result = a.cover(net.now)
    (envelope,) = result.envelopes
    assert envelope.cover and envelope.channel_id == cid and envelope.recipients == (b.me,)
    text = a.send_text(cid, "a real one", net.now).envelopes[0]
    # Same size class as a short message: padding hides which is which.
    assert len(envelope.envelope) == len(text.envelope)
    got = b.receive(envelope.envelope, a.me, net.now)
    assert got.ack and got.drop_reason == "cover" and not got.messages and not got.channels


def test_an_outsider_cannot_open_cover() -> None:
    net = Net(4)
    _cid, a, _b = _pair(net)
    outsider = net.add()
    (envelope,) = a.cover(net.now).envelopes
    # To an outsider it is like any envelope of a channel it is not in: no key opens it.
    with pytest.raises(Hold):
        outsider.receive(envelope.envelope, a.me, net.now)


def test_no_cover_without_a_channel_with_others() -> None:
    net = Net(5)
    a = net.add()
    assert a.cover(net.now).envelopes == []
    a.create_channel("alone", net.now)
    assert a.cover(net.now).envelopes == []


def test_cover_payload_round_trips() -> None:
    assert decode_payload(COVER_PREFIX + bytes(400)) == Cover(bytes(400))
    assert Cover(b"xyz").encode() == COVER_PREFIX + b"xyz"
    assert decode_payload(COVER_PREFIX) == Cover(b"")
