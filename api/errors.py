"""Errors the admin API itself raises around the channel service.

Each names a condition the service reports in a less specific way (or not at all); their
statuses are chosen in ``api.problems``, like every other error's.
"""

from __future__ import annotations

from node.core.errors import SpacePandaError

__all__ = ["AlreadyMember", "ChannelsUnavailable", "InviteeNotFound", "LastAdmin"]


class ChannelsUnavailable(SpacePandaError):
    """The node's channel service is not running (yet, or any more) (503)."""


class AlreadyMember(SpacePandaError):
    """The invitee is already a member of the channel (409)."""


class LastAdmin(SpacePandaError):
    """This node is the channel's last admin and other members remain (409)."""


class InviteeNotFound(SpacePandaError):
    """No signed peer record for the invitee in the DHT: it cannot be reached (404)."""
