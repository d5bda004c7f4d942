"""A DHT join says what it is doing: a log line per bootstrap attempt and failure (address,
reason, next retry), ``dht_ready``, ``/readyz`` with the reason and the join's state, the text
``spacepanda dht`` with the failures; bind errors name the address and what it was for."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.problems import PROBLEM_CONTENT_TYPE
from api.server import create_app
from dht.config import DhtConfig
from node.cli import format_dht
from node.config import NodeConfig
from node.core.errors import ConfigError
from node.core.identity import Identity
from node.core.keys import NodeKeys
from node.core.multiaddr import Multiaddr
from node.daemon import Node
from node.logs import configure_logging
from node.metrics import node_registry
from node.storage.memory import MemoryStorage
from tests.harness import wait_for

TOKEN = "j" * 43
# Short RPC timeouts so a failed attempt takes well under a second.
FAST = replace(DhtConfig(), subnet_prefix_v4=32, initial_timeout=0.2, min_timeout=0.05,
               max_timeout=0.3, bootstrap_backoff_initial=0.2, bootstrap_backoff_max=0.4)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    yield stream
    configure_logging("console", "info")


def _events(stream: io.StringIO, name: str) -> list[dict[str, Any]]:
    out = []
    for line in stream.getvalue().splitlines():
        record = json.loads(line)
        if record["event"] == name:
            out.append(record)
    return out


def _free_port() -> int:
    """A port number free for both TCP and UDP on 127.0.0.1 (at the time of asking)."""
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


class Started:
    def __init__(self, node: Node, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.node, self.stop, self.task = node, stop, task

    async def shutdown(self) -> None:
        self.stop.set()
        await self.task


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[list[Started]]:
    made: list[Started] = []
    yield made
    for s in made:
        if not s.task.done():
            await s.shutdown()


async def _start(made: list[Started], tmp_path: Path, *, port: int = 0,
                 identity: Identity | None = None, bootstrap: tuple[str, ...] = ()) -> Started:
    config = NodeConfig(
        data_dir=tmp_path / f"n{len(made)}",
        listen=Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}", allow_port_zero=True),
        api=Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True),
        bootstrap=tuple(Multiaddr.parse(b) for b in bootstrap),
    )
    node = Node(config, NodeKeys.derive(identity or Identity.generate()), MemoryStorage(),
                dht_config=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    await wait_for(lambda: node.started.is_set() or task.done())
    if task.done():
        task.result()  # why it could not start
    started = Started(node, stop, task)
    made.append(started)
    return started


async def test_failed_joins_are_logged_with_reasons_then_ready(
    logs: io.StringIO, nodes: list[Started], tmp_path: Path
) -> None:
    port = _free_port()
    boot_identity = Identity.generate()
    boot_addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{boot_identity.peer_id}"
    joiner = await _start(nodes, tmp_path, bootstrap=(boot_addr,))
    client = TestClient(TestServer(create_app(joiner.node, TOKEN,
                                              node_registry(joiner.node))))
    await client.start_server()
    try:
        # 1. Nothing listens there: attempts time out, each one logged with its reason.
        await wait_for(lambda: len(_events(logs, "dht_bootstrap_failed")) >= 2, timeout=20)
        attempts = _events(logs, "dht_bootstrap_attempt")
        first = _events(logs, "dht_bootstrap_failed")[0]
        assert attempts[0]["addrs"] == [boot_addr] and attempts[0]["attempt"] == 1
        assert first["addrs"] == [boot_addr] and first["reason"] == "timeout"
        assert first["level"] == "warning" and first["next_retry_in_s"] == 0.2
        assert "no answer" in first["detail"]
        assert _events(logs, "dht_bootstrap_failed")[1]["next_retry_in_s"] == 0.4

        resp = await client.get("/readyz")
        assert resp.status == 503 and resp.content_type == PROBLEM_CONTENT_TYPE
        body = await resp.json(content_type=PROBLEM_CONTENT_TYPE)
        assert body["state"] == "joining" and boot_addr in body["detail"]
        assert "no answer" in body["detail"] and "next attempt in" in body["detail"]
        boot = body["bootstrap"]
        assert boot["state"] == "joining" and boot["addrs"] == [boot_addr]
        assert boot["failures"] >= 2 and boot["last_error"] == "timeout"

        text = format_dht(joiner.node.dht_statistics())
        assert "NOT JOINED" in text and "failed; last: no answer" in text
        assert f"via {boot_addr}" in text
        assert joiner.node.dht_statistics()["rpc"].get("timeouts", 0) >= 1

        # 2. Another node answers there: it proves the wrong PeerId.
        impostor = await _start(nodes, tmp_path, port=port)
        await wait_for(
            lambda: any(r["reason"] == "peer_id_mismatch"
                        for r in _events(logs, "dht_bootstrap_failed")), timeout=20)
        assert not joiner.node.is_ready()
        await impostor.shutdown()

        # 3. The right node: joined, one dht_ready line, /readyz 200 with the reason.
        await _start(nodes, tmp_path, port=port, identity=boot_identity)
        await wait_for(joiner.node.is_ready, timeout=20)
        await wait_for(lambda: len(_events(logs, "dht_ready")) >= 3, timeout=5)
        ready = [r for r in _events(logs, "dht_ready") if r["role"] == "joined"]
        assert len(ready) == 1 and ready[0]["attempts"] >= 3 and ready[0]["contacts"] >= 1
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "ready" and body["state"] == "ready"
        assert body["reason"].startswith("ready: joined the DHT after")
        assert body["bootstrap"]["state"] == "joined"
        assert body["bootstrap"]["failures"] == body["bootstrap"]["attempts"] - 1
        assert "joined after" in format_dht(joiner.node.dht_statistics())
    finally:
        await client.close()


async def test_a_bootstrap_node_is_ready_and_says_why(
    logs: io.StringIO, nodes: list[Started], tmp_path: Path
) -> None:
    boot = await _start(nodes, tmp_path)
    await wait_for(lambda: bool(_events(logs, "dht_ready")), timeout=5)
    (line,) = _events(logs, "dht_ready")
    assert line["role"] == "bootstrap_node"
    readiness = boot.node.readiness()
    assert readiness.ready and "bootstrap node" in readiness.reason
    assert _events(logs, "dht_bootstrap_attempt") == []
    assert "none: this is a bootstrap node" in format_dht(boot.node.dht_statistics())


async def test_udp_port_taken_names_the_address_and_the_dht(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        config = NodeConfig(
            data_dir=tmp_path,
            listen=Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}"),
            api=Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True),
        )
        node = Node(config, NodeKeys.derive(Identity.generate()), MemoryStorage())
        with pytest.raises(BaseExceptionGroup) as caught:
            await node.run(asyncio.Event())
    failures = caught.value.subgroup(ConfigError)
    assert failures is not None
    (error,) = failures.exceptions
    message = str(error)
    assert f"127.0.0.1:{port}" in message and "DHT" in message and "UDP" in message


async def test_tcp_port_taken_names_the_address_and_the_transport(tmp_path: Path) -> None:
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        port = tcp.getsockname()[1]
        config = NodeConfig(
            data_dir=tmp_path,
            listen=Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}"),
            api=Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True),
        )
        node = Node(config, NodeKeys.derive(Identity.generate()), MemoryStorage())
        with pytest.raises(BaseExceptionGroup) as caught:
            await node.run(asyncio.Event())
    failures = caught.value.subgroup(ConfigError)
    assert failures is not None
    assert f"transport on TCP /ip4/127.0.0.1/tcp/{port}" in str(failures.exceptions[0])
