"""Mesh cold start: N nodes that know only a bootstrap address connect up and resolve records.

All nodes are real :class:`node.daemon.Node` objects (TCP + Noise transport, UDP DHT, mesh
auto-dial) run **in this one process and one event loop**, each on its own loopback address
(127.0.x.y) with in-memory storage and ``dht_subnet_prefix=32``. The first node is the
bootstrap node; every other node is started at the same moment with only its address.

Measured from the moment the bootstrap node is started:

1. *connected*: every node holds at least the wanted number of links (all others below
   ``--full-mesh-below`` nodes, else ``--target-degree``) and the link graph is connected;
2. *resolved*: every node has resolved every other node's signed record through the DHT
   (or ``--resolve-sample`` random others per node).

    .venv/bin/python bench/mesh.py --nodes 50 [--full-mesh-below 16] [--target-degree 8]

``--dht-only`` runs the same start with ``DhtService`` s alone (no TCP transport, no mesh
dialer): time until every node is ready and has published, join CPU per node, and every node
resolving its sample of records (misses retried), so the DHT's share can be measured apart
from the transport's.

Target (DESIGN.md section 8): 50 nodes connected and resolved in under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import machine_line, percentile, quiet_logging, table

from dht.config import DhtConfig
from dht.records import record_key
from dht.service import DhtService
from node.config import NodeConfig
from node.core.identity import Identity, PeerId
from node.core.keys import NodeKeys
from node.core.multiaddr import Multiaddr
from node.daemon import Node
from node.mesh import MeshPolicy
from node.storage.memory import MemoryStorage


def host_for(index: int) -> str:
    """A distinct loopback address per node: 127.0.0.2, 127.0.0.3, ... 127.0.1.1, ..."""
    n = index + 2
    return f"127.0.{n // 254}.{n % 254 + 1}" if n >= 254 else f"127.0.0.{n}"


@dataclass
class Running:
    node: Node
    stop: asyncio.Event
    task: asyncio.Task[None]

    def peers(self) -> set[PeerId]:
        if not self.node.started.is_set():
            return set()
        return set(self.node.connections.connected_peers())


def wanted_degree(n: int, config: NodeConfig) -> int:
    policy = MeshPolicy(
        target_degree=config.target_degree,
        full_mesh_below=config.full_mesh_below,
        max_connections=config.max_connections,
    )
    return policy.wanted_links(n)


def diagnostics(nodes: list[Running]) -> dict[str, int]:
    """Sums over all nodes of the counters that explain a slow start."""
    out: dict[str, int] = {}
    for r in nodes:
        stats = r.node.dht_statistics()
        mesh = stats["mesh"]
        for key, value in (
            ("mesh_dials", mesh["dials"]),
            ("mesh_dial_failures", mesh["dial_failures"]),
            ("peers_backing_off", mesh["backing_off"]),
            ("dht_lookups", stats["lookups"]["total"]),
            ("dht_lookups_missed", stats["lookups"]["missed"]),
            ("dht_random_walks", stats["lookups"]["random_walks"]),
            ("records_held", stats["records"]),
            ("publishes", stats["publishes"]),
            ("dht_contacts", stats["contacts"]),
        ):
            out[key] = out.get(key, 0) + int(value)
    return out


def dht_traffic(nodes: list[Running]) -> dict[str, object]:
    """DHT datagrams per node and the sums of every RPC, timeout and drop counter."""
    rpc: Counter[str] = Counter()
    drops: Counter[str] = Counter()
    for r in nodes:
        stats = r.node.dht.statistics()
        rpc.update(stats["rpc"])
        drops.update(stats["drops"])
    n = len(nodes)
    return {
        "datagrams_in_per_node": round(rpc["datagrams_in"] / n, 1),
        "datagrams_out_per_node": round(rpc["datagrams_out"] / n, 1),
        "requests_out_per_node": {
            k.removeprefix("rpc_out_"): round(v / n, 1)
            for k, v in sorted(rpc.items())
            if k.startswith("rpc_out_")
        },
        "timeouts": rpc["timeouts"],
        "identified": rpc["identified"],
        "drops": dict(sorted(drops.items())),
    }


def explain_miss(nodes: list[Running], asker: Running, peer: PeerId) -> str:
    """Where ``peer``'s record sits (ranks by XOR distance from its key, 0 = closest)."""
    key = record_key(peer)
    keyint = int.from_bytes(key, "big")
    ranked = sorted(nodes, key=lambda r: int.from_bytes(r.node.dht.node_id, "big") ^ keyint)
    ranks = [i for i, r in enumerate(ranked) if r.node.dht.storage.get(key) is not None]
    stats = asker.node.dht.statistics()
    return (f"{str(peer)[:12]}.. held at ranks {ranks}; asked by {str(asker.node.peer_id)[:12]}.."
            f" ({stats['contacts']} contacts, ready={asker.node.is_ready()})")


def explain_dht_miss(services: list[DhtService], owner: DhtService, asker: DhtService) -> str:
    key = record_key(owner.peer_id)
    keyint = int.from_bytes(key, "big")
    ranked = sorted(services, key=lambda s: int.from_bytes(s.node_id, "big") ^ keyint)
    ranks = [i for i, s in enumerate(ranked) if s.storage.get(key) is not None]
    return (f"{str(owner.peer_id)[:12]}.. (publishes {owner.counters['publishes']}, "
            f"top-ups {owner.counters['record_top_ups']}, bootstrap={owner is services[0]}) "
            f"held at ranks {ranks}; asked by {str(asker.peer_id)[:12]}.. "
            f"({len(asker.protocol.contacts())} contacts)")


def is_connected_graph(nodes: list[Running]) -> bool:
    ids = {r.node.peer_id for r in nodes}
    adjacency = {r.node.peer_id: r.peers() & ids for r in nodes}
    start = next(iter(ids))
    seen = {start}
    todo = [start]
    while todo:
        for peer in adjacency[todo.pop()]:
            if peer not in seen:
                seen.add(peer)
                todo.append(peer)
    return seen == ids


async def start_node(config: NodeConfig) -> Running:
    node = Node(config, NodeKeys.derive(Identity.generate()), MemoryStorage())
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop), name=f"node-{config.listen.host}")
    async with asyncio.timeout(30):
        while not node.started.is_set():
            if task.done():
                task.result()  # re-raise why it could not start
            await asyncio.sleep(0.005)
    return Running(node, stop, task)


async def resolve_all(
    nodes: list[Running], sample: int | None, concurrency: int, deadline: float,
    rng: random.Random,
) -> tuple[int, int, list[float], list[tuple[Running, PeerId]]]:
    """(pairs resolved, pairs asked, per-lookup ms, pairs never resolved).
    A miss is retried until ``deadline``."""
    pairs: list[tuple[Running, PeerId]] = []
    for r in nodes:
        others = [m.node.peer_id for m in nodes if m is not r]
        if sample is not None and sample < len(others):
            others = rng.sample(others, sample)
        pairs.extend((r, peer) for peer in others)
    gate = asyncio.Semaphore(concurrency)
    lookup_ms: list[float] = []
    resolved = 0
    found: set[tuple[PeerId, PeerId]] = set()

    async def one(r: Running, peer: PeerId) -> None:
        nonlocal resolved
        async with gate:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                record = await r.node.dht.resolve(peer)
                lookup_ms.append((time.perf_counter() - t0) * 1000.0)
                if record is not None and record.peer_id == peer:
                    resolved += 1
                    found.add((r.node.peer_id, peer))
                    return
                await asyncio.sleep(0.2)

    await asyncio.gather(*(one(r, peer) for r, peer in pairs))
    missed = [(r, peer) for r, peer in pairs if (r.node.peer_id, peer) not in found]
    return resolved, len(pairs), lookup_ms, missed


async def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="spacepanda-mesh-bench-"))
    base = NodeConfig(
        data_dir=tmp,
        listen=Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True),
        api=Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True),
        dht_subnet_prefix=32,
    )
    overrides: dict[str, int] = {}
    if args.full_mesh_below is not None:
        overrides["full_mesh_below"] = args.full_mesh_below
    if args.target_degree is not None:
        overrides["target_degree"] = args.target_degree
    if args.max_connections is not None:
        overrides["max_connections"] = args.max_connections
    base = replace(base, **overrides)  # type: ignore[arg-type]
    n = args.nodes
    wanted = wanted_degree(n, base)

    def config_for(i: int, bootstrap: tuple[Multiaddr, ...]) -> NodeConfig:
        return replace(
            base,
            data_dir=tmp / f"n{i}",
            listen=Multiaddr.parse(f"/ip4/{host_for(i)}/tcp/0", allow_port_zero=True),
            bootstrap=bootstrap,
        )

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    boot = await start_node(config_for(0, ()))
    boot_addr = boot.node.listen_addrs()[0]
    rest = await asyncio.gather(*(start_node(config_for(i, (boot_addr,))) for i in range(1, n)))
    nodes = [boot, *rest]
    t_started = time.perf_counter() - t0
    print(f"{n} nodes started in {t_started:.2f} s; wanted degree {wanted} "
          f"(full_mesh_below={base.full_mesh_below}, target_degree={base.target_degree})")

    def degrees() -> list[int]:
        return [len(r.peers()) for r in nodes]

    t_connected: float | None = None
    next_report = 1.0
    deadline = t0 + args.timeout
    while time.perf_counter() < deadline:
        d = degrees()
        now = time.perf_counter() - t0
        if min(d) >= wanted and is_connected_graph(nodes):
            t_connected = now
            break
        if now >= next_report:
            ready = sum(r.node.is_ready() for r in nodes)
            print(f"  t={now:5.1f} s  dht ready {ready}/{n}  degree min/median/max "
                  f"{min(d)}/{statistics.median(d):g}/{max(d)}")
            next_report += 1.0
        await asyncio.sleep(0.02)
    final_degrees = degrees()
    diag = diagnostics(nodes)
    traffic_connected = dht_traffic(nodes)
    cpu_connected = time.process_time() - cpu0
    if t_connected is None:
        print(f"NOT connected within {args.timeout:g} s")
    else:
        print(f"connected at {t_connected:.2f} s")
    print("sums over all nodes at that point:",
          ", ".join(f"{k}={v}" for k, v in diag.items()))

    sample = args.resolve_sample
    if sample is None and n > 50:
        sample = 10
    r0 = time.perf_counter()
    resolved, asked, lookup_ms, missed = await resolve_all(
        nodes, sample, args.resolve_concurrency, r0 + args.timeout, rng
    )
    t_resolved = time.perf_counter() - t0
    resolve_phase = time.perf_counter() - r0
    cpu = time.process_time() - cpu0
    traffic = dht_traffic(nodes)
    for asker, peer in missed[:5]:
        print("never resolved:", explain_miss(nodes, asker, peer))

    s0 = time.perf_counter()
    for r in nodes:
        r.stop.set()
    results = await asyncio.gather(*(r.task for r in nodes), return_exceptions=True)
    t_stop = time.perf_counter() - s0
    errors = [repr(e) for e in results if isinstance(e, BaseException)]
    with contextlib.suppress(OSError):
        for p in sorted(tmp.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        tmp.rmdir()

    lookup_ms.sort()
    return {
        "nodes": n,
        "wanted_degree": wanted,
        "started_s": round(t_started, 3),
        "connected_s": None if t_connected is None else round(t_connected, 3),
        "degree_min_median_max": [min(final_degrees), statistics.median(final_degrees),
                                  max(final_degrees)],
        "at_connected": diag,
        "resolved": resolved,
        "resolve_pairs": asked,
        "resolve_sample_per_node": sample,
        "all_resolved_s": round(t_resolved, 3) if resolved == asked else None,
        "resolve_phase_s": round(resolve_phase, 3),
        "lookups": len(lookup_ms),
        "lookup_p50_ms": round(percentile(lookup_ms, 50), 2) if lookup_ms else None,
        "lookup_p95_ms": round(percentile(lookup_ms, 95), 2) if lookup_ms else None,
        "stop_s": round(t_stop, 3),
        "stop_errors": errors,
        "cpu_connected_s": round(cpu_connected, 2),
        "cpu_s": round(cpu, 2),
        "dht_at_connected": traffic_connected,
        "dht_at_end": traffic,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def run_dht_only(args: argparse.Namespace) -> dict[str, object]:
    """The DHT alone: N ``DhtService`` s (no TCP, no mesh), same addresses and start."""
    rng = random.Random(args.seed)
    config = DhtConfig(subnet_prefix_v4=32)
    n = args.nodes
    services: list[DhtService] = []
    for i in range(n):
        host = host_for(i)
        services.append(DhtService(
            Identity.from_seed(rng.randbytes(32)), host=host, port=0,
            noise_static_key=bytes(32), envelope_key=bytes(32),
            addrs_provider=lambda h=host: [f"/ip4/{h}/tcp/4001"],  # type: ignore[misc]
            config=config,
        ))
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await services[0].start()
    boot = [(*services[0].address, services[0].peer_id)]
    await asyncio.gather(*(svc.start(boot) for svc in services[1:]))
    deadline = t0 + args.timeout
    t_ready: float | None = None
    while time.perf_counter() < deadline:
        if t_ready is None and all(svc.is_ready for svc in services):
            t_ready = time.perf_counter() - t0
        if all(svc.counters["publishes"] >= 1 for svc in services):
            break
        await asyncio.sleep(0.02)
    t_published = time.perf_counter() - t0
    cpu_join = time.process_time() - cpu0
    # Every node resolves ``sample`` others (all up to 50 nodes); misses are retried.
    sample = args.resolve_sample if args.resolve_sample is not None else (
        None if n <= 50 else 10)
    pairs: list[tuple[DhtService, PeerId]] = []
    for svc in services:
        others = [o.peer_id for o in services if o is not svc]
        if sample is not None and sample < len(others):
            others = rng.sample(others, sample)
        pairs.extend((svc, peer) for peer in others)
    gate = asyncio.Semaphore(args.resolve_concurrency)
    lookup_ms: list[float] = []
    first_try = 0
    resolved = 0
    missed_pairs: set[tuple[PeerId, PeerId]] = set()
    r0 = time.perf_counter()

    async def one(svc: DhtService, peer: PeerId) -> None:
        nonlocal first_try, resolved
        async with gate:
            for attempt in range(10**6):
                if time.perf_counter() >= r0 + args.timeout:
                    return
                t = time.perf_counter()
                record = await svc.resolve(peer)
                lookup_ms.append((time.perf_counter() - t) * 1000.0)
                if record is not None and record.peer_id == peer:
                    resolved += 1
                    first_try += attempt == 0
                    missed_pairs.discard((svc.peer_id, peer))
                    return
                missed_pairs.add((svc.peer_id, peer))
                await asyncio.sleep(0.2)

    await asyncio.gather(*(one(svc, peer) for svc, peer in pairs))
    t_resolved = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    ids = {svc.peer_id: svc for svc in services}
    for svc, peer in pairs:
        if (svc.peer_id, peer) in missed_pairs:
            print("never resolved:", explain_dht_miss(services, ids[peer], svc))
    rpc: Counter[str] = Counter()
    for svc in services:
        rpc.update(svc.protocol.counters)
    lookup_ms.sort()
    for svc in services:
        await svc.stop()
    return {
        "nodes": n,
        "all_ready_s": None if t_ready is None else round(t_ready, 3),
        "all_published_s": round(t_published, 3),
        "join_cpu_ms_per_node": round(1000 * cpu_join / n, 1),
        "resolved": resolved,
        "resolve_pairs": len(pairs),
        "resolved_first_try": first_try,
        "all_resolved_s": round(t_resolved, 3) if resolved == len(pairs) else None,
        "lookup_p50_ms": round(percentile(lookup_ms, 50), 2) if lookup_ms else None,
        "lookup_p95_ms": round(percentile(lookup_ms, 95), 2) if lookup_ms else None,
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_node": round(1000 * cpu / n, 1),
        "datagrams_in_per_node": round(rpc["datagrams_in"] / n, 1),
        "requests_out_per_node": {
            k.removeprefix("rpc_out_"): round(v / n, 1)
            for k, v in sorted(rpc.items()) if k.startswith("rpc_out_")
        },
        "timeouts": rpc["timeouts"],
        "contacts_mean": round(sum(len(svc.protocol.contacts()) for svc in services) / n, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--full-mesh-below", type=int, default=None,
                        help="networks smaller than this get a full mesh (node default 16)")
    parser.add_argument("--target-degree", type=int, default=None,
                        help="links per node above the full-mesh size (node default 8)")
    parser.add_argument("--max-connections", type=int, default=None,
                        help="per-node high watermark (node default 64)")
    parser.add_argument("--resolve-sample", type=int, default=None,
                        help="records each node resolves (default: all others up to 50 nodes, "
                             "else 10)")
    parser.add_argument("--resolve-concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=120.0, help="per phase, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--dht-only", action="store_true",
                        help="DhtServices alone (no TCP, no mesh): join, publish, resolve")
    args = parser.parse_args()
    if not 2 <= args.nodes <= 250 * 254:
        parser.error("--nodes must be 2..63500")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    quiet_logging()
    print(machine_line())
    if args.dht_only:
        print(f"One process, one event loop: {args.nodes} DhtServices on distinct 127.0.x.y "
              "addresses, all joining through the first at once; each publishes when ready.\n")
        print(json.dumps(asyncio.run(run_dht_only(args))))
        return
    print(f"One process, one event loop: {args.nodes} in-process Node objects on distinct "
          "127.0.x.y addresses, in-memory storage, dht_subnet_prefix=32.\n")
    res = asyncio.run(run(args))
    connected = res["connected_s"]
    resolved_at = res["all_resolved_s"]
    rows = [
        ["nodes started (all listening, DHT bound)", f"{res['started_s']} s", "", ""],
        [f"connected (every node >= {res['wanted_degree']} links, graph connected)",
         "timeout" if connected is None else f"{connected} s", "", ""],
        ["degree min / median / max at that point",
         " / ".join(str(x) for x in res["degree_min_median_max"]), "", ""],  # type: ignore[attr-defined]
        [f"records resolved ({res['resolved']}/{res['resolve_pairs']} pairs)",
         "incomplete" if resolved_at is None else f"{resolved_at} s", "< 10 s",
         "ok" if isinstance(resolved_at, float) and resolved_at < 10 else "MISS"],
        ["resolve phase alone", f"{res['resolve_phase_s']} s", "", ""],
        ["DHT lookup p50 / p95",
         f"{res['lookup_p50_ms']} / {res['lookup_p95_ms']} ms", "", ""],
        ["clean stop of every node", f"{res['stop_s']} s",
         "", "ok" if not res["stop_errors"] else "ERRORS"],
        ["process CPU time until connected", f"{res['cpu_connected_s']} s", "", ""],
        ["process CPU time / peak RSS", f"{res['cpu_s']} s / {res['peak_rss_mb']} MB", "", ""],
    ]
    print()
    print(table(["measure (from bootstrap start)", "value", "target", ""], rows))
    if res["stop_errors"]:
        print("stop errors:", res["stop_errors"])
    for label, key in (("when connected", "dht_at_connected"), ("at the end", "dht_at_end")):
        t = res[key]
        print(f"DHT traffic {label}: {t['datagrams_in_per_node']} datagrams in and "  # type: ignore[index]
              f"{t['datagrams_out_per_node']} out per node; requests per node "  # type: ignore[index]
              f"{t['requests_out_per_node']}; timeouts {t['timeouts']}; drops {t['drops']}")  # type: ignore[index]
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
