"""asyncio's per-connection 'socket.accept() out of system resource' reports become one
aggregated line per window; anything else still reaches the previous handler."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import structlog

from node.loopguard import install_loop_guard


async def test_accept_errors_are_aggregated() -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    try:
        with structlog.testing.capture_logs() as logs:
            aggregate = install_loop_guard(loop)
            for _ in range(5000):
                loop.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(errno.EMFILE, "Too many open files"),
                    "socket": "listener",
                })
            loop.call_exception_handler({"message": "something else"})
            aggregate.flush()
    finally:
        loop.set_exception_handler(None)
    assert [c["message"] for c in seen] == ["something else"]
    (line,) = [e for e in logs if e["event"] == "accept_failed"]
    assert line["count"] == 5000 and line["reasons"] == {"EMFILE": 5000}
