"""Demo: start a local mesh of `spacepanda run` processes that know only a bootstrap address.

Shows the mesh forming (peers per node as it grows), checks that every node resolves every
other node's signed DHT record through its admin API, then stops every node with SIGTERM and
checks they exit cleanly. Exit code 0 only if all of that worked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from api.client import ApiClient, ApiError, NodeUnreachable
from node.core.errors import ConfigError


def start(data_dir: Path, host: str, bootstrap: str | None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "node", "run", "--init", "--data-dir", str(data_dir),
           "--listen", f"/ip4/{host}/tcp/0", "--api", "/ip4/127.0.0.1/tcp/0",
           "--log-format", "json"]
    if bootstrap:
        cmd += ["--bootstrap", bootstrap]
    env = dict(os.environ, SPACEPANDA_DHT_SUBNET_PREFIX="32")
    log = (data_dir.parent / f"{data_dir.name}.log").open("wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def client_for(data_dir: Path, proc: subprocess.Popen[bytes], timeout: float) -> ApiClient:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"node in {data_dir} exited with {proc.returncode}; see its log")
        try:
            client = ApiClient.from_data_dir(data_dir, timeout=5)
            client.node()
            return client
        except (ConfigError, NodeUnreachable, ApiError, OSError):
            time.sleep(0.1)
    raise SystemExit(f"node in {data_dir} did not start within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="spacepanda-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    ok = False
    try:
        dirs = [root / f"node{i}" for i in range(args.nodes)]
        procs.append(start(dirs[0], "127.0.0.1", None))
        clients = [client_for(dirs[0], procs[0], args.timeout)]
        boot_addr = clients[0].node()["addrs"][0]
        print(f"bootstrap node: {boot_addr}")
        for i, d in enumerate(dirs[1:], start=2):
            procs.append(start(d, f"127.0.0.{i}", boot_addr))
        clients += [client_for(d, p, args.timeout) for d, p in zip(dirs[1:], procs[1:],
                                                                    strict=True)]
        ids = [c.node()["peer_id"] for c in clients]
        for i, pid in enumerate(ids):
            print(f"  node{i}  {pid}")

        print(f"\nmesh forming ({args.nodes} nodes, full mesh = {args.nodes - 1} peers each):")
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < args.timeout:
            counts = [len(c.peers()) for c in clients]
            if counts != last:
                print(f"  t={time.monotonic() - t0:5.1f}s  peers per node: {counts}")
                last = counts
            if all(n == args.nodes - 1 for n in counts):
                break
            time.sleep(0.25)
        else:
            print("mesh did not form in time")
            return 1
        print(f"full mesh after {time.monotonic() - t0:.1f} s")

        resolved = 0
        for c in clients:
            for pid in ids:
                status, body = c.request("GET", f"/v1/dht/peers/{pid}")
                if status == 200 and body.get("peer_id") == pid:
                    resolved += 1
        total = len(clients) * len(ids)
        print(f"signed DHT records resolved: {resolved}/{total}")
        ok = resolved == total
    finally:
        print("\nstopping nodes (SIGTERM)...")
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(timeout=15))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        print(f"exit codes: {codes}")
        ok = ok and all(c == 0 for c in codes)
        if args.keep:
            print(f"data dirs and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
