"""Local-misuse errors for the Noise package.

``node.errors`` has no ``Local*`` transport class yet, so misuse is reported as a
``TransportError`` whose ``remote`` flag is cleared on the instance: callers can still tell
"our bug" from "hostile peer" without a new class in the shared error tree.
"""

from __future__ import annotations

from node.errors import TransportError

__all__ = ["local_error"]


def local_error(message: str) -> TransportError:
    """A ``TransportError`` that blames this side (``remote`` is False)."""
    err = TransportError(message)
    err.remote = False
    return err
