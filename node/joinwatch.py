"""Says what a DHT join is doing: a log line per bootstrap attempt and failure, a ``dht_ready``
line, and the state ``/readyz`` and ``spacepanda dht`` show.

``dht.DhtService`` joins silently; this watcher reads what it exposes (``is_ready``, its
``counters`` and its protocol's ``counters`` and ``drops``) a few times a second while joining
and once a second after. The reason for a failed attempt is what those counters moved by
during it (a timeout, a DNS failure, a peer proving another PeerId...); the next retry is the
service's backoff rule (``bootstrap_backoff_initial`` doubling up to ``bootstrap_backoff_max``,
with +-50 % jitter), given as its nominal value.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from dht.config import DhtConfig
from dht.service import DhtService

__all__ = ["FAILURE_REASONS", "JoinState", "JoinWatcher"]

log = structlog.get_logger("node.dht")

_POLL_JOINING_S = 0.1
_POLL_READY_S = 1.0

# (where, counter, reason code, what it means), most specific first. "service" is
# DhtService.counters, "rpc" and "drops" its protocol's counters and drops.
FAILURE_REASONS: tuple[tuple[str, str, str, str], ...] = (
    ("service", "dns_failures", "dns", "DNS lookup of the bootstrap host failed"),
    ("drops", "peer_id_mismatch", "peer_id_mismatch",
     "the node there proved another PeerId than the address's /p2p/ part"),
    ("drops", "bad_identify_signature", "bad_proof", "the node there sent a bad identity proof"),
    ("drops", "bad_address", "bad_address", "not an address the DHT can send to"),
    ("rpc", "icmp_errors", "unreachable", "port unreachable (nothing listening on UDP there?)"),
    ("rpc", "timeouts", "timeout", "no answer (nothing answered on UDP there, or it is slow)"),
)


@dataclass(frozen=True)
class JoinState:
    """A snapshot for ``/readyz`` and ``GET /v1/dht`` (``bootstrap``)."""

    state: str  # "bootstrap_node" | "joining" | "joined"
    addrs: tuple[str, ...]
    saved_contacts: int
    attempts: int
    failures: int
    last_error: str | None
    last_error_detail: str | None
    next_retry_in_s: float | None
    joined_after_s: float | None
    rejoins: int

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "addrs": list(self.addrs),
            "saved_contacts": self.saved_contacts,
            "attempts": self.attempts,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_error_detail": self.last_error_detail,
            "next_retry_in_s": self.next_retry_in_s,
            "joined_after_s": self.joined_after_s,
            "rejoins": self.rejoins,
        }

    def reason(self) -> str:
        """One sentence for ``/readyz``."""
        if self.state == "bootstrap_node":
            return "ready: a bootstrap node (no bootstrap addresses, no saved contacts)"
        if self.state == "joined":
            return f"ready: joined the DHT after {self.attempts} attempt(s)"
        via = _via(self.addrs, self.saved_contacts)
        if self.failures == 0:
            return f"joining the DHT through {via}: first attempt in progress"
        text = (
            f"joining the DHT through {via}: {self.failures} of {self.attempts} attempt(s) "
            f"failed, last: {self.last_error_detail}"
        )
        if self.next_retry_in_s is not None and self.attempts == self.failures:
            text += f"; next attempt in ~{self.next_retry_in_s:g} s"
        return text


def _via(addrs: Sequence[str], saved: int) -> str:
    parts = []
    if addrs:
        parts.append(", ".join(addrs) if len(addrs) <= 2 else f"{len(addrs)} bootstrap addresses")
    if saved:
        parts.append(f"{saved} saved contact(s)")
    return " and ".join(parts) or "nothing"


class JoinWatcher:
    """Run :meth:`run` in the node's TaskGroup right after ``DhtService.start``."""

    def __init__(
        self,
        dht: DhtService,
        config: DhtConfig,
        *,
        addrs: Sequence[str],
        saved_contacts: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dht = dht
        self._config = config
        self._addrs = tuple(addrs)
        self._saved = saved_contacts
        self._clock = clock
        self._started = clock()
        self._bootstrap_node = not self._addrs and not saved_contacts
        self._attempts = 0
        self._failures = 0
        self._base: dict[tuple[str, str], int] = {}
        self._last_error: str | None = None
        self._last_detail: str | None = None
        self._next_retry: float | None = None
        self._joined_after: float | None = None
        self._rejoins = 0
        self._ready_logged = False

    def _counter(self, where: str, name: str) -> int:
        if where == "service":
            source: Mapping[str, int] = self._dht.counters
        elif where == "rpc":
            source = self._dht.protocol.counters
        else:
            source = self._dht.protocol.drops
        return int(source.get(name, 0))

    def _snapshot_counters(self) -> dict[tuple[str, str], int]:
        return {(w, n): self._counter(w, n) for w, n, _, _ in FAILURE_REASONS}

    def _why(self) -> tuple[str, str]:
        for where, name, code, text in FAILURE_REASONS:
            if self._counter(where, name) > self._base.get((where, name), 0):
                return code, text
        return "no_proof", "no bootstrap node proved its identity"

    def _retry_after(self, failures: int) -> float:
        c = self._config
        return float(min(c.bootstrap_backoff_initial * 2 ** (failures - 1),
                         c.bootstrap_backoff_max))

    def poll(self) -> None:
        """Compare the service's counters with the last look; log what changed."""
        service = self._dht.counters
        attempts = int(service.get("bootstrap_attempts", 0))
        failures = int(service.get("bootstrap_failures", 0))
        # A failure is counted before the next attempt starts: report failures first.
        while self._failures < failures:
            self._failures += 1
            code, detail = self._why()
            self._last_error, self._last_detail = code, detail
            self._next_retry = self._retry_after(self._failures)
            log.warning("dht_bootstrap_failed", attempt=self._failures, addrs=list(self._addrs),
                        saved_contacts=self._saved, reason=code, detail=detail,
                        next_retry_in_s=self._next_retry, jitter="+-50%")
        while self._attempts < attempts:
            self._attempts += 1
            self._base = self._snapshot_counters()
            log.info("dht_bootstrap_attempt", attempt=self._attempts, addrs=list(self._addrs),
                     saved_contacts=self._saved)
        rejoins = int(service.get("rejoins", 0))
        if rejoins > self._rejoins:
            self._rejoins = rejoins
            log.warning("dht_rejoining", rejoins=rejoins, addrs=list(self._addrs),
                        detail="the routing table emptied; joining again")
        if self._dht.is_ready and not self._ready_logged:
            self._ready_logged = True
            self._joined_after = round(self._clock() - self._started, 3)
            self._next_retry = None
            contacts = len(self._dht.known_peers())
            if self._bootstrap_node:
                log.info("dht_ready", role="bootstrap_node", contacts=contacts)
            else:
                log.info("dht_ready", role="joined", attempts=self._attempts,
                         failures=self._failures, contacts=contacts,
                         after_s=self._joined_after)

    async def run(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(_POLL_READY_S if self._ready_logged else _POLL_JOINING_S)

    def state(self) -> JoinState:
        if self._bootstrap_node:
            state = "bootstrap_node"
        elif self._dht.is_ready:
            state = "joined"
        else:
            state = "joining"
        return JoinState(
            state=state,
            addrs=self._addrs,
            saved_contacts=self._saved,
            attempts=self._attempts,
            failures=self._failures,
            last_error=self._last_error,
            last_error_detail=self._last_detail,
            next_retry_in_s=None if state != "joining" else self._next_retry,
            joined_after_s=self._joined_after,
            rejoins=self._rejoins,
        )
