"""RFC 9457 problem details: THE one place where exceptions become HTTP statuses.

Handlers raise domain errors (``node.core.errors``) or :class:`Problem`; the error middleware in
``api.server`` calls :func:`problem_for` and :func:`problem_response`, nothing else decides a
status. Unknown exceptions become an opaque 500 (the caller logs the traceback server-side).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

from api.errors import ChannelsUnavailable
from api.openapi import PROBLEM_TYPE_PREFIX, RECORD_NOT_FOUND
from dht.errors import DhtError, RecordError
from node.channels.errors import (
    AlreadyMember,
    ChannelError,
    InviteeNotFound,
    LastAdmin,
    NotAdmin,
    NotMember,
    TextTooLong,
    UnknownChannel,
    UnknownInvite,
    UnknownMember,
)
from node.core.errors import (
    ConfigError,
    DialError,
    DialTimeout,
    HandshakeError,
    IdentityError,
    LimitExceeded,
    MultiaddrError,
    PeerBlocked,
    PeerIdMismatch,
    StorageError,
    StorageFull,
    TransportError,
)
from node.netview import NetworkStopped

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "RECORD_NOT_FOUND",
    "Problem",
    "problem_for",
    "problem_response",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_PREFIX = PROBLEM_TYPE_PREFIX


@dataclass
class Problem(Exception):
    """An HTTP error with its RFC 9457 body; raise it from a handler or build it from an error."""

    status: int
    title: str
    detail: str = ""
    type: str = "about:blank"
    # RFC 9457 extension members (never "type", "title", "status" or "detail").
    extensions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.status} {self.title}: {self.detail}")

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            k: v for k, v in self.extensions.items()
            if k not in ("type", "title", "status", "detail")
        }
        body.update({"type": self.type, "title": self.title, "status": self.status})
        if self.detail:
            body["detail"] = self.detail
        return body


def _typed(slug: str, status: int, title: str, detail: str) -> Problem:
    return Problem(status=status, title=title, detail=detail, type=_TYPE_PREFIX + slug)


def _plain(status: int, detail: str = "") -> Problem:
    # RFC 9457 4.2.1: with "about:blank" the title is the status phrase.
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return Problem(status=status, title=title, detail=detail)


# Most specific class first: DialTimeout is a DialError, PeerIdMismatch a HandshakeError.
_TABLE: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (PeerBlocked, 409, "peer-blocked", "Peer is blocked"),
    (DialTimeout, 504, "dial-timeout", "Dial timed out"),
    (PeerIdMismatch, 502, "peer-id-mismatch", "Peer proved a different identity"),
    (HandshakeError, 502, "handshake-failed", "Handshake failed"),
    (DialError, 502, "dial-failed", "Dial failed"),
    (LimitExceeded, 503, "limit-exceeded", "Connection limit reached"),
    (TransportError, 502, "transport-error", "Transport error"),
    (MultiaddrError, 400, "bad-multiaddr", "Invalid multiaddr"),
    (IdentityError, 400, "bad-peer-id", "Invalid peer id"),
    (RecordError, 502, "bad-record", "Invalid peer record"),
    (DhtError, 503, "dht-unavailable", "DHT unavailable"),
    (StorageFull, 507, "storage-full", "Storage full"),
    (StorageError, 500, "storage-error", "Storage error"),
    # Channels. The API's own errors first: they refine what the service reports.
    (ChannelsUnavailable, 503, "channels-unavailable", "Channels not running"),
    (NetworkStopped, 503, "network-unavailable", "Relay and mailboxes not running"),
    (AlreadyMember, 409, "already-member", "Already a member"),
    (LastAdmin, 409, "last-admin", "Last admin"),
    (InviteeNotFound, 404, "record-not-found", "No peer record"),
    (UnknownChannel, 404, "unknown-channel", "Unknown channel"),
    (UnknownInvite, 404, "unknown-invite", "Unknown invite"),
    (UnknownMember, 404, "unknown-member", "Not a member of the channel"),
    (NotAdmin, 403, "not-admin", "Not an admin"),
    (NotMember, 409, "not-member", "Not a member"),
    (TextTooLong, 413, "text-too-long", "Text too long"),
    (ChannelError, 400, "channel-error", "Channel request refused"),
    (ConfigError, 500, "config-error", "Configuration error"),
)


def problem_for(exc: BaseException) -> Problem:
    """Map any exception to the problem a client sees. Never leaks unexpected errors' text."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, web.HTTPException):
        # aiohttp's own 404/405/413...: keep its status, say what it means.
        detail = ""
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            detail = f"method {exc.method} not allowed; allowed: {allowed}"
        elif isinstance(exc, web.HTTPRequestEntityTooLarge):
            detail = "request body too large"
        elif exc.status == 404:
            detail = "no such resource"
        return _plain(exc.status, detail)
    for cls, status, slug, title in _TABLE:
        if isinstance(exc, cls):
            # Our own errors' messages are written for operators; storage/config ones may
            # name local paths, so those stay server-side.
            detail = "" if status >= 500 and status not in (502, 503, 504) else str(exc)
            if isinstance(exc, StorageFull):
                # The path stays server-side; the client learns what happened and what to do.
                detail = "the node's disk is full: nothing was stored; retry once there is space"
            return _typed(slug, status, title, detail)
    return _plain(500, "unexpected server error (see node log)")


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=problem.status,
        text=json.dumps(problem.to_json()),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )
