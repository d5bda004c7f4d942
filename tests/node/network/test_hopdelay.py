"""Per-hop relay delay (node/network/hopdelay.py) on a fake clock."""

from __future__ import annotations

import random
import statistics

import pytest

from node.core.identity import PeerId
from node.network.hopdelay import HopDelay, HopDelaySettings

P1, P2 = (PeerId.from_public_key(bytes((i,)) * 32) for i in (1, 2))


def make(seed: int = 1, **kw: float) -> HopDelay:
    return HopDelay(HopDelaySettings(**kw), random.Random(seed))  # type: ignore[arg-type]


def test_frames_wait_an_exponential_time_with_the_configured_mean() -> None:
    d = make()
    waits = []
    for i in range(4000):
        now = i * 10.0  # far apart: no frame waits behind another
        assert d.hold(P1, b"%d" % i, now)
        at = d.next_at()
        assert at is not None and now <= at <= now + 0.5
        waits.append(at - now)
        assert d.due(at - 1e-9) == [] and d.due(at) == [(P1, b"%d" % i)]
    assert 0.045 < statistics.mean(waits) < 0.055  # mean 50 ms (the 0.5 s cut is negligible)
    assert 0.030 < statistics.median(waits) < 0.040  # ln 2 x 50 ms = 34.7 ms


def test_frames_to_one_peer_leave_in_order_others_interleave() -> None:
    d = make(seed=3)
    for i in range(200):
        d.hold(P1 if i % 2 else P2, b"%03d" % i, i * 0.001)
    out = d.due(10.0)
    assert len(out) == 200 and len(d) == 0 and d.next_at() is None
    assert [f for p, f in out if p == P1] == [b"%03d" % i for i in range(1, 200, 2)]
    assert [f for p, f in out if p == P2] == [b"%03d" % i for i in range(0, 200, 2)]
    assert [p for p, _ in out] != [P2, P1] * 100  # released by time, not in arrival order


def test_what_is_held_is_bounded() -> None:
    d = make(max_held=3)
    assert all(d.hold(P1, b"x", 0.0) for _ in range(3))
    assert not d.hold(P1, b"y", 0.0)  # the caller sends it now
    assert d.counters == {"held": 3, "sent_undelayed": 1}
    assert len(d.due(1.0)) == 3


def test_settings_are_checked() -> None:
    for bad in ({"mean_s": 0.0}, {"mean_s": 1.0, "max_delay_s": 0.5}, {"max_held": 0}):
        with pytest.raises(ValueError):
            HopDelaySettings(**bad)  # type: ignore[arg-type]
