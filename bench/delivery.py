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

``--scenario offline``: members away at send time, back within retention
(tests/node/network/mailbox_sim.py: the same relay simulation, plus every node's fallback,
mailbox holder and store, the real cores). ``--offline`` of the nodes (with every member they
host) are away while members online send ``--rate`` messages a second for ``--seconds``; once
everything is acknowledged or stored and the end-to-end resends are over, each comes back
after an absence uniform in ``--away`` (wall clock; the simulation jumps to it), reads its
mailboxes and must get every message of its channels. Figures: delivery to the returning
members (and to those online), latency from a returning node's DHT being ready to each
message, keys read and envelopes fetched per returning node, envelopes per message (the
resends included), holders that acknowledged each envelope, and what each node holds for
others once sending is over.

    .venv/bin/python bench/delivery.py --scenario offline [--nodes 100] [--offline 0.3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import machine_line, percentile, table

from node.network.gossip import GossipSettings
from node.network.mailbox import COLLECT_K, DAY_S
from tests.node.network.gossip_sim import SimConfig, Simulation, envelope
from tests.node.network.mailbox_sim import OfflineConfig, OfflineSimulation

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


def run_offline(args: argparse.Namespace, nodes: int) -> dict[str, Any]:
    config = OfflineConfig(
        sim=SimConfig(nodes=nodes, latency=(args.latency[0], args.latency[1]), loss=args.loss,
                      seed=args.seed),
        channels=args.channels, members=args.members, offline=args.offline, rate=args.rate,
        seconds=args.seconds, away_s=(args.away[0] * 3600, args.away[1] * 3600),
        collect_k=args.collect_k, resends=not args.no_resends, seed=args.seed)
    started = time.process_time()
    sim = OfflineSimulation(config)
    sim.run()
    cpu = time.process_time() - started
    pairs = sim.pairs()
    away = [p for p in pairs if p.offline]
    online = [p for p in pairs if not p.offline]
    late = sorted(p.delivered - p.since for p in away if p.delivered is not None)
    routes = Counter(p.route for p in away if p.route is not None)
    returned = len(sim.away)
    copies = sorted(sim.stored_copies.values())
    holding = [b for _, b in sim.held_at_quiet if b]
    envs = [e for e, _ in sim.held_at_quiet if e]
    c = sim.counters
    return {
        "nodes": nodes, "messages": len(sim.messages), "away_nodes": returned,
        "away_pairs": len(away), "away_got": len(late),
        "online_pairs": len(online), "online_got": sum(p.delivered is not None for p in online),
        "routes": ", ".join(f"{n} by {r}" for r, n in sorted(routes.items())),
        "p50": percentile(late, 50) if late else float("nan"),
        "p99": percentile(late, 99) if late else float("nan"),
        "max": late[-1] if late else float("nan"),
        "keys": c["catch_up_keys"] / returned if returned else 0.0,
        "fetched": c["fetched"] / returned if returned else 0.0,
        "fetched_per_pair": c["fetched"] / len(late) if late else float("nan"),
        "envelopes_per_msg": sum(m.envelopes for m in sim.messages.values()) / len(sim.messages),
        "placed_per_msg": c["placements"] / len(sim.messages),
        "copies_mean": statistics.mean(copies) if copies else 0.0,
        "copies_min": copies[0] if copies else 0,
        "stored_per_msg": sum(copies) / len(sim.messages),
        "holders": len(holding), "held_mean": statistics.mean(holding) if holding else 0.0,
        "held_max": max(holding, default=0), "held_env_max": max(envs, default=0),
        "store_kib": c["request_bytes"] / 1024, "reply_kib": c["reply_bytes"] / 1024,
        "owed_at_quiet": c["owed_at_quiet"], "lookups": c["lookups"],
        "failed": c["fetch_failed"], "cpu_s": cpu,
        "holders_read": " ".join(f"{n}:{k}" for n, k in sorted(sim.holders_read.items())),
    }


def print_offline(args: argparse.Namespace) -> None:
    print(f"offline scenario: {args.offline:.0%} of nodes away at send time, back after "
          f"{args.away[0]:g}-{args.away[1]:g} h; collect from {args.collect_k} closest; "
          f"resends {'off' if args.no_resends else 'on'}")
    rows = []
    for nodes in args.nodes:
        r = run_offline(args, nodes)
        print(f"  {r['nodes']} nodes: {r['messages']} messages, {r['away_nodes']} nodes away, "
              f"{r['owed_at_quiet']} items still owed before the returns, returned members got "
              f"theirs: {r['routes'] or 'nothing'}; {r['lookups']} "
              f"lookups, {r['failed']} fetches failed, mailbox requests "
              f"{r['store_kib']:.0f} KiB, replies {r['reply_kib']:.0f} KiB, "
              f"{r['cpu_s']:.0f} s CPU; keys read with envelopes, by nodes read that held "
              f"them: {r['holders_read']}", flush=True)
        rows.append([
            str(r["nodes"]),
            f"{r['away_got'] / r['away_pairs']:.2%} ({r['away_got']}/{r['away_pairs']})",
            f"{r['online_got'] / r['online_pairs']:.2%}",
            f"{r['p50'] * 1000:.0f} / {r['p99'] * 1000:.0f} / {r['max'] * 1000:.0f}",
            f"{r['keys']:.1f}", f"{r['fetched']:.0f} ({r['fetched_per_pair']:.1f})",
            f"{r['envelopes_per_msg']:.2f}",
            f"{r['copies_mean']:.2f} (min {r['copies_min']})", f"{r['stored_per_msg']:.1f}",
            f"{r['holders']}: {r['held_mean'] / 1024:.0f} / {r['held_max'] / 1024:.0f} KiB "
            f"({r['held_env_max']} env)",
            f"{r['cpu_s']:.0f}",
        ])
    print(table(["nodes", "returned: delivered", "online: delivered",
                 "after return p50/p99/max ms", "keys/node", "fetched/node (per msg)",
                 "envelopes/msg", "copies/envelope", "copies/msg",
                 "holders: held mean / max", "CPU s"], rows))


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
    p.add_argument("--scenario", choices=["relay", "offline"], default="relay")
    p.add_argument("--offline", type=float, default=0.3, help="share of nodes away (offline)")
    p.add_argument("--away", type=float, nargs=2, default=[1.0, 13 * DAY_S / 3600],
                   help="absence in hours, uniform (offline)")
    p.add_argument("--collect-k", type=int, default=COLLECT_K,
                   help="holders a returning node reads (offline)")
    p.add_argument("--no-resends", action="store_true", help="no end-to-end resends (offline)")
    args = p.parse_args()
    print(machine_line())
    print(f"channels {args.channels} x {args.members} members, {args.rate} msg/s for "
          f"{args.seconds:g} s, {args.size}-byte envelopes, links "
          f"{args.latency[0] * 1000:g}-{args.latency[1] * 1000:g} ms, loss {args.loss:.0%}, "
          f"seed {args.seed}")
    if args.scenario == "offline":
        print_offline(args)
        return
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
