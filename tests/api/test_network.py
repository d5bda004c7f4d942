"""``GET /v1/network`` over real in-process nodes: members with no link between them talk
through relays and leave envelopes in mailboxes, and every node's body says so, fits the
documented schema, and agrees with the Prometheus metrics."""

from __future__ import annotations

from typing import Any

import jsonschema
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.openapi import PROBLEM_TYPE_PREFIX, build_spec
from node.metrics import node_registry
from node.netview import NetworkStopped
from tests.api import conftest
from tests.api.channel_harness import Api, ApiFor, eventually, joined, mesh, ok, problem
from tests.harness import Running, StartNode, wait_for


def _validator() -> jsonschema.Draft202012Validator:
    spec = build_spec()
    schema = {"$ref": "#/components/schemas/Network", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema)


async def _network(api: Api) -> dict[str, Any]:
    return dict(await ok(await api.get("/v1/network")))


def _metric(running: Running, sample: str, **labels: str) -> float:
    text = generate_latest(node_registry(running.node, process=False)).decode()
    found = [s.value for f in text_string_to_metric_families(text) for s in f.samples
             if s.name == sample and s.labels == labels]
    assert len(found) == 1, (sample, labels)
    return found[0]


async def test_relays_and_mailboxes_show_in_every_nodes_view(
    start_node: StartNode, api_for: ApiFor
) -> None:
    nodes = await mesh(start_node, 5)
    a, b = nodes[3], nodes[4]
    apis = [Api(await api_for(r)) for r in nodes]
    api_a, api_b = apis[3], apis[4]
    # a and b may not link: everything between them goes through the other three.
    for api, other in ((api_a, b), (api_b, a)):
        resp = await api.delete(f"/v1/peers/{other.node.peer_id}?block=true")
        assert resp.status == 204
    await wait_for(lambda: len(a.peers()) >= 2 and len(b.peers()) >= 2, timeout=20)
    cid = await api_a.create("through relays")
    await joined(api_a, api_b, cid, b.node.peer_id)
    await api_a.send(cid, "over relays")
    await api_b.send(cid, "and back")  # settles a's Welcome (b speaks in the channel)

    async def both_have_both() -> bool:
        texts = []
        for api in (api_a, api_b):
            page = await api.messages(cid)
            texts.append(sorted(m["text"] for m in page["messages"]))
        return texts == [["and back", "over relays"]] * 2

    await eventually(both_have_both, timeout=30)

    async def a_outbox_done() -> bool:
        view = (await _network(api_a))["delivery"]
        return bool(view["outbox"]["items"] == 0 and view["fallback"]["stored"] >= 1)

    await eventually(a_outbox_done, timeout=60)

    async def caught_up() -> bool:
        views = [await _network(api) for api in apis]
        return all(v["delivery"]["catch_up"]["runs"] >= 1 for v in views)

    await eventually(caught_up, timeout=30)
    bodies = [await _network(api) for api in apis]
    validator = _validator()
    for body in bodies:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert not errors, errors

    for running, body in zip(nodes, bodies, strict=True):
        relay = body["relay"]
        assert relay["shards"] == 1 and [m["shard"] for m in relay["meshes"]] == [0]
        peers = {p["peer_id"]: p for p in relay["peers"]}
        assert str(running.node.peer_id) not in peers
        for member in relay["meshes"][0]["mesh"]:
            assert peers[member]["in_mesh"] and peers[member]["shards"] == [0]
        assert relay["meshes"][0]["fanout"] <= relay["meshes"][0]["subscribers"]
        assert body["mailboxes"]["holder"]["quotas"]["total_envelopes"] == 262_144
    # No direct link between the members: a relayed its envelopes (the message along a stem)
    # and the relays passed them on.
    body_a = bodies[3]
    assert str(b.node.peer_id) not in {p["peer_id"] for p in body_a["relay"]["peers"]}
    assert body_a["relay"]["counters"]["published"] >= 1
    assert body_a["relay"]["stem"]["sent"] >= 1
    assert sum(body["relay"]["counters"]["forwarded"] for body in bodies[:3]) >= 1
    fallback = body_a["delivery"]["fallback"]
    assert fallback["relayed"] >= 1 and fallback["placements"] >= 1
    assert fallback["stored"] >= 1 and fallback["placed_copies"] >= 2
    client = body_a["mailboxes"]["client"]
    assert client["placements"] >= 1 and client["placed_copies"] >= 2
    assert client["stores"]["ok"] + client["stores"]["duplicate"] >= 2
    # The holders (the nodes closest to the day's mailbox key, a itself skipped) hold them.
    holders = [(r, body["mailboxes"]["holder"]) for r, body in zip(nodes, bodies, strict=True)
               if body["mailboxes"]["holder"]["envelopes"] > 0]
    assert len(holders) >= 2 and a not in [r for r, _ in holders]
    for running, held in holders:
        assert held["bytes"] > 0 and held["keys"] >= 1 and held["uploaders"] >= 1
        assert held["stored"] >= 1 and held["store_requests"] >= held["stored"]
        # The metrics read the usage the view just read.
        assert _metric(running, "spacepanda_mailbox_envelopes") == held["envelopes"]
        assert _metric(running, "spacepanda_mailbox_bytes") == held["bytes"]
        assert _metric(running, "spacepanda_mailbox_stores_total", outcome="stored") \
            == held["stored"]
    assert _metric(a, "spacepanda_fallback_relays_total") >= fallback["relayed"]
    assert _metric(a, "spacepanda_mailbox_placements_total") >= client["placements"]
    assert _metric(a, "spacepanda_relay_messages_total", outcome="published") \
        >= body_a["relay"]["counters"]["published"]
    mesh_size = len(body_a["relay"]["meshes"][0]["mesh"])
    assert _metric(a, "spacepanda_relay_mesh_peers", shard="0") == mesh_size


async def test_503_until_the_relay_runs(client: conftest.Client, start_node: StartNode,
                                        api_for: ApiFor) -> None:
    # The in-memory control has no relay, as a node that is still starting.
    body = await problem(await client.get("/v1/network", headers=conftest.AUTH), 503)
    assert body["type"] == PROBLEM_TYPE_PREFIX + "network-unavailable"
    running = await start_node()
    api = Api(await api_for(running))
    assert (await _network(api))["relay"]["shards"] == 1
    await running.shutdown()
    try:
        await running.node.network()
    except NetworkStopped:
        pass
    else:
        raise AssertionError("a stopped node still reported its network")
    body = await problem(await api.get("/v1/network"), 503)
    assert "starting or stopping" in body["detail"]
