"""Send jitter (node/network/jitter.py): distributions, order, caps and cover times."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.network.jitter import JITTER_MODES, Jitter
from tests.node.channels.strategies import prop


def test_off_never_delays_and_sends_no_cover() -> None:
    j = Jitter("off", random.Random(1))
    assert [j.release_at(t, urgent=False) for t in (0.0, 1.5, 9.0)] == [0.0, 1.5, 9.0]
    assert j.next_cover(0.0) is None and not j.cover_due(100.0)


def test_urgent_messages_are_never_delayed() -> None:
    j = Jitter("high", random.Random(1))
    assert j.release_at(3.0, urgent=True) == 3.0


@pytest.mark.parametrize("mode", ["standard", "high"])
def test_delays_are_exponential_with_the_mode_mean_and_capped(mode: str) -> None:
    # Each message is written after the previous one left, so the delays are independent.
    j = Jitter(mode, random.Random(42))
    spec = JITTER_MODES[mode]
    now, delays = 0.0, []
    for _ in range(20_000):
        release = j.release_at(now, urgent=False)
        delays.append(release - now)
        now = release + spec.max_s
    assert max(delays) <= spec.max_s and min(delays) >= 0
    # Seeded, so this is exact for a given seed; the bounds say what the figures mean.
    assert statistics.fmean(delays) == pytest.approx(spec.mean_s, rel=0.05)
    # Exponential: the median is ln 2 of the mean.
    assert statistics.median(delays) == pytest.approx(spec.mean_s * 0.693, rel=0.08)


@prop(100)
@given(st.integers(0, 2**32), st.lists(st.floats(0, 5), min_size=1, max_size=50))
def test_messages_keep_their_order(seed: int, gaps: list[float]) -> None:
    j = Jitter("standard", random.Random(seed))
    now, last = 0.0, -1.0
    for gap in gaps:
        now += gap
        release = j.release_at(now, urgent=False)
        assert release >= now and release >= last
        last = release


def test_cover_times_are_poisson_and_due_once() -> None:
    j = Jitter("high", random.Random(5))
    first = j.next_cover(0.0)
    assert first is not None and first > 0
    assert not j.cover_due(first - 1e-9)
    assert j.cover_due(first) and not j.cover_due(first)
    now, gaps, sent = first, [], 0
    while sent < 5000:
        due = j.next_cover(now)
        assert due is not None
        gaps.append(due - now)
        now = due
        assert j.cover_due(now)
        sent += 1
    assert statistics.fmean(gaps) == pytest.approx(1.0, rel=0.05)


def test_a_late_check_sends_one_cover_not_a_burst() -> None:
    j = Jitter("high", random.Random(5))
    j.next_cover(0.0)
    assert j.cover_due(1000.0)
    due = j.next_cover(1000.0)
    assert due is not None and due > 1000.0


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown jitter mode"):
        Jitter("paranoid", random.Random(1))
