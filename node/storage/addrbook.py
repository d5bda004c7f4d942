"""Address-book bounds (pure; time passed in): which entries to forget.

The address book only ever receives addresses that worked (we dialled them and the peer
proved the PeerId we expected) or that a verified DHT record named; what peers merely claim in
their handshake is never stored (PROTOCOL.md 5.3). Even so it is bounded, so no sequence of
peers can grow it (or the redial work it causes) without limit:

* **age**: an entry not seen for ``max_age_s`` (30 days) is dropped; one that has failed
  ``max_failures`` dials in a row and not been seen for ``stale_after_s`` (1 day) too;
* **per source**: at most ``max_per_prefix`` entries whose first address is in one /24 (IPv4)
  or /48 (IPv6) network, or one DNS name's domain;
* **in total**: at most ``max_entries``.

Within a bound, the stalest go first: most consecutive failures, then least recently seen.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from node.core.identity import PeerId
from node.core.prefix import source_prefix
from node.storage.base import PeerEntry

__all__ = ["AddressBookLimits", "entry_source", "to_forget"]

DAY = 86_400.0


@dataclass(frozen=True)
class AddressBookLimits:
    max_entries: int = 1024
    max_per_prefix: int = 64
    max_age_s: float = 30 * DAY
    max_failures: int = 10
    stale_after_s: float = DAY


def entry_source(entry: PeerEntry) -> str:
    """The network an entry's first address is in (what one operator can fill)."""
    if not entry.addrs:
        return "-"
    addr = entry.addrs[0]
    if addr.is_ip:
        return source_prefix(addr.host, 24, 48)
    labels = addr.host.split(".")
    return ".".join(labels[-2:])


def _last_contact(entry: PeerEntry) -> float:
    return entry.last_seen if entry.last_seen is not None else entry.added


def _staleness(entry: PeerEntry) -> tuple[int, float]:
    """Sorts the entries to forget first to the front."""
    return (-entry.failures, _last_contact(entry))


def to_forget(
    entries: Iterable[PeerEntry],
    now: float,
    limits: AddressBookLimits = AddressBookLimits(),
    *,
    keep: frozenset[PeerId] = frozenset(),
) -> list[PeerId]:
    """The PeerIds to remove so that the address book is within ``limits``.

    ``keep`` (peers linked right now) are never chosen.
    """
    forget: list[PeerId] = []
    alive: list[PeerEntry] = []
    for entry in entries:
        if entry.peer_id in keep:
            alive.append(entry)
            continue
        idle = now - _last_contact(entry)
        if idle > limits.max_age_s or (
            entry.failures >= limits.max_failures and idle > limits.stale_after_s
        ):
            forget.append(entry.peer_id)
        else:
            alive.append(entry)
    by_source: dict[str, list[PeerEntry]] = defaultdict(list)
    for entry in alive:
        by_source[entry_source(entry)].append(entry)
    survivors: list[PeerEntry] = []
    for group in by_source.values():
        group.sort(key=_staleness)
        removable = [e for e in group if e.peer_id not in keep]
        excess = len(group) - limits.max_per_prefix
        dropped = removable[: max(excess, 0)]
        forget.extend(e.peer_id for e in dropped)
        dropped_ids = {e.peer_id for e in dropped}
        survivors.extend(e for e in group if e.peer_id not in dropped_ids)
    excess = len(survivors) - limits.max_entries
    if excess > 0:
        survivors.sort(key=_staleness)
        removable = [e for e in survivors if e.peer_id not in keep]
        forget.extend(e.peer_id for e in removable[:excess])
    return forget
