from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from api.auth import DASHBOARD_PATHS, PUBLIC_PATHS
from api.channels import message_json
from api.control import NodeInfo, PeerInfo, record_json
from api.openapi import RECORD_NOT_FOUND, build_spec
from api.openapi_channels import CHANNEL_PATHS
from api.server import create_app
from dht.service import DhtService
from node.channel_service import ChannelView, MemberView
from node.core.identity import Identity
from node.storage.channelstore import MessageRow
from tests.api.conftest import AUTH, Client, FakeNode, dht_stats, signed_record

_METHODS = {"get", "post", "put", "delete", "patch", "head", "options"}


def _served(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        assert isinstance(path, str)
        out.add((route.method.lower(), path))
    return out


def _documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in _METHODS
    }


def test_router_and_spec_match_both_ways(fake: FakeNode) -> None:
    app = create_app(fake, "t" * 32, CollectorRegistry())
    served, documented = _served(app), _documented(build_spec())
    assert served - documented == set(), "served but undocumented"
    assert documented - served == set(), "documented but not served"


def test_spec_is_openapi_31_with_resolvable_refs() -> None:
    spec = build_spec("9.9.9")
    assert spec["openapi"].startswith("3.1") and spec["info"]["version"] == "9.9.9"
    schemas = spec["components"]["schemas"]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                prefix = "#/components/schemas/"
                assert ref.startswith(prefix) and ref[len(prefix) :] in schemas, ref
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    # Every path template parameter is declared.
    for path, item in spec["paths"].items():
        declared = {p["name"] for p in item.get("parameters", [])}
        assert declared == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}


def test_public_routes_are_exactly_the_unauthenticated_ones() -> None:
    spec = build_spec()
    public = {
        path
        for path, item in spec["paths"].items()
        for m, op in item.items()
        if m in _METHODS and op.get("security") == []
    }
    assert public == set(PUBLIC_PATHS) | set(DASHBOARD_PATHS)
    assert public == {"/healthz", "/readyz", "/", "/login", "/logout"}


def test_schemas_match_dataclasses() -> None:
    schemas = build_spec()["components"]["schemas"]
    for cls in (NodeInfo, PeerInfo):
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(schemas[cls.__name__]["properties"]) == names
        assert set(schemas[cls.__name__]["required"]) == names


def test_channel_schemas_match_the_service_views() -> None:
    schemas = build_spec()["components"]["schemas"]
    for cls, name in ((ChannelView, "Channel"), (MemberView, "Member")):
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(schemas[name]["properties"]) == set(schemas[name]["required"]) == names
    created = schemas["ChannelCreated"]["properties"]
    assert set(created) == {"channel_id", "name", "epoch", "members"}
    assert created.items() <= schemas["Channel"]["properties"].items()
    row = MessageRow(b"\x01" * 32, b"\x02" * 16, Identity.generate().peer_id, "ann", "hi",
                     1_700_000_000_123, 1_700_000_001.5, 1, 9)
    body = message_json(row)
    assert _conforms(body, schemas["Message"]) == []
    assert set(body) == set(schemas["Message"]["properties"])
    assert body["sent_at"] == 1_700_000_000.123


def test_every_channel_route_documents_auth_and_unavailability() -> None:
    for path, item in CHANNEL_PATHS.items():
        for method, op in item.items():
            if method in _METHODS:
                assert {"401", "503"} <= set(op["responses"]), (method, path)
                if "requestBody" in op:
                    assert {"400", "413"} <= set(op["responses"]), (method, path)


def test_spec_copies_are_independent() -> None:
    a = build_spec()
    a["paths"].clear()
    assert build_spec()["paths"]


async def test_served_document_is_the_spec(client: Client) -> None:
    resp = await client.get("/openapi.json", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert _documented(body) == _documented(build_spec())


# ---- payloads against their documented schemas ---------------------------------------------

_TYPES: dict[str, Any] = {
    "string": str,
    "array": list,
    "object": dict,
    "boolean": bool,
    "null": type(None),
}


def _conforms(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """The subset of JSON Schema our spec uses; returns the violations found."""
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types

        def is_a(name: str) -> bool:
            if name == "integer":
                return isinstance(value, int) and not isinstance(value, bool)
            if name == "number":
                return isinstance(value, int | float) and not isinstance(value, bool)
            return isinstance(value, _TYPES[name])

        if not any(is_a(n) for n in names):
            return [f"{where}: {value!r:.40} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {value!r:.40} does not match {schema['pattern']}")
    if "minimum" in schema and isinstance(value, int | float) and value < schema["minimum"]:
        errors.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _conforms(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                errors += _conforms(v, props[k], f"{where}.{k}")
            elif extra is False:
                errors.append(f"{where}: unexpected {k}")
            elif isinstance(extra, dict):
                errors += _conforms(v, extra, f"{where}.{k}")
    return errors


def test_conformance_checker_catches_violations() -> None:
    schema = build_spec()["components"]["schemas"]["PeerRecord"]
    good = record_json(signed_record())
    assert _conforms(good, schema) == []
    assert _conforms({**good, "seq": "1"}, schema)
    assert _conforms({**good, "noise_static_key": "XY" * 32}, schema)
    assert _conforms({**good, "extra": 1}, schema)
    assert _conforms({k: v for k, v in good.items() if k != "addrs"}, schema)


def test_peer_record_schema_matches_record_json() -> None:
    schema = build_spec()["components"]["schemas"]["PeerRecord"]
    body = record_json(signed_record(addrs=()))
    assert set(schema["properties"]) == set(body)
    assert set(schema["required"]) == set(body) - {"signed_record"}
    assert _conforms(body, schema) == []
    assert _conforms(record_json(signed_record()), schema) == []


def test_real_dht_statistics_fit_the_documented_schema() -> None:
    schema = build_spec()["components"]["schemas"]["DhtStatistics"]
    service = DhtService(
        Identity.generate(),
        noise_static_key=os.urandom(32),
        envelope_key=os.urandom(32),
        addrs_provider=list,
    )
    real = service.statistics()
    assert _conforms(real, schema) == []
    # Every field the real service reports is documented; the fake the API tests use fits too.
    assert set(real) <= set(schema["properties"])
    assert set(real["lookups"]) == set(schema["properties"]["lookups"]["properties"])
    assert _conforms(dht_stats(Identity.generate().peer_id), schema) == []


def test_disconnect_and_resolve_documentation() -> None:
    paths = build_spec()["paths"]
    delete = paths["/v1/peers/{peer_id}"]["delete"]
    assert "address book" in delete["description"]
    assert "address book" in delete["responses"]["404"]["description"]
    resolve = paths["/v1/dht/peers/{peer_id}"]["get"]
    assert set(resolve["responses"]) == {"200", "400", "401", "404", "503", "504"}
    assert RECORD_NOT_FOUND in resolve["responses"]["404"]["description"]
