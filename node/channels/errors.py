"""The channel layer's one error tree.

``Rejected*`` errors describe something a peer sent that we drop (with a counted reason);
the others are answers to a local request and map to HTTP statuses in ``api.problems``.
"""

from __future__ import annotations

from node.core.errors import SpacePandaError

__all__ = [
    "AlreadyMember",
    "ChannelError",
    "EnvelopeError",
    "InviteeNotFound",
    "LastAdmin",
    "NotAdmin",
    "NotMember",
    "PayloadError",
    "Rejected",
    "TextTooLong",
    "UnknownChannel",
    "UnknownInvite",
    "UnknownMember",
]


class ChannelError(SpacePandaError):
    """Root of every error the channel layer raises on purpose."""


class Rejected(ChannelError):
    """Something a peer sent is dropped; ``reason`` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class EnvelopeError(Rejected):
    """An envelope is malformed or does not open."""

    def __init__(self, detail: str) -> None:
        super().__init__("bad_envelope", detail)


class PayloadError(Rejected):
    """An opened envelope, invite or channel content does not decode."""

    def __init__(self, detail: str) -> None:
        super().__init__("bad_payload", detail)


class UnknownChannel(ChannelError):
    """No channel with that id on this node (404)."""


class UnknownInvite(ChannelError):
    """No pending invite with that id (404)."""


class NotAdmin(ChannelError):
    """The operation needs an admin of the channel (403)."""


class NotMember(ChannelError):
    """This node is no longer (or not yet) a member of the channel (409)."""


class TextTooLong(ChannelError):
    """A message text above the limit (413)."""


class UnknownMember(ChannelError):
    """The peer named is not a member of the channel (404)."""


class AlreadyMember(ChannelError):
    """The invitee is already a member of the channel (409)."""


class LastAdmin(ChannelError):
    """This node is the channel's last admin and other members remain: it must make another
    member an admin before it leaves (409)."""


class InviteeNotFound(ChannelError):
    """No signed peer record for the invitee in the DHT: its envelope key is unknown (404)."""
