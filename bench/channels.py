"""Channel benchmarks: real nodes in worker processes, durable SQLite storage.

Each worker process runs one or more real :class:`node.daemon.Node` objects (TCP + Noise,
UDP DHT, the channel service, SQLite with ``synchronous=FULL`` in a temporary data dir) on
their own 127.0.x.y addresses, and takes commands as JSON lines on stdin. The coordinator
(this script) forms the mesh, creates channels, invites (invitees auto-accept), sends and
reads, and prints figures. Messages are sent through ``ChannelService.send`` (what the HTTP
API calls, minus HTTP), so the figures are the channel path: MLS encrypt, seal, outbox in
SQLite, transport, open, decrypt, store, acknowledge.

    .venv/bin/python bench/channels.py throughput [--messages 20000] [--size 1024]
    .venv/bin/python bench/channels.py latency [--seconds 10] [--rate 200]
    .venv/bin/python bench/channels.py fanout [--members 20] [--per-worker 5]
    .venv/bin/python bench/channels.py commit [--members 100] [--per-worker 25]
    .venv/bin/python bench/channels.py jitter [--seconds 60] [--rate 2]

Jitter is off except in ``jitter``, which measures the delivery delay of each jitter mode
against the configured distribution.

Latency is measured from the moment ``send`` is called on the sender to the moment the
receiver's channel service has stored the message durably and published its event (both
processes read the same system clock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import machine_line, percentile, quiet_logging, table

ROOT = Path(__file__).resolve().parent.parent


def host_for(index: int) -> str:
    n = index + 2
    return f"127.0.{n // 254}.{n % 254 + 1}" if n >= 254 else f"127.0.0.{n}"


# ----------------------------------------------------------------------------------- worker


async def _worker(first: int, count: int, bootstrap: str | None, total: int,
                  jitter: str = "off") -> None:
    from node.config import NodeConfig
    from node.core.identity import Identity, PeerId
    from node.core.keys import NodeKeys
    from node.core.multiaddr import Multiaddr
    from node.daemon import Node
    from node.storage.sqlite import SqliteStorage

    quiet_logging()
    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-"))
    nodes: list[tuple[Node, asyncio.Event, asyncio.Task[None], SqliteStorage]] = []
    boot = (Multiaddr.parse(bootstrap),) if bootstrap else ()
    for i in range(first, first + count):
        storage = await SqliteStorage.open(tmp / f"n{i}.db")
        config = NodeConfig(
            data_dir=tmp / f"d{i}",
            listen=Multiaddr.parse(f"/ip4/{host_for(i)}/tcp/0", allow_port_zero=True),
            api=Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True),
            bootstrap=boot,
            dht_subnet_prefix=32,
            auto_accept_invites=True,
            full_mesh_below=8,
            target_degree=6,
            # Direct delivery links every member to every other: a 100-member channel needs
            # 99 links per node (relaying through the mesh is what lifts this).
            max_connections=max(64, 2 * total),
            jitter=jitter,
        )
        node = Node(config, NodeKeys.derive(Identity.generate()), storage,
                    dht_store=storage.dht_store())
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        while not node.started.is_set():
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        nodes.append((node, stop, task, storage))
        if not boot:
            boot = (node.listen_addrs()[0],)
    received: dict[int, list[tuple[float, float]]] = {i: [] for i in range(count)}
    epochs: dict[int, list[tuple[int, float]]] = {i: [] for i in range(count)}

    async def watch(k: int) -> None:
        me = str(nodes[k][0].peer_id)
        queue = nodes[k][0].channels.subscribe()
        while True:
            notice = await queue.get()
            now = time.time()
            if notice.kind == "message" and notice.data["sender"] != me:
                text = str(notice.data["text"])
                sent = float(text.split(" ", 1)[0])
                received[k].append((sent, now))
            elif notice.kind == "epoch":
                epochs[k].append((int(notice.data["epoch"]), now))  # type: ignore[call-overload]

    watchers = [asyncio.create_task(watch(k)) for k in range(count)]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj: Any) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"nodes": [{"peer_id": str(n.peer_id), "addr": str(n.listen_addrs()[0])}
                     for n, *_ in nodes]})
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        op, k = cmd["op"], int(cmd.get("k", 0))
        node = nodes[k][0]
        if op == "ready":
            while not all(n.is_ready() for n, *_ in nodes):
                await asyncio.sleep(0.05)
            reply({"ok": True})
        elif op == "create":
            view = await node.channels.create(cmd["name"])
            reply({"channel_id": view.channel_id})
        elif op == "invite":
            cid = bytes.fromhex(cmd["channel_id"])
            for peer in cmd["peers"]:
                await node.channels.invite(cid, PeerId.from_string(peer))
            reply({"ok": True})
        elif op == "members":
            cid = bytes.fromhex(cmd["channel_id"])
            want = int(cmd["n"])
            deadline = time.time() + float(cmd.get("timeout", 120))
            counts = []
            while time.time() < deadline:
                counts = []
                for n, *_ in nodes:
                    ch = n.channels.manager.channels.get(cid)
                    counts.append(0 if ch is None else len(ch.member_peers()))
                if all(c == want for c in counts):
                    break
                await asyncio.sleep(0.05)
            reply({"counts": counts})
        elif op == "send":
            cid = bytes.fromhex(cmd["channel_id"])
            n_msgs, size = int(cmd["n"]), int(cmd["size"])
            window = asyncio.Semaphore(int(cmd.get("window", 512)))
            rate = float(cmd.get("rate", 0))

            async def one(window: asyncio.Semaphore = window, node: Node = node,
                          cid: bytes = cid, size: int = size) -> None:
                async with window:
                    stamp = f"{time.time():.6f} "
                    await node.channels.send(cid, stamp + "x" * max(0, size - len(stamp)))

            t0 = time.time()
            tasks = []
            for i in range(n_msgs):
                tasks.append(asyncio.create_task(one()))
                if rate:
                    await asyncio.sleep(max(0.0, t0 + (i + 1) / rate - time.time()))
                elif i % 64 == 63:
                    await asyncio.sleep(0)
            await asyncio.gather(*tasks)
            reply({"t0": t0, "durable_at": time.time()})
        elif op == "received":
            want = int(cmd["n"])
            deadline = time.time() + float(cmd.get("timeout", 300))
            while time.time() < deadline and any(len(received[j]) < want for j in cmd["ks"]):
                await asyncio.sleep(0.02)
            reply({"received": {str(j): received[j] for j in cmd["ks"]}})
        elif op == "epochs":
            reply({"epochs": {str(j): epochs[j] for j in range(count)}})
        elif op == "clear":
            for j in received:
                received[j].clear()
                epochs[j].clear()
            reply({"ok": True})
        elif op == "remove":
            cid = bytes.fromhex(cmd["channel_id"])
            t = time.time()
            await node.channels.remove(cid, PeerId.from_string(cmd["peer"]))
            reply({"t": t})
        elif op == "stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            reply({"cpu_s": usage.ru_utime + usage.ru_stime,
                   "rss_mb": usage.ru_maxrss / 1024,
                   "channels": [n.channels.statistics() for n, *_ in nodes]})
        elif op == "stop":
            break
    for w in watchers:
        w.cancel()
    for _, stop, _, _ in nodes:
        stop.set()
    for _, _, task, storage in nodes:
        await task
        await storage.close()
    reply({"stopped": True})


# ----------------------------------------------------------------------------- coordinator


class Worker:
    def __init__(self, first: int, count: int, bootstrap: str | None, total: int = 2,
                 jitter: str = "off") -> None:
        args = [sys.executable, str(Path(__file__).resolve()), "worker", "--first", str(first),
                "--count", str(count), "--total", str(total), "--jitter", jitter]
        if bootstrap:
            args += ["--bootstrap", bootstrap]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)
        hello = self.read()
        self.nodes: list[dict[str, str]] = hello["nodes"]

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.proc.wait()}")
        return dict(json.loads(line))

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def stop(self) -> None:
        try:
            self.ask(op="stop")
        finally:
            self.proc.wait(timeout=60)


def start_workers(total: int, per_worker: int) -> list[Worker]:
    first = Worker(0, min(per_worker, total), None, total)
    workers = [first]
    boot = first.nodes[0]["addr"]
    start = len(first.nodes)
    while start < total:
        n = min(per_worker, total - start)
        workers.append(Worker(start, n, boot, total))
        start += n
    for w in workers:
        w.ask(op="ready")
    return workers


def all_nodes(workers: list[Worker]) -> list[tuple[Worker, int, dict[str, str]]]:
    return [(w, k, info) for w in workers for k, info in enumerate(w.nodes)]


def form_channel(workers: list[Worker], members: int) -> str:
    everyone = all_nodes(workers)[:members]
    owner_w, owner_k, _ = everyone[0]
    cid = str(owner_w.ask(op="create", k=owner_k, name="bench")["channel_id"])
    peers = [info["peer_id"] for _, _, info in everyone[1:]]
    for i in range(0, len(peers), 16):
        owner_w.ask(op="invite", k=owner_k, channel_id=cid, peers=peers[i : i + 16])
    for w in workers:
        counts = w.ask(op="members", channel_id=cid, n=members)["counts"]
        inside = counts[: sum(1 for ww, _, _ in everyone if ww is w)]
        if any(c != members for c in inside):
            raise RuntimeError(f"channel did not form: member counts {counts}")
    return cid


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def cmd_throughput(args: argparse.Namespace) -> None:
    workers = [Worker(0, 1, None)]
    workers.append(Worker(1, 1, workers[0].nodes[0]["addr"]))
    try:
        for w in workers:
            w.ask(op="ready")
        cid = form_channel(workers, 2)
        sender, receiver = workers
        sender.ask(op="send", k=0, channel_id=cid, n=200, size=args.size)  # warm up
        receiver.ask(op="received", ks=[0], n=200)
        receiver.ask(op="clear")
        cpu0 = [w.ask(op="stats")["cpu_s"] for w in workers]
        sent = sender.ask(op="send", k=0, channel_id=cid, n=args.messages, size=args.size)
        got = receiver.ask(op="received", ks=[0], n=args.messages)["received"]["0"]
        stats = [w.ask(op="stats") for w in workers]
        cpu1 = [st["cpu_s"] for st in stats]
        if args.verbose:
            for st in stats:
                print(json.dumps(st["channels"][0], sort_keys=True))
        last = max(t for _, t in got)
        span = last - sent["t0"]
        lat = sorted(t - s for s, t in got)
        print(machine_line())
        print(table(["measure", "value"], [
            ["messages", f"{len(got):,} of {args.size} B"],
            ["sender: all durable in outbox", f"{sent['durable_at'] - sent['t0']:.2f} s"],
            ["receiver: all stored", f"{span:.2f} s"],
            ["throughput", f"{len(got) / span:,.0f} messages/s"],
            ["latency under full load p50 / p99", f"{ms(percentile(lat, 50))} / "
                                                 f"{ms(percentile(lat, 99))} ms"],
            ["CPU sender / receiver", f"{cpu1[0] - cpu0[0]:.1f} s / {cpu1[1] - cpu0[1]:.1f} s"],
        ]))
    finally:
        for w in workers:
            w.stop()


def cmd_latency(args: argparse.Namespace) -> None:
    workers = [Worker(0, 1, None)]
    workers.append(Worker(1, 1, workers[0].nodes[0]["addr"]))
    try:
        for w in workers:
            w.ask(op="ready")
        cid = form_channel(workers, 2)
        sender, receiver = workers
        n = int(args.seconds * args.rate)
        sender.ask(op="send", k=0, channel_id=cid, n=50, size=args.size, rate=50)
        receiver.ask(op="received", ks=[0], n=50)
        receiver.ask(op="clear")
        sender.ask(op="send", k=0, channel_id=cid, n=n, size=args.size, rate=args.rate)
        got = receiver.ask(op="received", ks=[0], n=n)["received"]["0"]
        lat = sorted(t - s for s, t in got)
        print(machine_line())
        print(table(["measure", "value"], [
            ["messages", f"{len(got):,} at {args.rate:g}/s, {args.size} B"],
            ["latency p50", f"{ms(percentile(lat, 50))} ms"],
            ["latency p90", f"{ms(percentile(lat, 90))} ms"],
            ["latency p99", f"{ms(percentile(lat, 99))} ms"],
            ["latency max", f"{ms(lat[-1])} ms"],
            ["mean", f"{ms(statistics.fmean(lat))} ms"],
        ]))
    finally:
        for w in workers:
            w.stop()


def _exponential_quantile(mean: float, cap: float, q: float) -> float:
    return min(cap, -mean * math.log(1 - q / 100)) if mean > 0 else 0.0


def cmd_jitter(args: argparse.Namespace) -> None:
    """Delivery delay per jitter mode at a modest rate, next to the configured exponential
    (capped) quantiles. The base latency (mode off) is in every figure; delays are kept in
    order (a message never leaves before an earlier one), which lengthens the tail when
    messages are written faster than the mean delay."""
    from node.network.jitter import JITTER_MODES

    n = int(args.seconds * args.rate)
    rows = []
    for mode in args.modes.split(","):
        spec = JITTER_MODES[mode]
        workers = [Worker(0, 1, None, jitter=mode)]
        workers.append(Worker(1, 1, workers[0].nodes[0]["addr"], jitter=mode))
        try:
            for w in workers:
                w.ask(op="ready")
            cid = form_channel(workers, 2)
            sender, receiver = workers
            sender.ask(op="send", k=0, channel_id=cid, n=n, size=200, rate=args.rate)
            got = receiver.ask(op="received", ks=[0], n=n)["received"]["0"]
            stats = [w.ask(op="stats") for w in workers]
        finally:
            for w in workers:
                w.stop()
        lat = sorted(t - s for s, t in got)
        cover = stats[0]["channels"][0].get("cover_sent", 0)
        rows.append([mode, f"{len(got)}", *(ms(percentile(lat, q)) for q in (50, 90, 99)),
                     ms(statistics.fmean(lat)),
                     " / ".join(ms(_exponential_quantile(spec.mean_s, spec.max_s, q))
                                for q in (50, 90, 99)) + f"; mean {ms(spec.mean_s)}",
                     f"{cover}"])
    print(machine_line())
    print(f"{n} messages of 200 B at {args.rate:g}/s per mode; delays in ms")
    print(table(["mode", "delivered", "p50", "p90", "p99", "mean",
                 "configured p50 / p90 / p99", "cover sent"], rows))


def cmd_fanout(args: argparse.Namespace) -> None:
    t = time.time()
    workers = start_workers(args.members, args.per_worker)
    try:
        t_mesh = time.time() - t
        t = time.time()
        cid = form_channel(workers, args.members)
        t_form = time.time() - t
        everyone = all_nodes(workers)
        # Every member sends one message; each must reach all the others.
        for w, k, _ in everyone:
            w.ask(op="send", k=k, channel_id=cid, n=1, size=args.size)
        reach: list[float] = []
        for w in workers:
            got = w.ask(op="received", ks=list(range(len(w.nodes))), n=args.members - 1,
                        timeout=120)["received"]
            for lst in got.values():
                reach += [r - s for s, r in lst]
        reach.sort()
        complete = len(reach) == args.members * (args.members - 1)
        print(machine_line())
        print(table(["measure", "value"], [
            ["nodes / worker processes", f"{args.members} / {len(workers)}"],
            ["mesh ready", f"{t_mesh:.1f} s"],
            ["channel formed (invites, accepts, commits)", f"{t_form:.1f} s"],
            ["messages delivered", f"{len(reach)} of {args.members * (args.members - 1)}"
                                   f" ({'all' if complete else 'MISSING'})"],
            ["time to reach a member p50 / p99 / max",
             f"{ms(percentile(reach, 50))} / {ms(percentile(reach, 99))} / {ms(reach[-1])} ms"],
        ]))
    finally:
        for w in workers:
            w.stop()


def cmd_commit(args: argparse.Namespace) -> None:
    workers = start_workers(args.members, args.per_worker)
    try:
        t = time.time()
        cid = form_channel(workers, args.members)
        t_form = time.time() - t
        for w in workers:
            w.ask(op="clear")
        everyone = all_nodes(workers)
        owner_w, owner_k, _ = everyone[0]
        victim = everyone[-1][2]["peer_id"]
        t0 = float(owner_w.ask(op="remove", k=owner_k, channel_id=cid, peer=victim)["t"])
        for w in workers:
            w.ask(op="members", channel_id=cid, n=args.members - 1, timeout=60)
        arrivals: list[float] = []
        for w in workers:
            for lst in w.ask(op="epochs")["epochs"].values():
                arrivals += [at - t0 for _, at in lst]
        arrivals.sort()
        print(machine_line())
        print(table(["measure", "value"], [
            ["members / worker processes", f"{args.members} / {len(workers)}"],
            ["channel formed", f"{t_form:.1f} s"],
            ["members that moved to the new epoch", f"{len(arrivals)}"],
            ["remove request to new epoch p50 / p99 / last",
             f"{ms(percentile(arrivals, 50))} / {ms(percentile(arrivals, 99))} / "
             f"{ms(arrivals[-1])} ms"],
        ]))
    finally:
        for w in workers:
            w.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--first", type=int, required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--bootstrap")
    w.add_argument("--total", type=int, default=2)
    w.add_argument("--jitter", default="off")
    t = sub.add_parser("throughput")
    t.add_argument("--messages", type=int, default=20000)
    t.add_argument("--size", type=int, default=1024)
    t.add_argument("--verbose", action="store_true", help="print each node's counters")
    lat = sub.add_parser("latency")
    lat.add_argument("--seconds", type=float, default=10)
    lat.add_argument("--rate", type=float, default=200)
    lat.add_argument("--size", type=int, default=1024)
    f = sub.add_parser("fanout")
    f.add_argument("--members", type=int, default=20)
    f.add_argument("--per-worker", type=int, default=5)
    f.add_argument("--size", type=int, default=256)
    j = sub.add_parser("jitter")
    j.add_argument("--seconds", type=float, default=60)
    j.add_argument("--rate", type=float, default=2, help="messages per second")
    j.add_argument("--modes", default="off,standard,high")
    c = sub.add_parser("commit")
    c.add_argument("--members", type=int, default=100)
    c.add_argument("--per-worker", type=int, default=25)
    args = parser.parse_args()
    if args.cmd == "worker":
        profile = os.environ.get("SP_BENCH_PROFILE")
        if profile:
            import cProfile

            cProfile.runctx("asyncio.run(_worker(args.first, args.count, args.bootstrap, "
                            "args.total, args.jitter))",
                            globals(), {"args": args, "asyncio": asyncio},
                            f"{profile}.{args.first}")
        else:
            asyncio.run(_worker(args.first, args.count, args.bootstrap, args.total,
                                args.jitter))
        return
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    {"throughput": cmd_throughput, "latency": cmd_latency, "fanout": cmd_fanout,
     "commit": cmd_commit, "jitter": cmd_jitter}[args.cmd](args)


if __name__ == "__main__":
    main()
