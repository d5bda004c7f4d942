"""Hardened Kademlia protocol: ``kademlia.protocol.KademliaProtocol`` subclassed, not forked.

What changes relative to upstream (each is tested in ``tests/dht/test_hostile.py``):

* Datagrams are parsed by :mod:`dht.wire` synchronously in ``datagram_received``; anything
  malformed (bad msgpack, wrong arity, non-bytes or wrong-length ids, deep nesting, oversize)
  is dropped and counted instead of raising inside a task.
* Node ids are bound to identity keys: ``node_id = sha1(domain || Ed25519 key)``, and a
  contact enters the routing table only after answering an ``identify`` challenge (a signature
  over ``domain || nonce || node_id``). Proofs are cached per address.
* Every address from the network is checked before it can reach ``sendto`` (an out-of-range
  port there closes the asyncio transport for good); replies are validated per RPC.
* Per-source token buckets; replies to addresses that have not proven themselves are bounded
  to ``amplification_factor`` times the request size; ``find_*`` requests are padded until the
  peer has validated us so honest first contacts still get full answers.
* RTT-adaptive timeouts, failure counts with retries before eviction, and the routing-table
  fixes in :mod:`dht.routing`. ``welcome_if_new`` no longer hashes already-hashed keys.
* No stored value is logged; no ``__getattr__`` magic turns typos into remote calls.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from kademlia.node import Node
from kademlia.protocol import KademliaProtocol

from dht.config import DhtConfig
from dht.errors import DhtError
from dht.limits import RttEstimator, valid_contact_address
from dht.records import VerifiedPeerRecord
from dht.routing import Contact, RoutingTable
from dht.storage import RecordStorage, StoreResult
from dht.wire import REQUEST, Datagram, WireError, encode_request, encode_response, parse_datagram
from node.core.ed25519 import is_strict_public_key
from node.core.identity import Identity, PeerId, node_id_for
from node.core.ratelimit import RateLimiter

__all__ = ["IDENTIFY_DOMAIN", "DhtProtocol", "Proof"]

log = logging.getLogger(__name__)

IDENTIFY_DOMAIN = b"spacepanda/dht-identify/v1"
_NONCE_LEN = 16
# find_* requests to a peer that has not validated us are padded to this size so that the
# peer's amplification bound (3x) still lets a full reply through.
_PADDED_REQUEST = 420
_VALIDATED_CACHE = 4096
_EXPIRED_CACHE = 1024
_PROOF_CACHE = 8192

Addr = tuple[str, int]
Result = tuple[bool, Any]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Proof:
    """An address proved, at ``at`` (loop time), to hold the key of ``peer_id``."""

    node_id: bytes
    peer_id: PeerId
    at: float


class _Drop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Pending:
    future: asyncio.Future[Result]
    timer: asyncio.TimerHandle
    addr: Addr
    sent_at: float  # first transmission: an RTT sample from it can only over-estimate
    parse: Callable[[Any], Any]
    data: bytes
    retries: int
    rto: float


def _is_id(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == 20


def _triple_size(ip: str, port: int) -> int:
    """msgpack size of ``[id20, ip, port]`` (array, bin8 id, str, uint) without encoding it."""
    ip_len = len(ip.encode())
    str_head = 1 if ip_len < 32 else 2
    port_len = 1 if port < 128 else 2 if port < 256 else 3
    return 1 + 2 + 20 + str_head + ip_len + port_len


def _parse_node_id(body: Any) -> bytes:
    if not _is_id(body):
        raise _Drop("bad_response")
    return bytes(body)


def _parse_identify(body: Any) -> tuple[bytes, bytes]:
    if (
        not isinstance(body, list)
        or len(body) != 2
        or not isinstance(body[0], bytes)
        or len(body[0]) != 32
        or not isinstance(body[1], bytes)
        or len(body[1]) != 64
    ):
        raise _Drop("bad_response")
    if not is_strict_public_key(body[0]):
        # Small-order or non-canonical: a key anyone can sign for, so no signature by it
        # proves anything (PROTOCOL.md 2.3). Counted as a bad identify signature.
        raise _Drop("bad_identify_signature")
    return body[0], body[1]


def _parse_bool(body: Any) -> bool:
    if not isinstance(body, bool):
        raise _Drop("bad_response")
    return body


class DhtProtocol(KademliaProtocol):  # type: ignore[misc]
    """One node's DHT endpoint. ``clock`` is unix time (records); ``monotonic`` (default: the
    event loop's clock) times rate limits, RTTs and proof ages; timers use the loop."""

    def __init__(
        self,
        identity: Identity,
        storage: RecordStorage,
        config: DhtConfig,
        *,
        clock: Clock,
        monotonic: Clock | None = None,
        randbytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.identity = identity
        self.node_id = node_id_for(identity.public_key_bytes)
        KademliaProtocol.__init__(self, Node(self.node_id), storage, config.ksize)
        self.storage: RecordStorage = storage
        self.config = config
        self._clock = clock
        self._monotonic = monotonic
        self._randbytes = randbytes
        self._wait_timeout = config.max_timeout
        self.router = RoutingTable(
            self,
            config.ksize,
            self.source_node,
            clock=clock,
            subnet_prefix_v4=config.subnet_prefix_v4,
            subnet_prefix_v6=config.subnet_prefix_v6,
            max_per_subnet_bucket=config.max_per_subnet_bucket,
            max_per_subnet_table=config.max_per_subnet_table,
            max_failures=config.max_failures,
            limit_local=config.limit_local_subnets,
        )
        self._limiter = RateLimiter(config.rate_per_source, config.burst_per_source)
        self.rtt = RttEstimator(config.initial_timeout, config.min_timeout, config.max_timeout)
        self._outstanding: dict[bytes, _Pending] = {}
        self._expired: dict[bytes, tuple[Addr, float]] = {}
        self._proofs: OrderedDict[Addr, Proof] = OrderedDict()
        self._proof_failed: dict[Addr, float] = {}
        self._proving: dict[Addr, asyncio.Future[Proof | None]] = {}
        self._validated_by: OrderedDict[Addr, float] = OrderedDict()
        self._checking: set[bytes] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # The node's TaskGroup when run inside a node (set by DhtService.start).
        self.task_group: asyncio.TaskGroup | None = None
        self._family = 4
        self.drops: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self._rpcs: dict[str, tuple[Callable[..., Any], int, int]] = {
            "ping": (self._rpc_ping, 1, 1),
            "identify": (self._rpc_identify, 2, 2),
            "store": (self._rpc_store, 3, 3),
            "find_node": (self._rpc_find_node, 2, 3),
            "find_value": (self._rpc_find_value, 2, 3),
        }

    def __getattr__(self, name: str) -> Any:
        # rpcudp turns any unknown attribute into a remote call; we only call what we define.
        raise AttributeError(name)

    # ------------------------------------------------------------------ asyncio plumbing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sockname = transport.get_extra_info("sockname")
        if sockname and ":" in str(sockname[0]):
            self._family = 6

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (e.g. port unreachable from a dead contact) surface here; the pending
        # request will time out on its own.
        self.counters["icmp_errors"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.counters["transport_lost"] += 1

    def _now(self) -> float:
        if self._monotonic is not None:
            return self._monotonic()
        return asyncio.get_running_loop().time()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> bool:
        """Run a short background job owned by this protocol (cancelled by :meth:`close`);
        False if it could not start (the node's TaskGroup is ending)."""
        if self.task_group is not None:
            guarded = self._guard(coro)
            try:
                task = self.task_group.create_task(guarded)
            except RuntimeError:  # the node's TaskGroup is ending: the datagram is dropped
                guarded.close()
                coro.close()
                return False
        else:
            task = asyncio.get_running_loop().create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # A job cancelled before it ran never awaited ``coro``: close it quietly.
        task.add_done_callback(lambda _: coro.close())
        return True

    async def _guard(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in one job must not take the node down
            log.exception("dht background job failed")
            self.drops["internal_error"] += 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for pending in list(self._outstanding.values()):
            pending.timer.cancel()
            if not pending.future.done():
                pending.future.set_result((False, None))
        self._outstanding.clear()
        if self.transport is not None:
            self.transport.close()

    def _send(self, data: bytes, addr: Addr) -> None:
        # asyncio's UDP transport is not a DatagramTransport subclass on every version.
        transport: Any = self.transport
        if transport is None or transport.is_closing():
            self.drops["send_closed"] += 1
            return
        try:
            transport.sendto(data, addr)
        except (OSError, ValueError, OverflowError, TypeError):
            self.drops["send_error"] += 1
            return
        self.counters["datagrams_out"] += 1

    def _sendable(self, addr: Addr) -> bool:
        return valid_contact_address(addr[0], addr[1], self._family)

    # ------------------------------------------------------------------ inbound

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.counters["datagrams_in"] += 1
        source: Addr = (str(addr[0]), int(addr[1]))
        if not self._limiter.allow(source[0], self._now()):
            self.drops["rate_limited"] += 1
            return
        try:
            dgram = parse_datagram(data, self.config.max_datagram)
            if dgram.kind == REQUEST:
                self._on_request(dgram, source)
            else:
                self._on_response(dgram, source)
        except WireError as exc:
            self.drops[exc.reason] += 1
        except _Drop as exc:
            self.drops[exc.reason] += 1
        except Exception:  # never let a datagram escape into the event loop
            log.exception("unexpected error handling a DHT datagram")
            self.drops["internal_error"] += 1

    def _on_request(self, dgram: Datagram, addr: Addr) -> None:
        name, args = dgram.body
        spec = self._rpcs.get(name)
        if spec is None:
            raise _Drop("unknown_rpc")
        handler, lo, hi = spec
        if not lo <= len(args) <= hi:
            raise _Drop("bad_arity")
        sender = args[0]
        if not _is_id(sender):
            raise _Drop("bad_node_id")
        if sender == self.node_id:
            raise _Drop("own_node_id")
        budget = self.config.max_datagram
        if self._fresh_proof(addr) is None:
            budget = min(budget, self.config.amplification_factor * dgram.size)
        result = handler(addr, budget, *args)
        reply = encode_response(dgram.msg_id, result)
        if len(reply) > budget:
            raise _Drop("amplification")
        self.counters[f"rpc_in_{name}"] += 1
        self._send(reply, addr)
        self._note_sender(sender, addr)

    def _on_response(self, dgram: Datagram, addr: Addr) -> None:
        pending = self._outstanding.get(dgram.msg_id)
        if pending is None:
            expired = self._expired.get(dgram.msg_id)
            if expired is not None and expired[0] == addr:
                del self._expired[dgram.msg_id]
                self.rtt.sample(addr, self._now() - expired[1])
                self.counters["late_replies"] += 1
                return
            raise _Drop("unexpected_response")
        if pending.addr != addr:
            raise _Drop("response_wrong_source")
        del self._outstanding[dgram.msg_id]
        pending.timer.cancel()
        self.rtt.sample(addr, self._now() - pending.sent_at)
        if pending.future.done():
            return
        try:
            parsed = pending.parse(dgram.body)
        except _Drop as exc:
            self.drops[exc.reason] += 1
            pending.future.set_result((False, None))
            return
        pending.future.set_result((True, parsed))

    # ------------------------------------------------------------------ RPC handlers

    @staticmethod
    def _check_key(key: object) -> bytes:
        if not isinstance(key, bytes) or len(key) != 20:
            raise _Drop("bad_key")
        return key

    @staticmethod
    def _check_pad(pad: tuple[Any, ...]) -> None:
        if pad and not isinstance(pad[0], bytes):
            raise _Drop("bad_arity")

    def _rpc_ping(self, addr: Addr, budget: int, sender: bytes) -> bytes:
        return self.node_id

    def _rpc_identify(self, addr: Addr, budget: int, sender: bytes, nonce: Any) -> list[bytes]:
        if not isinstance(nonce, bytes) or not 16 <= len(nonce) <= 64:
            raise _Drop("bad_nonce")
        signature = self.identity.sign(IDENTIFY_DOMAIN + nonce + self.node_id)
        # The asker saw our answer to its fresh nonce, so it has validated our address.
        self._validated_by[addr] = self._now()
        self._validated_by.move_to_end(addr)
        if len(self._validated_by) > _VALIDATED_CACHE:
            self._validated_by.popitem(last=False)
        return [self.identity.public_key_bytes, signature]

    def _rpc_store(self, addr: Addr, budget: int, sender: bytes, key: Any, value: Any) -> bool:
        key = self._check_key(key)
        # Values are never logged: they are peer data, not ours to print. True means "held
        # now": stored, or exactly these bytes were held already.
        result = self.storage.put(key, value, addr[0])
        return result == StoreResult.STORED or result == StoreResult.DUPLICATE

    def _neighbors_within(self, addr: Addr, sender: bytes, key: bytes, budget: int) -> list[Any]:
        exclude = Node(sender, addr[0], addr[1])
        room = budget - 21 - 3  # rpcudp header + array header
        out: list[Any] = []
        for n in self.router.find_neighbors(Node(key), exclude=exclude):
            triple = [n.id, n.ip, n.port]
            size = _triple_size(n.ip, n.port)
            if size > room:
                self.counters["reply_truncated"] += 1
                break
            room -= size
            out.append(triple)
        return out

    def _rpc_find_node(self, addr: Addr, budget: int, sender: bytes, key: Any, *pad: Any) -> Any:
        self._check_pad(pad)
        return self._neighbors_within(addr, sender, self._check_key(key), budget)

    def _rpc_find_value(self, addr: Addr, budget: int, sender: bytes, key: Any, *pad: Any) -> Any:
        self._check_pad(pad)
        key = self._check_key(key)
        value = self.storage.get(key)
        if isinstance(value, bytes):
            reply = {"value": value}
            if len(encode_response(bytes(20), reply)) <= budget:
                return reply
            self.counters["reply_truncated"] += 1
        return self._neighbors_within(addr, sender, key, budget)

    # ------------------------------------------------------------------ identity proofs

    def _fresh_proof(self, addr: Addr) -> Proof | None:
        proof = self._proofs.get(addr)
        if proof is not None and self._now() - proof.at > self.config.identify_ttl:
            del self._proofs[addr]
            return None
        return proof

    def proof_for(self, node: Node) -> Proof | None:
        """The cached proof for ``node``'s address if it proves ``node``'s id."""
        proof = self._fresh_proof((node.ip, node.port))
        return proof if proof is not None and proof.node_id == node.id else None

    def _note_sender(self, sender: bytes, addr: Addr) -> None:
        proof = self._fresh_proof(addr)
        if proof is not None and proof.node_id == sender:
            self.welcome_if_new(Contact(sender, addr[0], addr[1], proof.peer_id))
            return
        if addr in self._proving:
            return
        if self._proof_failed.get(addr, 0.0) > self._now():
            return
        if not self.router.would_take(Node(sender, addr[0], addr[1])):
            # Its bucket is full (or its prefix at its limit): a proof would buy nothing but
            # a replacement entry, and costs both sides a signature, a verification and two
            # datagrams. Lookups still prove it if they need it.
            self.counters["identify_skipped"] += 1
            return
        if len(self._proving) >= self.config.max_pending_identify:
            self.drops["identify_backlog"] += 1
            return
        # Registered before this datagram handler returns, so a burst from one address
        # (delivered in one loop iteration) starts one challenge, not one per datagram.
        future = self._identify_shared(addr, 1)
        future.add_done_callback(lambda done: self._welcome_proven(addr, sender, done))

    def _welcome_proven(
        self, addr: Addr, sender: bytes, done: asyncio.Future[Proof | None]
    ) -> None:
        if done.cancelled():
            return
        proof = done.result()
        if proof is None:
            return
        if proof.node_id != sender:
            self.drops["node_id_mismatch"] += 1
            return
        try:
            self.welcome_if_new(Contact(sender, addr[0], addr[1], proof.peer_id))
        except Exception:  # a callback's error would reach the loop's exception handler
            log.exception("welcoming a proven DHT contact failed")
            self.drops["internal_error"] += 1

    async def prove(
        self,
        addr: Addr,
        *,
        expected_node_id: bytes | None = None,
        expected_peer: PeerId | None = None,
        attempts: int = 1,
    ) -> Proof | None:
        """Challenge ``addr`` to prove its identity key (cached); None if it cannot."""
        if not self._sendable(addr):
            self.drops["bad_address"] += 1
            return None
        proof = self._fresh_proof(addr)
        stale = proof is not None and (
            (expected_node_id is not None and proof.node_id != expected_node_id)
            or (expected_peer is not None and proof.peer_id != expected_peer)
        )
        if proof is None or stale:
            # Shielded: a caller that gives up must not cancel a challenge others wait on.
            proof = await asyncio.shield(self._identify_shared(addr, attempts))
        if proof is None:
            return None
        if expected_node_id is not None and proof.node_id != expected_node_id:
            self.drops["node_id_mismatch"] += 1
            return None
        if expected_peer is not None and proof.peer_id != expected_peer:
            self.drops["peer_id_mismatch"] += 1
            return None
        return proof

    def _identify_shared(self, addr: Addr, attempts: int) -> asyncio.Future[Proof | None]:
        """The challenge of ``addr`` in progress, or a new one (a protocol job)."""
        running = self._proving.get(addr)
        if running is not None:
            return running
        future: asyncio.Future[Proof | None] = asyncio.get_running_loop().create_future()
        self._proving[addr] = future
        if not self.spawn(self._identify_into(addr, attempts, future)):
            del self._proving[addr]
            future.set_result(None)  # nobody is left to answer it; waiters must not hang
        return future

    async def _identify_into(
        self, addr: Addr, attempts: int, future: asyncio.Future[Proof | None]
    ) -> None:
        proof: Proof | None = None
        try:
            proof = await self._identify(addr, attempts)
        finally:
            if self._proving.get(addr) is future:
                del self._proving[addr]
            if not future.done():
                future.set_result(proof)

    async def _identify(self, addr: Addr, attempts: int) -> Proof | None:
        # One nonce; a lost datagram is retransmitted (same message id), so a late answer to
        # the first transmission still counts.
        nonce = self._randbytes(_NONCE_LEN)
        args = [self.node_id, nonce]
        ok, reply = await self._request(
            addr, "identify", args, _parse_identify, retries=max(1, attempts) - 1
        )
        if ok:
            public_key, signature = reply
            node_id = node_id_for(public_key)
            peer_id = PeerId.from_public_key(public_key)
            if peer_id.verify(signature, IDENTIFY_DOMAIN + nonce + node_id):
                proof = Proof(node_id, peer_id, self._now())
                self._proofs[addr] = proof
                self._proofs.move_to_end(addr)
                if len(self._proofs) > _PROOF_CACHE:
                    self._proofs.popitem(last=False)
                self._proof_failed.pop(addr, None)
                self.counters["identified"] += 1
                return proof
            self.drops["bad_identify_signature"] += 1
        self._proof_failed[addr] = self._now() + self.config.identify_negative_ttl
        if len(self._proof_failed) > _PROOF_CACHE:
            self._proof_failed.pop(next(iter(self._proof_failed)))
        return None

    # ------------------------------------------------------------------ outbound

    async def _request(
        self,
        addr: Addr,
        name: str,
        args: list[Any],
        parse: Callable[[Any], Any],
        *,
        pad: bool = False,
        retries: int = 0,
    ) -> Result:
        """Send a request and wait for its answer; after a timeout retransmit the same datagram
        (same message id) up to ``retries`` times, so an answer that was only late, not lost,
        still completes the request. False if every wait timed out or the answer was bad."""
        if not self._sendable(addr):
            self.drops["bad_address"] += 1
            return (False, None)
        if len(self._outstanding) >= self.config.max_outstanding:
            self.drops["too_many_outstanding"] += 1
            return (False, None)
        msg_id = self._randbytes(20)
        data = encode_request(msg_id, name, args)
        if pad and addr not in self._validated_by and len(data) < _PADDED_REQUEST:
            data = encode_request(msg_id, name, [*args, bytes(_PADDED_REQUEST - len(data) - 3)])
        if len(data) > self.config.max_datagram:
            raise DhtError(f"{name} request of {len(data)} bytes does not fit a datagram")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        rto = self.rtt.timeout(addr)
        timer = loop.call_later(rto, self._on_timeout, msg_id)
        pending = _Pending(future, timer, addr, self._now(), parse, data, retries, rto)
        self._outstanding[msg_id] = pending
        self.counters[f"rpc_out_{name}"] += 1
        self._send(data, addr)
        try:
            return await future
        finally:
            if self._outstanding.pop(msg_id, None) is not None:
                pending.timer.cancel()

    def _on_timeout(self, msg_id: bytes) -> None:
        pending = self._outstanding.get(msg_id)
        if pending is None:
            return
        self.counters["timeouts"] += 1
        self.rtt.backoff(pending.addr)
        if pending.retries > 0 and not pending.future.done():
            pending.retries -= 1
            self.counters["retransmits"] += 1
            # Exponential backoff per request (RFC 6298 5.5), also for unknown addresses.
            pending.rto = min(
                self.config.max_timeout, max(2 * pending.rto, self.rtt.timeout(pending.addr))
            )
            loop = asyncio.get_running_loop()
            pending.timer = loop.call_later(pending.rto, self._on_timeout, msg_id)
            self._send(pending.data, pending.addr)
            return
        del self._outstanding[msg_id]
        # An answer may still come: it is not used, but its RTT teaches the estimator.
        self._expired[msg_id] = (pending.addr, pending.sent_at)
        if len(self._expired) > _EXPIRED_CACHE:
            self._expired.pop(next(iter(self._expired)))
        if not pending.future.done():
            pending.future.set_result((False, None))

    def _parse_contacts(self, body: Any) -> list[tuple[bytes, str, int]]:
        if not isinstance(body, list) or len(body) > 2 * self.config.ksize:
            raise _Drop("bad_response")
        out: list[tuple[bytes, str, int]] = []
        for item in body:
            if (
                isinstance(item, list)
                and len(item) == 3
                and _is_id(item[0])
                and item[0] != self.node_id
                and valid_contact_address(item[1], item[2], self._family)
            ):
                out.append((item[0], item[1], item[2]))
            else:
                self.drops["bad_contact"] += 1
        return out

    def _parse_find_value(self, body: Any) -> Any:
        if isinstance(body, dict):
            if set(body) != {"value"} or not isinstance(body["value"], bytes):
                raise _Drop("bad_response")
            return body
        return self._parse_contacts(body)

    async def _call_node(
        self, node: Node, name: str, args: list[Any], parse: Callable[[Any], Any], pad: bool
    ) -> Result:
        addr: Addr = (node.ip, node.port)
        proof = self.proof_for(node)
        retries = self.config.request_retries
        if proof is not None:
            result = await self._request(addr, name, args, parse, pad=pad, retries=retries)
        else:
            # Challenge it in parallel with the query (no extra round trip); its answer counts
            # only if the proof names the id it claimed.
            challenge = self._identify_shared(addr, 1 + retries)
            result = await self._request(addr, name, args, parse, pad=pad, retries=retries)
            proof = await asyncio.shield(challenge)
            if proof is not None and proof.node_id != node.id:
                self.drops["node_id_mismatch"] += 1
                proof = None
            if proof is None:
                result = (False, None)
        contact = node if proof is None else Contact(node.id, node.ip, node.port, proof.peer_id)
        return self.handle_call_response(result, contact)

    async def call_ping(self, node_to_ask: Node) -> Result:
        return await self._call_node(node_to_ask, "ping", [self.node_id], _parse_node_id, False)

    async def call_find_node(self, node_to_ask: Node, node_to_find: Node) -> Result:
        args = [self.node_id, node_to_find.id]
        return await self._call_node(node_to_ask, "find_node", args, self._parse_contacts, True)

    async def call_find_value(self, node_to_ask: Node, node_to_find: Node) -> Result:
        args = [self.node_id, node_to_find.id]
        return await self._call_node(node_to_ask, "find_value", args, self._parse_find_value, True)

    async def call_store(self, node_to_ask: Node, key: bytes, value: bytes) -> Result:
        args = [self.node_id, key, value]
        return await self._call_node(node_to_ask, "store", args, _parse_bool, False)

    def handle_call_response(self, result: Result, node: Node) -> Result:
        if not result[0]:
            self.router.record_failure(node)
            return result
        self.router.record_success(node)
        self.welcome_if_new(node)
        return result

    # ------------------------------------------------------------------ table maintenance

    def welcome_if_new(self, node: Node) -> None:
        """Add a *proven* contact; hand it the records it should now hold (bounded).

        Paper section 2.5: a record goes to the newcomer when it is among the k closest to the
        key that we know and we are closer to the key than any contact we know. The second
        test rules out most keys and needs only the minimum distance, so it runs first; both
        are C-level passes over the table's cached ids (no per-contact Python code).
        """
        if not isinstance(node, Contact):
            return
        if not self.router.is_new_node(node):
            self.router.add_contact(node)
            return
        ksize = self.router.ksize
        ours = self.source_node.long_id
        theirs = node.long_id
        ids = self.router.contact_ids()
        sent = 0
        for key, value in self.storage:
            if sent >= self.config.max_welcome_stores:
                break
            keyint = int.from_bytes(key, "big")  # storage keys are already digests
            # Distances of zero (a contact whose id is the key itself) are left out.
            closest = min(filter(None, map(keyint.__xor__, ids)), default=None)
            if closest is not None and (ours ^ keyint) >= closest:
                continue  # another contact is closer: it is the one to hand over
            near = heapq.nsmallest(ksize, filter(None, map(keyint.__xor__, ids)))
            if len(near) < ksize or (theirs ^ keyint) < near[-1]:
                self.spawn(self.call_store(node, key, value))
                sent += 1
        self.router.add_contact(node)

    def verify_record(self, key: bytes, value: bytes, now: float) -> VerifiedPeerRecord:
        """Decode and verify a record found under ``key`` (memoised; raises RecordError)."""
        return self.storage.cache.verify(key, value, now)

    def add_proven(self, addr: Addr, proof: Proof) -> None:
        self.welcome_if_new(Contact(proof.node_id, addr[0], addr[1], proof.peer_id))

    def check_contact(self, node: Node) -> None:
        """Ping a bucket head with retries; evict it only if every attempt fails."""
        if node.id in self._checking:
            return
        self._checking.add(node.id)
        self.spawn(self._check_contact(node))

    async def _check_contact(self, node: Node) -> None:
        try:
            addr: Addr = (node.ip, node.port)
            for _ in range(self.config.max_failures):
                ok, _ = await self._request(addr, "ping", [self.node_id], _parse_node_id)
                if ok:
                    self.router.record_success(node)
                    self.router.add_contact(node)
                    return
            self.router.remove_contact(node)
            self.router.rejected["evicted"] += 1
        finally:
            self._checking.discard(node.id)

    def random_id_in(self, bounds: tuple[int, int]) -> bytes:
        """A random node id within a bucket's (inclusive) range."""
        lo, hi = bounds
        hi = min(hi, 2**160 - 1)  # upstream's first bucket ends at 2**160, not 2**160 - 1
        rand = int.from_bytes(self._randbytes(20), "big")
        return (lo + rand % (hi - lo + 1)).to_bytes(20, "big")

    def get_refresh_ids(self) -> list[bytes]:
        return [self.random_id_in(b.range) for b in self.router.lonely_buckets()]

    def contacts(self) -> list[Contact]:
        return [n for n in self.router.contacts() if isinstance(n, Contact)]

    def statistics(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id.hex(),
            "buckets": [len(b) for b in self.router.buckets],
            "contacts": len(self.router.contacts()),
            "outstanding": len(self._outstanding),
            "proofs_cached": len(self._proofs),
            "counters": dict(self.counters),
            "drops": dict(self.drops),
            "routing": dict(self.router.rejected),
        }
