from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.core.backoff import backoff_delay


def test_zero_failures_means_now() -> None:
    assert backoff_delay(0, uniform=lambda: 0.7) == 0.0


def test_doubles_then_caps() -> None:
    top = [backoff_delay(n, base_s=1.0, cap_s=60.0, uniform=lambda: 1.0) for n in range(1, 10)]
    assert top[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0] and top[6:] == [60.0, 60.0, 60.0]


@given(st.integers(1, 10_000), st.floats(0.0, 0.999999))
def test_jitter_stays_within_half_to_full(failures: int, draw: float) -> None:
    ceiling = backoff_delay(failures, uniform=lambda: 1.0)
    delay = backoff_delay(failures, uniform=lambda: draw)
    assert ceiling / 2 <= delay <= ceiling <= 300.0
