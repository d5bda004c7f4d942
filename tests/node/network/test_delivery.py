"""The delivery core (node/network/delivery.py), driven with a fake clock and seeded jitter."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.core.identity import PeerId
from node.network.delivery import Delivery, DeliverySettings, Dial, Inbound, Transmit
from node.network.wire import MAX_ACK_IDS, AckMsg, EnvelopeMsg, decode_net, envelope_id
from tests.node.channels.strategies import prop

P1, P2, P3 = (PeerId.from_public_key(bytes((i,)) * 32) for i in (1, 2, 3))


def make(**settings: Any) -> Delivery:
    base: dict[str, Any] = {"window": 2, "retry_s": 5.0, "max_retry_s": 20.0}
    base.update(settings)
    return Delivery(DeliverySettings(**base), rand=random.Random(7))


def env(n: int) -> bytes:
    return b"\x01" + n.to_bytes(4, "big") + bytes(507)


def item(n: int) -> bytes:
    return b"item-%03d" % n


def sent(effects: list[Any], peer: PeerId | None = None) -> list[bytes]:
    """The item ids of the envelope Transmits, in order (checking each payload)."""
    out = []
    for e in effects:
        if isinstance(e, Transmit) and e.item_id is not None and peer in (None, e.peer):
            msg = decode_net(e.payload)
            assert isinstance(msg, EnvelopeMsg)
            out.append(e.item_id)
    return out


def dials(effects: list[Any]) -> list[PeerId]:
    return [e.peer for e in effects if isinstance(e, Dial)]


def ack(d: Delivery, peer: PeerId, *ns: int, now: float = 0.0
        ) -> tuple[list[Any], list[tuple[bytes, object]], list[bytes]]:
    return d.on_ack(peer, [envelope_id(env(n)) for n in ns], now)


# -- the outbox and the window ------------------------------------------------------------


def test_unlinked_recipient_is_dialled_once_then_sent_in_order_on_link_up() -> None:
    d = make()
    assert d.add(item(1), env(1), [P1], 0.0) == [Dial(P1)]
    assert d.add(item(2), env(2), [P1], 0.1) == []  # a dial is already under way
    assert d.owed(P1) == 2
    effects = d.link_up(P1, 0.5)
    assert sent(effects) == [item(1), item(2)]
    assert [decode_net(e.payload) for e in effects] == [EnvelopeMsg(env(1)), EnvelopeMsg(env(2))]
    assert all(e.peer == P1 for e in effects)


def test_at_most_window_in_flight_and_each_ack_releases_the_next() -> None:
    d = make(window=2)
    d.link_up(P1, 0.0)
    effects = []
    for n in range(1, 6):
        effects += d.add(item(n), env(n), [P1], 0.0)
    assert sent(effects) == [item(1), item(2)]
    assert d.statistics()["in_flight"] == 2
    effects, acked, done = ack(d, P1, 1)
    assert (sent(effects), acked, done) == ([item(3)], [(item(1), None)], [item(1)])
    # An ack for a later item first still releases exactly one slot, in creation order.
    effects, _, _ = ack(d, P1, 3)
    assert sent(effects) == [item(4)]
    effects, _, _ = ack(d, P1, 2, 4)
    assert sent(effects) == [item(5)]
    assert d.owed(P1) == 1


def test_window_of_one_is_strict_stop_and_wait() -> None:
    d = make(window=1)
    d.link_up(P1, 0.0)
    assert sent(d.add(item(1), env(1), [P1], 0.0)) == [item(1)]
    assert sent(d.add(item(2), env(2), [P1], 0.0)) == []
    assert sent(ack(d, P1, 1)[0]) == [item(2)]


def test_each_recipient_gets_items_in_creation_order_and_done_needs_all() -> None:
    d = make(window=10)
    d.link_up(P1, 0.0)
    d.link_up(P2, 0.0)
    effects = []
    for n in range(1, 4):
        effects += d.add(item(n), env(n), [P2, P1], 0.0, tag="chan")
    assert sent(effects, P1) == sent(effects, P2) == [item(1), item(2), item(3)]
    _, acked, done = ack(d, P1, 1, 2, 3)
    assert acked == [(item(n), "chan") for n in (1, 2, 3)] and done == []
    assert d.items() == [(item(n), "chan", frozenset({P2})) for n in (1, 2, 3)]
    _, acked, done = ack(d, P2, 2)
    assert (acked, done) == ([(item(2), "chan")], [item(2)])
    assert [i for i, _, _ in d.items()] == [item(1), item(3)]


def test_duplicate_item_or_no_recipients_is_ignored() -> None:
    d = make()
    d.link_up(P1, 0.0)
    assert sent(d.add(item(1), env(1), [P1], 0.0)) == [item(1)]
    assert d.add(item(1), env(9), [P1, P2], 0.0) == []
    assert d.items() == [(item(1), None, frozenset({P1}))]
    assert d.add(item(2), env(2), [], 0.0) == []
    assert d.statistics()["outbox_items"] == 1


def test_jittered_counts_items_held_back_until_their_release() -> None:
    d = make()
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.add(item(2), env(2), [P1], 0.0, not_before=2.0)
    d.add(item(3), env(3), [P1, P2], 0.0, not_before=5.0)
    assert d.jittered(0.0) == 2 and d.jittered(2.0) == 1 and d.jittered(5.0) == 0
    d.cancel(item(3))
    assert d.jittered(0.0) == 1


def test_stragglers_are_items_owed_to_the_unlinked_or_owed_too_long() -> None:
    d = make()
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)  # linked: direct delivery gets the grace
    d.add(item(2), env(2), [P2], 1.0)  # P2 has no link: falls back at once
    d.add(item(3), env(3), [P2], 1.0, not_before=4.0)  # ...once jitter releases it
    d.add(item(4), env(4), [P1], 6.0)
    assert d.stragglers(1.0, 30.0) == [item(2)]
    assert d.stragglers(4.0, 30.0) == [item(2), item(3)]
    assert d.stragglers(30.0, 30.0) == [item(1), item(2), item(3)]
    ack(d, P1, 1, now=31.0)
    assert d.stragglers(36.0, 30.0) == [item(2), item(3), item(4)]
    d.link_up(P2, 37.0)
    assert d.stragglers(37.0, 30.0) == [item(2), item(3), item(4)]  # owed for 30 s and more
    assert d.stragglers(37.0, 60.0) == []


def test_statistics() -> None:
    d = make(window=1)
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1, P2], 0.0)
    d.add(item(2), env(2), [P1], 0.0)
    stats = d.statistics()
    assert (stats["outbox_items"], stats["outbox_owed"], stats["in_flight"]) == (2, 3, 1)


# -- acknowledgements ---------------------------------------------------------------------


def test_done_is_reported_once_and_stray_acks_are_ignored() -> None:
    d = make()
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    assert ack(d, P1, 1)[2] == [item(1)]
    assert ack(d, P1, 1) == ([], [], [])  # again
    assert d.on_ack(P1, [envelope_id(env(1)), envelope_id(env(1))], 0.0) == ([], [], [])
    assert ack(d, P1, 99) == ([], [], [])  # unknown
    d.add(item(2), env(2), [P1], 0.0)
    d.link_up(P2, 0.0)
    assert ack(d, P2, 2) == ([], [], [])  # not a recipient of it
    _, acked, done = d.on_ack(P1, [envelope_id(env(2))] * 2, 0.0)  # twice in one AckMsg
    assert (acked, done) == ([(item(2), None)], [item(2)])


@pytest.mark.parametrize("owed_before", [True, False])
def test_an_ack_that_leaves_nothing_owed_does_not_dial(owed_before: bool) -> None:
    d = make()
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.link_down(P1)  # the ack was already on its way
    peer = P1 if owed_before else P2
    effects, _, _ = ack(d, peer, 1, now=50.0)
    assert dials(effects) == []


def test_ack_of_an_item_still_queued_removes_it_from_the_queue() -> None:
    d = make(window=1)
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.add(item(2), env(2), [P1], 0.0)
    d.add(item(3), env(3), [P1], 0.0)
    ack(d, P1, 2)  # e.g. received over an earlier link
    assert sent(ack(d, P1, 1)[0]) == [item(3)]


def test_after_reseal_either_envelope_id_acknowledges() -> None:
    for acked_with in (1, 101):
        d = make()
        d.link_up(P1, 0.0)
        d.add(item(1), env(1), [P1], 0.0)
        d.reseal(item(1), env(101))
        assert ack(d, P1, acked_with)[2] == [item(1)]
        assert ack(d, P1, 1) == ack(d, P1, 101) == ([], [], [])


def test_retransmission_after_reseal_carries_the_new_envelope() -> None:
    d = make()
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.reseal(item(1), env(101))
    d.reseal(item(1), env(101))  # same bytes again: nothing changes
    d.reseal(item(9), env(9))  # unknown item: ignored
    (t,) = d.tick(5.0)
    assert decode_net(t.payload) == EnvelopeMsg(env(101))


def test_reseal_before_first_send_sends_the_new_envelope() -> None:
    d = make()
    d.add(item(1), env(1), [P1], 0.0)
    d.reseal(item(1), env(101))
    (t,) = d.link_up(P1, 1.0)
    assert decode_net(t.payload) == EnvelopeMsg(env(101))


def test_acks_of_a_cancelled_or_done_item_do_not_resurrect_it() -> None:
    d = make()
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1, P2], 0.0)
    d.reseal(item(1), env(101))
    assert d.cancel(item(1)) is True
    assert ack(d, P1, 1) == ack(d, P1, 101) == ([], [], [])


# -- retransmission -------------------------------------------------------------------------


def test_retransmission_backs_off_exponentially_to_the_cap() -> None:
    d = make(retry_s=5.0, max_retry_s=20.0)
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    # Waits 5, 10, 20, 20, 20 s: resent at 5, 15, 35, 55, 75.
    resent = []
    t = 0.0
    while t <= 80.0:
        if sent(d.tick(t)):
            resent.append(t)
        t = round(t + 0.5, 1)
    assert resent == [5.0, 15.0, 35.0, 55.0, 75.0]
    assert d.statistics()["retransmitted"] == 5


def test_retransmission_boundary_is_exact() -> None:
    d = make(retry_s=5.0)
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 100.0)
    assert d.tick(104.999) == []
    (t,) = d.tick(105.0)
    assert (t.peer, t.item_id, decode_net(t.payload)) == (P1, item(1), EnvelopeMsg(env(1)))
    assert d.tick(114.999) == []
    assert sent(d.tick(115.0)) == [item(1)]


def test_acked_items_are_not_retransmitted_and_others_are() -> None:
    d = make(window=3)
    d.link_up(P1, 0.0)
    for n in (1, 2, 3):
        d.add(item(n), env(n), [P1], 0.0)
    ack(d, P1, 2)
    assert sent(d.tick(5.0)) == [item(1), item(3)]


def test_no_retransmission_while_the_link_is_down() -> None:
    d = make()
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.link_down(P1)
    assert sent(d.tick(1000.0)) == []


# -- a Transmit the link could not queue ---------------------------------------------------


def test_unsent_goes_back_to_the_front_and_leaves_with_the_next_ack() -> None:
    d = make(window=2)
    d.link_up(P1, 0.0)
    for n in (1, 2, 3):
        d.add(item(n), env(n), [P1], 0.0)  # 1, 2 in flight; 3 queued
    d.unsent(P1, item(2))  # the link's send queue was full
    assert d.statistics()["in_flight"] == 1 and d.counters["unsent"] == 1
    assert sent(ack(d, P1, 1)[0]) == [item(2), item(3)]  # 2 first: it is older


def test_a_refused_burst_is_resent_in_creation_order() -> None:
    d = make(window=4)
    d.link_up(P1, 0.0)
    effects = []
    for n in (1, 2, 3, 4, 5):
        effects += d.add(item(n), env(n), [P1], 0.0)
    assert sent(effects) == [item(1), item(2), item(3), item(4)]
    for e in effects[1:]:  # the link took the first, refused the rest (in this order)
        d.unsent(P1, e.item_id)
    assert sent(ack(d, P1, 1)[0]) == [item(2), item(3), item(4), item(5)]


def test_unsent_of_what_is_not_in_flight_is_ignored() -> None:
    d = make(window=1)
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.add(item(2), env(2), [P1], 0.0)  # queued
    d.unsent(P1, item(2))
    d.unsent(P2, item(1))
    d.unsent(P1, item(9))
    assert d.counters["unsent"] == 0 and d.owed(P1) == 2
    assert sent(ack(d, P1, 1)[0]) == [item(2)]


def test_unsent_items_are_not_retransmitted_as_in_flight() -> None:
    d = make(window=2)
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.add(item(2), env(2), [P1], 0.0)
    d.unsent(P1, item(1))
    # 2 is retransmitted (it was in flight); 1 simply leaves again (it was handed back).
    assert sent(d.tick(5.0)) == [item(2), item(1)]
    assert d.statistics()["in_flight"] == 2


def test_unsent_item_leaves_with_the_next_tick_when_nothing_else_is_in_flight() -> None:
    d = make()
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.unsent(P1, item(1))
    assert sent(d.tick(1.0)) == [item(1)]


# -- links ----------------------------------------------------------------------------------


def test_link_up_resends_what_was_in_flight_first_in_creation_order() -> None:
    d = make(window=2)
    d.link_up(P1, 0.0)
    for n in range(1, 5):
        d.add(item(n), env(n), [P1], 0.0)  # 1, 2 in flight; 3, 4 queued
    ack(d, P1, 1)  # 3 goes out: in flight 2, 3; queued 4
    d.add(item(5), env(5), [P1], 0.0)
    d.link_down(P1)
    effects = d.link_up(P1, 10.0)
    assert sent(effects) == [item(2), item(3)]
    assert sent(ack(d, P1, 2, 3, now=10.0)[0]) == [item(4), item(5)]


def test_link_up_restarts_the_retry_clock() -> None:
    d = make()
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.tick(5.0)
    d.tick(15.0)  # attempts = 3
    d.link_down(P1)
    assert sent(d.link_up(P1, 16.0)) == [item(1)]
    assert d.tick(20.9) == []
    assert sent(d.tick(21.0)) == [item(1)]  # 5 s after the resend, not 20


def test_link_up_twice_resends_in_flight_items() -> None:
    d = make()
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    assert sent(d.link_up(P1, 1.0)) == [item(1)]


def test_link_down_with_queued_items_dials_again_on_tick() -> None:
    d = make(window=1)
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.add(item(2), env(2), [P1], 0.0)  # queued behind the window
    d.link_down(P1)
    assert dials(d.tick(1.0)) == [P1]


def test_link_down_with_only_in_flight_items_dials_again_on_tick() -> None:
    d = make()
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.link_down(P1)
    assert d.owed(P1) == 1
    assert dials(d.tick(1000.0)) == [P1]


# -- dialling ---------------------------------------------------------------------------------


def test_dial_is_repeated_by_tick_after_a_second_without_failures() -> None:
    d = make()
    assert dials(d.add(item(1), env(1), [P1], 0.0)) == [P1]
    assert d.tick(0.99) == []
    assert dials(d.tick(1.0)) == [P1]
    assert d.tick(1.5) == []
    assert dials(d.tick(2.0)) == [P1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dial_backoff_after_failures_doubles_with_jitter_and_caps(seed: int) -> None:
    d = Delivery(DeliverySettings(), rand=random.Random(seed))
    d.add(item(1), env(1), [P1], 0.0)
    now = 0.0
    for failures in range(1, 14):
        d.dial_failed(P1, now)
        ceiling = min(300.0, 2.0 ** (failures - 1))
        lo, hi = max(1.0, ceiling / 2), max(1.0, ceiling)
        # No dial before the lower bound of the jittered delay; one by its upper bound.
        assert d.tick(now + lo - 0.001) == []
        t, found = now + lo, None
        while t <= now + hi + 0.001:
            if dials(d.tick(t)) == [P1]:
                found = t
                break
            t += 0.01
        assert found is not None, (failures, lo, hi)
        # The Dial issued by tick re-arms the timer (from the same failure count).
        assert d.tick(found) == []
        now = found


def test_dial_delays_depend_only_on_the_seed() -> None:
    def run(seed: int) -> list[float]:
        d = Delivery(DeliverySettings(), rand=random.Random(seed))
        d.add(item(1), env(1), [P1], 0.0)
        times = []
        for f in range(6):
            d.dial_failed(P1, 0.0)
            times.append(d._dial_after[P1])
            del f
        return times

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_link_up_clears_dial_backoff() -> None:
    d = make()
    d.add(item(1), env(1), [P1], 0.0)
    for _ in range(8):
        d.dial_failed(P1, 0.0)  # next dial 64..128 s away
    d.link_up(P1, 1.0)
    d.link_down(P1)
    assert dials(d.add(item(2), env(2), [P1], 2.0)) == [P1]


def test_each_peer_dials_on_its_own_schedule() -> None:
    d = make()
    assert sorted(dials(d.add(item(1), env(1), [P1, P2], 0.0))) == sorted([P1, P2])
    for _ in range(6):
        d.dial_failed(P2, 0.0)
    assert dials(d.tick(1.0)) == [P1]


# -- cancel and drop_recipient ----------------------------------------------------------------


def test_cancel_removes_queued_and_in_flight_items() -> None:
    d = make(window=1)
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0)
    d.add(item(2), env(2), [P1], 0.0)
    d.add(item(3), env(3), [P1], 0.0)
    assert d.cancel(item(2)) is True
    assert d.cancel(item(2)) is False
    assert d.cancel(item(1)) is True  # in flight: never retransmitted
    assert sent(d.tick(100.0)) == [item(3)]  # the freed window takes the next one
    assert d.owed(P1) == 1 and [i for i, _, _ in d.items()] == [item(3)]
    # The queued item moves up when the link comes back.
    d.link_down(P1)
    assert sent(d.link_up(P1, 101.0)) == [item(3)]


def test_drop_recipient_finishes_items_it_was_the_last_for() -> None:
    d = make(window=1)
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0, tag="a")  # in flight to P1
    d.add(item(2), env(2), [P1, P2], 0.0, tag="b")  # queued for P1, dialling P2
    d.add(item(3), env(3), [P1], 0.0, tag="c")
    ack(d, P2, 2)
    assert sorted(d.drop_recipient(P1)) == [item(1), item(2), item(3)]
    assert d.items() == [] and d.owed(P1) == 0


def test_drop_recipient_keeps_items_others_still_owe() -> None:
    d = make()
    d.add(item(1), env(1), [P1, P2], 0.0)
    assert d.drop_recipient(P1) == []
    assert d.items() == [(item(1), None, frozenset({P2}))]
    assert P1 not in dials(d.tick(1000.0))
    assert d.drop_recipient(P3) == []


# -- inbound --------------------------------------------------------------------------------


def test_inbound_duplicates_are_detected_only_after_remember() -> None:
    d = make()
    assert d.on_envelope(P1, env(1), 0.0) == Inbound.PROCESS
    assert d.on_envelope(P1, env(1), 0.0) == Inbound.PROCESS  # not processed yet
    d.remember(envelope_id(env(1)))
    assert d.on_envelope(P2, env(1), 0.0) == Inbound.DUPLICATE
    assert d.on_envelope(P2, env(2), 0.0) == Inbound.PROCESS
    assert d.counters["duplicate"] == 1
    # A duplicate is acknowledged again (the sender's ack was lost).
    (t,) = d.take_acks()
    assert (t.peer, decode_net(t.payload)) == (P2, AckMsg((envelope_id(env(1)),)))


def test_remembered_ids_are_bounded_oldest_first() -> None:
    d = make(seen_capacity=3)
    for n in range(1, 5):
        d.remember(envelope_id(env(n)))
    assert d.on_envelope(P1, env(1), 0.0) == Inbound.PROCESS
    assert [d.on_envelope(P1, env(n), 0.0) for n in (2, 3, 4)] == [Inbound.DUPLICATE] * 3
    # Remembering again refreshes: 2 becomes the newest, so 3 is the next to go.
    d.remember(envelope_id(env(2)))
    d.remember(envelope_id(env(5)))
    assert d.on_envelope(P1, env(3), 0.0) == Inbound.PROCESS
    assert d.on_envelope(P1, env(2), 0.0) == Inbound.DUPLICATE


def test_inbound_rate_limit_burst_then_refill() -> None:
    d = make(inbound_rate=10.0, inbound_burst=5.0)
    assert [d.on_envelope(P1, env(n), 0.0) for n in range(5)] == [Inbound.PROCESS] * 5
    assert d.on_envelope(P1, env(5), 0.0) == Inbound.RATE_LIMITED
    assert d.on_envelope(P2, env(5), 0.0) == Inbound.PROCESS  # per link
    assert d.on_envelope(P1, env(6), 0.05) == Inbound.RATE_LIMITED  # half a token
    assert d.on_envelope(P1, env(6), 0.1) == Inbound.PROCESS  # one token back
    assert d.on_envelope(P1, env(7), 0.1) == Inbound.RATE_LIMITED
    # Refills up to the burst, not beyond.
    assert [d.on_envelope(P1, env(n), 100.0) for n in range(6)] == [Inbound.PROCESS] * 5 + [
        Inbound.RATE_LIMITED]
    assert d.counters["rate_limited"] == 4


def test_rate_limited_duplicates_are_not_acknowledged() -> None:
    d = make(inbound_rate=1.0, inbound_burst=1.0)
    d.remember(envelope_id(env(1)))
    assert d.on_envelope(P1, env(1), 0.0) == Inbound.DUPLICATE
    assert d.on_envelope(P1, env(1), 0.0) == Inbound.RATE_LIMITED
    assert len(d.take_acks()) == 1


def test_take_acks_batches_at_max_ack_ids_per_peer_in_order() -> None:
    d = make()
    ids = [i.to_bytes(20, "big") for i in range(2 * MAX_ACK_IDS + 5)]
    for i in ids:
        d.acknowledge(P1, i)
    d.acknowledge(P2, ids[0])
    effects = d.take_acks()
    by_peer: dict[PeerId, list[AckMsg]] = {}
    for t in effects:
        assert isinstance(t, Transmit) and t.item_id is None
        msg = decode_net(t.payload)
        assert isinstance(msg, AckMsg)
        by_peer.setdefault(t.peer, []).append(msg)
    assert [len(m.ids) for m in by_peer[P1]] == [MAX_ACK_IDS, MAX_ACK_IDS, 5]
    assert [i for m in by_peer[P1] for i in m.ids] == ids
    assert by_peer[P2] == [AckMsg((ids[0],))]
    assert d.take_acks() == []


def test_take_acks_exactly_max_is_one_message() -> None:
    d = make()
    for i in range(MAX_ACK_IDS):
        d.acknowledge(P1, i.to_bytes(20, "big"))
    (t,) = d.take_acks()
    assert len(decode_net(t.payload).ids) == MAX_ACK_IDS  # type: ignore[union-attr]


# -- a model-checked random run -------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sets(st.sampled_from([0, 1, 2]), min_size=1)),
        st.tuples(st.just("ack"), st.integers(0, 2), st.integers(0, 30)),
        st.tuples(st.just("up"), st.integers(0, 2)),
        st.tuples(st.just("down"), st.integers(0, 2)),
        st.tuples(st.just("tick"), st.floats(0.1, 30.0)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
        st.tuples(st.just("reseal"), st.integers(0, 30)),
    ),
    max_size=60,
)


@prop(150)
@given(ops, st.integers(1, 4))
def test_random_runs_keep_order_window_and_deliver_everything(script: list[Any],
                                                              window: int) -> None:
    """Against a model: per peer, every envelope sent is the oldest item it owes that is not
    yet sent on this link (or a resend); never more than ``window`` distinct items out
    between acks; each item is reported done once; with links up and acks flowing, the
    outbox drains."""
    peers = [P1, P2, P3]
    d = Delivery(DeliverySettings(window=window, retry_s=1.0, max_retry_s=4.0),
                 rand=random.Random(1))
    now = 0.0
    created: list[bytes] = []
    envelopes: dict[bytes, bytes] = {}
    owed: dict[PeerId, set[bytes]] = {p: set() for p in peers}
    on_link: dict[PeerId, set[bytes]] = {p: set() for p in peers}  # sent since link_up
    done: list[bytes] = []
    linked: set[PeerId] = set()
    counter = 0

    def check(effects: list[Any]) -> None:
        for e in effects:
            if isinstance(e, Dial):
                # (Not checked: that the peer is owed something; see the xfail above.)
                assert e.peer not in linked
                continue
            assert e.peer in linked and e.item_id in owed[e.peer]
            assert decode_net(e.payload) == EnvelopeMsg(envelopes[e.item_id])
            if e.item_id not in on_link[e.peer]:
                older = [i for i in created if i in owed[e.peer] and i not in on_link[e.peer]]
                assert older[0] == e.item_id  # the oldest not yet sent
                on_link[e.peer].add(e.item_id)
            assert len(on_link[e.peer] & owed[e.peer]) <= window

    def do_ack(p: PeerId, iid: bytes) -> None:
        effects, acked, fin = d.on_ack(p, [envelope_id(envelopes[iid])], now)
        if iid in owed[p]:
            assert acked == [(iid, None)]
            owed[p].discard(iid)
            on_link[p].discard(iid)
            if not any(iid in owed[q] for q in peers):
                assert fin == [iid]
        else:
            assert acked == [] and fin == []
        done.extend(fin)
        check(effects)

    for op in script:
        kind = op[0]
        if kind == "add":
            counter += 1
            iid = item(counter)
            created.append(iid)
            envelopes[iid] = env(counter)
            rcpt = [peers[i] for i in op[1]]
            for p in rcpt:
                owed[p].add(iid)
            check(d.add(iid, envelopes[iid], rcpt, now))
        elif kind == "ack":
            p, n = peers[op[1]], op[2]
            if n < len(created) and created[n] in on_link[p]:  # a receiver acks what it got
                do_ack(p, created[n])
        elif kind == "up":
            p = peers[op[1]]
            linked.add(p)
            on_link[p] = set()
            check(d.link_up(p, now))
        elif kind == "down":
            linked.discard(peers[op[1]])
            d.link_down(peers[op[1]])
        elif kind == "tick":
            now += op[1]
            check(d.tick(now))
        elif kind == "cancel" and op[1] < len(created):
            iid = created[op[1]]
            if d.cancel(iid):
                for p in peers:
                    owed[p].discard(iid)
                    on_link[p].discard(iid)
        elif kind == "reseal" and op[1] < len(created):
            iid = created[op[1]]
            counter += 1
            envelopes[iid] = env(counter)
            d.reseal(iid, envelopes[iid])
        for p in peers:
            assert d.owed(p) == len(owed[p])

    # Drain: every link up, the receivers acknowledge whatever arrives.
    for p in peers:
        linked.add(p)
        on_link[p] = set()
        check(d.link_up(p, now))
    for _ in range(500):
        if not any(on_link[p] & owed[p] for p in peers):
            break
        for p in peers:
            for iid in sorted(on_link[p] & owed[p], key=created.index):
                do_ack(p, iid)
    assert all(not owed[p] for p in peers) and d.items() == []
    assert len(done) == len(set(done))


# -- send jitter ------------------------------------------------------------------------------


def test_a_jittered_item_waits_and_later_items_pass_it() -> None:
    d = make(window=8)
    d.link_up(P1, 0.0)
    assert sent(d.add(item(1), env(1), [P1], 0.0, not_before=0.5)) == []
    assert d.next_release() == 0.5
    assert sent(d.add(item(2), env(2), [P1], 0.1)) == [item(2)]  # a commit: not held
    assert d.owed(P1) == 2
    assert sent(d.tick(0.4)) == []
    assert sent(d.tick(0.5)) == [item(1)]
    assert d.next_release() is None


def test_jittered_items_leave_in_creation_order() -> None:
    d = make(window=8)
    d.link_up(P1, 0.0)
    d.add(item(1), env(1), [P1], 0.0, not_before=0.3)
    d.add(item(2), env(2), [P1], 0.0, not_before=0.3)
    d.add(item(3), env(3), [P1], 0.0, not_before=0.6)
    assert sent(d.tick(1.0)) == [item(1), item(2), item(3)]


def test_a_cancelled_or_dropped_jittered_item_is_forgotten() -> None:
    d = make(window=8)
    d.link_up(P1, 0.0)
    d.link_up(P2, 0.0)
    d.add(item(1), env(1), [P1], 0.0, not_before=0.5)
    d.add(item(2), env(2), [P2], 0.0, not_before=0.5)
    assert d.cancel(item(1))
    assert d.drop_recipient(P2) == [item(2)]
    assert d.next_release() is None and d.owed(P1) == d.owed(P2) == 0
    assert sent(d.tick(1.0)) == []


def test_a_jittered_item_for_an_unlinked_peer_dials_now_and_waits_its_time() -> None:
    d = make(window=8)
    assert dials(d.add(item(1), env(1), [P1], 0.0, not_before=2.0)) == [P1]
    assert sent(d.link_up(P1, 1.0)) == []
    assert sent(d.tick(2.0)) == [item(1)]
