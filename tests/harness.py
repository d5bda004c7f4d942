"""Real nodes in this process on 127.0.0.x: the ``start_node`` fixture and helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from node.config import NodeConfig
from node.core.identity import Identity, PeerId
from node.core.keys import NodeKeys
from node.core.multiaddr import Multiaddr
from node.daemon import Node
from node.storage.memory import MemoryStorage


async def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)


class Running:
    def __init__(self, node: Node, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.node, self.stop, self.task = node, stop, task

    @property
    def addr(self) -> Multiaddr:
        return self.node.listen_addrs()[0]

    def peers(self) -> set[PeerId]:
        return set(self.node.connections.connected_peers())

    async def shutdown(self) -> None:
        self.stop.set()
        await self.task


StartNode = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[StartNode]:
    running: list[Running] = []

    async def start(
        host: str = "127.0.0.1",
        identity: Identity | None = None,
        storage: MemoryStorage | None = None,
        port: int = 0,
        **overrides: object,
    ) -> Running:
        config = NodeConfig(
            dht_subnet_prefix=32,
            data_dir=tmp_path / f"n{len(running)}",
            listen=Multiaddr.parse(f"/ip4/{host}/tcp/{port}", allow_port_zero=True),
            api=Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True),
        )
        config = replace(config, **overrides)  # type: ignore[arg-type]
        node = Node(
            config, NodeKeys.derive(identity or Identity.generate()), storage or MemoryStorage()
        )
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        await wait_for(lambda: node.started.is_set() or task.done())
        if task.done():
            task.result()
        r = Running(node, stop, task)
        running.append(r)
        return r

    yield start
    for r in running:
        if not r.task.done():
            await r.shutdown()


