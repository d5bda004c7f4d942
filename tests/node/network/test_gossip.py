"""The relay router (node/network/gossip.py), one router at a time, fed by hand on a fake clock."""

from __future__ import annotations

import random
from typing import Any

import pytest

from node.core.identity import PeerId
from node.network.gossip import Deliver, GossipRouter, GossipSettings, Send
from node.network.gossip_score import ScoreParams
from node.network.gossip_wire import (
    MAX_ITEMS,
    Graft,
    IHave,
    Item,
    IWant,
    Prune,
    Publish,
    Stem,
    Subscribe,
    Unsubscribe,
    decode_frame,
    encode_frame,
    message_id,
)

PEERS = [PeerId.from_public_key(bytes((i,)) * 32) for i in range(1, 41)]
P1, P2, P3 = PEERS[:3]


def env(n: int, size: int = 512) -> bytes:
    return b"\x01" + n.to_bytes(4, "big") + bytes(size - 5)


def make(seed: int = 1, topics: list[int] | None = None, **settings: Any) -> GossipRouter:
    return GossipRouter(GossipSettings(**settings), rng=random.Random(seed), topics=topics)


def items(effects: list[Any], peer: PeerId | None = None) -> list[Item]:
    out: list[Item] = []
    for e in effects:
        if isinstance(e, Send) and peer in (None, e.peer):
            out += decode_frame(e.payload)
    return out


def of(effects: list[Any], kind: type, peer: PeerId | None = None) -> list[Any]:
    return [x for x in items(effects, peer) if isinstance(x, kind)]


def to(effects: list[Any], kind: type) -> list[PeerId]:
    """The peers that got at least one item of ``kind``."""
    return sorted({e.peer for e in effects if isinstance(e, Send)
                   and any(isinstance(x, kind) for x in decode_frame(e.payload))})


def delivered(effects: list[Any]) -> list[bytes]:
    return [e.envelope for e in effects if isinstance(e, Deliver)]


def frame(*xs: Item) -> bytes:
    return encode_frame(list(xs))


def connect(r: GossipRouter, peers: list[PeerId], now: float = 0.0, *,
            outbound: bool = False, topics: tuple[int, ...] = (0,)) -> None:
    for p in peers:
        r.add_peer(p, now, outbound=outbound)
        r.receive(p, frame(Subscribe(topics)), now)


def meshed(n: int, seed: int = 1, **settings: Any) -> tuple[GossipRouter, list[PeerId]]:
    """A router with ``n`` subscribed peers and its mesh formed by one heartbeat."""
    r = make(seed, **settings)
    connect(r, PEERS[:n])
    r.heartbeat(1.0)
    return r, PEERS[:n]


# -- peers and subscriptions ----------------------------------------------------------------


def test_a_new_peer_is_told_our_topics() -> None:
    r = make(shards=4)
    assert items(r.add_peer(P1, 0.0)) == [Subscribe((0, 1, 2, 3))]
    assert r.add_peer(P1, 0.0) == []  # already known


def test_settings_are_checked() -> None:
    for bad in ({"d_lo": 7}, {"d_hi": 5}, {"d_out": 4}, {"shards": 0}, {"mcache_gossip": 6},
                {"max_ihave_length": 2000}, {"stem_fluff_p": 2.0}):
        with pytest.raises(ValueError):
            GossipSettings(**bad)
    with pytest.raises(ValueError):
        ScoreParams(gossip_threshold=-100.0)


def test_heartbeat_grafts_d_subscribed_peers() -> None:
    r = make()
    connect(r, PEERS[:10])
    r.add_peer(PEERS[10], 0.0)  # not subscribed: never grafted
    effects = r.heartbeat(1.0)
    grafted = to(effects, Graft)
    assert len(grafted) == 6 and PEERS[10] not in grafted
    assert sorted(r.mesh(0)) == grafted


def test_mesh_refills_below_d_lo_and_not_above() -> None:
    r, _ = meshed(10)
    mesh = list(r.mesh(0))
    for p in mesh[:2]:
        r.remove_peer(p, 2.0)
    assert to(r.heartbeat(2.0), Graft) == []  # 4 = D_lo: fine
    r.remove_peer(mesh[2], 3.0)
    assert len(to(r.heartbeat(3.0), Graft)) == 3  # back to D
    assert len(r.mesh(0)) == 6


def test_graft_accepted_and_pruned_when_oversubscribed() -> None:
    r, peers = meshed(20)
    extra = [p for p in peers if p not in r.mesh(0)]
    for p in extra[:6]:
        assert r.receive(p, frame(Graft(0)), 1.5) == []
    assert len(r.mesh(0)) == 12  # D_hi: inbound GRAFTs now get a PRUNE
    answer = r.receive(extra[6], frame(Graft(0)), 1.5)
    assert items(answer) == [Prune(0, 60)] and len(r.mesh(0)) == 12
    assert to(r.heartbeat(2.0), Prune) == [] and len(r.mesh(0)) == 12  # D_hi is not too many
    # Outbound peers may graft past D_hi; the heartbeat then prunes back to D.
    r3 = make(3)
    connect(r3, PEERS[:20], outbound=True)
    for p in PEERS[:13]:
        r3.receive(p, frame(Graft(0)), 0.5)
    assert len(r3.mesh(0)) == 13
    effects = r3.heartbeat(1.0)
    assert len(r3.mesh(0)) == 6 and len(to(effects, Prune)) == 7


def test_a_peer_joining_the_mesh_is_offered_what_was_just_forwarded() -> None:
    # Mesh peers get no IHAVE at heartbeats: a peer grafted just after a message went by
    # would never hear of it without this offer.
    r, peers = meshed(5)
    assert r.receive(peers[0], frame(Publish(0, env(1))), 1.5)
    late = PEERS[20]
    connect(r, [late], 1.6)
    assert of(r.receive(late, frame(Graft(0)), 1.7), IHave, late) == [
        IHave(0, (message_id(env(1)),))]
    other = PEERS[21]
    connect(r, [other], 1.8)
    assert of(r.heartbeat(2.0), IHave, other) == [IHave(0, (message_id(env(1)),))]
    # Nothing recent: a GRAFT is answered with nothing.
    quiet, _ = meshed(5, seed=2)
    connect(quiet, [late], 1.6)
    assert of(quiet.receive(late, frame(Graft(0)), 1.7), IHave) == []


def test_oversubscribed_mesh_keeps_outbound_quota() -> None:
    r = make(4)
    connect(r, PEERS[:2], outbound=True)
    connect(r, PEERS[2:20])
    for p in PEERS[2:14]:  # 12 inbound fill the mesh to D_hi...
        r.receive(p, frame(Graft(0)), 0.5)
    for p in PEERS[:2]:  # ...and 2 outbound go beyond it
        r.receive(p, frame(Graft(0)), 0.5)
    r.heartbeat(1.0)
    assert len(r.mesh(0)) == 6
    assert set(PEERS[:2]) <= set(r.mesh(0))  # D_out = 2 outbound kept


def test_outbound_quota_is_filled_at_heartbeat() -> None:
    r = make(5)
    connect(r, PEERS[:8])
    r.heartbeat(1.0)
    connect(r, PEERS[8:11], outbound=True)
    effects = r.heartbeat(2.0)
    assert len([p for p in to(effects, Graft) if p in PEERS[8:11]]) == 2


def test_prune_sets_a_backoff_and_early_grafts_are_penalised() -> None:
    r, peers = meshed(6)
    victim = r.mesh(0)[0]
    r.receive(victim, frame(Prune(0, 30)), 2.0)
    assert victim not in r.mesh(0)
    r.remove_peer(peers[-1], 2.0)
    for t in range(3, 31):
        assert victim not in to(r.heartbeat(float(t)), Graft)  # within its backoff
    # The peer grafting back too early gets a PRUNE and a behaviour penalty.
    assert items(r.receive(victim, frame(Graft(0)), 10.0)) == [Prune(0, 60)]
    assert r.counters["graft_in_backoff"] == 1


def test_graft_for_a_topic_we_do_not_relay_is_ignored() -> None:
    r = make(shards=2, topics=[0])
    connect(r, [P1])
    assert r.receive(P1, frame(Graft(1)), 1.0) == []
    assert r.mesh(1) == ()


def test_unsubscribe_prunes_the_mesh_and_tells_everyone() -> None:
    r, peers = meshed(8)
    mesh = set(r.mesh(0))
    effects = r.unsubscribe(0, 2.0)
    assert set(to(effects, Prune)) == mesh and to(effects, Unsubscribe) == sorted(peers)
    assert of(effects, Prune)[0] == Prune(0, 10)
    assert r.topics == () and r.unsubscribe(0, 2.0) == []
    effects = r.subscribe(0, 3.0)  # the old mesh is in its 10 s unsubscribe backoff
    assert to(effects, Subscribe) == sorted(peers) and len(to(effects, Graft)) == 2
    r.unsubscribe(0, 4.0)
    assert len(to(r.subscribe(0, 20.0), Graft)) == 6


def test_peer_unsubscribing_leaves_the_mesh() -> None:
    r, _ = meshed(8)
    p = r.mesh(0)[0]
    r.receive(p, frame(Unsubscribe((0,))), 1.5)
    assert p not in r.mesh(0)


def test_subscribers_are_the_peers_that_relay_the_topic() -> None:
    r = make(shards=2)
    connect(r, [P1, P2], topics=(0, 1))
    connect(r, [P3], topics=(1,))
    assert sorted(r.subscribers(0)) == sorted([P1, P2])
    assert sorted(r.subscribers(1)) == sorted([P1, P2, P3])
    r.receive(P1, frame(Unsubscribe((0,))), 0.5)
    r.remove_peer(P3, 0.5)
    assert r.subscribers(0) == (P2,) and sorted(r.subscribers(1)) == sorted([P1, P2])
    assert r.subscribers(7) == ()


def test_subscriptions_are_repeated_now_and_then() -> None:
    r, _ = meshed(3, resubscribe_every=5)
    hellos = [t for t in range(2, 12) if of(r.heartbeat(float(t)), Subscribe)]
    assert hellos == [5, 10]


# -- publishing and forwarding --------------------------------------------------------------


def test_publish_floods_to_every_topic_peer() -> None:
    r, peers = meshed(10)
    r.add_peer(PEERS[20], 1.0)  # not subscribed to the topic
    effects = r.publish(0, env(1), 1.5)
    assert to(effects, Publish) == sorted(peers)
    assert of(effects, Publish, P1) == [Publish(0, env(1))]
    assert delivered(effects) == []  # ours: not delivered to ourselves
    assert r.publish(0, env(1), 1.6) == []  # already published


def test_publish_refuses_bad_input_locally() -> None:
    r = make()
    for bad in (b"", b"\x02" + bytes(511), b"\x01" + bytes(600)):
        with pytest.raises(ValueError):
            r.publish(0, bad, 0.0)
    with pytest.raises(ValueError):
        r.publish(1, env(1), 0.0)


def test_without_flood_publish_our_messages_go_to_the_mesh() -> None:
    r, _ = meshed(10, flood_publish=False)
    assert to(r.publish(0, env(1), 1.5), Publish) == sorted(r.mesh(0))


def test_received_message_is_delivered_once_and_forwarded_to_the_mesh() -> None:
    r, _ = meshed(10)
    src = r.mesh(0)[0]
    effects = r.receive(src, frame(Publish(0, env(7))), 1.5)
    assert delivered(effects) == [env(7)]
    assert next(e for e in effects if isinstance(e, Deliver)).msg_id == message_id(env(7))
    assert to(effects, Publish) == sorted(p for p in r.mesh(0) if p != src)
    again = r.receive(r.mesh(0)[1], frame(Publish(0, env(7))), 1.6)
    assert again == [] and r.counters["duplicates"] == 1


def test_messages_for_other_topics_are_ignored() -> None:
    r = make(shards=2, topics=[0])
    connect(r, [P1], topics=(0, 1))
    assert r.receive(P1, frame(Publish(1, env(1))), 1.0) == []
    assert r.counters["unsubscribed_topic"] == 1


def test_seen_cache_forgets_after_its_ttl() -> None:
    r, peers = meshed(3)
    assert delivered(r.receive(peers[0], frame(Publish(0, env(1))), 1.5))
    for t in range(2, 122):
        r.heartbeat(float(t))
    assert delivered(r.receive(peers[0], frame(Publish(0, env(1))), 121.5)) == []
    r.heartbeat(122.0)
    assert delivered(r.receive(peers[0], frame(Publish(0, env(1))), 122.5)) == [env(1)]


def test_many_items_for_one_peer_are_split_into_frames() -> None:
    r, peers = meshed(1)
    n = MAX_ITEMS + 10
    msgs = [Publish(0, env(i)) for i in range(n)]
    effects = r.receive(peers[0], frame(IWant((bytes(20),))), 1.5)
    assert effects == []
    for k in range(0, n, 200):
        r.receive(peers[0], frame(*msgs[k : k + 200]), 1.5)
    ids = tuple(message_id(env(i)) for i in range(n))
    effects = r.receive(peers[0], frame(IWant(ids)), 1.6)
    sends = [e for e in effects if isinstance(e, Send)]
    assert len(sends) == 2 and len(of(effects, Publish)) == n


# -- gossip: IHAVE / IWANT ------------------------------------------------------------------


def test_gossip_advertises_the_last_three_windows_to_non_mesh_peers() -> None:
    r, peers = meshed(12)
    outside = sorted(p for p in peers if p not in r.mesh(0))
    r.receive(r.mesh(0)[0], frame(Publish(0, env(1))), 1.5)
    effects = r.heartbeat(2.0)
    assert to(effects, IHave) == outside  # 6 non-mesh peers = D_lazy
    assert of(effects, IHave, outside[0]) == [IHave(0, (message_id(env(1)),))]
    assert of(r.heartbeat(3.0), IHave) and of(r.heartbeat(4.0), IHave)
    assert of(r.heartbeat(5.0), IHave) == []  # older than 3 windows


def test_ihave_asks_for_unseen_ids_and_iwant_is_answered_from_the_cache() -> None:
    a, b = meshed(3), meshed(3, seed=2)
    ra, rb = a[0], b[0]
    ra.receive(P1, frame(Publish(0, env(1))), 1.5)
    ids = (message_id(env(1)), message_id(env(2)))
    # b hears of env(1) and env(2) from P1 (which only has env(1)); it has env(2) already.
    rb.receive(P2, frame(Publish(0, env(2))), 1.5)
    ask = rb.receive(P1, frame(IHave(0, ids)), 1.6)
    assert items(ask) == [IWant((message_id(env(1)),))]
    answer = ra.receive(P3, frame(IWant((message_id(env(1)), bytes(20)))), 1.7)
    assert items(answer) == [Publish(0, env(1))]


def test_iwant_is_answered_at_most_three_times_per_peer() -> None:
    r, peers = meshed(3)
    r.receive(peers[0], frame(Publish(0, env(1))), 1.5)
    want = frame(IWant((message_id(env(1)),)))
    answers = [len(of(r.receive(peers[1], want, 1.6), Publish)) for _ in range(5)]
    assert answers == [1, 1, 1, 0, 0]
    assert len(of(r.receive(peers[2], want, 1.6), Publish)) == 1


def test_cache_keeps_five_windows() -> None:
    r, peers = meshed(3)
    r.receive(peers[0], frame(Publish(0, env(1))), 1.5)
    want = frame(IWant((message_id(env(1)),)))
    for t in range(2, 6):
        r.heartbeat(float(t))
    assert of(r.receive(peers[1], want, 5.5), Publish)
    r.heartbeat(6.0)
    assert of(r.receive(peers[2], want, 6.5), Publish) == []


def test_broken_promise_is_penalised_and_a_kept_one_is_not() -> None:
    r, peers = meshed(4, score=ScoreParams(behaviour_threshold=0.0))
    liar, honest = peers[0], peers[1]
    r.receive(liar, frame(IHave(0, (bytes(20),))), 1.5)
    r.receive(honest, frame(IHave(0, (message_id(env(1)),))), 1.5)
    r.receive(honest, frame(Publish(0, env(1))), 2.0)
    r.heartbeat(4.0)
    assert r.counters["broken_promises"] == 0
    r.heartbeat(5.0)  # 3 s after the IWANT
    assert r.counters["broken_promises"] == 1
    liar_score, honest_score = r.score(liar), r.score(honest)
    assert liar_score is not None and honest_score is not None
    assert liar_score < 0 <= honest_score


def test_an_id_asked_of_one_peer_is_not_asked_again_at_once() -> None:
    r, peers = meshed(4)
    ids = (message_id(env(1)),)
    assert of(r.receive(peers[0], frame(IHave(0, ids)), 1.5), IWant)
    assert of(r.receive(peers[1], frame(IHave(0, ids)), 1.6), IWant) == []
    r.heartbeat(4.6)
    assert of(r.receive(peers[1], frame(IHave(0, ids)), 4.7), IWant)  # the first went unanswered


def test_ihave_flood_is_penalised_and_ends_in_the_graylist() -> None:
    r, peers = meshed(4)
    spammer = peers[0]
    bogus = [IHave(0, (bytes([i]) * 20,)) for i in range(30)]
    r.receive(spammer, frame(*bogus), 1.5)
    assert 5 <= r.counters["ihave_flood"] <= 10  # graylisted before the frame's end
    score = r.score(spammer)
    assert score is not None and score < r.settings.score.graylist_threshold
    assert r.receive(spammer, frame(Publish(0, env(1))), 1.6) == []
    assert r.counters["graylisted_frames"] >= 1


def test_iwant_flood_is_penalised() -> None:
    r, peers = meshed(2)
    ids = tuple(i.to_bytes(20, "big") for i in range(1000))
    for _ in range(5):
        r.receive(peers[0], frame(IWant(ids)), 1.5)
    assert r.counters["iwant_flood"] == 4
    score = r.score(peers[0])
    assert score is not None and score < 0
    r.heartbeat(2.0)  # the budget is per heartbeat
    before = r.counters["iwant_flood"]
    r.receive(peers[1], frame(IWant(ids)), 2.1)
    assert r.counters["iwant_flood"] == before


def test_gossip_thresholds_silence_a_low_scored_peer() -> None:
    r, peers = meshed(8)
    low = next(p for p in peers if p not in r.mesh(0))
    r.receive(low, frame(Publish(0, b"\x02" + bytes(511))), 1.5)  # invalid: P4
    score = r.score(low)
    assert score is not None and r.settings.score.graylist_threshold < score < -10
    assert r.receive(low, frame(IHave(0, (bytes(20),))), 1.6) == []  # its gossip is ignored
    r.receive(r.mesh(0)[0], frame(Publish(0, env(1))), 1.7)
    assert low not in to(r.heartbeat(2.0), IHave)  # and it gets none


# -- scores ---------------------------------------------------------------------------------


def test_invalid_envelopes_get_the_sender_graylisted() -> None:
    r, peers = meshed(6)
    bad = peers[0]
    for n, junk in enumerate([b"\x02" + bytes(511), b"\x01" + bytes(99)]):
        assert r.receive(bad, frame(Publish(0, junk)), 1.5 + n) == []
    score = r.score(bad)
    assert score is not None and score < r.settings.score.graylist_threshold
    assert r.counters["invalid"] == 2 and r.statistics()["graylisted"] == 1
    assert r.receive(bad, frame(Publish(0, env(1))), 3.0) == []  # ignored
    effects = r.heartbeat(4.0)
    assert bad not in r.mesh(0) and bad not in to(effects, Graft)
    assert bad not in to(r.publish(0, env(2), 4.5), Publish)  # below the publish threshold


def test_bad_frames_are_penalised_not_raised() -> None:
    r, peers = meshed(2)
    for junk in (b"", b"\x02\x05\x00\x00", b"\x01\xff", b"\x01\x01\x00\x00\xff\xff\xff\xff"):
        assert r.receive(peers[0], junk, 1.5) == []
    assert r.counters["bad_frames"] == 4
    score = r.score(peers[0])
    assert score is not None and score < 0


def test_first_deliveries_and_time_in_mesh_raise_a_score() -> None:
    r, _ = meshed(8)
    fast = r.mesh(0)[0]
    for i in range(10):
        r.receive(fast, frame(Publish(0, env(i))), 1.5)
    r.heartbeat(101.0)
    fast_score, idle_score = r.score(fast), r.score(r.mesh(0)[1])
    assert fast_score is not None and idle_score is not None
    assert idle_score == pytest.approx(1.0)  # 100 s in the mesh
    assert fast_score > idle_score + 9


def test_negative_peers_leave_the_mesh_at_heartbeat() -> None:
    r, _ = meshed(8, score=ScoreParams(behaviour_threshold=0.0))
    p = r.mesh(0)[0]
    r.receive(p, b"\x00", 1.5)  # one bad frame: -10
    effects = r.heartbeat(2.0)
    assert p not in r.mesh(0) and of(effects, Prune, p) == [Prune(0, 60)]


def test_scores_survive_a_reconnect_for_a_while() -> None:
    r, peers = meshed(3)
    r.receive(peers[0], frame(Publish(0, b"\x02" + bytes(511))), 1.5)
    before = r.score(peers[0])
    r.remove_peer(peers[0], 2.0)
    r.add_peer(peers[0], 3.0)
    assert before is not None and before < -10
    assert r.score(peers[0]) == pytest.approx(before, abs=0.01)
    r.remove_peer(peers[0], 4.0)
    for t in range(5, 606, 100):
        r.heartbeat(float(t))
    r.heartbeat(605.0)
    r.add_peer(peers[0], 606.0)
    assert r.score(peers[0]) == 0.0


def test_app_score_counts() -> None:
    r, peers = meshed(2)
    r.set_app_score(peers[0], 5.0, 1.5)
    assert r.score(peers[0]) == pytest.approx(5.0 + 0.005)


def test_report_invalid_penalises_the_first_deliverer_and_stops_gossip() -> None:
    r, peers = meshed(8)
    first, second = r.mesh(0)[0], r.mesh(0)[1]
    r.receive(first, frame(Publish(0, env(1))), 1.5)
    r.receive(second, frame(Publish(0, env(1))), 1.5)
    mid = message_id(env(1))
    assert r.report(mid, True, 1.6) == []
    assert r.score(first) == r.score(second)
    r.report(mid, False, 1.6)
    s1, s2 = r.score(first), r.score(second)
    assert s1 is not None and s2 is not None and s1 < -10 < 0 <= s2
    assert of(r.receive(peers[2], frame(IWant((mid,))), 1.7), Publish) == []
    assert of(r.heartbeat(2.0), IHave) == []
    assert r.report(bytes(20), False, 2.0) == [] and r.counters["report_unknown"] == 1


def test_message_rate_limit_drops_and_penalises() -> None:
    r, peers = meshed(2, message_rate=10.0, message_burst=20.0)
    burst = [Publish(0, env(i)) for i in range(30)]
    got = delivered(r.receive(peers[0], frame(*burst), 1.5))
    assert len(got) == 20 and r.counters["messages_rate_limited"] == 10
    r.heartbeat(2.0)
    assert r.counters["messages_rate_limited"] == 10


# -- the stem phase -------------------------------------------------------------------------


def test_stem_publish_goes_to_one_peer_per_epoch() -> None:
    r, _ = meshed(10)
    firsts = set()
    for i in range(20):
        effects = r.publish(0, env(i), 1.5 + i, stem=True)
        assert len(to(effects, Stem)) == 1 and to(effects, Publish) == []
        firsts.add(to(effects, Stem)[0])
    assert len(firsts) == 1
    later = {to(r.publish(0, env(100 + i), 700.0 + 700 * i, stem=True), Stem)[0]
             for i in range(8)}
    assert len(later) > 1  # a new epoch, a new stem peer


def test_embargo_fluffs_our_stem_message_when_it_is_not_seen() -> None:
    r, _ = meshed(6)
    r.publish(0, env(1), 1.5, stem=True)
    assert to(r.heartbeat(2.0), Publish) == []
    fluffs = [t for t in range(3, 8) if to(r.heartbeat(float(t)), Publish)]
    assert len(fluffs) == 1 and 3 <= fluffs[0] <= 7  # 2..5 s after publishing
    assert r.counters["embargo_fluffs"] == 1


def test_embargo_ends_when_the_message_comes_back_by_gossip() -> None:
    r, _ = meshed(6)
    r.publish(0, env(1), 1.5, stem=True)
    back = r.receive(r.mesh(0)[0], frame(Publish(0, env(1))), 1.8)
    assert delivered(back) == []  # ours
    for t in range(2, 10):
        assert of(r.heartbeat(float(t)), Publish) == []
    assert r.counters["embargo_fluffs"] == 0


def test_stem_relay_forwards_or_fluffs_never_back() -> None:
    relayed = fluffed = 0
    for seed in range(200):
        r, peers = meshed(4, seed=seed)
        effects = r.receive(peers[0], frame(Stem(0, env(seed))), 1.5)
        stem_to, pub_to = to(effects, Stem), to(effects, Publish)
        if stem_to:
            assert stem_to != [peers[0]] and len(stem_to) == 1 and not pub_to
            assert not delivered(effects)
            relayed += 1
        else:
            assert pub_to == sorted(peers) and delivered(effects) == [env(seed)]
            fluffed += 1
    assert 30 <= fluffed <= 70 and relayed + fluffed == 200  # p = 0.25


def test_stem_routes_stick_to_the_inbound_peer() -> None:
    r, peers = meshed(10, stem_fluff_p=0.0)
    by_inbound: dict[PeerId, set[PeerId]] = {}
    for i in range(40):
        src = peers[i % 4]
        effects = r.receive(src, frame(Stem(0, env(i))), 1.5)
        by_inbound.setdefault(src, set()).update(to(effects, Stem))
    assert all(len(d) == 1 for d in by_inbound.values())
    assert len(set().union(*by_inbound.values())) <= 2  # two stem peers per epoch


def test_stem_loop_is_fluffed_at_once() -> None:
    r, peers = meshed(4, stem_fluff_p=0.0)
    r.receive(peers[0], frame(Stem(0, env(1))), 1.5)
    effects = r.receive(peers[1], frame(Stem(0, env(1))), 1.6)
    assert to(effects, Publish) == sorted(peers) and r.counters["stem_loops"] == 1
    assert r.receive(peers[2], frame(Stem(0, env(1))), 1.7) == []  # seen now


def test_stem_with_no_peer_is_published_directly() -> None:
    r = make()
    assert r.publish(0, env(1), 0.0, stem=True) == []
    connect(r, [P1])
    assert to(r.publish(0, env(2), 1.0, stem=True), Stem) == [P1]
    r2 = make()
    r2.add_peer(P1, 1.0)
    assert r2.publish(0, env(3), 1.0, stem=True) == []  # nobody subscribed: nothing to send
    assert r2.statistics()["published"] == 1


def test_invalid_stem_is_penalised() -> None:
    r, peers = meshed(3)
    r.receive(peers[0], frame(Stem(0, b"\x01" + bytes(10))), 1.5)
    assert r.counters["invalid"] == 1


# -- bounds ---------------------------------------------------------------------------------


def test_peer_table_is_bounded() -> None:
    r = make(max_peers=3)
    for p in PEERS[:5]:
        r.add_peer(p, 0.0)
    assert len(r.peers()) == 3 and r.counters["peers_refused"] == 2
    assert r.receive(PEERS[4], frame(Subscribe((0,))), 0.0) == []
    assert r.counters["unknown_peer"] == 1


def test_caches_are_bounded() -> None:
    r, peers = meshed(2, seen_capacity=50, mcache_capacity=20, max_stem=5, stem_fluff_p=0.0)
    for i in range(100):
        r.receive(peers[0], frame(Publish(0, env(i))), 1.5)
    stats = r.statistics()
    assert stats["seen"] == 50 and stats["mcache"] == 20
    for i in range(100, 110):
        r.receive(peers[0], frame(Stem(0, env(i))), 1.6)
    assert r.statistics()["stem_pending"] == 5 and r.counters["embargo_evicted"] == 5


def test_same_seed_same_effects() -> None:
    def run(seed: int) -> list[Any]:
        r, peers = meshed(15, seed=seed)
        out = r.publish(0, env(1), 1.5, stem=True)
        out += r.receive(peers[3], frame(Stem(0, env(2))), 1.6)
        out += r.heartbeat(2.0)
        return out

    assert run(9) == run(9)
    assert run(9) != run(10)
