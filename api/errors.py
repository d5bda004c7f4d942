"""Errors the admin API itself raises around the channel service.

Each names a condition the service reports in a less specific way (or not at all); their
statuses are chosen in ``api.problems``, like every other error's.
"""

from __future__ import annotations

from node.core.errors import SpacePandaError

__all__ = ["ChannelsUnavailable"]


class ChannelsUnavailable(SpacePandaError):
    """The node's channel service is not running (yet, or any more) (503)."""
