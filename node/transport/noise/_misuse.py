"""Local-misuse errors for the Noise package."""

from __future__ import annotations

from node.core.errors import LocalProtocolError

__all__ = ["local_error"]


def local_error(message: str) -> LocalProtocolError:
    """An error that blames this side (``remote`` is False), not the peer."""
    return LocalProtocolError(message)
