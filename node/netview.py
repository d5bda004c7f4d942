"""``GET /v1/network``: what the relay, the mailboxes and delivery are doing, in one body.

Built from the services' read-only state (their ``statistics()``, counters and a few small
accessors), with field names fixed here: every counter the body documents is present (0 until
it first happens), whatever the services happen to have counted so far. The OpenAPI schema
(``api.openapi_network``) and the Prometheus metrics (``node.metrics``) read these names.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from node.core.errors import SpacePandaError
from node.core.identity import PeerId
from node.network.mailbox_wire import ACCEPTED, Status
from node.storage.mailboxstore import MailboxTotals

if TYPE_CHECKING:
    from node.channel_service import ChannelService
    from node.mailbox_service import MailboxService
    from node.relay_service import RelayService
    from node.transport.dispatch import Dispatcher

__all__ = [
    "CLIENT_STORE_OUTCOMES",
    "FETCH_REFUSALS",
    "RELAY_COUNTERS",
    "STEM_COUNTERS",
    "STORE_REFUSALS",
    "NetworkStopped",
    "network_view",
]


class NetworkStopped(SpacePandaError):
    """The relay, the mailboxes or the channel layer is not running (starting or stopping)."""


# Body name -> the router's counter ("adapter_" prefix: the relay adapter's own counters).
RELAY_COUNTERS: dict[str, str] = {
    "published": "published",  # our own envelopes (fallback relays), not counting repeats
    "forwarded": "received",  # new envelopes from peers, passed on to the shard's mesh
    "duplicates": "duplicates",
    "invalid": "invalid",
    "rate_limited": "messages_rate_limited",
    "off_shard": "unsubscribed_topic",
    "iwant_served": "iwant_served",
    "iwant_missing": "iwant_missing",
    "iwant_repeated": "iwant_repeated",
    "iwant_sent": "iwant_sent",
    "ihave_sent": "ihave_sent",
    "ihave_floods": "ihave_flood",
    "iwant_floods": "iwant_flood",
    "broken_promises": "broken_promises",
    "graft_in_backoff": "graft_in_backoff",
    "opportunistic_grafts": "opportunistic_grafts",
    "bad_frames": "bad_frames",
    "frames_rate_limited": "frames_rate_limited",
    "graylisted_frames": "graylisted_frames",
    "unknown_peer_frames": "unknown_peer",
    "peers_refused": "peers_refused",
    "frames_sent": "adapter_frames_sent",
    "frames_dropped": "adapter_frames_dropped",  # a link's send queue was full
    "frames_no_link": "adapter_frames_no_link",
    "delivered": "adapter_delivered",  # handed to the channel layer
    "delivered_dropped": "adapter_delivered_dropped",  # its queue was full
    "publish_refused": "adapter_publish_refused",
}
STEM_COUNTERS: dict[str, str] = {
    "sent": "stem_sent",  # our own envelopes sent along a stem
    "received": "stem_received",
    "relayed": "stem_relayed",
    "fluffed": "fluffed",  # stems this node turned into gossip
    "loops": "stem_loops",
    "embargo_expired": "embargo_fluffs",
    "evicted": "embargo_evicted",
    "route_changes": "stem_epochs",
}
STORE_REFUSALS = tuple(s.name.lower() for s in Status if s not in ACCEPTED)
CLIENT_STORE_OUTCOMES = tuple(s.name.lower() for s in Status)
FETCH_REFUSALS = ("rate_limited", "unavailable")


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _pick(counters: Mapping[str, object], names: Mapping[str, str]) -> dict[str, int]:
    return {name: _int(counters.get(source)) for name, source in names.items()}


def relay_view(relay: RelayService) -> dict[str, Any]:
    router = relay.router
    stats = router.statistics()
    counters: dict[str, object] = {**router.counters,
                                   **{f"adapter_{k}": v for k, v in relay.counters.items()}}
    thresholds = router.settings.score
    scores = {peer: router.score(peer) or 0.0 for peer in router.peers()}
    in_mesh: dict[PeerId, list[int]] = {}
    meshes = []
    for shard in sorted(router.topics):
        mesh = sorted(router.mesh(shard))
        for peer in mesh:
            in_mesh.setdefault(peer, []).append(shard)
        subscribers = router.subscribers(shard)
        meshes.append({
            "shard": shard,
            "mesh": [str(p) for p in mesh],
            "subscribers": len(subscribers),
            "fanout": sum(1 for p in subscribers
                          if scores.get(p, 0.0) >= thresholds.publish_threshold),
        })
    peers = [
        {
            "peer_id": str(peer),
            "score": round(score, 3),
            "in_mesh": peer in in_mesh,
            "shards": in_mesh.get(peer, []),
            "graylisted": score < thresholds.graylist_threshold,
        }
        for peer, score in sorted(scores.items())
    ]
    values = sorted(scores.values())
    return {
        "shards": relay.shards,
        "meshes": meshes,
        "peers": peers,
        "scores": {
            "min": round(values[0], 3) if values else None,
            "median": round(statistics.median(values), 3) if values else None,
            "max": round(values[-1], 3) if values else None,
            "graylisted": sum(1 for v in values if v < thresholds.graylist_threshold),
            "below_publish": sum(1 for v in values if v < thresholds.publish_threshold),
            "below_gossip": sum(1 for v in values if v < thresholds.gossip_threshold),
            "negative": sum(1 for v in values if v < 0),
        },
        "caches": {
            "seen": _int(stats.get("seen")),
            "message_cache": _int(stats.get("mcache")),
            "message_cache_bytes": _int(stats.get("mcache_bytes")),
            "promises": _int(stats.get("promises")),
            "retained_scores": _int(stats.get("retained_scores")),
        },
        "stem": {"pending": _int(stats.get("stem_pending")), **_pick(counters, STEM_COUNTERS)},
        "counters": _pick(counters, RELAY_COUNTERS),
    }


def mailbox_view(mailboxes: MailboxService, usage: MailboxTotals | None) -> dict[str, Any]:
    holder: Mapping[str, object] = mailboxes.mailbox.statistics()
    service: Mapping[str, object] = mailboxes.counters
    s = mailboxes.mailbox.settings
    used = usage or MailboxTotals(0, 0, 0, 0)
    return {
        "holder": {
            "envelopes": used.envelopes,
            "bytes": used.bytes,
            "keys": used.keys,
            "uploaders": used.uploaders,
            "quotas": {
                "key_envelopes": s.key_envelopes,
                "key_bytes": s.key_bytes,
                "uploader_envelopes": s.uploader_envelopes,
                "uploader_bytes": s.uploader_bytes,
                "total_envelopes": s.total_envelopes,
                "total_bytes": s.total_bytes,
                "retention_days": s.retention_days,
            },
            "store_requests": _int(holder.get("store_requests")),
            "stored": _int(holder.get("stored")),
            "duplicates": _int(holder.get("duplicates")),
            "refused": {r: _int(holder.get(f"refused_{r}")) for r in STORE_REFUSALS},
            "fetch_requests": _int(holder.get("fetch_requests")),
            "fetched_envelopes": _int(holder.get("fetched")),
            "fetch_refused": {"rate_limited": _int(holder.get("refused_fetch_rate")),
                              "unavailable": _int(holder.get("unavailable"))},
            "expired": _int(service.get("expired")),
            "replies_unsent": _int(service.get("replies_unsent")),
        },
        "client": {
            "placements": _int(service.get("placed")),
            "placed_copies": _int(service.get("placed_copies")),
            "stores": {o: _int(service.get(f"store_{o}")) for o in CLIENT_STORE_OUTCOMES},
            "collected_envelopes": _int(service.get("fetched")),
            "fetch_refused": {r: _int(service.get(f"fetch_{r}")) for r in FETCH_REFUSALS},
            "timeouts": _int(service.get("timeouts")),
            "dials": _int(service.get("dials")),
            "dial_failures": _int(service.get("dial_failures")),
            "pending_requests": _int(mailboxes.statistics().get("pending_requests")),
        },
    }


def delivery_view(channels: ChannelService, relay: RelayService, dispatcher: Dispatcher,
                  now: float, synced_at: float | None) -> dict[str, Any]:
    delivery = channels.delivery.statistics()
    backlog = channels.backlog()
    fallback = channels.fallback.statistics()
    counters = channels.counters
    return {
        "jitter": channels.jitter.mode.name,
        "outbox": {
            "items": _int(delivery.get("outbox_items")),
            "owed": _int(delivery.get("outbox_owed")),
            "in_flight": _int(delivery.get("in_flight")),
            "jittered": channels.delivery.jittered(now),
        },
        "held": backlog["held"],
        "unrouted": backlog["unrouted"],
        "queues": {
            "channel_jobs": backlog["jobs"],
            "channel_calls": backlog["calls"],
            "relay_delivered": relay.delivered.qsize(),
        },
        "dispatch": dict(sorted(dispatcher.queue_depths().items())),
        "fallback": {
            "tracked": _int(fallback.get("tracked")),
            "placing": _int(fallback.get("placing")),
            "relayed": _int(relay.counters.get("published")),
            "placements": _int(counters.get("mailbox_placements")),
            "placed_copies": _int(counters.get("mailbox_copies")),
            "stored": _int(counters.get("outbox_items_stored")),
        },
        "catch_up": {
            "runs": _int(counters.get("mailbox_catch_ups")),
            "synced_at": synced_at,
            "keys_followed": backlog["mailbox_keys_followed"],
        },
    }


def network_view(relay: RelayService, mailboxes: MailboxService, channels: ChannelService,
                 dispatcher: Dispatcher, *, now: float, usage: MailboxTotals | None,
                 synced_at: float | None) -> dict[str, Any]:
    """The body of ``GET /v1/network`` (``usage``: what this node holds for others, None
    when not read yet; ``synced_at``: up to when the mailboxes were read)."""
    return {
        "relay": relay_view(relay),
        "mailboxes": mailbox_view(mailboxes, usage),
        "delivery": delivery_view(channels, relay, dispatcher, now, synced_at),
    }
