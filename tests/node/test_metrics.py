"""Prometheus metrics of a real node: conventions, every labelled family present from the
start, values that follow real traffic (links, DHT, channels), counters that never go back."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from node.buildinfo import commit, version
from node.core.padding import BUCKETS
from node.metrics import (
    CHANNEL_STATUSES,
    DHT_DROP_REASONS,
    DHT_RPCS,
    HANDSHAKE_FAILURE_KINDS,
    MESSAGE_DROP_REASONS,
    RECORD_REFUSALS,
    REFUSAL_REASONS,
    Histogram,
    LinkTotals,
    node_registry,
)
from node.metrics_network import (
    MAILBOX_STORE_OUTCOMES,
    PROTOCOLS,
    RELAY_MESSAGE_OUTCOMES,
    SCORE_BANDS,
    network_families,
)
from node.netview import STORE_REFUSALS
from node.network.mailbox_wire import KEY_LEN, Status
from node.transport.connections import LinkDown, LinkUp
from tests.harness import Running, StartNode, wait_for

REPO = Path(__file__).resolve().parents[2]


def scrape(running: Running) -> dict[str, list[Sample]]:
    """Family name -> samples, parsed back from the exposition text as Prometheus would."""
    text = generate_latest(node_registry(running.node)).decode()
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def value(families: dict[str, list[Sample]], sample: str, **labels: str) -> float:
    family = re.sub(r"_(total|bucket|sum|count)$", "", sample)
    found = [s.value for s in families[family] if s.name == sample and s.labels == labels]
    assert len(found) == 1, (sample, labels, families.get(family))
    return found[0]


def _types(running: Running) -> dict[str, str]:
    text = generate_latest(node_registry(running.node)).decode()
    return {f.name: f.type for f in text_string_to_metric_families(text)}


async def test_naming_conventions_and_everything_present_at_start(
    start_node: StartNode,
) -> None:
    a = await start_node()
    families = scrape(a)
    types = _types(a)
    ours = [n for n in families if n.startswith("spacepanda_")]
    assert len(ours) >= 40
    assert set(families) - set(ours) <= {n for n in families if n.startswith("process_")}
    assert "process_resident_memory_bytes" in families  # the process collector (Linux)
    for name, samples in families.items():
        assert samples, f"{name} has no samples at start"
        if types[name] == "counter":
            assert all(s.name == f"{name}_total" for s in samples), name
    # Every labelled family starts with each label value it can take, at 0.
    expected = {
        "spacepanda_connections": ("direction", ("inbound", "outbound")),
        "spacepanda_transport_bytes": ("direction", ("received", "sent")),
        "spacepanda_transport_frames": ("direction", ("received", "sent")),
        "spacepanda_handshakes": ("direction", ("inbound", "outbound")),
        "spacepanda_handshake_failures": ("kind", HANDSHAKE_FAILURE_KINDS),
        "spacepanda_inbound_refused": ("reason", REFUSAL_REASONS),
        "spacepanda_mesh_dials": ("outcome", ("ok", "failed")),
        "spacepanda_dht_records_refused": ("reason", RECORD_REFUSALS),
        "spacepanda_dht_dropped": ("reason", DHT_DROP_REASONS),
        "spacepanda_dht_lookups": ("result", ("found", "missed")),
        "spacepanda_dht_datagrams": ("direction", ("received", "sent")),
        "spacepanda_dht_bootstrap_attempts": ("outcome", ("ok", "failed")),
        "spacepanda_channels": ("status", CHANNEL_STATUSES),
        "spacepanda_messages": ("direction", ("received", "sent")),
        "spacepanda_messages_dropped": ("reason", MESSAGE_DROP_REASONS),
        "spacepanda_envelopes_received": ("verdict",
                                          ("processed", "held", "duplicate", "rate_limited")),
        "spacepanda_envelopes_sent": ("kind", ("envelope", "ack")),
    }
    expected |= {
        "spacepanda_relay_messages": ("outcome", tuple(RELAY_MESSAGE_OUTCOMES)),
        "spacepanda_relay_stem_messages": ("outcome", ("sent", "received", "relayed",
                                                       "fluffed", "loop")),
        "spacepanda_relay_iwant_ids": ("outcome", ("served", "missing", "repeated")),
        "spacepanda_relay_misbehaviour": ("kind", ("bad_frame", "ihave_flood", "iwant_flood",
                                                   "broken_promise", "graft_in_backoff")),
        "spacepanda_relay_frames": ("outcome", ("sent", "dropped", "no_link")),
        "spacepanda_relay_delivered": ("outcome", ("queued", "dropped")),
        "spacepanda_relay_mesh_peers": ("shard", ("0",)),
        "spacepanda_relay_shard_peers": ("shard", ("0",)),
        "spacepanda_relay_peers": ("score_band", SCORE_BANDS),
        "spacepanda_relay_peer_score": ("stat", ("min", "median", "max")),
        "spacepanda_mailbox_stores": ("outcome", MAILBOX_STORE_OUTCOMES),
        "spacepanda_mailbox_fetches_refused": ("reason", ("rate_limited", "unavailable")),
        "spacepanda_mailbox_client_stores": ("outcome", ("ok", "duplicate", "key_full",
                                                         "holder_full", "unavailable")),
        "spacepanda_mailbox_client_failures": ("reason", ("timeout", "dial_failed",
                                                          "fetch_rate_limited")),
        "spacepanda_queue_depth": ("queue", ("channel_jobs", "channel_calls",
                                             "relay_delivered")),
        "spacepanda_protocol_queue_depth": ("protocol", PROTOCOLS),
    }
    for name, (label, values) in expected.items():
        seen = {s.labels[label] for s in families[name]}
        assert set(values) <= seen, (name, set(values) - seen)
    assert {"refused_" + r for r in STORE_REFUSALS} >= {"refused_holder_full",
                                                        "refused_key_full"}
    # A fresh node: no relay peers, nothing held, the holder's budget as configured.
    assert value(families, "spacepanda_relay_peers", score_band="ok") == 0
    assert value(families, "spacepanda_mailbox_quota_bytes") == 1024 * 1024 * 1024
    assert value(families, "spacepanda_mailbox_envelopes") == 0
    assert "quota" in RECORD_REFUSALS and "stored" not in RECORD_REFUSALS
    rpcs = {(s.labels["type"], s.labels["direction"]) for s in families["spacepanda_dht_rpcs"]}
    assert {(t, d) for t in DHT_RPCS for d in ("in", "out")} <= rpcs
    for kind in ("resolve", "random_walk"):
        buckets = [s for s in families["spacepanda_dht_lookup_duration_seconds"]
                   if s.name.endswith("_bucket") and s.labels["kind"] == kind]
        assert len(buckets) == 13 and buckets[-1].labels["le"] == "+Inf"
    build = families["spacepanda_build_info"]
    assert build[0].labels == {"version": version(), "commit": commit(),
                               "python": build[0].labels["python"]}
    assert value(families, "spacepanda_dht_ready") == 1.0  # a bootstrap node


def test_network_families_present_before_the_services_run() -> None:
    """A node still starting has no relay, mailboxes or channels: the families are there
    anyway, at 0, with their preset labels (shards from the configuration)."""
    families = {f.name: f for f in network_families({"relay_shards": 3})}
    assert len(families) >= 35
    for name, family in families.items():
        assert name.startswith("spacepanda_") and family.samples, name
        assert all(s.value == 0 for s in family.samples), name
    shards = {s.labels["shard"] for s in families["spacepanda_relay_mesh_peers"].samples}
    assert shards == {"0", "1", "2"}


async def test_relay_shards_and_mailbox_usage_follow_the_node(start_node: StartNode) -> None:
    a = await start_node(relay_shards=3)
    families = scrape(a)
    assert {s.labels["shard"] for s in families["spacepanda_relay_mesh_peers"]} \
        == {"0", "1", "2"}
    # The usage sampler's first read happens as the node starts.
    await wait_for(lambda: a.node.telemetry.mailbox_usage is not None, timeout=10)
    mailboxes = a.node.mailboxes
    assert mailboxes is not None
    envelope = os.urandom(BUCKETS[0])
    assert await mailboxes.store(a.node.peer_id, os.urandom(KEY_LEN), envelope) == Status.OK
    body = await a.node.network()  # reads the usage afresh (and for the metrics)
    assert body["mailboxes"]["holder"]["envelopes"] == 1
    families = scrape(a)
    assert value(families, "spacepanda_mailbox_envelopes") == 1
    assert value(families, "spacepanda_mailbox_bytes") == len(envelope)
    assert value(families, "spacepanda_mailbox_stores_total", outcome="stored") == 1
    assert value(families, "spacepanda_mailbox_client_stores_total", outcome="ok") == 1


def test_preset_reasons_cover_the_code() -> None:
    """The reasons the channel layer and the DHT store refuse with are all preset (so an
    alert on one works before it first happens)."""
    channel_src = "".join(p.read_text() for p in (REPO / "node" / "channels").glob("*.py"))
    rejected = set(re.findall(r'Rejected\(\s*"([a-z_]+)"', channel_src))
    assert rejected and rejected <= set(MESSAGE_DROP_REASONS), rejected - set(MESSAGE_DROP_REASONS)
    service = (REPO / "node" / "channel_service.py").read_text()
    held = set(re.findall(r'self\.drops\[\(""\s*,\s*"([a-z_]+)"\)\]', service))
    assert held <= set(MESSAGE_DROP_REASONS), held
    dht_src = "".join((REPO / "dht" / f).read_text() for f in ("protocol.py", "wire.py"))
    drops = set(re.findall(r'(?:drops\[|_Drop\(|WireError\()"([a-z_]+)"', dht_src))
    assert drops and drops <= set(DHT_DROP_REASONS), drops - set(DHT_DROP_REASONS)


@dataclass
class _Stats:
    bytes_in: int
    bytes_out: int
    frames_in: int
    frames_out: int


class _FakeLink:
    def __init__(self, direction: str) -> None:
        self.direction = direction
        self.closed = asyncio.Event()
        self.s = _Stats(0, 0, 0, 0)

    def stats(self) -> _Stats:
        return self.s


def test_link_totals_only_grow_as_links_come_and_go() -> None:
    totals = LinkTotals()
    a, b, c = _FakeLink("inbound"), _FakeLink("outbound"), _FakeLink("outbound")
    totals.observe(LinkUp(a))  # type: ignore[arg-type]
    a.s = _Stats(100, 50, 2, 1)
    assert totals.totals([a]) == {"bytes_in": 100, "bytes_out": 50, "frames_in": 2,  # type: ignore[list-item]
                                  "frames_out": 1}
    # b is admitted but its LinkUp is not drained yet: counted anyway, exactly once.
    b.s = _Stats(10, 10, 1, 1)
    assert totals.totals([a, b])["bytes_in"] == 110  # type: ignore[list-item]
    totals.observe(LinkUp(b))  # type: ignore[arg-type]
    # a closes; its final stats stay in the totals after it leaves the live list.
    a.s = _Stats(120, 60, 3, 2)
    a.closed.set()
    assert totals.totals([b])["bytes_in"] == 130  # type: ignore[list-item]
    totals.observe(LinkDown(a, None))  # type: ignore[arg-type]
    assert totals.totals([b])["bytes_in"] == 130  # type: ignore[list-item]
    # c opens and closes between two scrapes: its bytes are still counted.
    totals.observe(LinkUp(c))  # type: ignore[arg-type]
    c.s = _Stats(5, 5, 1, 1)
    c.closed.set()
    totals.observe(LinkDown(c, None))  # type: ignore[arg-type]
    assert totals.totals([b]) == {"bytes_in": 135, "bytes_out": 75, "frames_in": 5,  # type: ignore[list-item]
                                  "frames_out": 4}
    assert totals.handshakes == {"inbound": 1, "outbound": 2}


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 7.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert h.count == 4 and h.sum == pytest.approx(7.65)


async def test_values_follow_real_traffic(start_node: StartNode) -> None:
    from tests.api.channel_harness import Api, api_clients, joined, mesh

    nodes = await mesh(start_node, 2, auto_accept_invites=False)
    a, b = nodes
    await wait_for(lambda: b.node.peer_id in a.peers() and a.node.peer_id in b.peers(), 20)
    clients = api_clients()
    make = await clients.__anext__()
    try:
        api_a, api_b = Api(await make(a)), Api(await make(b))
        cid = await api_a.create("metrics")
        await joined(api_a, api_b, cid, b.node.peer_id)
        await api_a.send(cid, "hello")

        def got_it() -> bool:
            return value(scrape(b), "spacepanda_messages_total", direction="received") == 1

        await wait_for(got_it, timeout=20)
    finally:
        await clients.aclose()
    fa, fb = scrape(a), scrape(b)
    assert value(fa, "spacepanda_messages_total", direction="sent") == 1
    assert value(fa, "spacepanda_messages_total", direction="received") == 0
    assert value(fb, "spacepanda_messages_total", direction="sent") == 0
    assert value(fa, "spacepanda_channels", status="active") == 1
    assert value(fa, "spacepanda_channel_members") == 2
    # One link each way round: a is b's bootstrap, so the mesh link is b -> a or a -> b.
    conns = sum(value(fa, "spacepanda_connections", direction=d)
                for d in ("inbound", "outbound"))
    assert conns == 1
    handshakes = sum(value(fa, "spacepanda_handshakes_total", direction=d)
                     for d in ("inbound", "outbound"))
    assert handshakes >= 1
    for f in (fa, fb):
        assert value(f, "spacepanda_transport_bytes_total", direction="sent") > 0
        assert value(f, "spacepanda_transport_frames_total", direction="received") > 0
        assert value(f, "spacepanda_dht_rpcs_total", type="identify", direction="in") \
            + value(f, "spacepanda_dht_rpcs_total", type="identify", direction="out") > 0
        assert value(f, "spacepanda_envelopes_sent_total", kind="envelope") >= 1
    # b resolved a's record to dial it (mesh) or to answer the invite: timed.
    resolves = value(fb, "spacepanda_dht_lookup_duration_seconds_count", kind="resolve") \
        + value(fa, "spacepanda_dht_lookup_duration_seconds_count", kind="resolve")
    assert resolves >= 1
    assert value(fa, "spacepanda_dht_lookups_total", result="found") >= 1
    assert value(fb, "spacepanda_dht_bootstrap_attempts_total", outcome="ok") == 1

    # A link closing never takes bytes away from the counters.
    before = value(fa, "spacepanda_transport_bytes_total", direction="received")
    await a.node.disconnect(b.node.peer_id, block=True)
    await wait_for(lambda: not a.peers(), timeout=10)
    after = scrape(a)
    assert value(after, "spacepanda_transport_bytes_total", direction="received") >= before
    assert value(after, "spacepanda_blocked_peers") == 1
    await wait_for(lambda: value(scrape(a), "spacepanda_inbound_refused_total",
                                 reason="blocked") >= 1, timeout=30)


# ---- the scrape example and alert rules in deploy/ -----------------------------------------


def _metric_names(expr: str) -> Iterable[str]:
    return re.findall(r"\b((?:spacepanda|process)_[a-z_]+)", expr)


async def test_alert_rules_use_metrics_the_node_exports(start_node: StartNode) -> None:
    a = await start_node()
    text = generate_latest(node_registry(a.node)).decode()
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    doc: Any = yaml.safe_load((REPO / "deploy" / "alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) >= 6
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}, rule
        names = list(_metric_names(rule["expr"]))
        assert names or "up{" in rule["expr"], rule["alert"]
        for name in names:
            assert name in exported, (rule["alert"], name)
    # docs/operations.md shows the same rules (by name) and the metrics that matter.
    ops = (REPO / "docs" / "operations.md").read_text()
    section = ops[ops.index("## What to monitor"):]
    for rule in rules:
        assert rule["alert"] in section, rule["alert"]
    for name in set(re.findall(r"`((?:spacepanda|process)_[a-z_]+)", section)):
        assert any(e == name or e.startswith(name + "_") for e in exported), name
