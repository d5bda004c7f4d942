"""Whole channel managers (invites, Welcomes, checks) wired in memory: every envelope and
link message is delivered at once unless its destination is offline (then it is kept, as
the outbox would, until ``drop_queued`` throws it away). Fake clock."""

from __future__ import annotations

import random
from collections.abc import Iterable

from node.channels.channel import Hold
from node.channels.manager import ChannelManager, Result
from node.core.identity import Identity, PeerId
from node.core.keys import NodeKeys

T0 = 1_800_000_000.0


class Net:
    def __init__(self, seed: int) -> None:
        self.rand = random.Random(seed)
        self.now = T0
        self.nodes: dict[PeerId, ChannelManager] = {}
        self.online: dict[PeerId, bool] = {}
        self.queued: list[tuple[PeerId, PeerId, str, bytes]] = []  # to, from, kind, bytes
        self.notices: list[tuple[PeerId, str, dict[str, object]]] = []

    def add(self, *, auto_accept: bool = True) -> ChannelManager:
        keys = NodeKeys.derive(Identity.from_seed(self.rand.randbytes(32)))
        m = ChannelManager(keys.identity, keys.envelope_private, keys.envelope_public,
                           rng=self.rand.randbytes, clock=lambda: self.now,
                           auto_accept_invites=auto_accept, display_name="n")
        self.nodes[m.me] = m
        self.online[m.me] = True
        return m

    def apply(self, src: ChannelManager, result: Result) -> None:
        for n in result.notices:
            self.notices.append((src.me, n.kind, n.data))
        for e in result.envelopes:
            for to in e.recipients:
                self.queued.append((to, src.me, "env", e.envelope))
        for to, data in result.direct:
            self.queued.append((to, src.me, "check", data))

    def flush(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            ready = [q for q in self.queued if self.online.get(q[0], False)]
            if not ready:
                return
            self.queued = [q for q in self.queued if q not in ready]
            held = []
            for to, frm, kind, data in ready:
                m = self.nodes[to]
                try:
                    if kind == "env":
                        self.apply(m, m.receive(data, frm, self.now))
                    else:
                        self.apply(m, m.on_check(frm, data, self.now))
                except Hold:
                    held.append((to, frm, kind, data))
                except Exception as exc:  # a Rejected check: dropped, like the node does
                    if type(exc).__name__ not in ("Rejected", "PayloadError"):
                        raise
            self.queued += held

    def run(self, seconds: float, step: float = 0.25) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now += step
            for m in self.nodes.values():
                if self.online[m.me]:
                    self.apply(m, m.tick(self.now))
                    self.apply(m, m.checks(self.now))
            self.flush()

    def drop_queued(self, to: PeerId) -> int:
        """Lose everything waiting for ``to`` (as if the senders' outboxes were gone)."""
        lost = [q for q in self.queued if q[0] == to]
        self.queued = [q for q in self.queued if q[0] != to]
        return len(lost)

    def states(self, cid: bytes, peers: Iterable[PeerId]) -> set[tuple[int, bytes]]:
        return {(self.nodes[p].channels[cid].epoch, self.nodes[p].channels[cid].fingerprint)
                for p in peers}
