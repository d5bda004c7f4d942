"""AggregateLog: one line per window, whatever the number of events (fake clock)."""

from __future__ import annotations

from typing import Any

import pytest

from node.core.lograte import AggregateLog


class _Capture:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))


def _make(now: list[float], **kw: Any) -> tuple[_Capture, AggregateLog]:
    cap = _Capture()
    agg = AggregateLog(cap, "refused", "refused {n} connections from {m} sources in the last "
                       "{w} s", clock=lambda: now[0], **kw)
    return cap, agg


def test_a_flood_is_one_line_per_window() -> None:
    now = [100.0]
    cap, agg = _make(now)
    for i in range(10_000):
        now[0] = 100 + i / 500  # 20 s in all: two windows
        agg.record("max_pending_per_ip" if i % 2 else "max_pending_handshakes", f"10.0.0.{i % 40}")
    now[0] = 120.0
    agg.tick()
    agg.flush()
    assert len(cap.lines) == 2
    assert sum(kw["count"] for _, _, kw in cap.lines) == 10_000
    level, event, kw = cap.lines[0]
    assert (level, event) == ("warning", "refused")
    assert kw["sources"] == 40
    assert kw["summary"] == f"refused {kw['count']} connections from 40 sources in the last 10 s"
    assert set(kw["reasons"]) == {"max_pending_per_ip", "max_pending_handshakes"}
    assert agg.total == 10_000 and agg.lines == 2


def test_nothing_recorded_writes_nothing() -> None:
    now = [0.0]
    cap, agg = _make(now)
    for _ in range(5):
        now[0] += 20
        agg.tick()
    agg.flush()
    assert cap.lines == []


def test_the_window_closes_on_the_next_event_or_tick() -> None:
    now = [0.0]
    cap, agg = _make(now, window_s=10.0)
    agg.record("r", "a")
    now[0] = 9.9
    agg.tick()
    assert cap.lines == []
    now[0] = 10.0
    agg.record("r", "b")  # a new window starts with this one
    assert [kw["count"] for _, _, kw in cap.lines] == [1]
    now[0] = 25.0
    agg.tick()
    assert [kw["count"] for _, _, kw in cap.lines] == [1, 1]


def test_distinct_sources_are_bounded() -> None:
    now = [0.0]
    cap, agg = _make(now, max_sources=3, level="info")
    for i in range(10):
        agg.record("r", str(i))
    agg.flush()
    ((level, _, kw),) = cap.lines
    assert level == "info" and kw["sources"] == 3
    assert "from at least 3 sources" in kw["summary"]


def test_bad_level() -> None:
    with pytest.raises(ValueError):
        AggregateLog(_Capture(), "e", "{n}", level="debug")
