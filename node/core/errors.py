"""One typed error tree for the node package.

Errors raised because *we* misused an API are ``Local*``; errors caused by what a peer sent are
``Remote*`` (h11 style), so callers can tell "bug or bad config" from "hostile or broken peer".
Wire close codes and HTTP statuses are mapped from these in exactly one place each
(``node.transport.messages.close_code_for`` and ``api.problems``).
"""

from __future__ import annotations


class SpacePandaError(Exception):
    """Root of every error this project raises on purpose."""


class IdentityError(SpacePandaError):
    """A key or PeerId is malformed, unreadable or does not match."""


class ConfigError(SpacePandaError):
    """Configuration or data directory problem the operator must fix."""


class MultiaddrError(SpacePandaError, ValueError):
    """A multiaddr string is malformed or uses an unsupported protocol."""


class StorageError(SpacePandaError):
    """The node database failed or holds data we cannot read."""


class StorageFull(StorageError):
    """The disk holding the node database is full: nothing was written; retry once there is
    space again."""


class TransportError(SpacePandaError):
    """Anything that goes wrong on a peer link.

    ``remote`` is True when the peer caused it (bad bytes, bad proof, timeout waiting for it).
    """

    remote: bool = True


class LocalProtocolError(TransportError):
    """We misused a protocol object (wrong turn, spent cipher...): our bug, not the peer's."""

    remote = False


class DecodeError(TransportError):
    """Bytes from the wire do not decode (bad length, CBOR, type, version...)."""


class HandshakeError(TransportError):
    """The Noise handshake failed (bad message, bad signature, wrong identity)."""


class PeerIdMismatch(HandshakeError):
    """The peer proved a different identity from the one we dialled."""


class FrameTooLarge(DecodeError):
    """A frame length prefix exceeds the hard limit."""


class ConnectionClosed(TransportError):
    """The link is closed; ``code`` and ``reason`` say why when known."""

    def __init__(self, message: str, code: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class DialError(TransportError):
    """A dial failed (refused, unreachable, handshake failure)."""


class DialTimeout(DialError):
    """A dial did not complete in time."""


class PeerBlocked(DialError):
    """The peer is on this node's deny list: never dialled, refused when it dials us."""

    remote = False


class LimitExceeded(TransportError):
    """A connection or queue limit was hit."""

    remote = False
