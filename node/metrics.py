"""Prometheus metrics: one registry per node, read from ``statistics()`` snapshots at scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["node_registry"]


class _HasStatistics(Protocol):
    def statistics(self) -> dict[str, object]: ...


class _NodeCollector(Collector):
    def __init__(self, node: _HasStatistics) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        stats = self._node.statistics()
        conns = GaugeMetricFamily("spacepanda_connections", "Open peer connections")
        conns.add_metric([], float(_num(stats.get("connections"))))
        yield conns
        pending = GaugeMetricFamily("spacepanda_pending_handshakes", "Handshakes in progress")
        pending.add_metric([], float(_num(stats.get("pending_handshakes"))))
        yield pending
        refused = CounterMetricFamily(
            "spacepanda_inbound_refused", "Inbound connections refused", labels=["reason"]
        )
        for reason, count in _dict(stats.get("refused")).items():
            refused.add_metric([reason], float(count))
        yield refused
        failed = CounterMetricFamily(
            "spacepanda_handshake_failures", "Failed handshakes", labels=["kind"]
        )
        for kind, count in _dict(stats.get("handshake_failures")).items():
            failed.add_metric([kind], float(count))
        yield failed
        unknown = CounterMetricFamily(
            "spacepanda_unknown_protocol_frames", "Frames for protocols nobody handles"
        )
        unknown.add_metric([], float(_num(stats.get("unknown_protocol_frames"))))
        yield unknown


def _num(value: object) -> int | float:
    return value if isinstance(value, int | float) else 0


def _dict(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int)}


def node_registry(node: _HasStatistics) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_NodeCollector(node))
    return registry
