"""An event-loop exception handler that keeps resource exhaustion from flooding the log.

When ``accept()`` fails with EMFILE/ENFILE/ENOBUFS/ENOMEM, asyncio reports it through the
loop's exception handler once per connection it tried to accept, each with a traceback:
~8,500 lines in 8 seconds on a node with 1,024 descriptors and 1,100 idle API clients. This
handler turns those into one aggregated warning per 10 s; every other report goes to the
default handler unchanged.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import structlog

from node.core.lograte import AggregateLog

__all__ = ["install_loop_guard"]

_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_log = structlog.get_logger("node.loop")


def install_loop_guard(loop: asyncio.AbstractEventLoop) -> AggregateLog:
    """Install the handler on ``loop``; returns its aggregate (for tests and shutdown)."""
    aggregate = AggregateLog(
        _log, "accept_failed",
        "accept() failed {n} times (out of descriptors or memory) on {m} listeners in the "
        "last {w} s",
        clock=loop.time,
    )
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
            where = context.get("socket")
            aggregate.record(errno.errorcode.get(exc.errno or 0, "OSError"), repr(where))
            return
        aggregate.tick()
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return aggregate
