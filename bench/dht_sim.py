"""Simulate N DHT nodes in one process over an in-memory datagram network with virtual time.

Every node is a real :class:`dht.service.DhtService` (real protocol, routing, crawls, records,
signatures); only the socket and the clock are replaced: datagrams are delivered by the event
loop after a random latency (and dropped with probability ``--loss``), and the event loop's
clock jumps straight to the next timer, so timeouts cost no wall time.

    .venv/bin/python bench/dht_sim.py --nodes 1000 --churn 0.3 --loss 0.0 --lookups 500

Sequence: nodes join through node 0 in batches (each publishes its record once ready, as a
node does); then, unless ``--no-republish``, every publishing node republishes once, which is
what its ``republish_interval`` timer does in a running network (the joins take a few virtual
minutes, far less than one interval, so without this step records sit wherever the network
was when their owner joined); then a fraction ``--churn`` of the nodes is killed at once and
lookups run from random live nodes for random live owners' records.

Reports lookup success rate, rounds against log2(N/k) + 1, how many of each record's k
closest nodes held it before the churn (global view), and CPU per joined node.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import random
import selectors
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kademlia.node import Node

from dht.config import DhtConfig
from dht.crawling import RecordCrawl
from dht.records import record_key
from dht.service import DhtService
from node.core.identity import Identity
from node.mesh import MeshPolicy, plan

BASE_UNIX = 1_800_000_000.0


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0


class _VirtualSelector(selectors.SelectSelector):
    """Never waits: advancing virtual time by the requested timeout is the wait."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("simulation deadlock: nothing scheduled")
        if timeout > 0:
            self._clock.now += timeout
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        self._vclock = clock
        super().__init__(_VirtualSelector(clock))

    def time(self) -> float:
        return self._vclock.now


class MemTransport(asyncio.DatagramTransport):
    def __init__(self, net: MemNetwork, addr: tuple[str, int]) -> None:
        super().__init__()
        self._net = net
        self._addr = addr
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        self._net.send(self._addr, addr, bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._addr if name == "sockname" else default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True
        self._net.endpoints.pop(self._addr, None)


class MemNetwork:
    def __init__(self, rng: random.Random, loss: float, latency: tuple[float, float]) -> None:
        self.rng = rng
        self.loss = loss
        self.latency = latency
        self.endpoints: dict[tuple[str, int], asyncio.DatagramProtocol] = {}
        self.sent = 0
        self.lost = 0

    def send(self, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        self.sent += 1
        if self.rng.random() < self.loss:
            self.lost += 1
            return
        delay = self.rng.uniform(*self.latency)
        asyncio.get_running_loop().call_later(delay, self._deliver, src, dst, data)

    def _deliver(self, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        proto = self.endpoints.get(dst)
        if proto is not None:
            proto.datagram_received(data, src)

    async def endpoint(self, factory: Any, host: str, port: int) -> tuple[Any, Any]:
        proto = factory()
        transport = MemTransport(self, (host, port))
        self.endpoints[(host, port)] = proto
        proto.connection_made(transport)
        return transport, proto


def host_of(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


async def simulate(args: argparse.Namespace, clock: VirtualClock) -> dict[str, Any]:
    rng = random.Random(args.seed)
    net = MemNetwork(rng, args.loss, (0.005, 0.05))
    config = DhtConfig(
        ksize=args.k,
        alpha=3,
        addr_check_interval=1e6,
        refresh_interval=1e9,
        snapshot_interval=1e9,
        republish_interval=1e9,
        subnet_prefix_v4=32,
        max_per_subnet_bucket=args.k,
        max_per_subnet_table=args.k,
        initial_timeout=0.5,
        min_timeout=0.1,
        max_timeout=2.0,
        max_lookup_rounds=30,
    )
    loop = asyncio.get_running_loop()

    def unix() -> float:
        return BASE_UNIX + loop.time()

    n = args.nodes
    targets = set(rng.sample(range(1, n), min(args.lookups, n - 1)))
    nodes: list[DhtService] = []
    wall = time.monotonic()
    cpu = time.process_time()
    for i in range(n):
        host = host_of(i + 1)
        addrs = [f"/ip4/{host}/tcp/4000"] if i in targets else []
        nodes.append(
            DhtService(
                Identity.from_seed(rng.randbytes(32)),
                host=host,
                port=4000,
                noise_static_key=bytes(32),
                envelope_key=bytes(32),
                addrs_provider=lambda a=addrs: a,  # type: ignore[misc]
                config=config,
                clock=unix,
                randbytes=rng.randbytes,
                endpoint_factory=net.endpoint,
            )
        )
    await nodes[0].start()
    boot = [(host_of(1), 4000, nodes[0].peer_id)]
    batch = args.batch
    for start in range(1, n, batch):
        group = nodes[start : start + batch]
        for node in group:
            await node.start(boot)
        while not all(x.is_ready for x in group):
            await asyncio.sleep(0.5)
        if args.verbose:
            print(f"joined {start + len(group)}/{n}", file=sys.stderr)
    # Let the targets' initial publishes finish.
    await asyncio.sleep(5.0)
    join_wall = time.monotonic() - wall
    join_cpu = time.process_time() - cpu
    join_virtual = loop.time()
    if args.republish:
        await asyncio.gather(*(nodes[t].publish() for t in targets))
        await asyncio.sleep(2.0)
    placement = _placement(nodes, targets, args.k)

    dead = set(rng.sample(range(1, n), int(args.churn * (n - 1))))
    for i in dead:
        if nodes[i].protocol.transport is not None:
            nodes[i].protocol.transport.close()
    live = [i for i in range(n) if i not in dead]
    mesh_after_churn = _mesh_connectivity(nodes, live, args.degree)
    live_targets = [t for t in targets if t not in dead] or list(targets)

    successes = 0
    rounds: list[int] = []
    latencies: list[float] = []
    sem = asyncio.Semaphore(args.concurrency)

    async def one(asker: DhtService, target: DhtService) -> None:
        nonlocal successes
        async with sem:
            key = record_key(target.peer_id)
            near = asker.protocol.router.find_neighbors(Node(key))
            t0 = loop.time()
            crawl = RecordCrawl(
                asker.protocol,
                Node(key),
                near,
                config.ksize,
                config.alpha,
                config.max_lookup_rounds,
                unix,
            )
            found = await crawl.find() if near else None
            latencies.append(loop.time() - t0)
            rounds.append(crawl.rounds)
            if found is not None and found.peer_id == target.peer_id:
                successes += 1

    pairs = [
        (nodes[rng.choice(live)], nodes[rng.choice(live_targets)]) for _ in range(args.lookups)
    ]
    wall2 = time.monotonic()
    await asyncio.gather(*(one(a, t) for a, t in pairs if a is not t))
    lookup_wall = time.monotonic() - wall2
    total = len(rounds)
    bound = math.log2(n / args.k) + 1
    result = {
        "nodes": n,
        "k": args.k,
        "churn": args.churn,
        "loss": args.loss,
        "lookups": total,
        "success_rate": successes / total if total else None,
        "rounds_mean": statistics.fmean(rounds) if rounds else None,
        "rounds_p95": sorted(rounds)[int(0.95 * (total - 1))] if rounds else None,
        "rounds_max": max(rounds) if rounds else None,
        "rounds_bound_log2(N/k)+1": round(bound, 2),
        "within_bound": sum(1 for r in rounds if r <= bound) / total if total else None,
        "virtual_latency_p50_s": statistics.median(latencies) if latencies else None,
        "virtual_latency_p95_s": sorted(latencies)[int(0.95 * (total - 1))] if latencies else None,
        "datagrams": net.sent,
        "datagrams_lost": net.lost,
        "republished": args.republish,
        "k_closest_holding_before_churn": placement,
        "mesh_degree": args.degree,
        "mesh_largest_component_after_churn": mesh_after_churn["largest_component"],
        "mesh_isolated_after_churn": mesh_after_churn["isolated"],
        "join_cpu_ms_per_node": round(1000 * join_cpu / n, 1),
        "virtual_join_s": round(join_virtual, 1),
        "wall_join_s": round(join_wall, 1),
        "wall_lookups_s": round(lookup_wall, 1),
    }
    for node in nodes:
        await node.stop()
    return result


def _mesh_connectivity(nodes: list[DhtService], live: list[int], degree: int) -> dict[str, float]:
    """The mesh the survivors would form after churn, from their routing tables alone.

    Each live node runs the node's own mesh policy (``node.mesh.plan``) over the live peers in
    its routing table (dials to dead ones fail and are skipped), links are undirected, and we
    report the share of live nodes in the largest connected component.
    """
    alive = {nodes[i].peer_id: i for i in live}
    policy = MeshPolicy(target_degree=degree, full_mesh_below=0, max_connections=4 * degree,
                        max_dials_per_round=degree)
    adjacency: dict[int, set[int]] = {i: set() for i in live}
    for i in live:
        candidates = [p for p in nodes[i].known_peers() if p in alive]
        decision = plan(nodes[i].peer_id, connected=[], candidates=candidates,
                        network_size=len(live), policy=policy)
        for peer in decision.dial:
            j = alive[peer]
            adjacency[i].add(j)
            adjacency[j].add(i)
    seen: set[int] = set()
    largest = 0
    for start in live:
        if start in seen:
            continue
        stack, size = [start], 0
        seen.add(start)
        while stack:
            cur = stack.pop()
            size += 1
            for nxt in adjacency[cur]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        largest = max(largest, size)
    isolated = sum(1 for i in live if not adjacency[i])
    return {"largest_component": round(largest / len(live), 4) if live else 0.0,
            "isolated": isolated}


def _placement(nodes: list[DhtService], targets: set[int], k: int) -> float:
    """Share of (record, one of its k closest nodes) pairs where that node holds the record."""
    ids = [int.from_bytes(x.node_id, "big") for x in nodes]
    held = 0
    for t in targets:
        key = record_key(nodes[t].peer_id)
        keyint = int.from_bytes(key, "big")
        closest = heapq.nsmallest(k, range(len(nodes)), key=lambda i: ids[i] ^ keyint)
        held += sum(1 for i in closest if nodes[i].storage.get(key) is not None)
    return round(held / (k * len(targets)), 4) if targets else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--churn", type=float, default=0.0, help="fraction of nodes killed")
    p.add_argument("--degree", type=int, default=8, help="mesh target degree for connectivity")
    p.add_argument("--loss", type=float, default=0.0, help="datagram loss probability")
    p.add_argument("--lookups", type=int, default=300)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--batch", type=int, default=50, help="nodes joining concurrently")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--no-republish",
        dest="republish",
        action="store_false",
        help="skip the owners' republish after the joins (records stay where first put)",
    )
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    clock = VirtualClock()
    loop = VirtualLoop(clock)
    try:
        result = loop.run_until_complete(simulate(args, clock))
    finally:
        loop.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
