"""Mailboxes on a node (Data protocol ``sp/mbx/1``, docs/PROTOCOL.md 15): the holder every node
runs, the client members use, and placement at the k closest nodes of the DHT.

* **Holder.** STORE and FETCH from a peer go through the sans-I/O core
  (``node.network.mailbox.Mailbox``: size, day, rate per uploader) and the mailbox tables
  (quotas per key, uploader and holder are checked in the appending transaction); the reply
  goes back on the requester's link. STOREs queue (bounded) for one task that appends every
  waiting one in ONE transaction (one disk sync per batch, not per envelope), and each is
  acknowledged (STORED OK or DUPLICATE) only once that transaction is on disk. FETCHes are
  answered at once. Expired envelopes are swept every ``sweep_interval_s``.
* **Client.** :meth:`MailboxService.store` and :meth:`MailboxService.fetch` send one request
  and wait for the reply with the same request id from the same peer, dialling the holder from
  its signed DHT record (PeerId enforced) when there is no link. Failures are typed:
  :class:`MailboxUnreachable`, :class:`MailboxTimeout`, :class:`MailboxRefused` (a refused
  FETCH), ``MailboxWireError`` (the holder broke the protocol). A refused STORE is a
  :class:`~node.network.mailbox_wire.Status`, not an error: the caller decides.
* **Placement.** :meth:`MailboxService.place` stores an envelope at the k = 3 nodes closest to
  the key (``DhtService.closest_peers``); :meth:`MailboxService.collect` fetches a key from
  them with a cursor each, as a returning member does for every day it missed.

A request to this node itself is served locally (a node can be one of a key's holders).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import structlog

from dht.errors import DhtError
from node.core.errors import ConnectionClosed, SpacePandaError, StorageError, TransportError
from node.core.identity import PeerId
from node.network.mailbox import (
    COLLECT_K,
    HOLDER_SECRET_LEN,
    PLACEMENT_K,
    Append,
    Mailbox,
    MailboxSettings,
    check_batch,
    day_of,
    envelope_digest,
    uploader_pseudonym,
)
from node.network.mailbox_wire import (
    ACCEPTED,
    MAX_LIMIT,
    MAX_REQUEST_ID,
    PROTOCOL,
    Batch,
    Fetch,
    MailboxWireError,
    Status,
    Store,
    Stored,
    decode_mailbox,
)
from node.storage.mailboxstore import MailboxStore, MailboxTotals
from node.transport.connections import ConnectionManager
from node.transport.link import Link

if TYPE_CHECKING:
    from node.daemon import Node

__all__ = [
    "Collection",
    "MailboxError",
    "MailboxRefused",
    "MailboxService",
    "MailboxStopped",
    "MailboxTimeout",
    "MailboxUnreachable",
]

log = structlog.get_logger("node.mailbox")

_QUEUE = 1024  # requests and replies waiting for the handler (the dispatcher's queue)
_MAX_PENDING = 1024  # our requests waiting for a reply
_MAX_STORE_BATCH = 256  # STOREs appended in one transaction
_MAX_DIALS = 4
_SWEEP_BATCH = 1000
_SWEEP_ROUNDS = 100  # at most this many batches per sweep; the next sweep does the rest
_CLOSEST_TTL_S = 300.0
_CLOSEST_CACHED = 4096
_MAX_COLLECT = 3 * 4096  # envelopes one collect() returns (k holders x the key quota)

R = TypeVar("R", Stored, Batch)


class MailboxError(SpacePandaError):
    """A mailbox request could not be completed."""


class MailboxUnreachable(MailboxError):
    """No link to the holder and no way to make one (no record, every address failed)."""


class MailboxTimeout(MailboxError):
    """The holder did not answer in time (the request may still have been served)."""


class MailboxRefused(MailboxError):
    """The holder refused a FETCH (rate-limited or unavailable); ``status`` says which."""

    def __init__(self, message: str, status: Status) -> None:
        super().__init__(message)
        self.status = status


class MailboxStopped(MailboxError):
    """The mailbox service is not running."""


@dataclass(frozen=True)
class Collection:
    """What :meth:`MailboxService.collect` got from a key's holders."""

    envelopes: tuple[bytes, ...]  # each once, in holder order then sequence order
    cursors: dict[PeerId, int]  # where to resume with each holder that answered
    failed: tuple[PeerId, ...]  # holders that could not be reached or refused
    complete: bool  # every holder that answered was read to its end


class MailboxService:
    """The mailbox holder and client of one node. Call :meth:`start` with the node's
    TaskGroup once the node runs; :meth:`stop` when it stops."""

    def __init__(
        self,
        node: Node,
        store: MailboxStore,
        *,
        settings: MailboxSettings | None = None,
        request_timeout_s: float = 10.0,
        sweep_interval_s: float = 60.0,
        wall: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._node = node
        self._store = store
        self.mailbox = Mailbox(settings)
        self._timeout = request_timeout_s
        self._sweep_s = sweep_interval_s
        self._wall = wall
        self._rng = rng
        self._next_id = int.from_bytes(rng(8), "big")
        self._holder_secret: bytes | None = None  # read from the store on the first STORE
        self._pending: dict[tuple[PeerId, int], tuple[type, asyncio.Future[Stored | Batch]]] = {}
        self._dials = asyncio.Semaphore(_MAX_DIALS)
        self._dialing: dict[PeerId, asyncio.Future[Link]] = {}  # one dial per peer at a time
        self._stores: asyncio.Queue[tuple[PeerId, Store]] = asyncio.Queue(_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self.counters: Counter[str] = Counter()
        self._closest_cache: dict[bytes, tuple[float, list[PeerId]]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, task_group: asyncio.TaskGroup) -> None:
        """Serve ``sp/mbx/1`` and sweep expired envelopes (in ``task_group``)."""
        self._node.register_protocol(PROTOCOL, self._on_message, queue_size=_QUEUE)
        self._tasks = [
            task_group.create_task(self._store_loop(), name="mailbox-store"),
            task_group.create_task(self._sweep_loop(), name="mailbox-sweep"),
        ]
        self._running = True

    def stop(self) -> None:
        """Refuse new requests; fail those waiting for a reply."""
        if self._running:
            self._node.unregister_protocol(PROTOCOL)
        self._running = False
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        for _, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(MailboxStopped("the node is shutting down"))
        self._pending.clear()

    async def _sweep_loop(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(self._sweep_s)

    async def sweep(self) -> int:
        """Delete expired envelopes (bounded per call); returns how many."""
        total = 0
        for _ in range(_SWEEP_ROUNDS):
            try:
                n = await self._store.expire(self._wall(), _SWEEP_BATCH)
            except StorageError as exc:
                log.warning("mailbox_sweep_failed", error=str(exc))
                break
            total += n
            if n < _SWEEP_BATCH:
                break
        if total:
            self.counters["expired"] += total
            log.info("mailbox_expired", envelopes=total)
        return total

    # -- holder ------------------------------------------------------------------------------

    async def _on_message(self, peer: PeerId, payload: bytes) -> None:
        message = decode_mailbox(payload)  # MailboxWireError: the dispatcher counts and drops
        if isinstance(message, Store):
            # Waits while the queue is full: the dispatcher's queue fills, then the links
            # stop reading (backpressure), rather than anything growing without bound.
            await self._stores.put((peer, message))
            return
        if isinstance(message, Fetch):
            self._reply(peer, await self.serve(peer, message))
            return
        entry = self._pending.get((peer, message.request_id))
        if entry is None or entry[1].done():
            self.counters["unexpected_replies"] += 1
            return
        kind, fut = entry
        if isinstance(message, kind):
            fut.set_result(message)
        else:
            fut.set_exception(MailboxWireError(f"mailbox: {type(message).__name__} answers a "
                                               f"{'STORE' if kind is Stored else 'FETCH'}"))

    def _reply(self, peer: PeerId, reply: Stored | Batch) -> None:
        try:
            link = self._node.connections.get(peer)
            if link is None:
                raise TransportError("no link")
            link.try_send(PROTOCOL, reply.encode())
        except SpacePandaError:  # TransportError, or the node is not running any more
            # The requester's queue is full or its link closed: it times out and asks again
            # (a repeated STORE is answered DUPLICATE).
            self.counters["replies_unsent"] += 1

    async def _store_loop(self) -> None:
        while True:
            batch = [await self._stores.get()]
            while len(batch) < _MAX_STORE_BATCH and not self._stores.empty():
                batch.append(self._stores.get_nowait())
            try:
                replies = await self.serve_stores(batch)
            except Exception:  # our bug: say so, answer UNAVAILABLE, keep serving
                log.exception("mailbox_store_batch_failed", requests=len(batch))
                self.counters["store_batch_failures"] += 1
                replies = [self.mailbox.refuse(r, Status.UNAVAILABLE) for _, r in batch]
            for (peer, _), reply in zip(batch, replies, strict=True):
                self._reply(peer, reply)

    async def serve_stores(self, requests: list[tuple[PeerId, Store]]) -> list[Stored]:
        """Answer STOREs (uploader, request), appending the admitted ones in one
        transaction; the replies in the same order."""
        now = self._wall()
        try:
            if self._holder_secret is None:
                self._holder_secret = await self._store.holder_secret(self._rng(HOLDER_SECRET_LEN))
        except StorageError as exc:
            log.warning("mailbox_store_failed", error=str(exc), requests=len(requests))
            return [self.mailbox.refuse(r, Status.UNAVAILABLE) for _, r in requests]
        secret = self._holder_secret
        decided = [self.mailbox.on_store(peer, uploader_pseudonym(secret, peer), request, now)
                   for peer, request in requests]
        appends = [d for d in decided if isinstance(d, Append)]
        results = None
        try:
            results = iter(await self._store.append_many([a.entry for a in appends],
                                                         self.mailbox.admit, now))
        except StorageError as exc:
            log.warning("mailbox_store_failed", error=str(exc), requests=len(appends))
        replies: list[Stored] = []
        for d in decided:
            if isinstance(d, Stored):
                replies.append(d)
            elif results is None:
                replies.append(self.mailbox.refuse(d.request, Status.UNAVAILABLE))
            else:
                replies.append(self.mailbox.stored(d.request, next(results)))
        if len(appends) > 1:
            self.counters["store_batches"] += 1
        return replies

    async def serve(self, peer: PeerId, request: Store | Fetch) -> Stored | Batch:
        """Answer one request from ``peer`` (the uploader or fetcher) from the store."""
        if isinstance(request, Store):
            return (await self.serve_stores([(peer, request)]))[0]
        now = self._wall()
        read = self.mailbox.on_fetch(peer, request, now)
        if isinstance(read, Batch):
            return read
        try:
            page = await self._store.fetch(request.key, request.cursor, request.limit,
                                           read.max_bytes, now)
        except StorageError as exc:
            log.warning("mailbox_fetch_failed", error=str(exc))
            return self.mailbox.unavailable(request)
        return self.mailbox.batch(read, page)

    # -- client ------------------------------------------------------------------------------

    async def store(self, peer: PeerId, key: bytes, envelope: bytes, *,
                    day: int | None = None) -> Status:
        """STORE ``envelope`` under ``key`` at ``peer``; its answer (OK and DUPLICATE mean
        held). ``day``: the day ``key`` was derived for (default: today)."""
        d = day_of(self._wall()) if day is None else day
        reply = await self._request(peer, Store(self._new_id(), key, d, envelope), Stored)
        self.counters[f"store_{reply.status.name.lower()}"] += 1
        return reply.status

    async def fetch(self, peer: PeerId, key: bytes, cursor: int = 0,
                    limit: int = MAX_LIMIT) -> Batch:
        """FETCH the envelopes after ``cursor`` under ``key`` from ``peer`` (checked: all
        after the cursor, at most ``limit``, only sealed-envelope lengths)."""
        request = Fetch(self._new_id(), key, cursor, limit)
        batch = check_batch(request, await self._request(peer, request, Batch))
        if batch.status != Status.OK:
            self.counters[f"fetch_{batch.status.name.lower()}"] += 1
            raise MailboxRefused(f"{peer.short()} refused the fetch: {batch.status.name}",
                                 batch.status)
        self.counters["fetched"] += len(batch.items)
        return batch

    async def place(self, key: bytes, envelope: bytes, k: int = PLACEMENT_K, *,
                    day: int | None = None) -> list[PeerId]:
        """Store ``envelope`` at the ``k`` nodes closest to ``key``; the holders that
        acknowledged it (stored or already held), nearest first."""
        holders = await self._closest(key, k)
        results: dict[PeerId, Status | None] = {}

        async def one(peer: PeerId) -> None:
            try:
                results[peer] = await self.store(peer, key, envelope, day=day)
            except MailboxError as exc:
                log.debug("mailbox_place_failed", peer=str(peer), error=str(exc))
                results[peer] = None

        async with asyncio.TaskGroup() as tg:
            for peer in holders:
                tg.create_task(one(peer))
        placed = [p for p in holders if results.get(p) in ACCEPTED]
        self.counters["placed"] += 1
        self.counters["placed_copies"] += len(placed)
        return placed

    async def collect(self, key: bytes, k: int = COLLECT_K, *,
                      cursors: Mapping[PeerId, int] | None = None,
                      max_envelopes: int = _MAX_COLLECT) -> Collection:
        """Fetch everything under ``key`` from its ``k`` holders, each from its cursor (0, or
        ``cursors`` from an earlier call), following ``more``; each envelope once."""
        holders = await self._closest(key, k)
        start = dict(cursors or {})
        pages: dict[PeerId, list[bytes]] = {}
        ends: dict[PeerId, int] = {}
        done: dict[PeerId, bool] = {}
        failed: list[PeerId] = []

        async def one(peer: PeerId) -> None:
            cursor, got = start.get(peer, 0), pages.setdefault(peer, [])
            try:
                while len(got) < max_envelopes:
                    batch = await self.fetch(peer, key, cursor,
                                             min(MAX_LIMIT, max_envelopes - len(got)))
                    got += [env for _, env in batch.items]
                    cursor = batch.next_cursor
                    if not batch.more:
                        done[peer] = True
                        break
            except MailboxError as exc:
                log.debug("mailbox_collect_failed", peer=str(peer), error=str(exc))
                failed.append(peer)
            except MailboxWireError as exc:
                log.info("mailbox_holder_misbehaved", peer=str(peer), error=str(exc))
                failed.append(peer)
            finally:
                ends[peer] = cursor

        async with asyncio.TaskGroup() as tg:
            for peer in holders:
                tg.create_task(one(peer))
        seen: set[bytes] = set()
        envelopes: list[bytes] = []
        for peer in holders:
            for env in pages.get(peer, ()):
                digest = envelope_digest(env)
                if digest not in seen and len(envelopes) < max_envelopes:
                    seen.add(digest)
                    envelopes.append(env)
        answered = [p for p in holders if p not in failed]
        return Collection(tuple(envelopes), {p: ends[p] for p in answered},
                          tuple(p for p in holders if p in failed),
                          all(done.get(p, False) for p in answered))

    async def _closest(self, key: bytes, k: int) -> list[PeerId]:
        """The ``k`` nodes closest to ``key`` other than this one: a sender holding its own
        envelope is no help to a member that returns while the sender is away, so placement
        skips itself, and collection (asked for one more) still covers every holder a sender
        could have chosen. Cached for a while: a key's holders change only with churn."""
        now = self._wall()
        cached = self._closest_cache.get(key)
        if cached is not None and cached[0] > now and len(cached[1]) >= k:
            return cached[1][:k]
        try:
            found = await self._node.dht.closest_peers(key, k + 1)
        except DhtError as exc:
            raise MailboxUnreachable(f"no holders for the key: {exc}") from None
        others = [p for p in found if p != self._node.peer_id][:k]
        if len(self._closest_cache) >= _CLOSEST_CACHED:
            self._closest_cache.clear()
        self._closest_cache[key] = (now + _CLOSEST_TTL_S, others)
        return others

    def _new_id(self) -> int:
        self._next_id = (self._next_id + 1) & MAX_REQUEST_ID
        return self._next_id

    async def _request(self, peer: PeerId, request: Store | Fetch, kind: type[R]) -> R:
        if not self._running:
            raise MailboxStopped("the mailbox service is not running")
        if peer == self._node.peer_id:
            reply = await self.serve(peer, request)
            assert isinstance(reply, kind)
            return reply
        if len(self._pending) >= _MAX_PENDING:
            raise MailboxUnreachable("too many mailbox requests waiting for replies")
        slot = (peer, request.request_id)
        fut: asyncio.Future[Stored | Batch] = asyncio.get_running_loop().create_future()
        self._pending[slot] = (kind, fut)
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    await (await self._link(peer)).send(PROTOCOL, request.encode())
                except ConnectionClosed:
                    # The link closed under us (e.g. a duplicate link was dropped): once more
                    # on whatever link is up now.
                    await (await self._link(peer)).send(PROTOCOL, request.encode())
                reply = await fut
        except TimeoutError:
            self.counters["timeouts"] += 1
            raise MailboxTimeout(f"{peer.short()} did not answer within {self._timeout} s"
                                 ) from None
        except TransportError as exc:
            raise MailboxUnreachable(f"{peer.short()}: {exc}") from None
        finally:
            self._pending.pop(slot, None)
        assert isinstance(reply, kind)
        return reply

    async def _link(self, peer: PeerId) -> Link:
        """The link to ``peer``, dialled from its signed DHT record if there is none (one
        dial per peer at a time: concurrent requests wait for the same one)."""
        try:
            conns = self._node.connections
        except SpacePandaError:
            raise MailboxStopped("the node is not running") from None
        link = conns.get(peer)
        if link is not None:
            return link
        waiting = self._dialing.get(peer)
        if waiting is not None:
            return await asyncio.shield(waiting)  # a waiter's timeout leaves the dial alone
        fut: asyncio.Future[Link] = asyncio.get_running_loop().create_future()
        self._dialing[peer] = fut
        try:
            async with self._dials:
                link = await self._dial(conns, peer)
        except BaseException as exc:
            fut.set_exception(exc if isinstance(exc, MailboxError)
                              else MailboxUnreachable(f"dialling {peer.short()} was aborted"))
            fut.exception()  # nobody may be waiting: do not log it as unretrieved
            raise
        else:
            fut.set_result(link)
            return link
        finally:
            del self._dialing[peer]

    async def _dial(self, conns: ConnectionManager, peer: PeerId) -> Link:
        link = conns.get(peer)
        if link is not None:
            return link
        try:
            record = await self._node.dht.resolve(peer)
        except DhtError as exc:
            raise MailboxUnreachable(f"{peer.short()}: {exc}") from None
        if record is None:
            raise MailboxUnreachable(f"{peer.short()} has no signed record in the DHT")
        failure = "no addresses"
        for addr in record.multiaddrs():
            try:
                link = await conns.dial(addr.with_peer_id(peer))
            except TransportError as exc:
                failure = str(exc)
                continue
            self.counters["dials"] += 1
            return link
        self.counters["dial_failures"] += 1
        raise MailboxUnreachable(f"{peer.short()} cannot be reached: {failure}")

    # -- visibility ---------------------------------------------------------------------------

    async def usage(self) -> MailboxTotals:
        """What this node holds for others."""
        return await self._store.totals()

    def statistics(self) -> dict[str, object]:
        return {
            "holder": self.mailbox.statistics(),
            "client": dict(self.counters),
            "pending_requests": len(self._pending),
        }

