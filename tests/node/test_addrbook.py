"""Address-book bounds as a pure function: age, per source network, total, never linked."""

from __future__ import annotations

from node.core.identity import Identity
from node.core.multiaddr import Multiaddr
from node.storage.addrbook import DAY, AddressBookLimits, entry_source, to_forget
from node.storage.base import PeerEntry

NOW = 1_900_000_000.0


def _entry(addr: str, *, seen_days_ago: float | None = 0.5, failures: int = 0,
           added_days_ago: float = 1.0) -> PeerEntry:
    return PeerEntry(
        Identity.generate().peer_id, (Multiaddr.parse(addr),),
        None if seen_days_ago is None else NOW - seen_days_ago * DAY, failures,
        None, NOW - added_days_ago * DAY,
    )


def test_entry_source() -> None:
    assert entry_source(_entry("/ip4/10.1.2.3/tcp/1")) == "10.1.2.0/24"
    assert entry_source(_entry("/ip6/2001:db8:1:2::1/tcp/1")) == "2001:db8:1::/48"
    assert entry_source(_entry("/dns4/a.b.example.org/tcp/1")) == "example.org"


def test_old_and_failing_entries_go() -> None:
    fresh = _entry("/ip4/10.0.0.1/tcp/1")
    old = _entry("/ip4/10.0.0.2/tcp/1", seen_days_ago=31)
    never_seen_old = _entry("/ip4/10.0.0.3/tcp/1", seen_days_ago=None, added_days_ago=31)
    failing = _entry("/ip4/10.0.0.4/tcp/1", seen_days_ago=2, failures=10)
    failing_recent = _entry("/ip4/10.0.0.5/tcp/1", seen_days_ago=0.5, failures=10)
    gone = to_forget([fresh, old, never_seen_old, failing, failing_recent], NOW)
    assert set(gone) == {old.peer_id, never_seen_old.peer_id, failing.peer_id}


def test_per_source_and_total_bounds_drop_the_stalest() -> None:
    limits = AddressBookLimits(max_entries=5, max_per_prefix=3)
    crowd = [_entry(f"/ip4/10.0.0.{i}/tcp/1", seen_days_ago=i / 10) for i in range(1, 7)]
    others = [_entry(f"/ip4/10.0.{i}.1/tcp/1", seen_days_ago=i) for i in range(1, 4)]
    gone = set(to_forget(crowd + others, NOW, limits))
    # The three least recently seen of the crowded /24, then the stalest overall.
    assert {e.peer_id for e in crowd[3:]} <= gone
    assert others[2].peer_id in gone
    assert len(crowd) + len(others) - len(gone) == 5


def test_linked_peers_are_never_forgotten() -> None:
    limits = AddressBookLimits(max_entries=1, max_per_prefix=1)
    a = _entry("/ip4/10.0.0.1/tcp/1", seen_days_ago=40)
    b = _entry("/ip4/10.0.0.2/tcp/1")
    gone = to_forget([a, b], NOW, limits, keep=frozenset({a.peer_id}))
    assert gone == [b.peer_id]


def test_within_bounds_nothing_goes() -> None:
    entries = [_entry(f"/ip4/10.0.{i}.1/tcp/1") for i in range(50)]
    assert to_forget(entries, NOW) == []
