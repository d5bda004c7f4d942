"""Shared helpers for DHT tests: fast configs and a way to start nodes on 127.0.0.x."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from dht.config import DhtConfig
from dht.persistence import MemoryDhtStore
from dht.service import Bootstrap, DhtService, EndpointFactory, udp_endpoint
from node.core.identity import Identity

# Loopback tests put every node on its own 127.0.0.x, so slot limits are per address.
FAST = DhtConfig(
    ksize=8,
    alpha=3,
    addr_check_interval=0.05,
    bootstrap_backoff_initial=0.05,
    bootstrap_backoff_max=0.2,
    initial_timeout=0.5,
    min_timeout=0.05,
    max_timeout=1.0,
    subnet_prefix_v4=32,
    max_per_subnet_bucket=2,
    max_per_subnet_table=4,
)


def make_node(
    i: int,
    config: DhtConfig = FAST,
    store: MemoryDhtStore | None = None,
    identity: Identity | None = None,
    port: int = 0,
    addrs: Callable[[], list[str]] | None = None,
    *,
    host: str | None = None,
    endpoint_factory: EndpointFactory = udp_endpoint,
    clock: Callable[[], float] = time.time,
) -> DhtService:
    """Node ``i`` on ``host`` (default 127.0.0.i); pass ``MemNet.endpoint`` to run in memory."""
    ident = identity or Identity.generate()
    host = host or f"127.0.0.{i}"
    holder: dict[str, DhtService] = {}

    def provider() -> list[str]:
        svc = holder["svc"]
        return [f"/ip4/{host}/tcp/{svc.address[1]}/p2p/{svc.peer_id}"]

    svc = DhtService(
        ident,
        host=host,
        port=port,
        noise_static_key=bytes([i]) * 32,
        envelope_key=bytes([i + 1]) * 32,
        addrs_provider=addrs or provider,
        store=store if store is not None else MemoryDhtStore(),
        config=config,
        clock=clock,
        endpoint_factory=endpoint_factory,
    )
    holder["svc"] = svc
    return svc


def boot_of(svc: DhtService, with_peer_id: bool = True) -> Bootstrap:
    host, port = svc.address
    return (host, port, svc.peer_id if with_peer_id else None)


async def wait_for(pred: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


class RecordingTransport:
    """What a protocol driven by direct ``datagram_received`` calls sends, and to whom."""

    def __init__(self, sockname: tuple[str, int]) -> None:
        self.sockname = sockname
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sockname if name == "sockname" else default

    def close(self) -> None:
        pass
