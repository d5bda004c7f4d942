"""The OpenAPI 3.1 document for exactly the routes ``api.server`` serves.

Kept by hand (it is the contract outside tools read) and held to the router by
``tests/api/test_openapi.py``, which walks both and fails on any route missing from either.
"""

from __future__ import annotations

import copy
from importlib import metadata
from typing import Any

from api.openapi_channels import CHANNEL_PATHS, CHANNEL_SCHEMAS
from api.openapi_network import NETWORK_PATHS, NETWORK_SCHEMAS
from api.openapi_parts import PEER_ID_PARAM as _PEER_ID_PARAM
from api.openapi_parts import PROBLEM_TYPE_PREFIX, RECORD_NOT_FOUND
from api.openapi_parts import UNAUTHORIZED as _UNAUTHORIZED
from api.openapi_parts import json_response as _json
from api.openapi_parts import problem as _problem

__all__ = ["PROBLEM_TYPE_PREFIX", "RECORD_NOT_FOUND", "api_version", "build_spec"]


def api_version() -> str:
    try:
        return metadata.version("spacepanda")
    except metadata.PackageNotFoundError:
        return "0.0.0"


_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    },
    "JoinState": {
        "type": "object",
        "description": "The DHT join: through which addresses, how many attempts, why the "
        "last one failed and when the next one is due (nominal; +-50 % jitter).",
        "required": ["state", "addrs", "saved_contacts", "attempts", "failures", "last_error",
                     "last_error_detail", "next_retry_in_s", "joined_after_s", "rejoins"],
        "additionalProperties": False,
        "properties": {
            "state": {"type": "string", "enum": ["bootstrap_node", "joining", "joined"]},
            "addrs": {"type": "array", "items": {"type": "string"},
                      "description": "configured bootstrap multiaddrs"},
            "saved_contacts": {"type": "integer", "minimum": 0},
            "attempts": {"type": "integer", "minimum": 0},
            "failures": {"type": "integer", "minimum": 0},
            "last_error": {
                "type": ["string", "null"],
                "description": "dns, peer_id_mismatch, bad_proof, bad_address, unreachable, "
                "timeout or no_proof",
            },
            "last_error_detail": {"type": ["string", "null"]},
            "next_retry_in_s": {"type": ["number", "null"]},
            "joined_after_s": {"type": ["number", "null"]},
            "rejoins": {"type": "integer", "minimum": 0},
        },
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "state", "reason", "bootstrap"],
        "additionalProperties": False,
        "properties": {
            "status": {"type": "string", "enum": ["ready"]},
            "state": {"type": "string", "enum": ["ready"]},
            "reason": {"type": "string"},
            "bootstrap": {"oneOf": [{"$ref": "#/components/schemas/JoinState"},
                                    {"type": "null"}]},
        },
    },
    "NotReady": {
        "type": "object",
        "description": "RFC 9457 problem details: detail says why, bootstrap how the DHT join "
        "is going",
        "required": ["type", "title", "status", "detail", "state", "bootstrap"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "enum": [503]},
            "detail": {"type": "string"},
            "state": {"type": "string", "enum": ["starting", "joining", "stopping"]},
            "bootstrap": {"oneOf": [{"$ref": "#/components/schemas/JoinState"},
                                    {"type": "null"}]},
        },
    },
    "NodeInfo": {
        "type": "object",
        "required": ["peer_id", "addrs", "version", "uptime_s", "commit"],
        "additionalProperties": False,
        "properties": {
            "peer_id": {"type": "string"},
            "addrs": {
                "type": "array",
                "items": {"type": "string"},
                "description": "where this node can be reached: the announce addresses, or "
                "the listen address with 0.0.0.0 / :: expanded to the interface addresses",
            },
            "version": {"type": "string"},
            "uptime_s": {"type": "number"},
            "commit": {"type": "string", "description": "git commit of this build, or unknown"},
        },
    },
    "PeerInfo": {
        "type": "object",
        "required": [
            "peer_id",
            "addr",
            "direction",
            "connected_since",
            "rtt_ms",
            "bytes_sent",
            "bytes_received",
        ],
        "additionalProperties": False,
        "properties": {
            "peer_id": {"type": "string"},
            "addr": {"type": "string", "description": "remote multiaddr"},
            "direction": {"type": "string", "enum": ["inbound", "outbound"]},
            "connected_since": {"type": "number", "description": "Unix time, seconds"},
            "rtt_ms": {"type": ["number", "null"]},
            "bytes_sent": {"type": "integer"},
            "bytes_received": {"type": "integer"},
        },
    },
    "PeerList": {
        "type": "object",
        "required": ["peers"],
        "properties": {
            "peers": {"type": "array", "items": {"$ref": "#/components/schemas/PeerInfo"}}
        },
    },
    "DhtStatistics": {
        "type": "object",
        "description": "A snapshot of this node's DHT; fields beyond the required ones are "
        "diagnostic and may grow.",
        "required": ["node_id", "peer_id", "buckets", "contacts", "records", "lookups", "drops"],
        "properties": {
            "node_id": {"type": "string", "description": "160-bit DHT node id (hex)"},
            "peer_id": {"type": "string"},
            "ready": {"type": "boolean", "description": "joined (or a bootstrap node)"},
            "buckets": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "description": "contacts per routing-table bucket, in bucket order",
            },
            "contacts": {"type": "integer", "description": "proven contacts in the table"},
            "records": {"type": "integer", "description": "peer records held for the DHT"},
            "record_bytes": {"type": "integer"},
            "lookups": {
                "type": "object",
                "description": "record lookups (resolve) and discovery walks",
                "properties": {
                    "total": {"type": "integer"},
                    "found": {"type": "integer"},
                    "missed": {"type": "integer"},
                    "random_walks": {"type": "integer"},
                    "mean_rounds": {
                        "type": ["number", "null"],
                        "description": "mean rounds of the last 100 iterative lookups",
                    },
                },
            },
            "publishes": {"type": "integer", "description": "own record publications"},
            "seq": {"type": "integer", "description": "sequence number of our own record"},
            "drops": {
                "type": "object",
                "description": "datagrams, contacts and STOREs refused, counted by reason",
                "additionalProperties": {"type": "integer"},
            },
            "rpc": {"type": "object", "additionalProperties": {"type": "integer"}},
            "routing": {"type": "object", "additionalProperties": {"type": "integer"}},
            "service": {"type": "object", "additionalProperties": {"type": "integer"}},
            "bootstrap": {"$ref": "#/components/schemas/JoinState"},
            "mesh": {
                "type": "object",
                "description": "auto-dial of discovered peers",
                "properties": {
                    "dials": {"type": "integer"},
                    "dial_failures": {"type": "integer"},
                    "backing_off": {"type": "integer", "description": "peers in dial backoff"},
                },
            },
        },
    },
    "PeerRecord": {
        "type": "object",
        "description": "A signed peer record, verified by this node (signature, key binding, "
        "expiry); the highest valid sequence number found.",
        "required": ["peer_id", "addrs", "noise_static_key", "envelope_key", "seq", "expires_at"],
        "additionalProperties": False,
        "properties": {
            "peer_id": {"type": "string"},
            "addrs": {
                "type": "array",
                "items": {"type": "string"},
                "description": "multiaddrs the peer announces",
            },
            "noise_static_key": {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$",
                "description": "X25519 Noise static public key (hex)",
            },
            "envelope_key": {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$",
                "description": "X25519 public key for sealed envelopes (hex)",
            },
            "seq": {"type": "integer", "minimum": 0},
            "expires_at": {"type": "integer", "description": "Unix time, seconds"},
            "signed_record": {
                "type": "string",
                "pattern": "^([0-9a-f]{2})+$",
                "description": "the record's canonical CBOR encoding, signature included (hex)",
            },
        },
    },
    "Block": {
        "type": "object",
        "required": ["peer_id", "blocked_at"],
        "additionalProperties": False,
        "properties": {
            "peer_id": {"type": "string"},
            "blocked_at": {"type": "number", "description": "Unix time, seconds"},
        },
    },
    "BlockList": {
        "type": "object",
        "required": ["blocks"],
        "additionalProperties": False,
        "properties": {
            "blocks": {"type": "array", "items": {"$ref": "#/components/schemas/Block"}}
        },
    },
    "DialRequest": {
        "type": "object",
        "required": ["addr"],
        "additionalProperties": False,
        "properties": {
            "addr": {
                "type": "string",
                "description": "multiaddr, e.g. /ip4/127.0.0.1/tcp/4001/p2p/<PeerId>",
            }
        },
    },
}

_HTML = {"text/html": {"schema": {"type": "string"}}}

_PATHS: dict[str, Any] = {
    "/": {
        "get": {
            "operationId": "dashboard",
            "summary": "The live dashboard (HTML), or its login form",
            "description": "With the session cookie: the dashboard page. With ?token=<the API "
            "token>: a 303 to / that sets the cookie (HttpOnly, SameSite=Strict, good for GET "
            "requests only), so the token leaves the address bar. Otherwise the login form.",
            "security": [],
            "parameters": [
                {
                    "name": "token",
                    "in": "query",
                    "required": False,
                    "description": "the API token, exchanged for the session cookie",
                    "schema": {"type": "string"},
                }
            ],
            "responses": {
                "200": {"description": "The dashboard, or the login form", "content": _HTML},
                "303": {"description": "Token accepted: cookie set, go to /"},
                "401": {"description": "Wrong token: the login form again", "content": _HTML},
            },
        }
    },
    "/login": {
        "post": {
            "operationId": "login",
            "summary": "The dashboard's login form: the API token for the session cookie",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["token"],
                            "properties": {"token": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": {
                "303": {"description": "Token accepted: cookie set, go to /"},
                "400": _problem("Not a form"),
                "401": {"description": "Wrong token: the login form again", "content": _HTML},
                "413": _problem("Body too large"),
            },
        }
    },
    "/logout": {
        "post": {
            "operationId": "logout",
            "summary": "Forget the dashboard's session cookie",
            "security": [],
            "responses": {"303": {"description": "Cookie cleared, go to /"}},
        }
    },
    "/healthz": {
        "get": {
            "operationId": "health",
            "summary": "Liveness: the process answers",
            "security": [],
            "responses": {"200": _json("Status", "Alive")},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "ready",
            "summary": "Readiness: listening and joined to the DHT (with the reason either way)",
            "security": [],
            "responses": {
                "200": _json("Readiness", "Ready"),
                "503": {
                    "description": "Not ready yet: why, and the DHT join's state",
                    "content": {"application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/NotReady"}}},
                },
            },
        }
    },
    "/v1/node": {
        "get": {
            "operationId": "getNode",
            "summary": "This node's identity and addresses",
            "responses": {"200": _json("NodeInfo", "Node info"), **_UNAUTHORIZED},
        }
    },
    "/v1/peers": {
        "get": {
            "operationId": "listPeers",
            "summary": "Connected peers",
            "responses": {"200": _json("PeerList", "Connected peers"), **_UNAUTHORIZED},
        },
        "post": {
            "operationId": "connectPeer",
            "summary": "Dial a multiaddr and wait for the handshake",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/DialRequest"}}
                },
            },
            "responses": {
                "200": _json("PeerInfo", "Already connected to that peer"),
                "201": _json("PeerInfo", "New connection"),
                "400": _problem("Body is not JSON, or addr is not a valid multiaddr"),
                **_UNAUTHORIZED,
                "409": _problem("The peer is blocked (DELETE /v1/blocks/{peer_id} first)"),
                "413": _problem("Body too large"),
                "502": _problem("Dial or handshake failed, or the peer proved another PeerId"),
                "503": _problem("Connection limit reached"),
                "504": _problem("Dial timed out"),
            },
        },
    },
    "/v1/peers/{peer_id}": {
        "parameters": [_PEER_ID_PARAM],
        "get": {
            "operationId": "getPeer",
            "summary": "One connected peer",
            "responses": {
                "200": _json("PeerInfo", "Connected peer"),
                "400": _problem("Malformed PeerId"),
                **_UNAUTHORIZED,
                "404": _problem("Not connected"),
            },
        },
        "delete": {
            "operationId": "disconnectPeer",
            "summary": "Disconnect from a peer and forget it; block it with block=true",
            "description": "Closes the connection (if any) and removes the peer from the "
            "address book, so the node does not dial it again on its own. It can still be "
            "rediscovered through the DHT, or dialled again with POST /v1/peers. With "
            "block=true the peer also goes on the deny list, kept across restarts: its "
            "connections are refused after the handshake and nothing dials it (mesh, "
            "channels, POST /v1/peers) until DELETE /v1/blocks/{peer_id}.",
            "parameters": [
                {
                    "name": "block",
                    "in": "query",
                    "required": False,
                    "description": "also put the peer on the deny list",
                    "schema": {"type": "boolean", "default": False},
                }
            ],
            "responses": {
                "204": {"description": "Disconnected and/or forgotten (and blocked)"},
                "400": _problem("Malformed PeerId or query"),
                **_UNAUTHORIZED,
                "404": _problem("Neither connected nor in the address book (without block)"),
            },
        },
    },
    "/v1/blocks": {
        "get": {
            "operationId": "listBlocks",
            "summary": "The deny list: peers refused inbound and never dialled",
            "responses": {"200": _json("BlockList", "Blocked peers"), **_UNAUTHORIZED},
        }
    },
    "/v1/blocks/{peer_id}": {
        "parameters": [_PEER_ID_PARAM],
        "delete": {
            "operationId": "unblockPeer",
            "summary": "Take a peer off the deny list",
            "responses": {
                "204": {"description": "Unblocked (it is not dialled until rediscovered)"},
                "400": _problem("Malformed PeerId"),
                **_UNAUTHORIZED,
                "404": _problem("Not blocked"),
            },
        },
    },
    "/v1/dht": {
        "get": {
            "operationId": "getDht",
            "summary": "DHT state: node id, bucket fill, stored records, lookups, drops",
            "responses": {
                "200": _json("DhtStatistics", "DHT statistics"),
                **_UNAUTHORIZED,
                "503": _problem("DHT not running"),
            },
        }
    },
    "/v1/dht/peers/{peer_id}": {
        "parameters": [_PEER_ID_PARAM],
        "get": {
            "operationId": "resolvePeer",
            "summary": "Resolve a PeerId to its verified peer record through the DHT",
            "responses": {
                "200": _json("PeerRecord", "The verified record"),
                "400": _problem("Malformed PeerId"),
                **_UNAUTHORIZED,
                "404": _problem(f"No valid record found (problem type {RECORD_NOT_FOUND})"),
                "503": _problem("DHT not running"),
                "504": _problem("Lookup did not finish in time"),
            },
        },
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}},
                **_UNAUTHORIZED,
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics (text exposition format)",
            "responses": {
                "200": {"description": "Metrics", "content": {"text/plain": {}}},
                **_UNAUTHORIZED,
            },
        }
    },
}


def build_spec(version: str | None = None) -> dict[str, Any]:
    """A fresh copy of the document (callers may not mutate the module's tables)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SpacePanda node admin API",
            "version": version or api_version(),
            "description": "Local admin API of one SpacePanda node. Errors are RFC 9457 "
            "application/problem+json. Token: the data dir's api.token file.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": copy.deepcopy({**_PATHS, **NETWORK_PATHS, **CHANNEL_PATHS}),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": copy.deepcopy({**_SCHEMAS, **NETWORK_SCHEMAS, **CHANNEL_SCHEMAS}),
        },
    }
