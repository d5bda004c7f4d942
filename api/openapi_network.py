"""The ``GET /v1/network`` part of the OpenAPI document: the relay, the mailboxes, delivery.

Field names come from ``node.netview`` (the tables of counters it always fills), so the schema
and the body cannot drift apart: every object is closed (``additionalProperties: false``) and
every field required.
"""

from __future__ import annotations

from typing import Any

from api.openapi_parts import UNAUTHORIZED, json_response, problem
from node.netview import (
    CLIENT_STORE_OUTCOMES,
    FETCH_REFUSALS,
    RELAY_COUNTERS,
    STEM_COUNTERS,
    STORE_REFUSALS,
)

__all__ = ["NETWORK_PATHS", "NETWORK_SCHEMAS"]

_COUNT = {"type": "integer", "minimum": 0}
_PEER_ID = {"type": "string", "description": "PeerId text form (sp...)"}


def _closed(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


def _counts(names: tuple[str, ...] | list[str], description: str = "") -> dict[str, Any]:
    return _closed({n: _COUNT for n in names}, description)


def _count(description: str) -> dict[str, Any]:
    return {**_COUNT, "description": description}


def _score(description: str) -> dict[str, Any]:
    return {"type": ["number", "null"], "description": description}


_MESH = _closed({
    "shard": _count("shard topic number, 0..shards-1"),
    "mesh": {"type": "array", "items": _PEER_ID,
             "description": "peers in this shard's mesh (full messages go to them)"},
    "subscribers": _count("peers that told us they relay this shard"),
    "fanout": _count("peers our own envelopes are flood-published to: subscribers at or "
                     "above the publish threshold (the router relays every shard, so there "
                     "is no separate gossipsub fanout map)"),
})

_RELAY_PEER = _closed({
    "peer_id": _PEER_ID,
    "score": {"type": "number", "description": "gossipsub v1.1 style score (3 decimals)"},
    "in_mesh": {"type": "boolean", "description": "in the mesh of at least one shard"},
    "shards": {"type": "array", "items": _COUNT, "description": "shards whose mesh it is in"},
    "graylisted": {"type": "boolean",
                   "description": "score below the graylist threshold: all it sends is ignored"},
})

_RELAY = _closed({
    "shards": {"type": "integer", "minimum": 1},
    "meshes": {"type": "array", "items": {"$ref": "#/components/schemas/RelayMesh"}},
    "peers": {"type": "array", "items": {"$ref": "#/components/schemas/RelayPeer"},
              "description": "peers known to the router (one per live link), by PeerId"},
    "scores": _closed({
        "min": _score("lowest peer score (null without peers)"),
        "median": _score("median peer score"),
        "max": _score("highest peer score"),
        "graylisted": _count("peers below the graylist threshold (-80)"),
        "below_publish": _count("peers below the publish threshold (-50), graylisted ones "
                                "included"),
        "below_gossip": _count("peers below the gossip threshold (-10), the above included"),
        "negative": _count("peers with a negative score, the above included"),
    }),
    "caches": _closed({
        "seen": _count("message ids remembered (120 s)"),
        "message_cache": _count("envelopes cached for IWANT (5 heartbeats)"),
        "message_cache_bytes": _COUNT,
        "promises": _count("IWANTs waiting for their message (broken promises are "
                           "penalised)"),
        "retained_scores": _count("scores kept for peers that disconnected"),
    }),
    "stem": _closed({
        "pending": _count("stem envelopes under embargo now"),
        **{n: _COUNT for n in STEM_COUNTERS},
    }, "the stem phase (origin hiding): counters since start, and what is under embargo"),
    "counters": _counts(list(RELAY_COUNTERS),
                        "since start: forwarded = new envelopes from peers passed on to the "
                        "mesh; off_shard = for a shard we do not relay; frames_dropped = a "
                        "link's send queue was full; delivered = handed to the channel layer"),
})

_QUOTAS = _closed({
    "key_envelopes": _count("per mailbox key"),
    "key_bytes": _count("per mailbox key"),
    "uploader_envelopes": _count("per uploading peer, across keys"),
    "uploader_bytes": _count("per uploading peer, across keys"),
    "total_envelopes": _count("this holder in total"),
    "total_bytes": _count("this holder in total"),
    "retention_days": _count("days an envelope is kept"),
})

_MAILBOXES = _closed({
    "holder": _closed({
        "envelopes": _count("envelopes this node holds for others"),
        "bytes": _count("their bytes"),
        "keys": _count("mailbox keys with at least one envelope"),
        "uploaders": _count("peers with envelopes held here"),
        "quotas": _QUOTAS,
        "store_requests": _COUNT,
        "stored": _COUNT,
        "duplicates": _count("STOREs of an envelope already held (acknowledged)"),
        "refused": _counts(STORE_REFUSALS, "STOREs refused, by reason"),
        "fetch_requests": _COUNT,
        "fetched_envelopes": _count("envelopes sent to fetching peers"),
        "fetch_refused": _counts(FETCH_REFUSALS),
        "expired": _count("envelopes deleted at the end of retention"),
        "replies_unsent": _count("answers that could not be sent (the peer's link was gone "
                                 "or full)"),
    }, "this node as a mailbox for others: usage now, counters since start"),
    "client": _closed({
        "placements": _count("envelopes placed at a key's closest holders"),
        "placed_copies": _count("holders that acknowledged them"),
        "stores": _counts(CLIENT_STORE_OUTCOMES, "STOREs sent, by the holder's answer"),
        "collected_envelopes": _count("envelopes fetched from holders"),
        "fetch_refused": _counts(FETCH_REFUSALS, "FETCHes holders refused"),
        "timeouts": _count("requests with no answer in time"),
        "dials": _count("links opened to reach holders"),
        "dial_failures": _COUNT,
        "pending_requests": _count("requests waiting for an answer now"),
    }, "this node's own mailbox requests, since start"),
})

_DELIVERY = _closed({
    "jitter": {"type": "string", "enum": ["off", "standard", "high"]},
    "outbox": _closed({
        "items": _count("envelopes not yet acknowledged by every member, nor stored"),
        "owed": _count("(envelope, member) pairs still owed"),
        "in_flight": _count("sent, waiting for an acknowledgement"),
        "jittered": _count("held back by send jitter"),
    }),
    "held": _count("received envelopes waiting for what they depend on"),
    "unrouted": _count("relayed envelopes no key of ours opens yet (kept 120 s)"),
    "queues": _closed({
        "channel_jobs": _count("peer input and timers waiting for the channel actor"),
        "channel_calls": _count("API calls waiting for the channel actor"),
        "relay_delivered": _count("relayed envelopes waiting for the channel layer"),
    }),
    "dispatch": {"type": "object", "additionalProperties": _COUNT,
                 "description": "received frames waiting for each protocol's handler"},
    "fallback": _closed({
        "tracked": _count("stragglers (envelopes direct delivery has not finished) now"),
        "placing": _count("mailbox placements under way now"),
        "relayed": _count("envelopes published to the relay mesh, since start"),
        "placements": _count("mailbox placements started, since start"),
        "placed_copies": _count("holder acknowledgements of those"),
        "stored": _count("outbox envelopes done because enough holders (2 of 3) store "
                         "them"),
    }, "what direct delivery did not finish: relayed, and placed in mailboxes"),
    "catch_up": _closed({
        "runs": _count("reads of this node's mailboxes (at start, then every 10 min)"),
        "synced_at": {"type": ["number", "null"],
                      "description": "Unix seconds up to which every mailbox was read "
                      "completely; null: never"},
        "keys_followed": _count("mailbox keys with a cursor kept"),
    }),
})

NETWORK_SCHEMAS: dict[str, Any] = {
    "RelayMesh": _MESH,
    "RelayPeer": _RELAY_PEER,
    "Network": _closed({"relay": _RELAY, "mailboxes": _MAILBOXES, "delivery": _DELIVERY},
                       "Delivery beyond direct links: the relay (sp/gossip/1), the mailboxes "
                       "(sp/mbx/1) and this node's delivery queues. Counters count since the "
                       "node started."),
}

NETWORK_PATHS: dict[str, Any] = {
    "/v1/network": {
        "get": {
            "operationId": "getNetwork",
            "summary": "Relay meshes and peer scores, mailbox usage, delivery queues",
            "responses": {
                "200": json_response("Network", "The relay, the mailboxes and delivery"),
                **UNAUTHORIZED,
                "503": problem("The node is starting or stopping (relay and mailboxes not "
                               "running)"),
            },
        }
    },
}
