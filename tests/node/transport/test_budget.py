"""Pending-handshake budgets and the link trim, as pure functions (fake clock)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from node.core.identity import Identity, PeerId
from node.transport.budget import PendingBudget, choose_victim, source_prefix


def test_source_prefix() -> None:
    assert source_prefix("10.1.2.3") == "10.1.2.0/24"
    assert source_prefix("10.1.2.3", v4=32) == "10.1.2.3/32"
    assert source_prefix("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert source_prefix("::ffff:10.1.2.3") == "10.1.2.0/24"
    assert source_prefix("fe80::1%eth0") == "fe80::/64"
    assert source_prefix("?") == "?"


def _budget(total: int = 4, per_ip: int = 2, per_prefix: int = 3) -> PendingBudget:
    return PendingBudget(total=total, per_ip=per_ip, per_prefix=per_prefix, clock=lambda: 0.0)


def test_per_ip_and_per_prefix_limits() -> None:
    b = _budget()
    assert b.admit("10.0.0.1", "A", 1)[0] is not None
    assert b.admit("10.0.0.1", "A", 2)[0] is not None
    assert b.admit("10.0.0.1", "A", 3) == (None, None, "max_pending_per_ip")
    assert b.admit("10.0.0.2", "A", 4)[0] is not None
    assert b.admit("10.0.0.3", "A", 5) == (None, None, "max_pending_per_prefix")
    assert b.count == 3


def test_a_full_total_makes_room_for_a_less_crowded_prefix() -> None:
    b = _budget(total=4, per_ip=4, per_prefix=4)
    first = [b.admit("10.0.0.1", "A", i)[0] for i in range(4)]
    assert b.count == 4
    slot, evicted, reason = b.admit("10.9.0.1", "B", "honest")
    assert slot is not None and reason is None
    assert evicted is first[0] and evicted.released  # the oldest of the crowded prefix
    assert b.count == 4 and b.by_prefix() == {"A": 3, "B": 1}
    # Releasing an evicted slot again (its handshake task ends later) changes nothing.
    b.release(evicted)
    assert b.count == 4


def test_no_eviction_between_equally_crowded_prefixes() -> None:
    b = _budget(total=4, per_ip=4, per_prefix=4)
    for i, prefix in enumerate("ABCD"):
        b.admit(f"10.0.{i}.1", prefix, i)
    assert b.admit("10.0.9.1", "E", "x") == (None, None, "max_pending_handshakes")
    # The crowded prefix itself cannot evict its own to churn.
    b2 = _budget(total=2, per_ip=4, per_prefix=4)
    b2.admit("1.1.1.1", "A", 1)
    b2.admit("1.1.1.1", "A", 2)
    assert b2.admit("1.1.1.2", "A", 3) == (None, None, "max_pending_handshakes")


def test_release_frees_every_counter() -> None:
    b = _budget()
    slot, _, _ = b.admit("10.0.0.1", "A", 1)
    assert slot is not None
    b.release(slot)
    assert b.count == 0 and b.by_prefix() == {}
    assert b.admit("10.0.0.1", "A", 1)[0] is not None


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PendingBudget(total=0, per_ip=1, per_prefix=1)


@dataclass
class _Link:
    peer_id: PeerId
    remote: tuple[str, int]
    opened_at: float
    last_data_at: float | None


def _link(ip: str, opened: float, data: float | None = None) -> _Link:
    return _Link(Identity.generate().peer_id, (ip, 1), opened, data)


def _victim(links: list[_Link], *, protected: set[PeerId] = frozenset(),  # type: ignore[assignment]
            idle_only: bool = False) -> _Link | None:
    return choose_victim(links, protected=lambda p: p in protected,
                         prefix=lambda ip: ip.rsplit(".", 1)[0], now=100.0, idle_only=idle_only)


def test_trim_prefers_idle_then_crowded_then_oldest() -> None:
    active = _link("10.0.0.1", 0.0, data=50.0)
    lone_idle = _link("10.0.1.1", 10.0)
    crowd = [_link("10.0.2.1", 20.0), _link("10.0.2.2", 5.0), _link("10.0.2.3", 30.0)]
    links = [active, lone_idle, *crowd]
    assert _victim(links) is crowd[1]  # idle, most crowded prefix, open the longest
    assert _victim([active, lone_idle]) is lone_idle
    assert _victim([active]) is active
    assert _victim([active], idle_only=True) is None


def test_trim_never_takes_a_protected_peer() -> None:
    a, b = _link("10.0.0.1", 0.0), _link("10.0.0.2", 1.0)
    assert _victim([a, b], protected={a.peer_id}) is b
    assert _victim([a, b], protected={a.peer_id, b.peer_id}) is None
