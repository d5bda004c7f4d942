"""Aggregated log lines for events an attacker can cause at will (pure; time passed in).

A flood of refused connections must not become a flood of log lines: :class:`AggregateLog`
counts events by reason and source and writes one line per window, e.g. "refused 2130
connections from 40 sources in the last 10 s". Sources are counted exactly up to
``max_sources`` distinct ones per window, then reported as "at least".
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["AggregateLog"]


class _Logger(Protocol):
    def warning(self, event: str, **kw: Any) -> Any: ...

    def info(self, event: str, **kw: Any) -> Any: ...


class AggregateLog:
    """One log line per ``window_s`` summarising every :meth:`record` call in the window.

    ``describe`` turns (count, distinct sources, window) into the human sentence, e.g.
    ``"refused {n} connections from {m} sources in the last {w} s"``.
    """

    def __init__(
        self,
        logger: _Logger,
        event: str,
        describe: str,
        *,
        level: str = "warning",
        window_s: float = 10.0,
        max_sources: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if level not in ("warning", "info"):
            raise ValueError("level must be 'warning' or 'info'")
        self._log = logger
        self._event = event
        self._describe = describe
        self._level = level
        self.window_s = window_s
        self._max_sources = max_sources
        self._clock = clock
        self._started: float | None = None
        self._count = 0
        self._reasons: Counter[str] = Counter()
        self._sources: set[str] = set()
        self._sources_overflow = False
        self.lines = 0  # lines written so far (tests and statistics)
        self.total = 0  # events recorded so far

    def record(self, reason: str, source: str) -> None:
        now = self._clock()
        if self._started is not None and now - self._started >= self.window_s:
            self.flush()
        if self._started is None:
            self._started = now
        self._count += 1
        self.total += 1
        self._reasons[reason] += 1
        if len(self._sources) < self._max_sources:
            self._sources.add(source)
        elif source not in self._sources:
            self._sources_overflow = True

    def tick(self) -> None:
        """Write the current window's line if the window is over (call periodically)."""
        if self._started is not None and self._clock() - self._started >= self.window_s:
            self.flush()

    def flush(self) -> None:
        """Write the line for what was recorded (if anything) and start a new window."""
        if self._count:
            sources = len(self._sources)
            text = self._describe.format(
                n=self._count,
                m=f"at least {sources}" if self._sources_overflow else sources,
                w=f"{self.window_s:g}",
            )
            write = self._log.warning if self._level == "warning" else self._log.info
            write(self._event, summary=text, count=self._count, sources=sources,
                  reasons=dict(self._reasons), window_s=self.window_s)
            self.lines += 1
        self._started = None
        self._count = 0
        self._reasons.clear()
        self._sources.clear()
        self._sources_overflow = False
