"""The DHT package's one typed error."""

from __future__ import annotations

from node.core.errors import SpacePandaError

__all__ = ["DhtError", "RecordError"]


class DhtError(SpacePandaError):
    """Something in the DHT failed: a bad record or message from a peer, or misuse by us."""


class RecordError(DhtError):
    """A peer record does not decode, does not verify, is expired or is too large."""
