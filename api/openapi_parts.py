"""Building blocks of the OpenAPI document, shared by ``api.openapi`` and its channel part."""

from __future__ import annotations

from typing import Any

__all__ = [
    "PEER_ID_PARAM",
    "PROBLEM_TYPE_PREFIX",
    "RECORD_NOT_FOUND",
    "UNAUTHORIZED",
    "json_request",
    "json_response",
    "problem",
]

# Problem type URIs are part of the contract (here, not in api.problems, so the CLI's client
# can use them without importing aiohttp).
PROBLEM_TYPE_PREFIX = "urn:spacepanda:problem:"
# The 404 of GET /v1/dht/peers/{id} (and of an invite to a peer without a record); typed so a
# client can tell "no record" from "no route".
RECORD_NOT_FOUND = PROBLEM_TYPE_PREFIX + "record-not-found"


def problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def json_response(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def json_request(ref: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


UNAUTHORIZED = {"401": problem("Missing or wrong bearer token")}
PEER_ID_PARAM = {
    "name": "peer_id",
    "in": "path",
    "required": True,
    "description": "PeerId text form (sp...)",
    "schema": {"type": "string"},
}
