"""One channel's rules on hostile or repeated input: refused with a counted reason and the
stored state byte-identical; and a restart in the middle of a commit resumes it."""

from __future__ import annotations

import pytest

from node.channels.channel import Channel, Hold
from node.channels.content import CHANNEL_EXTENSION, ChannelInfo, CommitHeader, IntentOp
from node.channels.errors import Rejected
from node.channels.state import ChannelMeta, EpochNode
from node.channels.wire import GroupMessage, decode_payload
from tests.node.channels.sim import Member, World


def snapshot(c: Channel) -> tuple[bytes, bytes, tuple[bytes, ...]]:
    """Everything the node would store for the channel."""
    return c.group_blob(), c.meta_blob(), tuple(sorted(n.encode() for n in c.nodes()))


def three(seed: int = 3) -> tuple[World, Member, Member, Member]:
    w = World(seed)
    a, b, c = w.add_member("alice"), w.add_member("bob"), w.add_member("carol")
    w.create(a)
    w.invite(a, b)
    w.invite(a, c)
    w.run(10)
    assert w.converged()
    return w, a, b, c


def test_a_commit_from_a_non_admin_is_refused_and_changes_nothing() -> None:
    w, a, b, c = three()
    assert b.channel is not None and c.channel is not None
    # bob is no admin; he builds a commit anyway (removing carol) with his own MLS group.
    info = ChannelInfo.decode(dict(b.channel.group.extensions)[CHANNEL_EXTENSION])
    out = b.channel.group.change(remove=[c.peer.binary],
                                 authenticated_data=CommitHeader().encode())
    assert info.admins == (a.peer,)
    before = snapshot(c.channel)
    with pytest.raises(Rejected) as refused:
        c.channel.receive(c.channel.head.state_id, out.commit, w.now)
    assert refused.value.reason == "commit_not_allowed"
    assert snapshot(c.channel) == before


def test_a_commit_that_makes_a_stranger_admin_is_refused() -> None:
    w, a, b, _ = three()
    assert a.channel is not None and b.channel is not None
    stranger = w.add_member("mallory")
    bad = ChannelInfo(a.channel.name, tuple(sorted({a.peer, stranger.peer})))
    out = a.channel.group.change(extensions=[(CHANNEL_EXTENSION, bad.encode())],
                                 authenticated_data=CommitHeader().encode())
    before = snapshot(b.channel)
    with pytest.raises(Rejected) as refused:
        b.channel.receive(b.channel.head.state_id, out.commit, w.now)
    assert refused.value.reason == "commit_not_allowed"
    assert snapshot(b.channel) == before


def test_a_replayed_message_is_a_duplicate_and_changes_nothing() -> None:
    w, a, b, _ = three()
    assert a.channel is not None and b.channel is not None
    step = a.channel.send_text("once", sent_at_ms=1)
    mls = GroupMessage(decode_payload(step.outgoing[0].payload).mls)  # type: ignore[union-attr]
    sid = step.outgoing[0].state_id
    b.channel.receive(sid, mls.mls, w.now)
    before = snapshot(b.channel)
    with pytest.raises(Rejected) as refused:
        b.channel.receive(sid, mls.mls, w.now)
    assert refused.value.reason in ("duplicate", "mls_rejected")
    assert snapshot(b.channel) == before


def test_a_gap_in_a_senders_sequence_is_held_without_changing_anything() -> None:
    w, a, b, _ = three()
    assert a.channel is not None and b.channel is not None
    first = a.channel.send_text("one", sent_at_ms=1).outgoing[0]
    second = a.channel.send_text("two", sent_at_ms=2).outgoing[0]
    before = snapshot(b.channel)
    with pytest.raises(Hold) as held:
        b.channel.receive(second.state_id, second.payload[1:], w.now)
    assert held.value.waiting_for == (a.peer, a.channel.meta.my_seq - 1)
    assert snapshot(b.channel) == before
    b.channel.receive(first.state_id, first.payload[1:], w.now)
    b.channel.receive(second.state_id, second.payload[1:], w.now)


def test_envelopes_of_epochs_past_the_window_are_refused() -> None:
    w, a, b, _ = three()
    assert a.channel is not None and b.channel is not None
    step = a.channel.send_text("from long ago", sent_at_ms=1)
    old = step.outgoing[0]
    w.apply(a, step)  # delivered once, normally
    for _ in range(7):  # more commits than the K = 5 retained epochs
        w.apply(a, a.channel.ask(IntentOp.ADMIN, w.now, target=b.peer))
        w.run(3)
    assert b.channel is not None
    assert old.state_id not in {n.state_id for n in b.channel.nodes()}
    with pytest.raises(Rejected) as refused:
        b.channel.receive(old.state_id, old.payload[1:], w.now)
    assert refused.value.reason == "beyond_window"


def test_a_restart_in_the_middle_of_a_commit_resumes_it() -> None:
    w, a, _, _ = three()
    assert a.channel is not None
    d = w.add_member("dave")
    w.invite(a, d)
    # Run until alice has published her commit but not merged it (publish before apply).
    for _ in range(100):
        w.run(0.05)
        if a.channel.meta.pending_commit is not None:
            break
    assert a.channel.meta.pending_commit is not None and a.channel.group.has_pending_commit
    # "Crash" and restore from exactly what the node stores.
    blob, meta, nodes = a.channel.group_blob(), a.channel.meta_blob(), a.channel.nodes()
    a.channel = Channel.restore(a.client, a.peer, blob, [EpochNode.decode(n.encode())
                                                         for n in nodes],
                                ChannelMeta.decode(meta), rng=w.rng, sent=a.channel.sent)
    assert a.channel.meta.pending_commit is not None
    w.run(10)
    assert w.converged()
    assert d.channel is not None and d.peer in d.channel.member_peers()
