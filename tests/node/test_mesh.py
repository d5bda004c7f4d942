"""Mesh policy: pure decisions about whom to dial and whom to trim."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.identity import Identity, PeerId
from node.mesh import MeshPolicy, bucket_of, plan

PEERS = [Identity.from_seed(bytes([i]) * 32).peer_id for i in range(1, 121)]
LOCAL = PEERS[0]
OTHERS = PEERS[1:]


def test_small_network_gets_a_full_mesh() -> None:
    policy = MeshPolicy(target_degree=3, full_mesh_below=16)
    decision = plan(LOCAL, connected=[], candidates=OTHERS[:9], network_size=10, policy=policy)
    assert decision.wanted == 9
    assert set(decision.dial) == set(OTHERS[:9])


def test_large_network_gets_target_degree_spread_over_buckets() -> None:
    policy = MeshPolicy(target_degree=8, full_mesh_below=16)
    decision = plan(LOCAL, connected=[], candidates=OTHERS, network_size=120, policy=policy)
    assert decision.wanted == 8 and len(decision.dial) == 8
    buckets = Counter(bucket_of(LOCAL, p) for p in decision.dial)
    available = Counter(bucket_of(LOCAL, p) for p in OTHERS)
    # As many distinct buckets as there are (up to 8): no bucket is doubled up needlessly.
    assert len(buckets) == min(8, len(available))


def test_connected_excluded_and_self_are_never_dialled() -> None:
    policy = MeshPolicy(target_degree=50, full_mesh_below=0)
    connected, excluded = OTHERS[:5], OTHERS[5:10]
    decision = plan(LOCAL, connected=connected, candidates=[LOCAL, *OTHERS[:20]],
                    network_size=100, policy=policy, excluded=excluded)
    assert set(decision.dial) == set(OTHERS[10:20])


def test_trim_above_high_watermark() -> None:
    policy = MeshPolicy(target_degree=4, full_mesh_below=0, max_connections=10)
    decision = plan(LOCAL, connected=OTHERS[:14], candidates=OTHERS, network_size=120,
                    policy=policy)
    assert decision.dial == () and len(decision.trim) == 4
    assert set(decision.trim) <= set(OTHERS[:14])


def test_dials_per_round_are_bounded() -> None:
    policy = MeshPolicy(target_degree=100, full_mesh_below=0, max_dials_per_round=5)
    decision = plan(LOCAL, connected=[], candidates=OTHERS, network_size=120, policy=policy)
    assert len(decision.dial) == 5


@settings(max_examples=100, deadline=None)
@given(st.sets(st.sampled_from(OTHERS), max_size=30), st.sets(st.sampled_from(OTHERS)),
       st.integers(1, 200), st.integers(1, 20), st.integers(0, 40))
def test_plan_invariants(connected: set[PeerId], candidates: set[PeerId], size: int,
                         degree: int, full_below: int) -> None:
    policy = MeshPolicy(target_degree=degree, full_mesh_below=full_below, max_connections=25)
    d = plan(LOCAL, connected=connected, candidates=candidates, network_size=size,
             policy=policy)
    assert not set(d.dial) & connected and LOCAL not in d.dial
    assert set(d.dial) <= candidates and len(set(d.dial)) == len(d.dial)
    assert len(connected) + len(d.dial) <= max(d.wanted, len(connected))
    assert set(d.trim) <= connected and len(connected) - len(d.trim) <= 25


def test_dials_in_progress_count_towards_the_degree() -> None:
    policy = MeshPolicy(target_degree=8, full_mesh_below=0)
    decision = plan(LOCAL, connected=OTHERS[:3], candidates=OTHERS, network_size=120,
                    policy=policy, dialing=OTHERS[3:7])
    assert len(decision.dial) == 1 and not set(decision.dial) & set(OTHERS[:7])
