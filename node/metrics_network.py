"""Prometheus families for the relay, the mailboxes and delivery beyond direct links.

Read from the ``GET /v1/network`` body (``node.netview``) that ``Node.statistics()`` carries
under ``"network"``, so the metrics and the API say the same thing under related names. The
conventions of ``node.metrics`` hold: ``spacepanda_`` prefix, units in names, ``_total``
counters, every labelled family with each label value it can take from the first scrape
(shards from the configuration, protocols and reasons preset).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from node.channels.check import PROTOCOL as CHECK_PROTOCOL
from node.netview import CLIENT_STORE_OUTCOMES, FETCH_REFUSALS, STORE_REFUSALS
from node.network.gossip_wire import PROTOCOL as GOSSIP_PROTOCOL
from node.network.mailbox_wire import PROTOCOL as MAILBOX_PROTOCOL
from node.network.wire import PROTOCOL as ENVELOPE_PROTOCOL

__all__ = [
    "MAILBOX_STORE_OUTCOMES",
    "PROTOCOLS",
    "RELAY_MESSAGE_OUTCOMES",
    "SCORE_BANDS",
    "network_families",
]

# Label value -> the body's relay counter.
RELAY_MESSAGE_OUTCOMES = {
    "published": "published", "forwarded": "forwarded", "duplicate": "duplicates",
    "invalid": "invalid", "rate_limited": "rate_limited", "off_shard": "off_shard",
}
_STEM_OUTCOMES = {
    "sent": "sent", "received": "received", "relayed": "relayed", "fluffed": "fluffed",
    "loop": "loops", "embargo_expired": "embargo_expired", "evicted": "evicted",
}
_IWANT_OUTCOMES = {"served": "iwant_served", "missing": "iwant_missing",
                   "repeated": "iwant_repeated"}
_MISBEHAVIOUR = {
    "bad_frame": "bad_frames", "ihave_flood": "ihave_floods", "iwant_flood": "iwant_floods",
    "broken_promise": "broken_promises", "graft_in_backoff": "graft_in_backoff",
    "frame_rate_limited": "frames_rate_limited", "graylisted_frame": "graylisted_frames",
}
_FRAME_OUTCOMES = {"sent": "frames_sent", "dropped": "frames_dropped",
                   "no_link": "frames_no_link"}
# Bands between the router's score thresholds, lowest first; they partition the peers.
SCORE_BANDS = ("graylisted", "no_publish", "no_gossip", "negative", "ok")
MAILBOX_STORE_OUTCOMES = ("stored", "duplicate", *STORE_REFUSALS)
_CLIENT_FAILURES = ("timeout", "dial_failed", *(f"fetch_{r}" for r in FETCH_REFUSALS))
PROTOCOLS = (ENVELOPE_PROTOCOL, CHECK_PROTOCOL, GOSSIP_PROTOCOL, MAILBOX_PROTOCOL)
_QUEUES = ("channel_jobs", "channel_calls", "relay_delivered")


def _d(value: object) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _n(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _family(family: CounterMetricFamily | GaugeMetricFamily,
            values: Mapping[str, float]) -> CounterMetricFamily | GaugeMetricFamily:
    for label, value in values.items():
        family.add_metric([label], value)
    return family


def _counter(name: str, doc: str, label: str, values: Mapping[str, float]) -> Metric:
    return _family(CounterMetricFamily(name, doc, labels=[label]), values)


def _gauge(name: str, doc: str, label: str, values: Mapping[str, float]) -> Metric:
    return _family(GaugeMetricFamily(name, doc, labels=[label]), values)


def _mapped(source: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, float]:
    return {label: _n(source.get(key)) for label, key in names.items()}


def network_families(stats: Mapping[str, object]) -> Iterator[Metric]:
    """Every family, from ``Node.statistics()`` (zeros while the services do not run)."""
    view = _d(stats.get("network"))
    shards = max(1, int(_n(stats.get("relay_shards"))))
    yield from _relay(_d(view.get("relay")), shards)
    yield from _mailboxes(_d(view.get("mailboxes")))
    yield from _delivery(_d(view.get("delivery")))


def _relay(relay: dict[str, Any], shards: int) -> Iterator[Metric]:
    counters = _d(relay.get("counters"))
    yield _counter("spacepanda_relay_messages",
                   "Relayed envelopes (sp/gossip/1), by what happened to them", "outcome",
                   _mapped(counters, RELAY_MESSAGE_OUTCOMES))
    yield _counter("spacepanda_relay_stem_messages",
                   "Envelopes in the stem phase (origin hiding), by what happened", "outcome",
                   _mapped(_d(relay.get("stem")), _STEM_OUTCOMES))
    yield _counter("spacepanda_relay_iwant_ids",
                   "Message ids peers asked for (IWANT): served, or refused and why",
                   "outcome", _mapped(counters, _IWANT_OUTCOMES))
    yield _counter("spacepanda_relay_misbehaviour",
                   "Peer behaviour the relay penalised or ignored, by kind", "kind",
                   _mapped(counters, _MISBEHAVIOUR))
    yield _counter("spacepanda_relay_frames", "Relay frames to peers, by outcome", "outcome",
                   _mapped(counters, _FRAME_OUTCOMES))
    yield _counter("spacepanda_relay_delivered",
                   "New relayed envelopes handed to the channel layer, or dropped (queue full)",
                   "outcome", {"queued": _n(counters.get("delivered")),
                               "dropped": _n(counters.get("delivered_dropped"))})
    mesh = {str(s): 0.0 for s in range(shards)}
    subscribers = dict(mesh)
    for m in relay.get("meshes", []) if isinstance(relay.get("meshes"), list) else []:
        shard = str(_d(m).get("shard"))
        mesh[shard] = float(len(_d(m).get("mesh") or ()))
        subscribers[shard] = _n(_d(m).get("subscribers"))
    yield _gauge("spacepanda_relay_mesh_peers", "Peers in the shard's relay mesh (D = 6)",
                 "shard", mesh)
    yield _gauge("spacepanda_relay_shard_peers", "Peers that relay the shard", "shard",
                 subscribers)
    scores = _d(relay.get("scores"))
    total = float(len(relay.get("peers") or ()))
    graylisted, below_publish = _n(scores.get("graylisted")), _n(scores.get("below_publish"))
    below_gossip, negative = _n(scores.get("below_gossip")), _n(scores.get("negative"))
    yield _gauge("spacepanda_relay_peers",
                 "Peers known to the relay, by score band (graylisted < -80 <= no_publish "
                 "< -50 <= no_gossip < -10 <= negative < 0 <= ok)", "score_band",
                 dict(zip(SCORE_BANDS, (graylisted, below_publish - graylisted,
                                        below_gossip - below_publish, negative - below_gossip,
                                        total - negative), strict=True)))
    yield _gauge("spacepanda_relay_peer_score",
                 "Relay peer scores: lowest, median and highest (0 without peers)", "stat",
                 {k: _n(scores.get(k)) for k in ("min", "median", "max")})
    caches = _d(relay.get("caches"))
    yield GaugeMetricFamily("spacepanda_relay_seen_messages",
                            "Message ids in the seen cache (120 s)", value=_n(caches.get("seen")))
    yield GaugeMetricFamily("spacepanda_relay_cached_messages",
                            "Envelopes in the message cache (served to IWANT)",
                            value=_n(caches.get("message_cache")))
    yield GaugeMetricFamily("spacepanda_relay_cached_bytes", "Bytes in the message cache",
                            value=_n(caches.get("message_cache_bytes")))
    yield GaugeMetricFamily("spacepanda_relay_stem_pending",
                            "Stem envelopes under embargo (gossiped if the stem goes quiet)",
                            value=_n(_d(relay.get("stem")).get("pending")))


def _mailboxes(mailboxes: dict[str, Any]) -> Iterator[Metric]:
    holder, client = _d(mailboxes.get("holder")), _d(mailboxes.get("client"))
    quotas = _d(holder.get("quotas"))
    usage = (("envelopes", "Envelopes this node holds for others (mailbox holder)"),
             ("bytes", "Bytes of envelopes this node holds for others"),
             ("keys", "Mailbox keys with envelopes held here"),
             ("uploaders", "Peers with envelopes held here"))
    for key, doc in usage:
        yield GaugeMetricFamily(f"spacepanda_mailbox_{key}", doc + " (read every 10 s)",
                                value=_n(holder.get(key)))
    yield GaugeMetricFamily("spacepanda_mailbox_quota_envelopes",
                            "Envelopes this node holds for others at most",
                            value=_n(quotas.get("total_envelopes")))
    yield GaugeMetricFamily("spacepanda_mailbox_quota_bytes",
                            "Bytes of envelopes this node holds for others at most",
                            value=_n(quotas.get("total_bytes")))
    refused = _d(holder.get("refused"))
    stores = {"stored": _n(holder.get("stored")), "duplicate": _n(holder.get("duplicates")),
              **{r: _n(refused.get(r)) for r in STORE_REFUSALS}}
    yield _counter("spacepanda_mailbox_stores", "STOREs from peers, by outcome", "outcome",
                   stores)
    yield CounterMetricFamily("spacepanda_mailbox_fetches", "FETCHes from peers",
                              value=_n(holder.get("fetch_requests")))
    yield _counter("spacepanda_mailbox_fetches_refused", "FETCHes from peers refused, by reason",
                   "reason", _mapped(_d(holder.get("fetch_refused")),
                                     {r: r for r in FETCH_REFUSALS}))
    yield CounterMetricFamily("spacepanda_mailbox_served_envelopes",
                              "Envelopes sent to fetching peers",
                              value=_n(holder.get("fetched_envelopes")))
    yield CounterMetricFamily("spacepanda_mailbox_expired_envelopes",
                              "Envelopes deleted at the end of their retention",
                              value=_n(holder.get("expired")))
    yield CounterMetricFamily("spacepanda_mailbox_placements",
                              "Envelopes this node placed at a key's closest holders",
                              value=_n(client.get("placements")))
    yield CounterMetricFamily("spacepanda_mailbox_placed_copies",
                              "Holders that acknowledged a placed envelope",
                              value=_n(client.get("placed_copies")))
    yield _counter("spacepanda_mailbox_client_stores",
                   "STOREs this node sent, by the holder's answer", "outcome",
                   _mapped(_d(client.get("stores")), {o: o for o in CLIENT_STORE_OUTCOMES}))
    yield CounterMetricFamily("spacepanda_mailbox_collected_envelopes",
                              "Envelopes fetched from holders (catch-up)",
                              value=_n(client.get("collected_envelopes")))
    fetch_refused = _d(client.get("fetch_refused"))
    failures = {"timeout": _n(client.get("timeouts")),
                "dial_failed": _n(client.get("dial_failures")),
                **{f"fetch_{r}": _n(fetch_refused.get(r)) for r in FETCH_REFUSALS}}
    yield _counter("spacepanda_mailbox_client_failures",
                   "Mailbox requests of this node that failed, by reason", "reason", failures)


def _delivery(delivery: dict[str, Any]) -> Iterator[Metric]:
    outbox, fallback = _d(delivery.get("outbox")), _d(delivery.get("fallback"))
    yield GaugeMetricFamily("spacepanda_envelopes_jittered",
                            "Outbox envelopes send jitter still holds back",
                            value=_n(outbox.get("jittered")))
    yield GaugeMetricFamily("spacepanda_envelopes_unrouted",
                            "Relayed envelopes no key of ours opens yet (kept 120 s)",
                            value=_n(delivery.get("unrouted")))
    yield _gauge("spacepanda_queue_depth", "Items waiting in the node's internal queues",
                 "queue", _mapped(_d(delivery.get("queues")), {q: q for q in _QUEUES}))
    dispatch = _d(delivery.get("dispatch"))
    yield _gauge("spacepanda_protocol_queue_depth",
                 "Received frames waiting for their protocol's handler", "protocol",
                 {p: _n(dispatch.get(p)) for p in dict.fromkeys([*PROTOCOLS, *sorted(dispatch)])})
    yield CounterMetricFamily("spacepanda_fallback_relays",
                              "Outbox envelopes published to the relay mesh (stragglers)",
                              value=_n(fallback.get("relayed")))
    yield CounterMetricFamily("spacepanda_fallback_placements",
                              "Mailbox placements of outbox envelopes (attempts)",
                              value=_n(fallback.get("placements")))
    yield CounterMetricFamily("spacepanda_fallback_placed_copies",
                              "Holder acknowledgements of those placements",
                              value=_n(fallback.get("placed_copies")))
    yield CounterMetricFamily("spacepanda_fallback_stored",
                              "Outbox envelopes done because enough holders store them",
                              value=_n(fallback.get("stored")))
    yield GaugeMetricFamily("spacepanda_fallback_items",
                            "Outbox envelopes being relayed or placed (stragglers)",
                            value=_n(fallback.get("tracked")))
    yield GaugeMetricFamily("spacepanda_fallback_placing", "Mailbox placements under way",
                            value=_n(fallback.get("placing")))
    yield CounterMetricFamily("spacepanda_mailbox_catch_ups",
                              "Reads of this node's mailboxes (at start, then every 10 min)",
                              value=_n(_d(delivery.get("catch_up")).get("runs")))
