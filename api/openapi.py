"""The OpenAPI 3.1 document for exactly the routes ``api.server`` serves.

Kept by hand (it is the contract outside tools read) and held to the router by
``tests/api/test_openapi.py``, which walks both and fails on any route missing from either.
"""

from __future__ import annotations

import copy
from importlib import metadata
from typing import Any

__all__ = ["api_version", "build_spec"]


def api_version() -> str:
    try:
        return metadata.version("spacepanda")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


_UNAUTHORIZED = {"401": _problem("Missing or wrong bearer token")}
_PEER_ID_PARAM = {
    "name": "peer_id",
    "in": "path",
    "required": True,
    "description": "PeerId text form (sp...)",
    "schema": {"type": "string"},
}

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
    "NodeInfo": {
        "type": "object",
        "required": ["peer_id", "addrs", "version", "uptime_s"],
        "additionalProperties": False,
        "properties": {
            "peer_id": {"type": "string"},
            "addrs": {"type": "array", "items": {"type": "string"}},
            "version": {"type": "string"},
            "uptime_s": {"type": "number"},
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

_PATHS: dict[str, Any] = {
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
            "summary": "Readiness: listening and bootstrapped",
            "security": [],
            "responses": {
                "200": _json("Status", "Ready"),
                "503": _problem("Not ready yet"),
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
            "summary": "Close the connection to a peer",
            "responses": {
                "204": {"description": "Disconnected"},
                "400": _problem("Malformed PeerId"),
                **_UNAUTHORIZED,
                "404": _problem("Not connected"),
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
        "paths": copy.deepcopy(_PATHS),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": copy.deepcopy(_SCHEMAS),
        },
    }
