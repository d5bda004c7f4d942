"""The application keys the admin API's handler modules share (one object per key)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CollectorRegistry

from api.control import NodeControl
from api.limits import ApiLimits

__all__ = [
    "CLOSING", "CONTROL", "KEEPALIVE", "LIMITS", "REGISTRY", "RESOLVE_TIMEOUT_KEY", "SPEC",
]

CONTROL = web.AppKey("control", NodeControl)
REGISTRY = web.AppKey("registry", CollectorRegistry)
SPEC = web.AppKey("spec", dict)
RESOLVE_TIMEOUT_KEY = web.AppKey("resolve_timeout", float)
# Set when the app shuts down: open event streams end cleanly instead of being cut off.
CLOSING = web.AppKey("closing", asyncio.Event)
KEEPALIVE = web.AppKey("sse_keepalive", float)  # seconds between event-stream comments
LIMITS = web.AppKey("limits", ApiLimits)  # connection, header and body limits (api.limits)
