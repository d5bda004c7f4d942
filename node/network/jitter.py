"""Send jitter, sans-I/O: when a message may leave, and when cover traffic is due.

A relay or a network observer sees when envelopes leave a node. Without jitter, the moment
a user presses *send* is the moment the envelope appears; with it, each message waits an
exponentially distributed time (memoryless, so the wait says nothing about how long the
message has already waited; the Loopix argument). Messages keep their order: a message never
leaves before the one written before it (receivers hold a sender's sequence gaps).

Modes (``jitter`` in the configuration):

* ``off``: nothing is delayed (the default; a LAN chat wants ~ms latency);
* ``standard``: mean 200 ms, at most 2 s;
* ``high``: mean 1 s, at most 10 s, and cover envelopes to the members of a channel at
  Poisson times (mean 1 s), sealed like real messages, so an idle node and a chatting one
  look alike to anyone who is not a member.

Commits, Welcomes and invitations are never delayed: holding a commit back only widens the
window in which another member commits on the same epoch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["JITTER_MODES", "Jitter", "JitterMode"]


@dataclass(frozen=True)
class JitterMode:
    name: str
    mean_s: float
    max_s: float
    cover_mean_s: float | None  # mean gap between cover envelopes; None: no cover traffic


JITTER_MODES: dict[str, JitterMode] = {
    "off": JitterMode("off", 0.0, 0.0, None),
    "standard": JitterMode("standard", 0.2, 2.0, None),
    "high": JitterMode("high", 1.0, 10.0, 1.0),
}


class Jitter:
    def __init__(self, mode: str, rand: random.Random) -> None:
        if mode not in JITTER_MODES:
            raise ValueError(f"unknown jitter mode {mode!r}; one of {sorted(JITTER_MODES)}")
        self.mode = JITTER_MODES[mode]
        self._rand = rand
        self._last_release = 0.0
        self._cover_due: float | None = None

    def release_at(self, now: float, *, urgent: bool) -> float:
        """When a message written at ``now`` may leave (``now`` itself when not delayed)."""
        if urgent or self.mode.mean_s <= 0:
            return now
        wait = min(self.mode.max_s, self._rand.expovariate(1.0 / self.mode.mean_s))
        # Never before an earlier message: order within a sender's sequence is kept.
        self._last_release = max(self._last_release, now + wait)
        return self._last_release

    def next_cover(self, now: float) -> float | None:
        """When the next cover envelope is due (None: this mode sends none)."""
        if self.mode.cover_mean_s is None:
            return None
        if self._cover_due is None:
            self._cover_due = now + self._rand.expovariate(1.0 / self.mode.cover_mean_s)
        return self._cover_due

    def cover_due(self, now: float) -> bool:
        """True (once per due time) when a cover envelope should go now."""
        due = self.next_cover(now)
        if due is None or now < due:
            return False
        assert self.mode.cover_mean_s is not None
        # Poisson: the next gap is drawn from now, not from the missed due time, so a node
        # that was busy does not send a burst to catch up.
        self._cover_due = now + self._rand.expovariate(1.0 / self.mode.cover_mean_s)
        return True
