"""Connection manager: listen, dial, one link per peer, limits.

Tie-break for two links to the same peer (simultaneous dial): keep the link dialled by the
smaller PeerId (byte order), which both ends compute the same way. A new link from the same
initiator as the existing one replaces it (the old one is a stale link the peer gave up on).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from node.core.multiaddr import Multiaddr
from node.transport.link import DataHandler, Link
from node.transport.messages import CloseCode
from node.transport.session import Closed, Session, SessionTimeouts

__all__ = ["ConnectionManager", "LinkDown", "LinkEvent", "LinkUp", "TransportSettings"]

log = structlog.get_logger("node.transport.connections")


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

_FAMILIES = {"ip4": socket.AF_INET, "dns4": socket.AF_INET, "ip6": socket.AF_INET6,
             "dns6": socket.AF_INET6, "dns": socket.AF_UNSPEC}


@dataclass(frozen=True)
class TransportSettings:
    max_connections: int = 64
    max_pending_handshakes: int = 64
    max_pending_per_ip: int = 8
    handshake_timeout_s: float = 10.0
    dial_timeout_s: float = 10.0
    send_queue_frames: int = 256
    link_events_queue: int = 1024
    timeouts: SessionTimeouts = field(default_factory=SessionTimeouts)


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
    ) -> None:
        self._keys = keys
        self._settings = settings
        self._tg = task_group
        self._deliver = deliver
        self.events: asyncio.Queue[LinkEvent] = asyncio.Queue(settings.link_events_queue)
        self._clock = clock
        self._rng = rng
        self._links: dict[PeerId, Link] = {}
        self._pending = 0
        self._pending_by_ip: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self.listen_addrs: tuple[Multiaddr, ...] = ()
        # What peers are told to dial; the bound address unless the operator announces others.
        self.announce_addrs: tuple[Multiaddr, ...] = ()
        self.refused: Counter[str] = Counter()
        self.handshake_failures: Counter[str] = Counter()
        # The deny list: consulted after the handshake for inbound links, before dialling
        # (and after the handshake, for a dial without /p2p) for outbound ones.
        self.refuse: Callable[[PeerId], bool] = _refuse_none

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
        log.info("listening", addr=str(bound.with_peer_id(self.local_peer_id)))
        return bound

    def advertised(self) -> tuple[Multiaddr, ...]:
        return self.announce_addrs or self.listen_addrs

    def _advertised(self) -> tuple[str, ...]:
        return tuple(str(a) for a in self.advertised())

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio owns the callback's task; hand the real work to our TaskGroup at once.
        peer = writer.get_extra_info("peername") or ("?", 0)
        ip = str(peer[0])
        reason = self._refusal(ip)
        if reason is not None:
            self.refused[reason] += 1
            log.warning("inbound_refused", remote=ip, reason=reason)
            writer.close()
            return
        self._pending += 1
        self._pending_by_ip[ip] += 1
        self._tg.create_task(self._serve_inbound(reader, writer, (ip, int(peer[1]))))

    def _refusal(self, ip: str) -> str | None:
        s = self._settings
        if len(self._links) + self._pending >= s.max_connections:
            return "max_connections"
        if self._pending >= s.max_pending_handshakes:
            return "max_pending_handshakes"
        if self._pending_by_ip[ip] >= s.max_pending_per_ip:
            return "max_pending_per_ip"
        return None

    async def _serve_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: tuple[str, int]
    ) -> None:
        link = self._new_link(reader, writer, remote, initiator=False, expected=None)
        try:
            await link.handshake(self._settings.handshake_timeout_s)
        except TransportError as exc:
            self.handshake_failures[type(exc).__name__] += 1
            log.info("inbound_handshake_failed", remote=remote[0], error=str(exc),
                     kind=type(exc).__name__)
            return
        finally:
            self._pending -= 1
            self._pending_by_ip[remote[0]] -= 1
            if self._pending_by_ip[remote[0]] <= 0:
                del self._pending_by_ip[remote[0]]
        if self.refuse(link.peer_id):
            self.refused["blocked"] += 1
            log.info("inbound_refused", peer=str(link.peer_id), remote=remote[0], reason="blocked")
            await link.close(CloseCode.NORMAL, "connection refused")
            return
        if len(self._links) >= self._settings.max_connections and link.peer_id not in self._links:
            self.refused["max_connections"] += 1
            await link.close(CloseCode.LIMIT_REACHED, "connection limit reached")
            return
        await self._admit(link)

    # -- dialling --------------------------------------------------------------------------

    async def dial(self, addr: Multiaddr) -> Link:
        """Connect and authenticate; enforces the PeerId in ``addr`` when present."""
        if addr.peer_id == self.local_peer_id:
            raise DialError("refusing to dial ourselves")
        if addr.peer_id is not None and self.refuse(addr.peer_id):
            raise PeerBlocked(f"{addr.peer_id} is blocked (spacepanda blocks)")
        if addr.peer_id is not None:
            existing = self._links.get(addr.peer_id)
            if existing is not None and not existing.closed.is_set():
                return existing
        if len(self._links) + self._pending >= self._settings.max_connections:
            raise LimitExceeded("connection limit reached")
        host, port = addr.host_port()
        self._pending += 1
        try:
            try:
                async with asyncio.timeout(self._settings.dial_timeout_s):
                    reader, writer = await asyncio.open_connection(
                        host, port, family=_FAMILIES[addr.family]
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
            self._pending -= 1
        if self.refuse(link.peer_id):
            await link.close(CloseCode.NORMAL, "connection refused")
            raise PeerBlocked(f"{addr} is {link.peer_id}, which is blocked (spacepanda blocks)")
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
        log.info("peer_connected", peer=str(peer), direction=link.direction,
                 remote=f"{link.remote[0]}:{link.remote[1]}")
        # Queued before the link runs, so a consumer always sees LinkUp before its LinkDown.
        await self.events.put(LinkUp(link))
        self._tg.create_task(self._run_link(link), name=f"link-{peer.short()}")
        return link

    async def _run_link(self, link: Link) -> None:
        closed = await link.run(self._deliver)
        peer = link.peer_id
        if self._links.get(peer) is link:
            del self._links[peer]
            log.info("peer_disconnected", peer=str(peer), code=closed.code.name,
                     reason=closed.reason, by_peer=closed.by_peer)
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
        return {
            "connections": len(self.links()),
            "pending_handshakes": self._pending,
            "refused": dict(self.refused),
            "handshake_failures": dict(self.handshake_failures),
        }
