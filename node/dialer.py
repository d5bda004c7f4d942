"""Keeps the mesh: redials address-book peers and dials peers the DHT discovers.

The decisions (how many links, which peers) are :mod:`node.mesh`'s; this adapter runs them on
a timer, resolves records, dials with the expected PeerId, and backs off per peer with jitter.
Each reconnect pass also keeps the address book within its bounds
(:mod:`node.storage.addrbook`): by age, per source network and in total.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import structlog

from dht.service import DhtService
from node import mesh
from node.core.backoff import backoff_delay
from node.core.errors import SpacePandaError, TransportError
from node.core.identity import PeerId
from node.core.multiaddr import Multiaddr
from node.storage.addrbook import AddressBookLimits, to_forget
from node.storage.base import PeerEntry, Storage
from node.transport.connections import ConnectionManager
from node.transport.messages import CloseCode
from node.transport.session import Closed

__all__ = ["MeshDialer"]

log = structlog.get_logger("node.dialer")

_RECONNECT_TICK_S = 1.0
_MESH_TICK_S = 0.5
_RANDOM_WALK_EVERY_S = 30.0
# Close codes after which redialling at once is fine: the peer is done with this link but not
# with us (an idle link, a duplicate whose twin is kept, or an ordinary close).
_NO_BACKOFF = frozenset({CloseCode.NORMAL, CloseCode.IDLE_TIMEOUT, CloseCode.DUPLICATE_CONNECTION})


class MeshDialer:
    """Runs the reconnect and mesh loops of one node inside its TaskGroup."""

    def __init__(
        self,
        *,
        local: PeerId,
        connections: ConnectionManager,
        dht: DhtService,
        storage: Storage,
        policy: mesh.MeshPolicy,
        task_group: asyncio.TaskGroup,
        clock: Callable[[], float],
        wall: Callable[[], float],
        rand: random.Random,
        blocked: Callable[[PeerId], bool] = lambda peer: False,
        limits: AddressBookLimits | None = None,
    ) -> None:
        self._local = local
        self._blocked = blocked
        self.limits = limits or AddressBookLimits()
        self._conns = connections
        self._dht = dht
        self.storage = storage
        self._policy = policy
        self._tg = task_group
        self._clock = clock
        self._wall = wall
        self._random = rand
        self._next_attempt: dict[PeerId, float] = {}
        self._mesh_backoff: dict[PeerId, tuple[int, float]] = {}
        self._dialing: set[PeerId] = set()
        self._last_walk = -_RANDOM_WALK_EVERY_S
        self.mesh_dials = 0
        self.mesh_dial_failures = 0
        self.reconnect_passes = 0
        self.redials = 0
        self.forgotten = 0

    @property
    def connections(self) -> ConnectionManager:
        return self._conns

    @property
    def dht(self) -> DhtService:
        return self._dht

    def start(self) -> None:
        self._tg.create_task(self._reconnect_loop(), name="reconnect")
        self._tg.create_task(self._mesh_loop(), name="mesh")

    def connected(self, peer: PeerId) -> None:
        """A link to ``peer`` is up: its redial backoff starts over."""
        self._next_attempt.pop(peer, None)

    def link_closed(self, peer: PeerId, closed: Closed) -> None:
        """The peer closed our link. After LIMIT_REACHED, SHUTDOWN or an error it does not
        want us back at once: neither loop redials it before its backoff (PROTOCOL.md 6.3)."""
        if not closed.by_peer or closed.code in _NO_BACKOFF:
            return
        failures = self._mesh_backoff.get(peer, (0, 0.0))[0] + 1
        until = self._clock() + backoff_delay(failures, uniform=self._random.random)
        self._mesh_backoff[peer] = (failures, until)
        self._next_attempt[peer] = max(self._next_attempt.get(peer, 0.0), until)

    def backing_off(self, peer: PeerId) -> bool:
        now = self._clock()
        mesh = self._mesh_backoff.get(peer, (0, 0.0))[1]
        return self._next_attempt.get(peer, 0.0) > now or mesh > now

    def forget(self, peer: PeerId) -> None:
        self._next_attempt.pop(peer, None)
        self._mesh_backoff.pop(peer, None)

    def statistics(self) -> dict[str, int]:
        return {
            "dials": self.mesh_dials,
            "dial_failures": self.mesh_dial_failures,
            "backing_off": len(self._mesh_backoff),
            "reconnect_passes": self.reconnect_passes,
            "redials": self.redials,
            "address_book_forgotten": self.forgotten,
        }

    async def _reconnect_loop(self) -> None:
        """Redial address-book peers that are not connected, with backoff and jitter."""
        while True:
            await asyncio.sleep(_RECONNECT_TICK_S)
            try:
                await self._reconnect_once()
            except SpacePandaError as exc:
                log.warning("reconnect_pass_failed", error=str(exc))

    def network_size(self) -> int:
        known = set(self._dht.known_peers())
        known.update(self.connections.connected_peers())
        return len(known) + 1

    async def _reconnect_once(self) -> None:
        try:
            await self._reconnect_pass()
        finally:
            self.reconnect_passes += 1

    async def _prune(self, entries: list[PeerEntry]) -> list[PeerEntry]:
        """Forget what the address book's bounds leave out; returns the rest."""
        linked = frozenset(self.connections.connected_peers())
        victims = set(to_forget(entries, self._wall(), self.limits, keep=linked))
        if not victims:
            return entries
        for peer in victims:
            await self.storage.remove_peer(peer)
            self.forget(peer)
        self.forgotten += len(victims)
        log.info("address_book_pruned", forgotten=len(victims), kept=len(entries) - len(victims))
        return [e for e in entries if e.peer_id not in victims]

    async def _reconnect_pass(self) -> None:
        conns = self.connections
        now = self._clock()
        entries = await self._prune(await self.storage.list_peers())
        # Address-book peers count towards the network size too: after a restart the DHT
        # may not know anyone yet, and the address book is how we rejoin.
        wanted = self._policy.wanted_links(max(self.network_size(), len(entries) + 1))
        for entry in entries:
            if len(conns.links()) + len(self._dialing) >= wanted:
                return
            peer = entry.peer_id
            if conns.get(peer) is not None or peer in self._dialing or not entry.addrs:
                continue
            if self._blocked(peer):
                continue
            if self._next_attempt.get(peer, 0.0) > now:
                continue
            self._dialing.add(peer)
            self._tg.create_task(self._redial(peer, entry.addrs, entry.failures))

    async def _redial(self, peer: PeerId, addrs: tuple[Multiaddr, ...], failures: int) -> None:
        try:
            for addr in addrs:
                try:
                    self.redials += 1
                    await self.connections.dial(addr.with_peer_id(peer))
                    log.info("reconnected", peer=str(peer), addr=str(addr))
                    return
                except TransportError as exc:
                    log.debug("redial_failed", peer=str(peer), addr=str(addr), error=str(exc))
            entry = await self.storage.mark_failure(peer, self._wall())
            count = entry.failures if entry is not None else failures + 1
            delay = backoff_delay(count, uniform=self._random.random)
            self._next_attempt[peer] = self._clock() + delay
            log.info("redial_backoff", peer=str(peer), failures=count, retry_in_s=round(delay, 2))
        except SpacePandaError as exc:
            log.warning("redial_failed", peer=str(peer), error=str(exc))
        finally:
            self._dialing.discard(peer)

    async def _mesh_loop(self) -> None:
        """Discover peers through the DHT and dial them until the wanted degree is met."""
        while True:
            try:
                await self._mesh_once()
            except (SpacePandaError, OSError) as exc:
                log.warning("mesh_round_failed", error=str(exc))
            await asyncio.sleep(_MESH_TICK_S)

    async def _mesh_once(self) -> None:
        dht = self.dht
        if not dht.is_ready:
            return
        now = self._clock()
        candidates = set(dht.known_peers())
        connected = self.connections.connected_peers()
        wanted = self._policy.wanted_links(self.network_size())
        if len(connected) < wanted and now - self._last_walk >= _RANDOM_WALK_EVERY_S:
            self._last_walk = now
            candidates.update(await dht.random_walk())
        backing_off = {p for p, (_, until) in self._mesh_backoff.items() if until > now}
        backing_off.update(p for p in candidates if self._blocked(p))
        decision = mesh.plan(
            self._local,
            connected=connected,
            candidates=candidates,
            network_size=self.network_size(),
            policy=self._policy,
            dialing=self._dialing,
            excluded=backing_off,
        )
        for peer in decision.dial:
            self._dialing.add(peer)
            self._tg.create_task(self._mesh_dial(peer))
        for peer in decision.trim:
            await self.connections.disconnect(peer, CloseCode.LIMIT_REACHED, "trimming mesh")

    async def _mesh_dial(self, peer: PeerId) -> None:
        try:
            record = await self.dht.resolve(peer)
            if record is not None:
                for addr in record.multiaddrs():
                    try:
                        self.mesh_dials += 1
                        await self.connections.dial(addr.with_peer_id(peer))
                        self._mesh_backoff.pop(peer, None)
                        return
                    except TransportError as exc:
                        self.mesh_dial_failures += 1
                        log.debug("mesh_dial_failed", peer=str(peer), addr=str(addr),
                                  error=str(exc))
            failures = self._mesh_backoff.get(peer, (0, 0.0))[0] + 1
            delay = backoff_delay(failures, uniform=self._random.random)
            self._mesh_backoff[peer] = (failures, self._clock() + delay)
        except SpacePandaError as exc:
            log.info("mesh_dial_aborted", peer=str(peer), error=str(exc))
        finally:
            self._dialing.discard(peer)
