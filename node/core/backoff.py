"""Reconnect backoff: exponential with jitter (pure; the random draw is injected)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["backoff_delay"]


def backoff_delay(
    failures: int,
    *,
    base_s: float = 1.0,
    cap_s: float = 300.0,
    uniform: Callable[[], float],
) -> float:
    """Delay before the next attempt after ``failures`` consecutive failures.

    ``base * 2**(failures-1)`` capped at ``cap``, then scaled into ``[0.5, 1.0)`` of itself so
    that peers which failed together do not retry in lockstep ("equal jitter"). Zero failures
    means try now.
    """
    if failures <= 0:
        return 0.0
    ceiling = min(cap_s, base_s * (2.0 ** min(failures - 1, 32)))
    return ceiling * (0.5 + 0.5 * uniform())
