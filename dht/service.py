"""The asyncio adapter the node uses: one DHT endpoint, its joins, publishes and lookups.

All protocol logic lives in :mod:`dht.protocol`, :mod:`dht.routing`, :mod:`dht.crawling` and
:mod:`dht.storage`; this module owns the socket, the background loops (one ``TaskGroup``) and
persistence. Time (``clock``, unix seconds) and randomness (``randbytes``) are injected, and so
is the datagram endpoint (``endpoint_factory``) so the simulator can run many nodes in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kademlia.node import Node

from dht.config import DhtConfig
from dht.crawling import NodeCrawl, RecordCrawl
from dht.errors import DhtError, RecordError
from dht.persistence import ContactSnapshot, DhtStore, MemoryDhtStore
from dht.protocol import DhtProtocol
from dht.records import PeerRecord, VerifiedPeerRecord, record_key
from dht.storage import RecordStorage
from dht.udp import open_udp
from node.core.identity import Identity, PeerId

__all__ = ["Bootstrap", "DhtService", "EndpointFactory", "udp_endpoint"]

log = logging.getLogger(__name__)

Bootstrap = tuple[str, int, PeerId | None]
EndpointFactory = Callable[
    [Callable[[], DhtProtocol], str, int], Awaitable[tuple[asyncio.DatagramTransport, Any]]
]


async def udp_endpoint(
    factory: Callable[[], DhtProtocol], host: str, port: int
) -> tuple[asyncio.DatagramTransport, Any]:
    """A real UDP socket bound to (host, port), drained in batches (see :mod:`dht.udp`)."""
    return await open_udp(factory, host, port)


class DhtService:
    """A node's DHT presence: join through bootstrap nodes, publish, resolve, discover."""

    def __init__(
        self,
        identity: Identity,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        noise_static_key: bytes,
        envelope_key: bytes,
        addrs_provider: Callable[[], list[str]],
        store: DhtStore | None = None,
        config: DhtConfig | None = None,
        clock: Callable[[], float] = time.time,
        randbytes: Callable[[int], bytes] = os.urandom,
        endpoint_factory: EndpointFactory = udp_endpoint,
    ) -> None:
        self.identity = identity
        self.config = config or DhtConfig()
        self._host = host
        self._port = port
        self._noise_static_key = noise_static_key
        self._envelope_key = envelope_key
        self._addrs_provider = addrs_provider
        self._store: DhtStore = store if store is not None else MemoryDhtStore()
        self._clock = clock
        self._randbytes = randbytes
        self._endpoint_factory = endpoint_factory
        self.storage = RecordStorage(clock, self.config.storage)
        self.protocol = DhtProtocol(
            identity, self.storage, self.config, clock=clock, randbytes=randbytes
        )
        self._transport: asyncio.DatagramTransport | None = None
        self._runner: asyncio.Task[None] | None = None
        self._bootstrap: list[Bootstrap] = []
        self._ready = False
        self._joined = False  # ready, first publish done: the maintenance loop takes over
        self._seq = 0
        self._published_addrs: list[str] | None = None
        self._next_republish = 0.0
        # How many nodes took our last publish, and how many contacts we knew then.
        self._publish_reach = 0
        self._publish_table = 0
        self._placed: tuple[bytes, bytes] | None = None  # our record's key and bytes
        self._stored_at: set[bytes] = set()  # node ids that accepted those bytes
        self._offered: set[bytes] = set()  # node ids that answered our STORE of them
        self._publish_lock = asyncio.Lock()
        self.counters: Counter[str] = Counter()
        self._last_rounds: list[int] = []

    # ------------------------------------------------------------------ properties

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id

    @property
    def node_id(self) -> bytes:
        return self.protocol.node_id

    @property
    def is_ready(self) -> bool:
        return self._ready

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the UDP endpoint is bound to."""
        if self._transport is None:
            raise DhtError("DHT service not started")
        sockname = self._transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self, bootstrap: Sequence[Bootstrap] = (), *, task_group: asyncio.TaskGroup | None = None
    ) -> None:
        """Bind, load saved state and start joining in the background (see ``is_ready``).

        The background loops and per-datagram jobs run in ``task_group`` (the node's) when
        one is given, so they end with it; standalone services own their tasks.

        With neither bootstrap addresses nor saved contacts this is a bootstrap node and is
        ready at once; otherwise it retries with backoff until one contact proves itself
        (with the expected PeerId when one is given).
        """
        if self._transport is not None:
            raise DhtError("DHT service already started")
        for data in await self._store.load_records():
            self.storage.put(record_key_of(data), data, None)
        own = self.storage.get_verified(record_key(self.peer_id))
        if own is not None:
            self._seq = own.seq
        saved = [(c.host, c.port, c.peer_id) for c in await self._store.load_contacts()]
        self._bootstrap = [*bootstrap, *saved]
        self._ready = not self._bootstrap
        self._transport, _ = await self._endpoint_factory(
            lambda: self.protocol, self._host, self._port
        )
        self.protocol.task_group = task_group
        spawn = task_group.create_task if task_group is not None else asyncio.create_task
        self._runner = spawn(self._run(), name="dht")

    async def stop(self) -> None:
        """Stop every background task, save a snapshot, close the socket."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._transport is not None:
            try:
                await self.save_snapshot()
            finally:
                await self.protocol.close()
                self._transport = None
        self._ready = False
        self._joined = False

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._join_loop())
            tg.create_task(self._maintain_loop())

    def _jitter(self) -> float:
        return 0.5 + int.from_bytes(self._randbytes(2), "big") / 65536

    async def _join_loop(self) -> None:
        delay = self.config.bootstrap_backoff_initial
        while not self._ready:
            if not self._bootstrap:
                self._ready = True
                break
            self.counters["bootstrap_attempts"] += 1
            if await self._join_once():
                self._ready = True
                # Usable now: publish at once (others may be waiting to dial us) while the
                # far buckets fill; if that grew the table by half, top the placement up.
                await asyncio.gather(self._refresh_sparse_buckets(), self._publish_if_any())
                if self._placed is not None and self._underplaced():
                    await self._top_up()
                self._joined = True
                return
            self.counters["bootstrap_failures"] += 1
            await asyncio.sleep(delay * self._jitter())
            delay = min(delay * 2, self.config.bootstrap_backoff_max)
        await self._publish_if_any()
        self._joined = True

    async def _publish_if_any(self) -> None:
        if self._addrs_provider():
            await self._safe_publish()

    async def _resolve_host(self, host: str, port: int) -> list[tuple[str, int]]:
        try:
            ipaddress.ip_address(host)
            return [(host, port)]
        except ValueError:
            pass
        family = socket.AF_INET6 if self.protocol._family == 6 else socket.AF_INET
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, family=family, type=socket.SOCK_DGRAM
            )
        except OSError:
            self.counters["dns_failures"] += 1
            return []
        return [(str(info[4][0]), int(info[4][1])) for info in infos]

    async def _join_once(self) -> bool:
        async def try_one(host: str, port: int, expected: PeerId | None) -> bool:
            for addr in await self._resolve_host(host, port):
                proof = await self.protocol.prove(
                    addr, expected_peer=expected, attempts=self.config.ping_retries + 1
                )
                if proof is not None:
                    self.protocol.add_proven(addr, proof)
                    return True
            return False

        results = await asyncio.gather(*(try_one(h, p, e) for h, p, e in self._bootstrap))
        if not any(results):
            return False
        await self._lookup_nodes(self.node_id)
        return True

    async def _refresh_sparse_buckets(self) -> None:
        """Kademlia's join rule (paper 2.3): after looking up its own id, a newcomer refreshes
        the buckets farther away than its closest neighbour. Without it a node knows little
        beyond its own neighbourhood and whoever happened to contact it, and lookups through
        it can stall short of the target, more often the larger the network and after churn.
        Only buckets with room are refreshed (a full bucket has nothing to gain), and each
        refresh stops after ``join_refresh_rounds`` rounds: it only has to put a few proven
        contacts in the bucket, not find the k closest to a random id (a full lookup per
        bucket made joins ~5x dearer in CPU and datagrams for no further gain in routing)."""
        rounds = self.config.join_refresh_rounds
        if rounds <= 0:
            return
        router = self.protocol.router
        ranges = [
            b.range
            for b in router.buckets
            if not b.has_in_range(router.node) and len(b) < router.ksize
        ]
        self.counters["bucket_refreshes"] += len(ranges)
        await asyncio.gather(
            *(self._lookup_nodes(self.protocol.random_id_in(r), rounds) for r in ranges)
        )

    async def _maintain_loop(self) -> None:
        next_refresh = self._clock() + self.config.refresh_interval
        next_snapshot = self._clock() + self.config.snapshot_interval
        while True:
            await asyncio.sleep(self.config.addr_check_interval)
            if not self._joined:  # the join loop publishes first
                continue
            now = self._clock()
            addrs = self._addrs_provider()
            if addrs and (addrs != self._published_addrs or now >= self._next_republish):
                await self._safe_publish()
            elif self._placed is not None and self._underplaced():
                await self._top_up()
            if not self.protocol.router.contacts() and self._bootstrap:
                self.counters["rejoins"] += 1
                if await self._join_once():
                    await self._refresh_sparse_buckets()
            if now >= next_refresh:
                next_refresh = now + self.config.refresh_interval
                await self._refresh()
            if now >= next_snapshot:
                next_snapshot = now + self.config.snapshot_interval
                await self.save_snapshot()

    def _underplaced(self) -> bool:
        """Whether our record may sit away from its key's current k closest, which nobody
        else fixes (a holder passes a record to a newcomer only if no contact it knows is
        closer to the key). Checked on our own table, without traffic:

        * a contact we know is closer to the key than the k-th closest node we placed it
          on, and we have not offered it to that contact yet (a network that starts all at
          once: early lookups end among the nodes known then, measured 25-67 ranks away
          from the key at 50-100 nodes);
        * fewer than k of the closest nodes found took it and we know more contacts now (a
          bootstrap node publishes into an empty table);
        * our table has grown by half since (we cannot see the key's region directly).

        A top-up stores only on nodes that were not offered the record yet."""
        router = self.protocol.router
        contacts = len(router.contacts())
        if self._publish_reach < self.config.ksize and contacts > self._publish_table:
            return True
        if 2 * contacts >= 3 * max(self._publish_table, 1):
            return True
        if self._placed is None or not self._offered:
            return False
        keyint = int.from_bytes(self._placed[0], "big")
        held = sorted(int.from_bytes(i, "big") ^ keyint for i in self._stored_at)
        if len(held) < self.config.ksize:
            return False  # covered by the reach test above
        farthest = held[self.config.ksize - 1]
        return any(
            (c ^ keyint) < farthest and c.to_bytes(20, "big") not in self._offered
            for c in router.contact_ids()
        )

    async def _refresh(self) -> None:
        for node_id in self.protocol.get_refresh_ids():
            await self._lookup_nodes(node_id)
        await self.random_walk()

    async def save_snapshot(self) -> None:
        contacts = [ContactSnapshot(c.peer_id, c.ip, c.port) for c in self.protocol.contacts()]
        try:
            if contacts:
                await self._store.save_contacts(contacts)
            await self._store.save_records([data for _, data in self.storage])
        except Exception:  # the store is the node's; a failed save must not kill the DHT
            log.exception("saving the DHT snapshot failed")
            self.counters["snapshot_failures"] += 1

    # ------------------------------------------------------------------ lookups

    async def _lookup_nodes(self, key: bytes, max_rounds: int | None = None) -> list[Node]:
        target = Node(key)
        nearest = self.protocol.router.find_neighbors(target)
        if not nearest:
            return []
        crawl = NodeCrawl(
            self.protocol,
            target,
            nearest,
            self.config.ksize,
            self.config.alpha,
            max_rounds or self.config.max_lookup_rounds,
        )
        found: list[Node] = await crawl.find()
        self._note_rounds(crawl.rounds)
        return found

    def _note_rounds(self, rounds: int) -> None:
        self._last_rounds.append(rounds)
        del self._last_rounds[:-100]

    async def _safe_publish(self) -> None:
        try:
            await self.publish()
        except DhtError:
            log.warning("publishing our peer record failed", exc_info=True)
            self.counters["publish_failures"] += 1

    async def publish(self) -> int:
        """Sign a fresh record (next seq, current addresses) and store it on the k closest
        nodes. Returns how many nodes accepted it. Raises :class:`RecordError` if the
        addresses do not fit a record."""
        async with self._publish_lock:
            addrs = list(self._addrs_provider())
            now = self._clock()
            # Millisecond wall time keeps seq increasing across restarts without saved state.
            seq = max(self._seq + 1, int(now * 1000))
            record = PeerRecord.create(
                self.identity,
                noise_static_key=self._noise_static_key,
                envelope_key=self._envelope_key,
                addrs=addrs,
                seq=seq,
                expires_at=int(now) + self.config.record_ttl,
            )
            self._seq = seq
            self._published_addrs = addrs
            self._next_republish = now + self.config.republish_interval
            data = record.encode()
            self.storage.put(record.key, data, None)
            self.counters["publishes"] += 1
            self._placed = (record.key, data)
            self._stored_at = set()
            self._offered = set()
            return await self._place(record.key, data)

    async def _place(self, key: bytes, data: bytes) -> int:
        """Store ``data`` on the k closest nodes we can find that do not hold it from us yet;
        how many newly accepted it. Called with the publish lock held."""
        self._publish_table = len(self.protocol.router.contacts())
        nodes = await self._lookup_nodes(key)
        fresh = [n for n in nodes if n.id not in self._stored_at]
        results = await asyncio.gather(*(self.protocol.call_store(n, key, data) for n in fresh))
        accepted = 0
        for node, (ok, answer) in zip(fresh, results, strict=True):
            if ok:
                self._offered.add(node.id)
            if ok and answer is True:
                self._stored_at.add(node.id)
                accepted += 1
        self._publish_reach = sum(1 for n in nodes if n.id in self._stored_at)
        return accepted

    async def _top_up(self) -> None:
        """Place our current record again (same bytes) on whichever of the key's k closest
        we now find that lack it; see :meth:`_underplaced`."""
        async with self._publish_lock:
            if self._placed is None:
                return
            self.counters["record_top_ups"] += 1
            await self._place(*self._placed)

    async def resolve(self, peer_id: PeerId) -> VerifiedPeerRecord | None:
        """The highest-sequence valid record for ``peer_id`` (local or from the network)."""
        key = record_key(peer_id)
        self.counters["lookups"] += 1
        best = self.storage.get_verified(key)
        target = Node(key)
        nearest = self.protocol.router.find_neighbors(target)
        if nearest and peer_id != self.peer_id:
            crawl = RecordCrawl(
                self.protocol,
                target,
                nearest,
                self.config.ksize,
                self.config.alpha,
                self.config.max_lookup_rounds,
                self._clock,
            )
            found: VerifiedPeerRecord | None = await crawl.find()
            self._note_rounds(crawl.rounds)
            if found is not None and (best is None or found.seq > best.seq):
                best = found
        self.counters["lookups_found" if best is not None else "lookups_missed"] += 1
        return best

    async def random_walk(self) -> list[PeerId]:
        """Look up a random id; the proven peers met on the way (for discovery)."""
        self.counters["random_walks"] += 1
        nodes = await self._lookup_nodes(self._randbytes(20))
        seen: dict[PeerId, None] = {}
        for n in nodes:
            proof = self.protocol.proof_for(n)
            if proof is not None and proof.peer_id != self.peer_id:
                seen[proof.peer_id] = None
        return list(seen)

    async def closest_peers(self, key: bytes, k: int) -> list[PeerId]:
        """The ``k`` verified nodes closest to the 20-byte ``key`` that a lookup finds,
        nearest first (XOR of node ids). This node is one of them when it is that close, so
        every node that looks the key up names the same set."""
        if not isinstance(key, bytes) or len(key) != 20:
            raise DhtError("a DHT key is 20 bytes")
        if not 1 <= k <= self.config.ksize:
            raise DhtError(f"k must be 1..{self.config.ksize}")
        target = int.from_bytes(key, "big")
        distance = {self.peer_id: int.from_bytes(self.node_id, "big") ^ target}
        for node in await self._lookup_nodes(key):
            proof = self.protocol.proof_for(node)
            if proof is not None:
                distance.setdefault(proof.peer_id, node.long_id ^ target)
        return sorted(distance, key=distance.__getitem__)[:k]

    def known_peers(self) -> list[PeerId]:
        """PeerIds of every proven contact in the routing table."""
        return [c.peer_id for c in self.protocol.contacts()]

    def statistics(self) -> dict[str, Any]:
        proto = self.protocol.statistics()
        store = self.storage.statistics()
        rounds = self._last_rounds
        drops: Counter[str] = Counter(proto["drops"])
        drops.update({f"store_{k}": v for k, v in dict(store["drops"]).items()})  # type: ignore[call-overload]
        return {
            "node_id": proto["node_id"],
            "peer_id": str(self.peer_id),
            "ready": self._ready,
            "buckets": proto["buckets"],
            "contacts": proto["contacts"],
            "records": store["records"],
            "record_bytes": store["bytes"],
            "lookups": {
                "total": self.counters["lookups"],
                "found": self.counters["lookups_found"],
                "missed": self.counters["lookups_missed"],
                "random_walks": self.counters["random_walks"],
                "mean_rounds": (sum(rounds) / len(rounds)) if rounds else None,
            },
            "publishes": self.counters["publishes"],
            "seq": self._seq,
            "rpc": proto["counters"],
            "routing": proto["routing"],
            "drops": dict(drops),
            "service": dict(self.counters),
        }


def record_key_of(data: bytes) -> bytes:
    """The key a saved record belongs under (empty for undecodable data: it will be refused)."""
    try:
        return PeerRecord.decode(data).key
    except RecordError:
        return b""
