"""The API contract, checked by schemathesis: every operation of ``GET /openapi.json``,
fed generated requests (valid and invalid), against a live node in this process. No 500s,
and every response is documented (status and content type) and matches its schema.

``GET /v1/events`` is left out: a stream that never ends is not a response schemathesis can
check (tests/api/test_events.py covers it). The example count is bounded so the whole run
stays well under a minute.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from api.openapi import build_spec
from api.server import ApiServer, create_app
from node.core.multiaddr import Multiaddr
from node.metrics import node_registry
from tests.api.channel_harness import Api, api_clients, mesh
from tests.harness import StartNode

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis")

TOKEN = "s" * 43
# Per operation and generation mode; SPACEPANDA_CONTRACT_EXAMPLES raises it for a longer run.
EXAMPLES = int(os.environ.get("SPACEPANDA_CONTRACT_EXAMPLES", "15"))


def _run(base: str, operations: list[Any]) -> list[str]:
    """Every operation, positive and negative; the failures, described."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    failures: list[str] = []
    calls = [0]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                calls[0] += 1
                response = case.call(base_url=base, headers=headers, timeout=15,
                                     allow_redirects=False)
                case.validate_response(response, checks=checks)

            try:
                check()
            except Unsatisfiable:
                # Nothing to get wrong: no parameters and no body (GET /healthz...).
                assert mode == GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # collected, reported together below
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert calls[0] >= len(operations) * 2, "too few requests were made"
    return failures


async def test_every_operation_matches_the_spec(start_node: StartNode) -> None:
    # A node with a channel, a message and a peer, so some generated requests find things.
    a, b = await mesh(start_node, 2, auto_accept_invites=True)
    clients = api_clients()
    make = await clients.__anext__()
    server = ApiServer(create_app(a.node, TOKEN, node_registry(a.node), resolve_timeout=3.0),
                       Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True))
    addr = await server.start()
    try:
        api = Api(await make(a))
        cid = await api.create("contract")
        await api.send(cid, "a message to list")
        schema = schemathesis.openapi.from_dict(build_spec()).exclude(path="/v1/events")
        operations = [result.ok() for result in schema.get_all_operations()]
        documented = {(m, p) for p, item in build_spec()["paths"].items() for m in item
                      if m in ("get", "post", "put", "delete") and p != "/v1/events"}
        assert {(op.method.lower(), op.path) for op in operations} == documented
        failures = await asyncio.to_thread(_run, f"http://127.0.0.1:{addr.port}", operations)
    finally:
        await server.stop()
        await clients.aclose()
    assert not failures, "\n\n".join(failures)
    assert a.node.is_ready() and b.node.peer_id in a.peers()  # the node survived it all
