"""``spacepanda network`` against a real in-process node behind its API server."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import jsonschema
import pytest
import structlog.testing

from api.openapi import build_spec
from api.server import ApiServer, create_app
from node.cli import main
from node.cli_network import format_network
from node.core.identity import Identity
from node.core.multiaddr import Multiaddr
from node.datadir import DataDir
from node.metrics import node_registry
from tests.api.channel_harness import mesh
from tests.harness import Running, StartNode, wait_for


@pytest.fixture(autouse=True)
def quiet_nodes() -> Iterator[None]:
    """The node runs in this process: keep its log lines out of the CLI's captured stdout."""
    with structlog.testing.capture_logs():
        yield


@pytest.fixture
async def pair(start_node: StartNode, tmp_path: Path) -> AsyncIterator[tuple[Running, Running,
                                                                             str]]:
    """Two linked nodes whose relay meshes hold each other; a data dir for a's API."""
    a, b = await mesh(start_node, 2)
    relay = a.node.relay
    assert relay is not None
    await wait_for(lambda: b.node.peer_id in relay.router.mesh(0), timeout=20)
    d = DataDir(tmp_path / "cli")
    d.create()
    server = ApiServer(create_app(a.node, d.read_token(), node_registry(a.node)),
                       Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True))
    d.write_api_address(await server.start())
    try:
        yield a, b, str(d.path)
    finally:
        await server.stop()


async def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


async def test_network_text_and_json(pair: tuple[Running, Running, str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    a, b, data_dir = pair
    text = await _run(capsys, "network", "--data-dir", data_dir)
    lines = text.splitlines()
    short = b.node.peer_id.short()
    assert lines[0].startswith("relay ") and "1 shard(s), 1 peer(s), scores " in lines[0]
    assert lines[0].endswith(", 0 graylisted")
    assert lines[1].split() == ["shard", "0", "mesh", "1", "of", "1", "relaying,", "fanout",
                                "1:", short]
    labels = [line.split()[0] for line in lines]
    assert labels == ["relay", "shard", "messages", "iwant", "stem", "caches", "mailboxes",
                      "stores", "fetches", "client", "delivery", "fallback", "catch-up",
                      "queues"]
    assert "holding 0 envelope(s) (0 B, 0.0% of 1024.0 MiB) under 0 key(s)" in text
    assert "refused: none" in text and "jitter off" in text
    body = json.loads(await _run(capsys, "network", "--data-dir", data_dir, "--json"))
    spec = build_spec()
    jsonschema.validate(body, {"$ref": "#/components/schemas/Network",
                               "components": spec["components"]})
    assert [p["peer_id"] for p in body["relay"]["peers"]] == [str(b.node.peer_id)]
    assert body["relay"]["meshes"][0]["mesh"] == [str(b.node.peer_id)]
    assert body["relay"]["peers"][0]["in_mesh"] is True
    assert a.node.peer_id != b.node.peer_id


async def test_format_network_summarises_what_matters(
    pair: tuple[Running, Running, str],
) -> None:
    a, _, _ = pair
    body = copy.deepcopy(await a.node.network())
    relay, holder = body["relay"], body["mailboxes"]["holder"]
    others = [str(Identity.generate().peer_id) for _ in range(5)]
    relay["meshes"][0]["mesh"] = others
    relay["scores"].update({"min": -90.5, "max": 2.25, "median": 0.5, "graylisted": 1})
    holder["refused"].update({"key_full": 3, "rate_limited": 7})
    body["delivery"]["catch_up"]["synced_at"] = 1_000_000.0
    body["delivery"]["dispatch"]["sp/gossip/1"] = 12
    text = format_network(body, now=1_000_125.0)
    assert "scores -90.5 .. 2.25 (median 0.5), 1 graylisted" in text
    assert "mesh 5 of " in text and text.count("…") >= 5  # 4 short ids and "more"
    assert "refused: rate_limited 7, key_full 3" in text
    assert "synced 2m05s ago" in text
    assert text.splitlines()[-1].split() == ["queues", "sp/gossip/1", "12"]
    # Missing parts are shown as zeros, not an error (an older or newer node).
    assert "outbox 0 (0 owed" in format_network({}, now=0.0)
