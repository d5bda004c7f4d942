"""Limits of the admin API's HTTP server: connections, slow clients, aiohttp's own errors.

aiohttp alone keeps every connection for as long as the client wants: idle, slow-header and
slow-body clients were held for a minute and more, and 1,100 of them exhausted a node's file
descriptors. This module wraps aiohttp's protocol (``RequestHandler``) so that:

* at most ``max_connections`` are open; a newcomer over the cap takes the place of the
  connection that has waited longest for a request (idle ones first), so a health probe is
  served however many idle clients there are; when every connection is busy with a request,
  the newcomer gets ``503`` problem+json and is closed at once (its descriptor freed);
* request headers must arrive within ``header_timeout_s`` of the connection (or of the last
  response on a kept-alive connection): a client that sent part of them gets ``408``
  problem+json, an idle one is just closed;
* request bodies must arrive within ``body_timeout_s`` (enforced where handlers read them,
  ``api.parse``), answered ``408``;
* the errors aiohttp raises itself before any handler runs (a raw non-ASCII path, oversized
  or malformed headers) are problem+json too, and never one log line each: refusals,
  timeouts and bad requests are logged as one aggregated line per 10 s.
"""

from __future__ import annotations

import asyncio
import json
import resource
from collections import Counter, OrderedDict
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from api.problems import PROBLEM_CONTENT_TYPE, Problem
from node.core.lograte import AggregateLog

__all__ = ["ApiLimits", "ConnectionGuard", "default_max_connections", "raw_problem"]

_log = structlog.get_logger("api")


def default_max_connections(cap: int = 256) -> int:
    """``cap``, or a quarter of the process's file-descriptor limit if that is lower."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return cap
    if soft == resource.RLIM_INFINITY:
        return cap
    return max(8, min(cap, soft // 4))


@dataclass(frozen=True)
class ApiLimits:
    max_connections: int = 256
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 15.0
    lingering_time_s: float = 2.0
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 64

    @classmethod
    def for_this_process(cls) -> ApiLimits:
        return cls(max_connections=default_max_connections())


def raw_problem(status: int, detail: str) -> bytes:
    """A whole ``Connection: close`` HTTP/1.1 response carrying a problem (no aiohttp)."""
    phrase = _phrase(status)
    body = json.dumps(Problem(status, phrase, detail).to_json()).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _Refused(asyncio.Protocol):
    """A connection over the cap when every slot is busy: 503, closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(raw_problem(503, "too many API connections; try again"))
        transport.close()


class LimitedHandler(RequestHandler):
    """aiohttp's protocol with a header deadline, problem+json errors and no per-error log."""

    def __init__(self, guard: ConnectionGuard, server: web.Server, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._guard = guard
        self._header_timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._got_bytes = False
        self.waiting_since = 0.0

    # -- lifecycle -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._guard.opened(self)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._guard.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data:
            self._got_bytes = True
        super().data_received(data)

    async def _handle_request(self, request: BaseRequest, *args: Any) -> Any:
        self._busy = True
        self._disarm()
        try:
            return await super()._handle_request(request, *args)
        finally:
            self._busy = False
            self._got_bytes = False
            if self.transport is not None and not self.transport.is_closing():
                self._arm()  # kept alive: the next request's headers have a deadline too

    # -- the header deadline --------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._busy

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self.waiting_since = loop.time()
        self._header_timer = loop.call_later(self._guard.limits.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self._busy or self.transport is None:
            return
        if self._got_bytes:
            # Part of a request arrived, too slowly: say so (408), then close.
            self._guard.record("header_timeout", self)
            self.transport.write(raw_problem(408, "request headers not received in time"))
        else:
            self._guard.record("idle_timeout", self)
        self.force_close()

    def evict(self) -> None:
        """Make room for a newcomer (the cap is reached and this one waits longest)."""
        self._guard.record("evicted_idle", self)
        self._guard.closed(self)  # its slot is free now, not when the loop gets round to it
        self._disarm()
        self.force_close()

    # -- aiohttp's own errors --------------------------------------------------------------

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The parser's 400s (and any error aiohttp raises before our middleware runs), as
        problem+json; counted in the aggregated line instead of a traceback each."""
        self._guard.record(f"http_{status}", self)
        if status >= 500 and exc is not None and self._guard.may_log_traceback():
            # Our own failure, not the client's: one traceback per window at most.
            _log.error("api.protocol_error", status=status, exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        detail = (
            "unexpected server error (see node log)" if status >= 500 else _detail(message)
        )
        response = web.Response(
            status=status,
            text=json.dumps(Problem(status, _phrase(status), detail).to_json()),
            content_type=PROBLEM_CONTENT_TYPE,
        )
        response.force_close()
        return response


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _detail(message: str | None) -> str:
    """aiohttp's parser message, shortened and made printable (it may echo input)."""
    lines = (message or "").splitlines()
    text = lines[0] if lines else "malformed request"
    return "".join(c if c.isprintable() and c.isascii() else "?" for c in text)[:200]


class ConnectionGuard:
    """Creates the protocol for every accepted connection and enforces the cap."""

    def __init__(self, server: web.Server, limits: ApiLimits) -> None:
        self.server = server
        self.limits = limits
        self._handlers: OrderedDict[LimitedHandler, None] = OrderedDict()
        self.counters: Counter[str] = Counter()
        self._traceback_at = float("-inf")
        self.log = AggregateLog(
            _log, "api.connections_refused",
            "refused, timed out or rejected {n} API connections or requests from {m} sources "
            "in the last {w} s",
        )

    def __call__(self) -> asyncio.BaseProtocol:
        self.log.tick()
        if len(self._handlers) >= self.limits.max_connections:
            waiting = [h for h in self._handlers if not h.busy]
            if not waiting:
                self.counters["refused_busy"] += 1
                self.log.record("refused_busy", "?")
                return _Refused()
            min(waiting, key=lambda h: h.waiting_since).evict()
        return LimitedHandler(
            self,
            self.server,
            loop=asyncio.get_running_loop(),
            **self.server._kwargs,
        )

    def may_log_traceback(self) -> bool:
        now = asyncio.get_running_loop().time()
        if now - self._traceback_at < self.log.window_s:
            return False
        self._traceback_at = now
        return True

    @property
    def open_connections(self) -> int:
        return len(self._handlers)

    def opened(self, handler: LimitedHandler) -> None:
        self._handlers[handler] = None

    def closed(self, handler: LimitedHandler) -> None:
        self._handlers.pop(handler, None)

    def record(self, reason: str, handler: LimitedHandler) -> None:
        self.counters[reason] += 1
        transport = handler.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        self.log.record(reason, str(peer[0]) if peer else "?")

    def statistics(self) -> dict[str, Any]:
        return {"open": len(self._handlers), **self.counters}
