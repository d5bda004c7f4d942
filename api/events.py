"""``GET /v1/events``: the channel service's notices as server-sent events.

One subscription (a bounded queue the service fills) per stream. The service never waits for
a stream: when a subscriber's queue is full it stops filling it, and the stream, seeing its
queue full, ends. A client that reads too slowly therefore loses its stream, never slows the
node; it reconnects and catches up through the cursor of ``GET .../messages``. A comment
every keepalive interval keeps proxies and idle timeouts away and notices a vanished client;
on shutdown every stream ends cleanly (a complete chunked response).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from aiohttp import web

from api.appkeys import CLOSING, CONTROL, KEEPALIVE
from api.channels import channel_service

__all__ = ["EVENT_NAMES", "KEEPALIVE_S", "WRITE_TIMEOUT_S", "event_bytes", "events"]

KEEPALIVE_S = 15.0
WRITE_TIMEOUT_S = 30.0  # a client that takes no bytes for this long is gone
# Notice kinds whose SSE event name differs; every other kind is its own name.
_RENAMED = {"declined": "invite_declined"}
EVENT_NAMES = ("message", "invite", "invite_declined", "member_added", "member_removed", "epoch",
               "repair", "mailbox_gap")
_log = structlog.get_logger("api")


def event_bytes(kind: str, channel_id: bytes, data: dict[str, Any]) -> bytes:
    """One SSE event: the name, and the notice's data with ``channel_id`` as one JSON line."""
    name = _RENAMED.get(kind, kind)
    body = json.dumps({**data, "channel_id": channel_id.hex()}, separators=(",", ":"))
    return f"event: {name}\ndata: {body}\n\n".encode()


async def _write(resp: web.StreamResponse, chunk: bytes) -> None:
    async with asyncio.timeout(WRITE_TIMEOUT_S):  # a client that takes nothing is gone
        await resp.write(chunk)


async def events(request: web.Request) -> web.StreamResponse:
    svc = channel_service(request.app[CONTROL])  # 503 before the stream starts
    closing = request.app[CLOSING]
    keepalive = request.app[KEEPALIVE]
    queue = svc.subscribe()
    reason = "closed"
    try:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)  # from here on, the subscription is live
        closed: asyncio.Future[Any] = asyncio.ensure_future(closing.wait())
        get: asyncio.Future[Any] | None = None  # a Notice
        try:
            chunk = b": subscribed\n\n"
            while True:
                if chunk:
                    await _write(resp, chunk)
                if closed.done():
                    reason = "shutdown"
                    break
                if get is None:
                    get = asyncio.ensure_future(queue.get())  # kept across keepalives
                await asyncio.wait({get, closed}, timeout=keepalive,
                                   return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    chunk = b"" if closed.done() else b": keepalive\n\n"
                    continue
                if 0 < queue.maxsize <= queue.qsize() + 1:
                    # The queue was full: the service drops a subscriber it finds so (or
                    # will, at the next notice), so this stream could not be complete.
                    reason = "too_slow"
                    await _write(resp, b": too slow: events were dropped; reconnect\n\n")
                    break
                notices, get = [get.result()], None
                while not queue.empty():
                    notices.append(queue.get_nowait())
                chunk = b"".join(event_bytes(n.kind, n.channel_id, n.data) for n in notices)
            await resp.write_eof()
        except (ConnectionError, TimeoutError):
            reason = "client_gone"
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        finally:
            closed.cancel()
            if get is not None:
                get.cancel()  # a pending get leaves no item behind (asyncio.Queue)
        return resp
    finally:
        svc.unsubscribe(queue)
        _log.debug("api.events_closed", reason=reason)
