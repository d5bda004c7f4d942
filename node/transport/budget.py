"""Connection budgets (pure; time passed in): pending inbound handshakes and the link trim.

Pending handshakes are the cheapest thing to hold for an attacker (a TCP connect, then
silence), so they get their own budget, separate from links: at most ``per_ip`` from one
address, ``per_prefix`` from one /24 (IPv4) or /64 (IPv6), ``total`` overall. A full total
does not lock newcomers out: one from a prefix holding fewer slots than the most crowded
prefix takes the slot of that prefix's oldest handshake. So an attacker with few prefixes
cannot starve peers from other prefixes, however fast it reconnects.

The link trim (:func:`choose_victim`) picks which inbound link goes when a link budget is
full: never a protected peer; idle links (no Data ever) before active ones; links from the
most crowded prefix first; then the link idle the longest.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from node.core.identity import PeerId
from node.core.prefix import source_prefix

__all__ = ["PendingBudget", "PendingSlot", "TrimCandidate", "choose_victim", "source_prefix"]


@dataclass(eq=False)
class PendingSlot:
    """One pending inbound handshake. ``handle`` is whatever closes it (the adapter's)."""

    ip: str
    prefix: str
    started: float
    seq: int
    handle: object = field(repr=False)
    released: bool = False


class PendingBudget:
    """Pending inbound handshakes: per address, per prefix, in total (see module doc)."""

    def __init__(
        self,
        *,
        total: int,
        per_ip: int,
        per_prefix: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(total, per_ip, per_prefix) < 1:
            raise ValueError("pending budgets must be at least 1")
        self.total, self.per_ip, self.per_prefix = total, per_ip, per_prefix
        self._clock = clock
        self._by_ip: Counter[str] = Counter()
        self._by_prefix: Counter[str] = Counter()
        self._slots: dict[str, list[PendingSlot]] = {}  # prefix -> slots, oldest first
        self._seq = itertools.count()
        self.count = 0

    def admit(
        self, ip: str, prefix: str, handle: object
    ) -> tuple[PendingSlot | None, PendingSlot | None, str | None]:
        """(slot, evicted, refusal reason): a slot for the newcomer, or why not.

        ``evicted`` is a slot taken away to make room (already released here); the caller
        closes its connection.
        """
        if self._by_ip[ip] >= self.per_ip:
            return None, None, "max_pending_per_ip"
        if self._by_prefix[prefix] >= self.per_prefix:
            return None, None, "max_pending_per_prefix"
        evicted: PendingSlot | None = None
        if self.count >= self.total:
            crowded = max(self._slots, key=lambda p: (len(self._slots[p]), p))
            if len(self._slots[crowded]) <= self._by_prefix[prefix] + 1:
                # Every prefix holds about as many as the newcomer's would: no one to displace.
                return None, None, "max_pending_handshakes"
            evicted = self._slots[crowded][0]
            self.release(evicted)
        slot = PendingSlot(ip, prefix, self._clock(), next(self._seq), handle)
        self._by_ip[ip] += 1
        self._by_prefix[prefix] += 1
        self._slots.setdefault(prefix, []).append(slot)
        self.count += 1
        return slot, evicted, None

    def release(self, slot: PendingSlot) -> None:
        """The handshake ended (either way) or was evicted; idempotent."""
        if slot.released:
            return
        slot.released = True
        self.count -= 1
        for counter, key in ((self._by_ip, slot.ip), (self._by_prefix, slot.prefix)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        slots = self._slots[slot.prefix]
        slots.remove(slot)
        if not slots:
            del self._slots[slot.prefix]

    def by_prefix(self) -> dict[str, int]:
        return dict(self._by_prefix)


class TrimCandidate(Protocol):
    """What the trim needs to know about a link (``node.transport.link.Link`` has it)."""

    @property
    def peer_id(self) -> PeerId: ...

    remote: tuple[str, int]
    opened_at: float
    last_data_at: float | None


T = TypeVar("T", bound=TrimCandidate)


def choose_victim(
    links: Iterable[T],
    *,
    protected: Callable[[PeerId], bool],
    prefix: Callable[[str], str],
    now: float,
    idle_only: bool,
) -> T | None:
    """The inbound link to evict, or None when none may go (see module doc)."""
    candidates = [link for link in links if not protected(link.peer_id)]
    if idle_only:
        candidates = [link for link in candidates if link.last_data_at is None]
    if not candidates:
        return None
    crowding = Counter(prefix(link.remote[0]) for link in candidates)

    def keep_score(link: T) -> tuple[bool, int, float]:
        # Lower keeps less: never active, then crowded prefix, then longest idle.
        active = link.last_data_at is not None
        last = link.last_data_at if link.last_data_at is not None else link.opened_at
        return (active, -crowding[prefix(link.remote[0])], last - now)

    return min(candidates, key=keep_score)
