"""Reliability without receipts: Bloom filters in messages give "seen by", drive resends of
what a member lacks, and a quiet member sends a Sync (PROTOCOL.md 12.6)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from node.channels.causal import BLOOM_BYTES, RECENT_IDS, Bloom, RecentIds
from node.channels.channel import RESEND_FIRST_S, SYNC_AFTER_S
from tests.node.channels.sim import World


def test_bloom_has_what_was_added_and_few_false_positives() -> None:
    ids = [os.urandom(16) for _ in range(RECENT_IDS)]
    bloom = Bloom.of(ids)
    assert all(i in bloom for i in ids)
    strangers = [os.urandom(16) for _ in range(5000)]
    false_positives = sum(1 for i in strangers if i in bloom)
    assert false_positives < 5000 * 0.03  # about 1% expected at 200 ids, 2,048 bits, k = 7
    assert len(bloom.to_bytes()) == BLOOM_BYTES


@settings(max_examples=60, derandomize=True)
@given(st.lists(st.binary(min_size=16, max_size=16), max_size=400))
def test_recent_ids_filter_is_the_filter_of_the_last_ids(ids: list[bytes]) -> None:
    recent = RecentIds()
    for i in ids:
        recent.add(i)
    unique = list(dict.fromkeys(ids))  # adding a known id again changes nothing
    want = unique[-RECENT_IDS:]
    assert recent.ids == want
    assert recent.bloom() == Bloom.of(want).to_bytes()
    assert recent.last(2) == tuple(want[-2:])


def _quiet_world() -> tuple[World, list]:  # type: ignore[type-arg]
    w = World(21)
    ms = [w.add_member(n) for n in ("alice", "bob", "carol")]
    w.create(ms[0])
    for m in ms[1:]:
        w.invite(ms[0], m)
    w.run(10)
    return w, ms


def test_seen_by_grows_from_the_others_filters() -> None:
    w, (a, b, c) = _quiet_world()
    assert a.channel is not None
    w.say(a, "did you get this?")
    (mid,) = list(a.channel.seen_by)[-1:]
    w.run(1)
    assert a.channel.seen_by[mid] == set()  # nobody has said anything since
    w.say(b, "yes")  # b's message carries b's filter
    w.run(1)
    assert a.channel.seen_by[mid] == {b.peer}
    w.run(SYNC_AFTER_S * 1.6)  # carol stays quiet, then sends a content-free Sync
    assert a.channel.seen_by[mid] == {b.peer, c.peer}


def test_a_member_that_lacks_a_message_gets_it_again() -> None:
    w, (a, b, c) = _quiet_world()
    assert a.channel is not None and c.channel is not None
    w.cut.add((a.peer, c.peer))  # carol never gets alice's message...
    w.unacked.clear()
    w.say(a, "important")
    w.run(1)
    w.unacked.clear()  # ...and the transport does not retry it (as a lost relay would not)
    w.cut.clear()
    assert "important" not in [t for _, t in c.texts]
    w.run(RESEND_FIRST_S + 40)  # b's and c's Syncs tell alice; she resends to everyone
    assert "important" in [t for _, t in c.texts]
    assert [t for _, t in b.texts].count("important") == 1  # b did not get it twice


def test_a_message_safe_without_us_is_not_resent() -> None:
    # Once every member acknowledged it or mailbox holders store it (ChannelService says so),
    # resending would only store it at the mailboxes again.
    w, (a, _, c) = _quiet_world()
    assert a.channel is not None
    w.cut.add((a.peer, c.peer))
    w.unacked.clear()
    w.say(a, "stored elsewhere")
    w.run(1)
    w.unacked.clear()
    w.cut.clear()
    (mid,) = list(a.channel.seen_by)[-1:]
    a.channel.stop_resending(mid)
    w.run(RESEND_FIRST_S + 40)
    assert "stored elsewhere" not in [t for _, t in c.texts]
