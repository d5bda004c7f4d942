"""Per-hop relay delay for the `high` jitter mode, sans-I/O (CHANNELS.md section 4: Loopix
and Nym delay each hop by an exponential time, mean 50 ms).

A relay that forwards an envelope the moment it arrives lets an observer of its links match
what went in with what came out by timing alone. In `high` mode the relay holds every frame
it forwards for an exponential time before sending it. Frames to one peer leave in the order
they were scheduled (a frame is never released before one scheduled earlier for the same
peer), so the gossip protocol sees no reordering on a link. What is held is bounded: past
:attr:`HopDelay.max_held` frames, new ones go at once (counted) rather than without limit.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

from node.core.identity import PeerId

__all__ = ["HopDelay", "HopDelaySettings"]


@dataclass(frozen=True)
class HopDelaySettings:
    mean_s: float = 0.05
    max_delay_s: float = 0.5  # the exponential's tail, cut: one frame never waits long
    max_held: int = 4096

    def __post_init__(self) -> None:
        if not 0 < self.mean_s <= self.max_delay_s:
            raise ValueError("hop delay needs 0 < mean_s <= max_delay_s")
        if self.max_held < 1:
            raise ValueError("max_held must be >= 1")


@dataclass
class HopDelay:
    """Frames to forward, each with the time it may leave."""

    settings: HopDelaySettings
    rand: random.Random
    counters: Counter[str] = field(default_factory=Counter)
    _heap: list[tuple[float, int, PeerId, bytes]] = field(default_factory=list)
    _last: dict[PeerId, float] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def max_held(self) -> int:
        return self.settings.max_held

    def hold(self, peer: PeerId, frame: bytes, now: float) -> bool:
        """Schedule ``frame`` for ``peer``; False when the bound is reached and the caller
        must send it now."""
        if len(self._heap) >= self.settings.max_held:
            self.counters["sent_undelayed"] += 1
            return False
        s = self.settings
        delay = min(self.rand.expovariate(1.0 / s.mean_s), s.max_delay_s)
        at = max(now + delay, self._last.get(peer, now))
        self._last[peer] = at
        heapq.heappush(self._heap, (at, next(self._seq), peer, frame))
        self.counters["held"] += 1
        return True

    def due(self, now: float) -> list[tuple[PeerId, bytes]]:
        """Frames whose time has come, in release order (per peer: scheduling order)."""
        out: list[tuple[PeerId, bytes]] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, peer, frame = heapq.heappop(self._heap)
            out.append((peer, frame))
        if not self._heap:
            self._last.clear()
        return out

    def next_at(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
