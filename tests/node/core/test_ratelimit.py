"""The token bucket per source (node/core/ratelimit.py) the DHT, relays and mailboxes use."""

from __future__ import annotations

from node.core.ratelimit import RateLimiter


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    rl = RateLimiter(rate=10, burst=5, max_sources=2)
    assert all(rl.allow("a", 0.0) for _ in range(5))
    assert not rl.allow("a", 0.0)
    assert rl.allow("a", 0.1)  # one token back after 0.1 s at 10/s
    assert not rl.allow("a", 0.1)
    assert rl.allow("b", 0.1)  # another source has its own bucket
    # Idle for long: the bucket holds the burst, no more.
    assert sum(rl.allow("a", 100.0) for _ in range(10)) == 5


def test_cost_takes_several_tokens_and_a_refusal_takes_none() -> None:
    rl = RateLimiter(rate=1, burst=4)
    assert rl.allow("a", 0.0, cost=3)
    assert not rl.allow("a", 0.0, cost=2)
    assert rl.allow("a", 0.0, cost=1)
    assert not rl.allow("a", 0.0)


def test_sources_are_bounded_least_recently_used_first() -> None:
    rl = RateLimiter(rate=1, burst=1, max_sources=2)
    assert rl.allow("a", 0.0) and rl.allow("b", 0.0)
    assert not rl.allow("a", 0.0)  # "a" is now the most recently used
    assert rl.allow("c", 0.0)  # a third source pushes out "b", the least recent
    assert len(rl._buckets) == 2
    assert not rl.allow("a", 0.0)  # "a" kept its empty bucket
    assert rl.allow("b", 0.0)  # "b" starts again with a full one
