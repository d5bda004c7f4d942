"""The running node: wires storage, transport and the admin API, and owns the TaskGroup.

``Node`` implements ``api.control.NodeControl``. ``run(config)`` is what ``spacepanda run`` calls:
it opens the data dir, database and API, runs until SIGTERM/SIGINT, and shuts down with a reason
sent to every peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog

from api.control import BlockInfo, NodeInfo, PeerInfo, Readiness, record_json
from dht.config import DhtConfig
from dht.errors import DhtError
from dht.persistence import DhtStore
from dht.service import Bootstrap, DhtService
from node import mesh
from node.buildinfo import commit, version
from node.channel_service import ChannelService, ChannelsStopped
from node.config import NodeConfig
from node.core.errors import ConfigError, MultiaddrError, SpacePandaError, TransportError
from node.core.identity import PeerId
from node.core.keys import NodeKeys
from node.core.multiaddr import Multiaddr
from node.dialer import MeshDialer
from node.joinwatch import JoinWatcher
from node.loopguard import install_loop_guard
from node.mailbox_service import MailboxService
from node.metrics import Telemetry, TimedDhtService
from node.netif import IPAddress, expand_listen, interface_addresses
from node.netview import NetworkStopped, network_view
from node.network.hopdelay import HopDelaySettings
from node.relay_service import RelayService
from node.storage.base import MAX_PEER_ADDRS, Storage
from node.transport.connections import (
    ConnectionManager,
    LinkEvent,
    LinkUp,
    TransportSettings,
)
from node.transport.dispatch import DEFAULT_QUEUE_SIZE, Dispatcher, ProtocolHandler
from node.transport.link import Link
from node.transport.messages import CloseCode
from node.transport.session import Closed, SessionTimeouts

__all__ = ["VERSION", "Node", "run"]

VERSION = version()
DISPLAY_NAME_KEY = "profile.display_name"
_INTERFACES_EVERY_S = 60.0
log = structlog.get_logger("node.daemon")

LinkObserver = Callable[[LinkEvent], None]


class _Shutdown(Exception):
    """Raised inside the TaskGroup to cancel every remaining task on stop."""


def dht_config_from(config: NodeConfig) -> DhtConfig:
    return replace(DhtConfig(), subnet_prefix_v4=config.dht_subnet_prefix)


def mesh_policy_from(config: NodeConfig) -> mesh.MeshPolicy:
    return mesh.MeshPolicy(
        target_degree=config.target_degree,
        full_mesh_below=config.full_mesh_below,
        max_connections=config.max_connections,
    )


def bootstrap_from(config: NodeConfig) -> list[Bootstrap]:
    return [(a.host, a.port, a.peer_id) for a in config.bootstrap]


def settings_from(config: NodeConfig) -> TransportSettings:
    return TransportSettings(
        max_connections=config.max_connections,
        handshake_timeout_s=config.handshake_timeout_s,
        dial_timeout_s=config.dial_timeout_s,
        send_queue_frames=config.send_queue_frames,
        timeouts=SessionTimeouts(
            handshake_s=config.handshake_timeout_s,
            keepalive_s=config.keepalive_interval_s,
            idle_s=config.idle_timeout_s,
        ),
    )


class Node:
    """One SpacePanda node. Start with :meth:`run`; everything it starts ends with it."""

    def __init__(
        self,
        config: NodeConfig,
        keys: NodeKeys,
        storage: Storage,
        *,
        dht_store: DhtStore | None = None,
        dht_config: DhtConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config
        self.keys = keys
        self.storage = storage
        self._clock = clock
        self._wall = wall
        self._rng = rng
        self._random = random.Random(int.from_bytes(rng(8), "big"))
        self._started_at = clock()
        self._conns: ConnectionManager | None = None
        self.dispatcher = Dispatcher()
        self._link_observers: list[LinkObserver] = []
        self.link_event_failures = 0
        self.started = asyncio.Event()
        self._dht_store = dht_store
        self._dht_config = dht_config or dht_config_from(config)
        self._dht: DhtService | None = None
        self._mesh_policy = mesh_policy_from(config)
        self._dialer: MeshDialer | None = None
        self._channels: ChannelService | None = None
        self._relay: RelayService | None = None
        self._mailboxes: MailboxService | None = None
        # The deny list, loaded from storage when the node starts; checked on every dial and
        # every inbound handshake (ConnectionManager.refuse) and by the mesh dialer.
        self._blocked: set[PeerId] = set()
        self._blocked_by_config = frozenset(config.blocked_peers)
        self._join: JoinWatcher | None = None
        # What this node tells operators it listens on: the configured announce addresses,
        # or the bound ones with 0.0.0.0 / :: expanded to the interface addresses.
        self._local_addrs: tuple[Multiaddr, ...] = ()
        # Cumulative counts and latencies for the metrics (node.metrics).
        self.telemetry = Telemetry()
        self.observe_links(self.telemetry.links.observe)
        self._stopping = False
        self._protectors: list[Callable[[PeerId], bool]] = []
        self._routing_peers: frozenset[PeerId] = frozenset()
        self._routing_peers_at = float("-inf")

    # -- identity --------------------------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        return self.keys.identity.peer_id

    @property
    def connections(self) -> ConnectionManager:
        if self._conns is None:
            raise SpacePandaError("node is not running")
        return self._conns

    def listen_addrs(self) -> list[Multiaddr]:
        """Where this node can be reached, each ending in /p2p/<PeerId>: the announce
        addresses if configured, else the bound ones (0.0.0.0 and :: expanded to this host's
        interface addresses, loopback included)."""
        if self._conns is None:
            return []
        addrs = self._local_addrs or self._conns.advertised()
        return [a.with_peer_id(self.peer_id) for a in addrs]

    def _expand_addrs(self, bound: Multiaddr, interfaces: list[IPAddress]) -> None:
        """Announce addresses win; else a wildcard bind is expanded. Peers and the DHT record
        get the expansion without loopback (unless nothing else is left)."""
        assert self._conns is not None
        if self.config.announce:
            announced = tuple(a.without_peer_id() for a in self.config.announce)
            self._conns.announce_addrs = announced
            self._local_addrs = announced
            return
        local = tuple(expand_listen([bound], interfaces))
        remote = tuple(expand_listen([bound], interfaces, loopback=False))
        if local != self._local_addrs:
            if self._local_addrs:
                log.info("listen_addrs_changed", addrs=[str(a) for a in local])
            self._local_addrs = local
        self._conns.announce_addrs = () if remote == (bound,) else remote

    async def _watch_interfaces(self, bound: Multiaddr) -> None:
        """Interfaces come and go (DHCP, VPNs): re-read them now and then."""
        while True:
            await asyncio.sleep(_INTERFACES_EVERY_S)
            self._expand_addrs(bound, list(await asyncio.to_thread(interface_addresses)))

    # -- NodeControl -----------------------------------------------------------------------

    def node_info(self) -> NodeInfo:
        return NodeInfo(
            peer_id=str(self.peer_id),
            addrs=[str(a) for a in self.listen_addrs()],
            version=VERSION,
            commit=commit(),
            uptime_s=round(self._clock() - self._started_at, 3),
        )

    def _peer_info(self, link: Link) -> PeerInfo:
        stats = link.stats()
        addr = link.dialed_addr or f"{link.remote[0]}:{link.remote[1]}"
        with contextlib.suppress(MultiaddrError):
            addr = str(Multiaddr.from_host_port(link.remote[0], link.remote[1], link.peer_id))
        if link.direction == "inbound":
            # The remote port of an inbound link is ephemeral: list the peer at an address it
            # listens on, preferring one on the host it connected from.
            known = self._addrs_for(link, quiet=True)
            same_host = [a for a in known if a.host == link.remote[0]]
            if same_host or known:
                addr = str((same_host or known)[0].with_peer_id(link.peer_id))
        return PeerInfo(
            peer_id=str(link.peer_id),
            addr=addr,
            direction=link.direction,
            connected_since=link.connected_since,
            rtt_ms=None if stats.rtt_ms is None else round(stats.rtt_ms, 3),
            bytes_sent=stats.bytes_out,
            bytes_received=stats.bytes_in,
        )

    def peer_list(self) -> list[PeerInfo]:
        if self._conns is None:
            return []
        links = sorted(self._conns.links(), key=lambda link: link.peer_id)
        return [self._peer_info(link) for link in links]

    def is_ready(self) -> bool:
        return self.started.is_set() and self._dht is not None and self._dht.is_ready

    def readiness(self) -> Readiness:
        bootstrap = None if self._join is None else self._join.state()
        details = None if bootstrap is None else bootstrap.to_json()
        if self._stopping:
            return Readiness(False, "stopping", "node is shutting down", details)
        if not self.started.is_set() or bootstrap is None:
            return Readiness(False, "starting", "node is starting", details)
        if self.is_ready():
            return Readiness(True, "ready", bootstrap.reason(), details)
        return Readiness(False, "joining", bootstrap.reason(), details)

    @property
    def channels(self) -> ChannelService:
        if self._channels is None or not self._channels.ready.is_set():
            raise ChannelsStopped("channels are not running (the node is starting or stopping)")
        return self._channels

    @property
    def mailboxes(self) -> MailboxService | None:
        """The mailbox holder and client (None before the node runs)."""
        return self._mailboxes

    @property
    def relay(self) -> RelayService | None:
        """The relay (gossip) router's adapter (None before the node runs)."""
        return self._relay

    @property
    def dht(self) -> DhtService:
        if self._dht is None:
            raise DhtError("the DHT is not running")
        return self._dht

    def dht_statistics(self) -> dict[str, Any]:
        stats = self.dht.statistics()
        if self._dialer is not None:
            stats["mesh"] = self._dialer.statistics()
        if self._join is not None:
            stats["bootstrap"] = self._join.state().to_json()
        return stats

    def _network_parts(self) -> tuple[RelayService, MailboxService, ChannelService]:
        relay, mailboxes, channels = self._relay, self._mailboxes, self._channels
        if (relay is None or mailboxes is None or channels is None
                or not channels.ready.is_set() or not self.started.is_set()):
            raise NetworkStopped("the relay and mailboxes are not running (the node is "
                                 "starting or stopping)")
        return relay, mailboxes, channels

    async def network(self) -> dict[str, Any]:
        """``GET /v1/network`` (``node.netview``); NetworkStopped until everything runs."""
        relay, mailboxes, channels = self._network_parts()
        usage = await mailboxes.usage()
        self.telemetry.mailbox_usage = usage
        synced_at = await channels.mailbox_synced_at()
        return network_view(relay, mailboxes, channels, self.dispatcher, now=self._wall(),
                            usage=usage, synced_at=synced_at)

    async def resolve(self, peer_id: PeerId) -> dict[str, Any] | None:
        record = await self.dht.resolve(peer_id)
        return None if record is None else record_json(record)

    async def dial(self, addr: Multiaddr) -> PeerInfo:
        link = await self.connections.dial(addr)
        return self._peer_info(link)

    async def disconnect(self, peer_id: PeerId, *, block: bool = False) -> bool:
        """Close the link and forget the peer, so the reconnect loop leaves it alone.

        With ``block`` the peer also goes on the deny list (persisted): refused when it dials
        us, never dialled again until :meth:`unblock`. Always True then.
        """
        if block:
            self._blocked.add(peer_id)  # before the link closes: no redial can slip in
            if await self.storage.block_peer(peer_id, self._wall()):
                log.info("peer_blocked", peer=str(peer_id))
        closed = await self.connections.disconnect(
            peer_id, CloseCode.NORMAL, "disconnected by operator"
        )
        forgotten = await self.storage.remove_peer(peer_id)
        if self._dialer is not None:
            self._dialer.forget(peer_id)
        return closed or forgotten or block

    def is_blocked(self, peer_id: PeerId) -> bool:
        return peer_id in self._blocked or peer_id in self._blocked_by_config

    async def unblock(self, peer_id: PeerId) -> bool:
        """Take ``peer_id`` off the deny list; False when it was not on it."""
        removed = await self.storage.unblock_peer(peer_id)
        present = peer_id in self._blocked
        self._blocked.discard(peer_id)
        if removed or present:
            log.info("peer_unblocked", peer=str(peer_id))
        return removed or present

    async def blocks(self) -> list[BlockInfo]:
        return [
            BlockInfo(peer_id=str(b.peer_id), blocked_at=b.blocked_at)
            for b in await self.storage.list_blocked()
        ]

    # -- application protocols -------------------------------------------------------------

    def register_protocol(
        self, name: str, handler: ProtocolHandler, *, queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        """Data for ``name`` goes to ``handler`` through a bounded queue (see Dispatcher)."""
        self.dispatcher.register(name, handler, queue_size=queue_size)

    def unregister_protocol(self, name: str) -> None:
        """Data for ``name`` is no longer handed to anyone (its service stopped)."""
        self.dispatcher.unregister(name)

    def protect(self, is_protected: Callable[[PeerId], bool]) -> None:
        """Links to peers for which ``is_protected`` is true are never trimmed to make room
        (e.g. channel co-members). It is called often: it must be cheap and not block."""
        self._protectors.append(is_protected)

    def is_protected(self, peer: PeerId) -> bool:
        """Routing-table peers and whatever :meth:`protect` registered."""
        now = self._clock()
        if self._dht is not None and now - self._routing_peers_at >= 1.0:
            # A snapshot a second old is fine for choosing whom to trim.
            self._routing_peers = frozenset(self._dht.known_peers())
            self._routing_peers_at = now
        if peer in self._routing_peers:
            return True
        return any(check(peer) for check in self._protectors)

    def observe_links(self, observer: LinkObserver) -> None:
        """``observer`` sees every LinkUp/LinkDown; it must not block (enqueue, return)."""
        self._link_observers.append(observer)

    async def send(self, peer_id: PeerId, protocol: str, payload: bytes) -> None:
        link = self.connections.get(peer_id)
        if link is None:
            raise TransportError(f"not connected to {peer_id.short()}")
        await link.send(protocol, payload)

    def _deliver(self, link: Link, protocol: str, payload: bytes) -> Awaitable[None] | None:
        return self.dispatcher.deliver(link.peer_id, protocol, payload)

    # -- address book ----------------------------------------------------------------------

    def _addrs_for(self, link: Link, *, quiet: bool = False) -> list[Multiaddr]:
        """Where this peer says it can be reached (for display only, never stored: see
        :meth:`_worked_addrs`): what we dialled, then its usable ``listen_addrs``."""
        found: list[Multiaddr] = []
        texts = ([link.dialed_addr] if link.dialed_addr else []) + list(
            link.session.peer_listen_addrs
        )
        for text in texts:
            try:
                addr = Multiaddr.parse(text)
            except MultiaddrError:
                if not quiet:
                    log.info("peer_sent_bad_listen_addr", peer=str(link.peer_id),
                             addr=text[:100])
                continue
            if addr.peer_id not in (None, link.peer_id):
                continue
            # An unspecified listen host means "the address you reached me from".
            if addr.host in ("0.0.0.0", "::"):
                addr = Multiaddr.from_host_port(link.remote[0], addr.port)
            addr = addr.without_peer_id()
            if addr not in found:
                found.append(addr)
        return found[:8]

    def _worked_addrs(self, link: Link) -> list[Multiaddr]:
        """Where to reach this peer again: only an address that worked.

        That is the address we dialled, now that the peer proved the PeerId we expected.
        What a peer claims in its handshake (``listen_addrs``) is never stored or redialled
        (PROTOCOL.md 5.3): anyone can claim anything there, and its signed DHT record says
        where it listens.
        """
        if link.direction != "outbound" or not link.dialed_addr:
            return []
        try:
            addr = Multiaddr.parse(link.dialed_addr)
        except MultiaddrError:
            return []
        return [addr.without_peer_id()]

    async def _on_connected(self, link: Link) -> None:
        if self.is_blocked(link.peer_id):
            # Admitted just before it was blocked: the deny list wins.
            await link.close(CloseCode.NORMAL, "connection refused")
            return
        now = self._wall()
        addrs = self._worked_addrs(link)
        if addrs:
            known = await self.storage.get_peer(link.peer_id)
            old = [a for a in (known.addrs if known is not None else ()) if a not in addrs]
            await self.storage.upsert_peer(link.peer_id, (addrs + old)[:MAX_PEER_ADDRS], now)
        await self.storage.mark_seen(link.peer_id, now)
        if self._dialer is not None:
            self._dialer.connected(link.peer_id)

    async def _on_disconnected(self, link: Link, closed: Closed) -> None:
        if self._dialer is not None:
            self._dialer.link_closed(link.peer_id, closed)
        await self.storage.mark_seen(link.peer_id, self._wall())

    async def _link_events(self, conns: ConnectionManager) -> None:
        """Drain the connection manager's events: address book, dialer, observers."""
        while True:
            event = await conns.events.get()
            try:
                if isinstance(event, LinkUp):
                    await self._on_connected(event.link)
                else:
                    await self._on_disconnected(event.link, event.closed)
                for observer in self._link_observers:
                    observer(event)
            except Exception:
                self.link_event_failures += 1
                log.exception("link_event_failed", peer=str(event.link.peer_id),
                              event=type(event).__name__)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Listen, keep links, reconnect; return after ``stop`` is set and links are closed."""
        self._stopping = False
        try:
            async with asyncio.TaskGroup() as tg:
                self._conns = ConnectionManager(
                    self.keys,
                    settings_from(self.config),
                    tg,
                    deliver=self._deliver,
                    clock=self._clock,
                    rng=self._rng,
                    protected=self.is_protected,
                )
                self._blocked = {b.peer_id for b in await self.storage.list_blocked()}
                self._conns.refuse = self.is_blocked
                self.dispatcher.start(tg)
                tg.create_task(self._link_events(self._conns), name="link-events")
                try:
                    bound = await self._conns.listen(self.config.listen)
                except OSError as exc:
                    raise ConfigError(
                        f"cannot listen for the transport on TCP {self.config.listen}: "
                        f"{exc.strerror or exc}"
                    ) from exc
                wildcard = bound.host in ("0.0.0.0", "::")
                interfaces = await asyncio.to_thread(interface_addresses) if wildcard else []
                self._expand_addrs(bound, list(interfaces))
                if wildcard and not self.config.announce:
                    tg.create_task(self._watch_interfaces(bound), name="interfaces")
                # The DHT speaks UDP on the same port number as the TCP transport.
                self._dht = TimedDhtService(
                    self.keys.identity,
                    telemetry=self.telemetry,
                    host=bound.host,
                    port=bound.port,
                    noise_static_key=self.keys.noise_public,
                    envelope_key=self.keys.envelope_public,
                    addrs_provider=lambda: [str(a) for a in self._conns_addrs()],
                    store=self._dht_store,
                    config=self._dht_config,
                    randbytes=self._rng,
                )
                saved = 0 if self._dht_store is None else len(
                    await self._dht_store.load_contacts()
                )
                try:
                    await self._dht.start(bootstrap_from(self.config), task_group=tg)
                except OSError as exc:
                    raise ConfigError(
                        f"cannot bind the DHT's UDP socket on {bound.host}:{bound.port} (the DHT "
                        f"uses UDP on the transport's port number): {exc.strerror or exc}"
                    ) from exc
                self._join = JoinWatcher(
                    self._dht,
                    self._dht_config,
                    addrs=[str(a) for a in self.config.bootstrap],
                    saved_contacts=saved,
                    clock=self._clock,
                )
                self._join.poll()
                tg.create_task(self._join.run(), name="dht-join-watch")
                self._dialer = MeshDialer(
                    local=self.peer_id,
                    connections=self._conns,
                    dht=self._dht,
                    storage=self.storage,
                    policy=self._mesh_policy,
                    task_group=tg,
                    clock=self._clock,
                    wall=self._wall,
                    rand=self._random,
                    blocked=self.is_blocked,
                )
                self._dialer.start()
                self._relay = RelayService(
                    self, shards=self.config.relay_shards,
                    rand=random.Random(self._random.getrandbits(64)), wall=self._wall,
                    hop_delay=HopDelaySettings() if self.config.jitter == "high" else None)
                self._relay.start(tg)
                self._mailboxes = MailboxService(self, self.storage.mailbox_store(),
                                                 wall=self._wall, rng=self._rng)
                self._mailboxes.start(tg)
                channels = ChannelService(
                    self,
                    self.storage.channel_store(),
                    relay=self._relay,
                    mailboxes=self._mailboxes,
                    display_name=await self._display_name(),
                    auto_accept_invites=self.config.auto_accept_invites,
                    jitter=self.config.jitter,
                    wall=self._wall,
                    rng=self._rng,
                )
                await channels.load()
                channels.start(tg)
                self._channels = channels
                # Links to people we share a channel with carry our messages: never trim them.
                self.protect(channels.is_co_member)
                tg.create_task(self.telemetry.count_messages(channels, self.peer_id),
                               name="message-metrics")
                tg.create_task(self.telemetry.sample_mailbox_usage(self._mailboxes),
                               name="mailbox-usage-metrics")
                self.started.set()
                await stop.wait()
                self._stopping = True
                log.info("shutting_down", peers=len(self._conns.links()))
                await self._conns.close(CloseCode.SHUTDOWN, "node shutting down")
                raise _Shutdown
        except* _Shutdown:
            pass
        finally:
            self.started.clear()
            self.dispatcher.stop()
            if self._channels is not None:
                self._channels.stop()
                with contextlib.suppress(ValueError):  # a later run registers its own
                    self._protectors.remove(self._channels.is_co_member)
            if self._mailboxes is not None:
                self._mailboxes.stop()
            if self._dht is not None:
                await self._dht.stop()

    async def _display_name(self) -> str:
        raw = await self.storage.get_meta(DISPLAY_NAME_KEY)
        return "" if raw is None else raw.decode("utf-8", "replace")

    async def set_display_name(self, name: str) -> None:
        """``PUT /v1/profile``: remembered, and announced in every channel."""
        await self.channels.set_profile(name)
        await self.storage.set_meta(DISPLAY_NAME_KEY, name.encode())

    def _conns_addrs(self) -> tuple[Multiaddr, ...]:
        return self._conns.advertised() if self._conns is not None else ()

    def statistics(self) -> dict[str, object]:
        """A snapshot for the metrics (node.metrics) and diagnostics."""
        mesh_stats = self._dialer.statistics() if self._dialer is not None else {}
        stats: dict[str, object] = {
            "unknown_protocol_frames": self.dispatcher.unknown_protocol,
            "link_event_failures": self.link_event_failures,
            "mesh_dials": mesh_stats.get("dials", 0),
            "mesh_dial_failures": mesh_stats.get("dial_failures", 0),
            "mesh_backing_off": mesh_stats.get("backing_off", 0),
            "dht_ready": self._dht is not None and self._dht.is_ready,
            "blocked_peers": len(self._blocked | self._blocked_by_config),
            "handshakes": dict(self.telemetry.links.handshakes),
        }
        if self._conns is not None:
            stats.update(self._conns.statistics())
            links = self._conns.links()
            stats["connections_by_direction"] = dict(Counter(link.direction for link in links))
            stats["traffic"] = self.telemetry.links.totals(links)
        if self._dht is not None:
            dht = self._dht.statistics()
            dht["protocol_drops"] = dict(self._dht.protocol.drops)
            dht["store"] = self._dht.storage.statistics()
            stats["dht"] = dht
        stats["relay_shards"] = self.config.relay_shards
        with contextlib.suppress(NetworkStopped):
            relay, mailboxes, channels = self._network_parts()
            stats["network"] = network_view(relay, mailboxes, channels, self.dispatcher,
                                            now=self._wall(),
                                            usage=self.telemetry.mailbox_usage,
                                            synced_at=None)
        if self._channels is not None:
            stats["channels"] = self._channels.statistics()
            views = self._channels.views()
            stats["channel_statuses"] = dict(Counter(v.status for v in views))
            stats["channel_members"] = sum(len(v.members) for v in views if v.status == "active")
        return stats


async def _serve(config: NodeConfig) -> int:
    from api.server import ApiServer, create_app
    from node.datadir import DataDir
    from node.metrics import node_registry
    from node.storage.sqlite import SqliteStorage

    accept_errors = install_loop_guard(asyncio.get_running_loop())
    datadir = DataDir(config.data_dir)
    if not datadir.is_initialised():
        datadir.open()  # raises the "run spacepanda init" error
    datadir.lock()  # before open(): open() may rewrite a lost token or peer_id file
    try:
        identity = datadir.open()
        storage = await SqliteStorage.open(datadir.db_path)
        try:
            node = Node(config, NodeKeys.derive(identity), storage, dht_store=storage.dht_store())
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            runner = asyncio.create_task(node.run(stop), name="node")
            started = asyncio.create_task(node.started.wait())
            await asyncio.wait({runner, started}, return_when=asyncio.FIRST_COMPLETED)
            if runner.done():
                started.cancel()
                runner.result()  # re-raise why the node could not start
                return 1
            app = create_app(node, datadir.read_token(), node_registry(node))
            api = ApiServer(app, config.api, access_log=config.access_log)
            try:
                api_addr = await api.start()
                datadir.write_api_address(api_addr)
                log.info("node_started", peer_id=str(node.peer_id),
                         addrs=[str(a) for a in node.listen_addrs()], api=str(api_addr))
                await runner
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    datadir.remove_api_address()
                await api.stop()
                if not runner.done():
                    await runner
        finally:
            await storage.close()
    finally:
        datadir.unlock()
        accept_errors.flush()
    log.info("node_stopped")
    return 0


def run(config: NodeConfig) -> int:
    """Run a node until SIGTERM/SIGINT. Returns the process exit code."""
    from node.logs import configure_logging

    configure_logging(config.log_format, config.log_level)
    try:
        return asyncio.run(_serve(config))
    except (SpacePandaError, OSError) as exc:
        log.error("node_failed", error=str(exc), kind=type(exc).__name__)
        return 1
    except BaseExceptionGroup as group:
        failures = group.subgroup((SpacePandaError, OSError))
        if failures is None:
            raise
        for failure in failures.exceptions:
            log.error("node_failed", error=str(failure), kind=type(failure).__name__)
        return 1
