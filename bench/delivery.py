"""Relay delivery in simulation: channels of members over a mesh where every node relays.

Runs ``GossipRouter`` nodes in the in-memory simulation of tests/node/network/gossip_sim.py
(one process, fake clock, nothing sleeps). ``--nodes`` nodes on a random overlay (each dials
random nodes until it has 8 links, accepting up to 12), every node subscribed to the one shard
(S = 1) and relaying. ``--channels`` channels of ``--members`` random members each; messages
arrive as a Poisson process of ``--rate`` per second network-wide for ``--seconds``, each
published by a random member of a random channel, and must reach that channel's other members.
Each link gets a fixed base latency uniform in ``--latency`` (default 20-60 ms) and every frame
on it that base +-10%, in order; ``--loss`` of all frames (data and control) are dropped.

Rows (``--modes``): ``gossip`` (D = 6, our own messages flood-published), ``stem`` (the same
with the Dandelion++ stem phase on every message), ``flood`` (every link in the mesh: the
floodsub reference).

Figures:

* delivery: (message, co-member) pairs delivered by the end of the run (10 s after the last
  publication), over all pairs;
* member latency p50/p99: over (message, co-member) pairs, from publish to the member's router
  delivering it; all-members p99: per message, until the last co-member has it;
  everywhere p99: per message, until the last node has it (the Whiteblock anchor's measure);
* copies/node: PUBLISH items received per node per message, duplicates included
  (= total receptions of a message id / (N - 1)); RMR = copies - 1, the redundancy measure
  of the anchor (flooding ~8.3, gossipsub D = 6 ~5.5); stem hops: STEM items received per
  message; embargo: share of messages some stem node fluffed on its embargo timer (a lost
  STEM frame: the message then waits 2-5 s);
* mesh: mean mesh size at the end;
* KiB/s/node: ``sp/gossip/1`` payload bytes sent per node per second while messages flow
  (mean and max over nodes), without the transport's own framing (about 45 bytes a frame).

    .venv/bin/python bench/delivery.py [--nodes 100] [--modes gossip,stem,flood]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import machine_line, percentile, table

from node.network.gossip import GossipSettings
from tests.node.network.gossip_sim import SimConfig, Simulation, envelope

WARMUP_S = 10.0
DRAIN_S = 10.0
FLOOD = GossipSettings(d=64, d_lo=64, d_hi=64, opportunistic_graft_every=0)


def run(args: argparse.Namespace, nodes: int, mode: str) -> dict[str, Any]:
    settings = FLOOD if mode == "flood" else GossipSettings()
    config = SimConfig(nodes=nodes, latency=(args.latency[0], args.latency[1]), loss=args.loss,
                       seed=args.seed, settings=settings)
    started = time.process_time()
    sim = Simulation(config)
    rng = random.Random(args.seed + 1)
    channels = [rng.sample(range(nodes), args.members) for _ in range(args.channels)]
    channel_of: dict[bytes, int] = {}
    t = WARMUP_S
    end = WARMUP_S + args.seconds
    while True:
        t += rng.expovariate(args.rate)
        if t >= end:
            break
        c = rng.randrange(args.channels)
        origin = rng.choice(channels[c])
        env = envelope(rng, args.size)

        def go(c: int = c, origin: int = origin, env: bytes = env) -> None:
            channel_of[sim.publish(origin, env, stem=mode == "stem")] = c

        sim.at(t, go)
    sim.run_until(WARMUP_S)
    sent0 = [n.sent_bytes for n in sim.nodes]
    sim.run_until(end)
    rates = [(n.sent_bytes - s0) / args.seconds / 1024 for n, s0 in zip(sim.nodes, sent0,
                                                                          strict=True)]
    sim.run_until(end + DRAIN_S)
    cpu = time.process_time() - started

    pair_lat: list[float] = []
    members_last: list[float] = []
    everywhere: list[float] = []
    want = got = 0
    copies = stem_hops = 0
    everyone = set(range(nodes))
    for mid, rec in sim.messages.items():
        targets = [m for m in channels[channel_of[mid]] if m != rec.origin]
        lat = [rec.delivered[m] - rec.published for m in targets if m in rec.delivered]
        want += len(targets)
        got += len(lat)
        pair_lat += lat
        if len(lat) == len(targets):
            members_last.append(max(lat))
        if set(rec.delivered) | {rec.origin} == everyone:
            everywhere.append(max(rec.delivered.values()) - rec.published)
        copies += rec.publish_copies
        stem_hops += rec.stem_copies
    n_msgs = len(sim.messages)
    pair_lat.sort()
    members_last.sort()
    everywhere.sort()
    cps = copies / n_msgs / (nodes - 1)
    return {
        "nodes": nodes, "mode": mode, "messages": n_msgs,
        "delivery": got / want,
        "p50": percentile(pair_lat, 50), "p99": percentile(pair_lat, 99),
        "members_p99": percentile(members_last, 99) if members_last else float("nan"),
        "everywhere_share": len(everywhere) / n_msgs,
        "everywhere_p99": percentile(everywhere, 99) if everywhere else float("nan"),
        "copies": cps, "rmr": cps - 1, "stem_hops": stem_hops / n_msgs,
        "kib_mean": statistics.mean(rates), "kib_max": max(rates),
        "mesh_mean": statistics.mean(sim.mesh_sizes()),
        "embargo": sum(n.router.counters["embargo_fluffs"] for n in sim.nodes) / n_msgs,
        "lost_frames": sim.lost_frames, "cpu_s": cpu,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[100])
    p.add_argument("--modes", default="gossip,stem,flood")
    p.add_argument("--channels", type=int, default=20)
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--rate", type=float, default=10.0, help="messages per second, network-wide")
    p.add_argument("--seconds", type=float, default=60.0, help="how long messages are sent")
    p.add_argument("--size", type=int, default=512, help="envelope size (a bucket: 512, 2048..)")
    p.add_argument("--latency", type=float, nargs=2, default=[0.02, 0.06])
    p.add_argument("--loss", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    print(machine_line())
    print(f"channels {args.channels} x {args.members} members, {args.rate} msg/s for "
          f"{args.seconds:g} s, {args.size}-byte envelopes, links "
          f"{args.latency[0] * 1000:g}-{args.latency[1] * 1000:g} ms, loss {args.loss:.0%}, "
          f"seed {args.seed}")
    rows = []
    for nodes in args.nodes:
        for mode in args.modes.split(","):
            r = run(args, nodes, mode)
            rows.append([
                f"{r['nodes']} {r['mode']}", str(r["messages"]), f"{r['delivery']:.2%}",
                f"{r['p50'] * 1000:.0f}", f"{r['p99'] * 1000:.0f}",
                f"{r['members_p99'] * 1000:.0f}",
                f"{r['everywhere_p99'] * 1000:.0f} ({r['everywhere_share']:.1%})",
                f"{r['copies']:.2f}", f"{r['rmr']:.2f}", f"{r['stem_hops']:.2f}",
                f"{r['embargo']:.1%}",
                f"{r['mesh_mean']:.1f}", f"{r['kib_mean']:.1f} / {r['kib_max']:.1f}",
                f"{r['cpu_s']:.0f}",
            ])
            print(f"  done: {rows[-1][0]} ({r['cpu_s']:.0f} s CPU, {r['lost_frames']} frames lost)",
                  flush=True)
    print(table(["nodes mode", "msgs", "delivery", "p50 ms", "p99 ms", "all-members p99",
                 "everywhere p99 (share)", "copies/node", "RMR", "stem hops", "embargo", "mesh",
                 "KiB/s/node mean / max", "CPU s"], rows))


if __name__ == "__main__":
    main()
