"""Connection manager: listen, dial, one link per peer, budgets and trimming.

Tie-break for two links to the same peer (simultaneous dial): keep the link dialled by the
smaller PeerId (byte order), which both ends compute the same way. A new link from the same
initiator as the existing one replaces it (the old one is a stale link the peer gave up on);
we never run two dials to one PeerId at once, so only a responder ever sees that case.

Budgets, in the spirit of libp2p's resource manager (see ``node.transport.budget``), so that
an attacker holding resources cannot take the node away from honest peers:

* pending inbound handshakes: per source address, per source prefix (/24, /64) and in total;
  when the total is full, a newcomer from a less crowded prefix takes the slot of the oldest
  handshake of the most crowded prefix. Pending handshakes never count as links.
* our own dials have their own pending budget, never taken by inbound handshakes.
* links: inbound links have a budget below ``max_connections`` so outbound dials always find
  room; when a budget is full, a scored trim evicts an unprotected inbound link (never one we
  dialled, never a ``protected`` peer: routing-table peers and channel co-members), idle and
  never-active ones first, from the most crowded prefix first.

Refusals, failed handshakes and evictions are logged as one aggregated line per 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from node.core.errors import (
    DialError,
    DialTimeout,
    LimitExceeded,
    MultiaddrError,
    PeerBlocked,
    TransportError,
)
from node.core.identity import PeerId
from node.core.keys import NodeKeys
from node.core.lograte import AggregateLog
from node.core.multiaddr import Multiaddr
from node.transport.budget import PendingBudget, PendingSlot, choose_victim, source_prefix
from node.transport.link import DataHandler, Link
from node.transport.messages import CloseCode, usable_listen_addrs
from node.transport.session import Closed, Session, SessionTimeouts

__all__ = ["ConnectionManager", "LinkDown", "LinkEvent", "LinkUp", "TransportSettings"]

log = structlog.get_logger("node.transport.connections")
Protected = Callable[[PeerId], bool]

def _refuse_none(peer: PeerId) -> bool:
    return False


@dataclass(frozen=True)
class LinkUp:
    """A link was admitted (authenticated, won any duplicate tie-break)."""

    link: Link


@dataclass(frozen=True)
class LinkDown:
    """The peer's current link ended (a link replaced by a newer one gives no event)."""

    link: Link
    closed: Closed


LinkEvent = LinkUp | LinkDown

def _loopback_source(host: str) -> str | None:
    """``host`` when it is a loopback IP literal (not a name, not a wildcard), else None."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return host if ip.is_loopback else None


_FAMILIES = {"ip4": socket.AF_INET, "dns4": socket.AF_INET, "ip6": socket.AF_INET6,
             "dns6": socket.AF_INET6, "dns": socket.AF_UNSPEC}


@dataclass(frozen=True)
class TransportSettings:
    """Connection budgets. ``max_inbound_links`` defaults to three quarters of
    ``max_connections`` (the rest is kept for links we dial)."""

    max_connections: int = 64
    max_inbound_links: int | None = None
    max_pending_handshakes: int = 64
    max_pending_per_ip: int = 8
    max_pending_per_prefix: int = 16
    max_pending_dials: int = 32
    prefix_v4: int = 24
    prefix_v6: int = 64
    handshake_timeout_s: float = 10.0
    dial_timeout_s: float = 10.0
    send_queue_frames: int = 256
    link_events_queue: int = 1024
    log_window_s: float = 10.0
    timeouts: SessionTimeouts = field(default_factory=SessionTimeouts)

    @property
    def inbound_links(self) -> int:
        if self.max_inbound_links is not None:
            return min(self.max_inbound_links, self.max_connections)
        return max(1, self.max_connections - self.max_connections // 4)


class ConnectionManager:
    """Owns every link of one node. All tasks run in the node's TaskGroup.

    Received Data goes to ``deliver`` (which only enqueues, see ``node.transport.dispatch``);
    links coming and going are put on :attr:`events` (bounded) for the node to drain.
    """

    def __init__(
        self,
        keys: NodeKeys,
        settings: TransportSettings,
        task_group: asyncio.TaskGroup,
        *,
        deliver: DataHandler,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[int], bytes] = os.urandom,
        protected: Protected | None = None,
    ) -> None:
        self._keys = keys
        self._settings = settings
        self._tg = task_group
        self._deliver = deliver
        self.events: asyncio.Queue[LinkEvent] = asyncio.Queue(settings.link_events_queue)
        self._clock = clock
        self._rng = rng
        self._links: dict[PeerId, Link] = {}
        self._pending = PendingBudget(
            total=settings.max_pending_handshakes,
            per_ip=settings.max_pending_per_ip,
            per_prefix=settings.max_pending_per_prefix,
            clock=clock,
        )
        self._pending_dials = 0
        self._dials: dict[PeerId, asyncio.Future[Link]] = {}
        # Whether a peer must never be trimmed (routing-table peers, channel co-members);
        # the node wires it (``Node.protect``). Peers we dialled are never trimmed anyway.
        self.protected: Protected = protected or (lambda _peer: False)
        self._server: asyncio.Server | None = None
        self.listen_addrs: tuple[Multiaddr, ...] = ()
        # Listening on one loopback address (several nodes on one host, 127.0.0.x): dials to
        # loopback leave from it too, so that peers see one address per node (their per-address
        # handshake budgets and address books), not all of them as 127.0.0.1.
        self._dial_from: str | None = None
        # What peers are told to dial; the bound address unless the operator announces others.
        self.announce_addrs: tuple[Multiaddr, ...] = ()
        self.refused: Counter[str] = Counter()
        self.handshake_failures: Counter[str] = Counter()
        # The deny list: consulted after the handshake for inbound links, before dialling
        # (and after the handshake, for a dial without /p2p) for outbound ones.
        self.refuse: Callable[[PeerId], bool] = _refuse_none
        self.evicted: Counter[str] = Counter()
        window = settings.log_window_s
        self.refusal_log = AggregateLog(
            log, "inbound_refused", "refused {n} connections from {m} sources in the last {w} s",
            window_s=window, clock=clock,
        )
        self.failure_log = AggregateLog(
            log, "inbound_handshakes_failed",
            "{n} inbound handshakes from {m} sources failed in the last {w} s",
            level="info", window_s=window, clock=clock,
        )
        self.inbound_log = AggregateLog(
            log, "inbound_links", "{n} inbound links opened or closed, from {m} addresses, "
            "in the last {w} s", level="info", window_s=window, clock=clock,
        )
        self.eviction_log = AggregateLog(
            log, "links_evicted",
            "evicted {n} idle inbound links of {m} sources to make room in the last {w} s",
            level="info", window_s=window, clock=clock,
        )

    @property
    def local_peer_id(self) -> PeerId:
        return self._keys.identity.peer_id

    # -- listening -------------------------------------------------------------------------

    async def listen(self, addr: Multiaddr) -> Multiaddr:
        """Start accepting; returns the bound address (the real port when 0 was asked)."""
        if not addr.is_ip:
            raise MultiaddrError(f"listen needs an /ip4 or /ip6 address, got {addr}")
        host, port = addr.host_port()
        self._server = await asyncio.start_server(
            self._accept, host, port, family=_FAMILIES[addr.family], reuse_address=True
        )
        sock_host, sock_port = self._server.sockets[0].getsockname()[:2]
        bound = Multiaddr.from_host_port(sock_host, sock_port)
        self.listen_addrs = (bound,)
        self._dial_from = _loopback_source(sock_host)
        log.info("listening", addr=str(bound.with_peer_id(self.local_peer_id)))
        self._tg.create_task(self._flush_logs(), name="transport-log-flush")
        return bound

    def _aggregates(self) -> tuple[AggregateLog, ...]:
        return (self.refusal_log, self.failure_log, self.eviction_log, self.inbound_log)

    async def _flush_logs(self) -> None:
        """Write each aggregated line when its window ends, even if nothing else happens."""
        while self._server is not None:
            await asyncio.sleep(self._settings.log_window_s / 2)
            for agg in self._aggregates():
                agg.tick()

    def advertised(self) -> tuple[Multiaddr, ...]:
        return self.announce_addrs or self.listen_addrs

    def _advertised(self) -> tuple[str, ...]:
        """What our handshake payload lists: only addresses a receiver can use (no
        unspecified host such as a 0.0.0.0 bind without ``announce``, no duplicates)."""
        return usable_listen_addrs((str(a) for a in self.advertised()), self.local_peer_id)

    def _prefix(self, ip: str) -> str:
        return source_prefix(ip, self._settings.prefix_v4, self._settings.prefix_v6)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio owns the callback's task; hand the real work to our TaskGroup at once.
        peer = writer.get_extra_info("peername") or ("?", 0)
        ip = str(peer[0])
        slot, evicted, reason = self._pending.admit(ip, self._prefix(ip), writer)
        if evicted is not None:
            # The oldest handshake of the most crowded prefix makes room for a newcomer.
            self._abort_pending(evicted)
            self.refused["pending_evicted"] += 1
            self.refusal_log.record("pending_evicted", evicted.ip)
        if slot is None:
            assert reason is not None
            self.refused[reason] += 1
            self.refusal_log.record(reason, ip)
            transport = writer.transport
            if transport is not None:
                transport.abort()  # no FIN handshake to wait for, no lingering fd
            return
        self._tg.create_task(self._serve_inbound(reader, writer, (ip, int(peer[1])), slot))

    @staticmethod
    def _abort_pending(slot: PendingSlot) -> None:
        writer = slot.handle
        if isinstance(writer, asyncio.StreamWriter) and writer.transport is not None:
            writer.transport.abort()

    def _inbound_links(self) -> list[Link]:
        return [link for link in self._links.values()
                if link.direction == "inbound" and not link.closed.is_set()]

    async def _make_room(self, *, for_inbound: bool, newcomer_protected: bool) -> bool:
        """Evict one inbound link if a budget is full; False when nothing may be evicted."""
        s = self._settings
        links = self.links()
        inbound = self._inbound_links()
        full = len(links) >= s.max_connections or (
            for_inbound and len(inbound) >= s.inbound_links
        )
        if not full:
            return True
        victim = choose_victim(
            inbound,
            protected=self.protected,
            prefix=self._prefix,
            now=self._clock(),
            # An unprotected newcomer only displaces links that never sent anything; one we
            # dial, or a protected peer, displaces any unprotected inbound link.
            idle_only=for_inbound and not newcomer_protected,
        )
        if victim is None:
            return False
        self.evicted["inbound_trimmed"] += 1
        self.eviction_log.record("inbound_trimmed", victim.remote[0])
        # Forget it now, so the slot is free at once; its LinkDown is queued here (its task
        # sees it is no longer the peer's link and queues nothing).
        del self._links[victim.peer_id]
        closed = Closed(CloseCode.LIMIT_REACHED, "trimmed: connection limit reached", False)
        await self.events.put(LinkDown(victim, closed))
        self._tg.create_task(victim.close(closed.code, closed.reason))
        return True

    async def _serve_inbound(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        remote: tuple[str, int],
        slot: PendingSlot,
    ) -> None:
        link = self._new_link(reader, writer, remote, initiator=False, expected=None)
        try:
            await link.handshake(self._settings.handshake_timeout_s)
        except TransportError as exc:
            kind = type(exc).__name__
            self.handshake_failures[kind] += 1
            self.failure_log.record(kind, remote[0])
            log.debug("inbound_handshake_failed", remote=remote[0], error=str(exc), kind=kind)
            return
        finally:
            self._pending.release(slot)
        if self.refuse(link.peer_id):
            # A blocked peer may reconnect at will: counted in the aggregated line only.
            self.refused["blocked"] += 1
            self.refusal_log.record("blocked", remote[0])
            await link.close(CloseCode.NORMAL, "connection refused")
            return
        existing = self.get(link.peer_id)
        if existing is None and not await self._make_room(
            for_inbound=True, newcomer_protected=self.protected(link.peer_id)
        ):
            self.refused["max_connections"] += 1
            self.refusal_log.record("max_connections", remote[0])
            await link.close(CloseCode.LIMIT_REACHED, "connection limit reached")
            return
        await self._admit(link)

    # -- dialling --------------------------------------------------------------------------

    async def dial(self, addr: Multiaddr) -> Link:
        """Connect and authenticate; enforces the PeerId in ``addr`` when present.

        At most one dial per PeerId runs at a time: a second caller waits for the first.
        """
        if addr.peer_id == self.local_peer_id:
            raise DialError("refusing to dial ourselves")
        expected = addr.peer_id
        if expected is not None and self.refuse(expected):
            raise PeerBlocked(f"{expected} is blocked (spacepanda blocks)")
        if expected is None:
            return await self._dial(addr)
        existing = self.get(expected)
        if existing is not None:
            return existing
        running = self._dials.get(expected)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Link] = asyncio.get_running_loop().create_future()
        self._dials[expected] = future
        try:
            link = await self._dial(addr)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved here; waiters get it too
            raise
        else:
            if not future.done():
                future.set_result(link)
            return link
        finally:
            self._dials.pop(expected, None)

    async def _dial(self, addr: Multiaddr) -> Link:
        if self._pending_dials >= self._settings.max_pending_dials:
            raise LimitExceeded("too many dials in progress")
        host, port = addr.host_port()
        self._pending_dials += 1
        try:
            try:
                async with asyncio.timeout(self._settings.dial_timeout_s):
                    local = None
                    if self._dial_from is not None and _loopback_source(host) is not None:
                        local = (self._dial_from, 0)
                    reader, writer = await asyncio.open_connection(
                        host, port, family=_FAMILIES[addr.family], local_addr=local
                    )
            except TimeoutError:
                raise DialTimeout(f"connecting to {addr} timed out") from None
            except OSError as exc:
                raise DialError(f"connecting to {addr} failed: {exc.strerror or exc}") from None
            link = self._new_link(
                reader, writer, (host, port), initiator=True, expected=addr.peer_id
            )
            link.dialed_addr = str(addr.without_peer_id())
            try:
                await link.handshake(self._settings.handshake_timeout_s)
            except TransportError as exc:
                self.handshake_failures[type(exc).__name__] += 1
                raise
        finally:
            self._pending_dials -= 1
        if self.refuse(link.peer_id):
            await link.close(CloseCode.NORMAL, "connection refused")
            raise PeerBlocked(f"{addr} is {link.peer_id}, which is blocked (spacepanda blocks)")
        if self.get(link.peer_id) is None and not await self._make_room(
            for_inbound=False, newcomer_protected=True
        ):
            await link.close(CloseCode.LIMIT_REACHED, "connection limit reached")
            raise LimitExceeded("connection limit reached")
        return await self._admit(link)

    def _new_link(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        remote: tuple[str, int],
        *,
        initiator: bool,
        expected: PeerId | None,
    ) -> Link:
        session = Session(
            self._keys,
            initiator=initiator,
            now=self._clock(),
            expected_peer=expected,
            listen_addrs=self._advertised(),
            timeouts=self._settings.timeouts,
            rng=self._rng,
        )
        return Link(
            session,
            reader,
            writer,
            direction="outbound" if initiator else "inbound",
            remote=remote,
            send_queue_frames=self._settings.send_queue_frames,
            clock=self._clock,
        )

    # -- bookkeeping -----------------------------------------------------------------------

    @staticmethod
    def _keep_new(new: Link, old: Link) -> bool:
        if new.initiator_peer == old.initiator_peer:
            return True
        return new.initiator_peer < old.initiator_peer

    async def _admit(self, link: Link) -> Link:
        peer = link.peer_id
        existing = self._links.get(peer)
        if existing is not None and not existing.closed.is_set():
            if not self._keep_new(link, existing):
                await link.close(CloseCode.DUPLICATE_CONNECTION, "duplicate connection")
                return existing
            self._links[peer] = link
            await existing.close(CloseCode.DUPLICATE_CONNECTION, "replaced by a newer connection")
        self._links[peer] = link
        self._log_link("peer_connected", link, "opened", peer=str(peer),
                       direction=link.direction, remote=f"{link.remote[0]}:{link.remote[1]}")
        # Queued before the link runs, so a consumer always sees LinkUp before its LinkDown.
        await self.events.put(LinkUp(link))
        self._tg.create_task(self._run_link(link), name=f"link-{peer.short()}")
        return link

    def _log_link(self, event: str, link: Link, what: str, **fields: object) -> None:
        """Links we dialled get a line each; inbound ones come at a peer's will, so they are
        summed up once per window (a line each at debug)."""
        if link.direction == "outbound":
            log.info(event, **fields)
            return
        log.debug(event, **fields)
        self.inbound_log.record(what, link.remote[0])

    async def _run_link(self, link: Link) -> None:
        closed = await link.run(self._deliver)
        peer = link.peer_id
        if self._links.get(peer) is link:
            del self._links[peer]
            self._log_link("peer_disconnected", link, "closed", peer=str(peer),
                           code=closed.code.name, reason=closed.reason, by_peer=closed.by_peer)
            await self.events.put(LinkDown(link, closed))

    def get(self, peer_id: PeerId) -> Link | None:
        link = self._links.get(peer_id)
        return link if link is not None and not link.closed.is_set() else None

    def links(self) -> list[Link]:
        return [link for link in self._links.values() if not link.closed.is_set()]

    def connected_peers(self) -> list[PeerId]:
        return [link.peer_id for link in self.links()]

    async def disconnect(self, peer_id: PeerId, code: CloseCode, reason: str) -> bool:
        link = self._links.get(peer_id)
        if link is None or link.closed.is_set():
            return False
        await link.close(code, reason)
        return True

    async def close(self, code: CloseCode = CloseCode.SHUTDOWN, reason: str = "shutdown") -> None:
        """Stop listening and close every link with a reason."""
        for agg in self._aggregates():
            agg.flush()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        await asyncio.gather(
            *(link.close(code, reason) for link in list(self._links.values())),
            return_exceptions=True,
        )

    def statistics(self) -> dict[str, object]:
        inbound = len(self._inbound_links())
        return {
            "connections": len(self.links()),
            "inbound_links": inbound,
            "outbound_links": len(self.links()) - inbound,
            "pending_handshakes": self._pending.count,
            "pending_dials": self._pending_dials,
            "refused": dict(self.refused),
            "handshake_failures": dict(self.handshake_failures),
            "evicted": dict(self.evicted),
        }
