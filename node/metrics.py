"""Prometheus metrics: one registry per node, read at scrape time.

Conventions (https://prometheus.io/docs/practices/naming/): every family starts with
``spacepanda_``, names carry their unit (``_seconds``, ``_bytes``), counters end in
``_total``, and every labelled family is exported from the first scrape with each label value
it can take at 0 (so ``rate()`` and alerts work before the first event). The process
collector adds the standard ``process_*`` families (CPU, memory, file descriptors, start
time).

Most values are snapshots the node and its parts already keep (``statistics()``, counters);
what must be cumulative across links that come and go, lookup latencies and messages
sent/received are kept here, in :class:`Telemetry`, which the node owns.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dht.service import DhtService
from dht.storage import StoreResult
from node.buildinfo import build_info
from node.core.errors import StorageError
from node.core.identity import PeerId
from node.metrics_network import network_families
from node.storage.mailboxstore import MailboxTotals
from node.transport.connections import LinkDown, LinkEvent, LinkUp
from node.transport.link import Link

if TYPE_CHECKING:
    from node.channel_service import ChannelService
    from node.mailbox_service import MailboxService

__all__ = [
    "LOOKUP_BUCKETS",
    "Histogram",
    "LinkTotals",
    "Telemetry",
    "TimedDhtService",
    "node_registry",
]

log = structlog.get_logger("node.metrics")

MAILBOX_SAMPLE_S = 10.0  # seconds between reads of the mailbox totals for the metrics
# Seconds. A lookup on a LAN takes milliseconds; one through dead contacts up to the API's 30 s.
LOOKUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Label values every family starts with. Values the code adds later appear when first seen.
HANDSHAKE_FAILURE_KINDS = ("HandshakeError", "PeerIdMismatch", "DialTimeout", "DecodeError",
                           "ConnectionClosed", "LimitExceeded")
REFUSAL_REASONS = ("max_connections", "max_pending_handshakes", "max_pending_per_ip", "blocked")
DHT_RPCS = ("ping", "identify", "store", "find_node", "find_value")
DHT_DROP_REASONS = (
    "rate_limited", "bad_msgpack", "bad_kind", "too_short", "too_deep", "oversized",
    "unknown_rpc", "bad_arity", "bad_node_id", "own_node_id", "bad_key", "bad_nonce",
    "amplification", "unexpected_response", "response_wrong_source", "bad_response",
    "bad_contact", "bad_address", "node_id_mismatch", "peer_id_mismatch",
    "bad_identify_signature", "identify_backlog", "too_many_outstanding", "send_error",
    "send_closed", "internal_error", "bad_value",
)
RECORD_REFUSALS = tuple(
    v for k, v in vars(StoreResult).items()
    if k.isupper() and isinstance(v, str) and v != StoreResult.STORED
)
MESSAGE_DROP_REASONS = (
    "bad_payload", "bad_envelope_key", "bad_welcome", "bad_member", "bad_key_package",
    "duplicate", "not_member", "unexpected_content", "mls_rejected", "commit_not_allowed",
    "too_many_branches", "unknown_welcome", "unknown_invite", "already_member",
    "beyond_window", "not_admin", "unexpected_readd", "unknown_channel", "held_too_long",
)
ENVELOPE_VERDICTS = ("processed", "held", "duplicate", "rate_limited")
CHANNEL_STATUSES = ("active", "leaving", "removed")


class Histogram:
    """Cumulative bucket counts, sum and count, exported as a Prometheus histogram."""

    def __init__(self, buckets: Iterable[float] = LOOKUP_BUCKETS) -> None:
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class LinkTotals:
    """Bytes and frames over every link since start, live and closed: a closed link's last
    stats are added once, so the totals only grow."""

    def __init__(self) -> None:
        self._live: dict[int, Link] = {}
        self.closed = Counter[str]()
        self.handshakes = Counter[str]({"inbound": 0, "outbound": 0})

    def observe(self, event: LinkEvent) -> None:
        """A ``Node.observe_links`` observer (never blocks)."""
        if isinstance(event, LinkUp):
            self.handshakes[event.link.direction] += 1
            self._live[id(event.link)] = event.link
        elif isinstance(event, LinkDown):
            self._retire(event.link)

    def _retire(self, link: Link) -> None:
        if self._live.pop(id(link), None) is None:
            return
        s = link.stats()
        self.closed.update(bytes_in=s.bytes_in, bytes_out=s.bytes_out,
                           frames_in=s.frames_in, frames_out=s.frames_out)

    def totals(self, live: Iterable[Link]) -> dict[str, int]:
        for link in live:  # admitted, and its LinkUp not drained yet
            if id(link) not in self._live and not link.closed.is_set():
                self._live[id(link)] = link
        for link in [lk for lk in self._live.values() if lk.closed.is_set()]:
            self._retire(link)
        out = Counter[str](self.closed)
        for link in self._live.values():
            s = link.stats()
            out.update(bytes_in=s.bytes_in, bytes_out=s.bytes_out,
                       frames_in=s.frames_in, frames_out=s.frames_out)
        return {k: out[k] for k in ("bytes_in", "bytes_out", "frames_in", "frames_out")}


@dataclass
class Telemetry:
    """What the node counts for its metrics that nothing else keeps."""

    links: LinkTotals = field(default_factory=LinkTotals)
    lookups: dict[str, Histogram] = field(
        default_factory=lambda: {"resolve": Histogram(), "random_walk": Histogram()}
    )
    messages: Counter[str] = field(default_factory=lambda: Counter({"sent": 0, "received": 0}))
    notices_lost: int = 0
    # What this node holds for others, as last read from the database (a scrape cannot
    # wait for a query): every MAILBOX_SAMPLE_S, and whenever GET /v1/network reads it.
    mailbox_usage: MailboxTotals | None = None

    async def sample_mailbox_usage(self, mailboxes: MailboxService,
                                   every_s: float = MAILBOX_SAMPLE_S) -> None:
        """Keep :attr:`mailbox_usage` fresh (runs in the node's TaskGroup)."""
        while True:
            try:
                self.mailbox_usage = await mailboxes.usage()
            except StorageError as exc:
                log.warning("mailbox_usage_unreadable", error=str(exc))
            await asyncio.sleep(every_s)

    async def count_messages(self, channels: ChannelService, me: PeerId) -> None:
        """Count the channel service's ``message`` notices as sent (ours) or received.
        Runs in the node's TaskGroup. The service drops a subscriber whose queue is full; a
        queue found full is renewed (as ``GET /v1/events`` does) and the loss counted."""
        me_text = str(me)
        while True:
            queue = channels.subscribe()
            try:
                while True:
                    notice = await queue.get()
                    full = 0 < queue.maxsize <= queue.qsize() + 1
                    for n in [notice, *_drain(queue)]:
                        if n.kind == "message":
                            sender = n.data.get("sender")
                            self.messages["sent" if sender == me_text else "received"] += 1
                    if full:
                        self.notices_lost += 1
                        break
            finally:
                channels.unsubscribe(queue)


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


class TimedDhtService(DhtService):
    """The node's DHT: :class:`DhtService` with its lookups timed for
    ``spacepanda_dht_lookup_duration_seconds`` (every caller, the mesh, channels and the
    API, goes through these two methods)."""

    def __init__(self, *args: Any, telemetry: Telemetry,
                 timer: Callable[[], float] = time.perf_counter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._telemetry = telemetry
        self._timer = timer

    async def resolve(self, peer_id: PeerId) -> Any:
        start = self._timer()
        try:
            return await super().resolve(peer_id)
        finally:
            self._telemetry.lookups["resolve"].observe(self._timer() - start)

    async def random_walk(self) -> list[PeerId]:
        start = self._timer()
        try:
            return await super().random_walk()
        finally:
            self._telemetry.lookups["random_walk"].observe(self._timer() - start)


class Observed(Protocol):
    """What the collector reads of ``node.daemon.Node``."""

    telemetry: Telemetry

    def statistics(self) -> dict[str, object]: ...


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _dict(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): _num(v) for k, v in value.items()}


def _labelled(family: CounterMetricFamily | GaugeMetricFamily, preset: Iterable[str],
              values: Mapping[str, float]) -> CounterMetricFamily | GaugeMetricFamily:
    for label in dict.fromkeys([*preset, *sorted(values)]):
        family.add_metric([label], values.get(label, 0.0))
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class _NodeCollector(Collector):
    def __init__(self, node: Observed) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        stats = self._node.statistics()
        t = self._node.telemetry
        yield from self._build()
        yield from self._transport(stats)
        yield from self._mesh(stats)
        yield from self._dht(_dict_any(stats.get("dht")), t)
        yield from self._channels(_dict_any(stats.get("channels")), stats, t)
        yield from network_families(stats)

    def _build(self) -> Iterator[Metric]:
        info = build_info()
        build = GaugeMetricFamily("spacepanda_build_info", "Version and git commit of this build",
                                  labels=["version", "commit", "python"])
        build.add_metric([info["version"], info["commit"], info["python"]], 1.0)
        yield build

    def _transport(self, stats: dict[str, object]) -> Iterator[Metric]:
        peers = _dict(stats.get("connections_by_direction"))
        yield _labelled(GaugeMetricFamily("spacepanda_connections", "Open peer connections",
                                          labels=["direction"]),
                        ("inbound", "outbound"), peers)
        yield _gauge("spacepanda_pending_handshakes", "Handshakes in progress",
                     _num(stats.get("pending_handshakes")))
        totals = _dict(stats.get("traffic"))
        yield _labelled(CounterMetricFamily(
            "spacepanda_transport_bytes", "Bytes on peer links (Noise frames included)",
            labels=["direction"]), ("received", "sent"),
            {"received": totals.get("bytes_in", 0.0), "sent": totals.get("bytes_out", 0.0)})
        yield _labelled(CounterMetricFamily(
            "spacepanda_transport_frames", "Frames on peer links", labels=["direction"]),
            ("received", "sent"),
            {"received": totals.get("frames_in", 0.0), "sent": totals.get("frames_out", 0.0)})
        yield _labelled(CounterMetricFamily(
            "spacepanda_handshakes", "Completed handshakes (links admitted)",
            labels=["direction"]), ("inbound", "outbound"), _dict(stats.get("handshakes")))
        yield _labelled(CounterMetricFamily(
            "spacepanda_handshake_failures", "Failed handshakes, by error",
            labels=["kind"]), HANDSHAKE_FAILURE_KINDS, _dict(stats.get("handshake_failures")))
        yield _labelled(CounterMetricFamily(
            "spacepanda_inbound_refused", "Inbound connections refused", labels=["reason"]),
            REFUSAL_REASONS, _dict(stats.get("refused")))
        yield _counter("spacepanda_unknown_protocol_frames",
                       "Frames for protocols nobody handles",
                       _num(stats.get("unknown_protocol_frames")))

    def _mesh(self, stats: dict[str, object]) -> Iterator[Metric]:
        dials = _num(stats.get("mesh_dials"))
        failed = _num(stats.get("mesh_dial_failures"))
        yield _labelled(CounterMetricFamily(
            "spacepanda_mesh_dials", "Dials of discovered peers by the mesh, by outcome",
            labels=["outcome"]), ("ok", "failed"), {"ok": dials - failed, "failed": failed})
        yield _gauge("spacepanda_mesh_backing_off_peers", "Peers in mesh dial backoff",
                     _num(stats.get("mesh_backing_off")))
        yield _gauge("spacepanda_blocked_peers", "Peers on the deny list",
                     _num(stats.get("blocked_peers")))
        yield _counter("spacepanda_link_event_failures",
                       "Link events the node failed to handle (see the log)",
                       _num(stats.get("link_event_failures")))

    def _dht(self, dht: dict[str, Any], t: Telemetry) -> Iterator[Metric]:
        rpc = _dict(dht.get("rpc"))
        service = _dict(dht.get("service"))
        yield _gauge("spacepanda_dht_ready", "1 once the DHT is joined (or a bootstrap node)",
                     1.0 if dht.get("ready") is True else 0.0)
        yield _gauge("spacepanda_dht_contacts", "Proven contacts in the routing table",
                     _num(dht.get("contacts")))
        yield _gauge("spacepanda_dht_records", "Peer records held for the DHT",
                     _num(dht.get("records")))
        yield _gauge("spacepanda_dht_record_bytes", "Bytes of peer records held",
                     _num(dht.get("record_bytes")))
        store = _dict_any(dht.get("store"))
        yield _counter("spacepanda_dht_records_stored", "STOREs accepted (records stored)",
                       _num(store.get("stored")))
        yield _labelled(CounterMetricFamily(
            "spacepanda_dht_records_refused", "STOREs refused, by reason",
            labels=["reason"]), RECORD_REFUSALS, _dict(store.get("drops")))
        requests = CounterMetricFamily(
            "spacepanda_dht_rpcs", "DHT requests: sent (out) and answered (in), by type",
            labels=["type", "direction"])
        for name in dict.fromkeys([*DHT_RPCS, *_rpc_names(rpc)]):
            requests.add_metric([name, "out"], rpc.get(f"rpc_out_{name}", 0.0))
            requests.add_metric([name, "in"], rpc.get(f"rpc_in_{name}", 0.0))
        yield requests
        yield _counter("spacepanda_dht_rpc_timeouts", "Requests that got no answer in time",
                       rpc.get("timeouts", 0.0))
        yield _labelled(CounterMetricFamily(
            "spacepanda_dht_datagrams", "UDP datagrams", labels=["direction"]),
            ("received", "sent"),
            {"received": rpc.get("datagrams_in", 0.0), "sent": rpc.get("datagrams_out", 0.0)})
        yield _labelled(CounterMetricFamily(
            "spacepanda_dht_dropped", "Datagrams and answers dropped, by reason",
            labels=["reason"]), DHT_DROP_REASONS, _dict(dht.get("protocol_drops")))
        lookups = _dict(dht.get("lookups"))
        yield _labelled(CounterMetricFamily(
            "spacepanda_dht_lookups", "Record lookups (resolve), by result",
            labels=["result"]), ("found", "missed"),
            {"found": lookups.get("found", 0.0), "missed": lookups.get("missed", 0.0)})
        yield _counter("spacepanda_dht_random_walks", "Discovery walks",
                       lookups.get("random_walks", 0.0))
        latency = HistogramMetricFamily(
            "spacepanda_dht_lookup_duration_seconds", "Lookup time, by kind", labels=["kind"])
        for kind, hist in sorted(t.lookups.items()):
            latency.add_metric([kind], hist.cumulative(), sum_value=hist.sum)
        yield latency
        yield _counter("spacepanda_dht_publishes", "Own peer record publications",
                       service.get("publishes", 0.0))
        yield _counter("spacepanda_dht_publish_failures", "Failed own record publications",
                       service.get("publish_failures", 0.0))
        attempts = service.get("bootstrap_attempts", 0.0)
        failures = service.get("bootstrap_failures", 0.0)
        yield _labelled(CounterMetricFamily(
            "spacepanda_dht_bootstrap_attempts", "Attempts to join the DHT, by outcome",
            labels=["outcome"]), ("ok", "failed"),
            {"failed": failures, "ok": attempts - failures if dht.get("ready") is True else 0.0})

    def _channels(self, ch: dict[str, Any], stats: dict[str, object],
                  t: Telemetry) -> Iterator[Metric]:
        yield _labelled(GaugeMetricFamily(
            "spacepanda_channels", "Channels this node is in, by status", labels=["status"]),
            CHANNEL_STATUSES, _dict(stats.get("channel_statuses")))
        yield _gauge("spacepanda_channel_members",
                     "Members over all active channels (this node included)",
                     _num(stats.get("channel_members")))
        yield _gauge("spacepanda_invites_pending", "Invites waiting for an answer",
                     _num(ch.get("invites_pending")))
        yield _labelled(CounterMetricFamily(
            "spacepanda_messages", "Channel text messages, sent by this node or received",
            labels=["direction"]), ("received", "sent"), dict(t.messages))
        yield _labelled(CounterMetricFamily(
            "spacepanda_messages_dropped", "Received envelopes refused, by reason",
            labels=["reason"]), MESSAGE_DROP_REASONS, _dict(ch.get("dropped")))
        received = {v: _num(ch.get(f"envelopes_{v}")) for v in ENVELOPE_VERDICTS}
        yield _labelled(CounterMetricFamily(
            "spacepanda_envelopes_received", "Sealed envelopes received, by what happened",
            labels=["verdict"]), ENVELOPE_VERDICTS, received)
        yield _labelled(CounterMetricFamily(
            "spacepanda_envelopes_sent", "Envelopes and acknowledgements sent",
            labels=["kind"]), ("envelope", "ack"),
            {"envelope": _num(ch.get("envelopes_sent")), "ack": _num(ch.get("acks_sent"))})
        yield _counter("spacepanda_envelopes_retransmitted",
                       "Envelopes sent again (no acknowledgement in time)",
                       _num(ch.get("delivery_retransmitted")))
        yield _counter("spacepanda_send_queue_full",
                       "Envelopes not sent because a link's queue was full",
                       _num(ch.get("send_queue_full")))
        yield _gauge("spacepanda_outbox_items", "Envelopes not yet acknowledged by everyone",
                     _num(ch.get("delivery_outbox_items")))
        yield _gauge("spacepanda_outbox_owed", "(envelope, recipient) pairs still owed",
                     _num(ch.get("delivery_outbox_owed")))
        yield _gauge("spacepanda_envelopes_in_flight", "Envelopes sent and not yet acknowledged",
                     _num(ch.get("delivery_in_flight")))
        yield _gauge("spacepanda_envelopes_held", "Envelopes waiting for what they depend on",
                     _num(ch.get("held")))
        yield _counter("spacepanda_channel_batches_failed",
                       "Channel batches the database refused (see the log)",
                       _num(ch.get("batches_failed")))
        yield _counter("spacepanda_event_subscribers_dropped",
                       "Event streams ended because the client read too slowly",
                       _num(ch.get("subscribers_dropped")))


def _dict_any(value: object) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _rpc_names(rpc: Mapping[str, float]) -> list[str]:
    names = set()
    for key in rpc:
        for prefix in ("rpc_out_", "rpc_in_"):
            if key.startswith(prefix):
                names.add(key[len(prefix):])
    return sorted(names)


def node_registry(node: Observed, *, process: bool = True) -> CollectorRegistry:
    """The node's registry: its collector and (``process``) the standard process collector."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_NodeCollector(node))
    if process:
        ProcessCollector(registry=registry)
    return registry
