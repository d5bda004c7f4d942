from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from api.control import NodeInfo, PeerInfo
from api.openapi import build_spec
from api.server import create_app
from tests.api.conftest import AUTH, FakeNode

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
    assert public == {"/healthz", "/readyz"}


def test_schemas_match_dataclasses() -> None:
    schemas = build_spec()["components"]["schemas"]
    for cls in (NodeInfo, PeerInfo):
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(schemas[cls.__name__]["properties"]) == names
        assert set(schemas[cls.__name__]["required"]) == names


def test_spec_copies_are_independent() -> None:
    a = build_spec()
    a["paths"].clear()
    assert build_spec()["paths"]


async def test_served_document_is_the_spec(client: TestClient) -> None:
    resp = await client.get("/openapi.json", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert _documented(body) == _documented(build_spec())
