"""Demo: a local mesh of `spacepanda run` processes that form a channel and talk, end to end.

1. Start N nodes on 127.0.0.x (only the first has no bootstrap address); wait for the mesh.
2. alice (node 1) creates the channel "general" and invites every other node but the last,
   which stays outside as an eavesdropping relay-to-be. bob accepts by hand through the API;
   the others run with auto_accept_invites.
3. Everyone picks a display name; every member sends a message; every member reads every
   message, decrypted, with sender names, each sender's messages in order.
4. alice removes one member; the others go on talking; the removed member reads nothing more.
5. bob stops; carol writes; the sealed envelope is stored at mailbox holders (any nodes, not
   necessarily members); bob starts again and reads it from the mailboxes.
6. The outsider's data dir is scanned: none of the plaintexts, not even the channel id.
7. Every node is stopped with SIGTERM and must exit 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.client import ApiClient, ApiError, NodeUnreachable
from node.core.errors import ConfigError

NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]


class Demo:
    def __init__(self, root: Path, timeout: float) -> None:
        self.root = root
        self.timeout = timeout
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dirs: list[Path] = []
        self.clients: list[ApiClient] = []

    def start(self, host: str, bootstrap: str | None, *, auto_accept: bool) -> ApiClient:
        d = self.root / f"node{len(self.dirs)}"
        proc, client = self._spawn(d, host, bootstrap, auto_accept)
        self.procs.append(proc)
        self.dirs.append(d)
        self.clients.append(client)
        return client

    def stop(self, i: int) -> int:
        self.procs[i].send_signal(signal.SIGTERM)
        return self.procs[i].wait(timeout=20)

    def restart(self, i: int, host: str, *, auto_accept: bool) -> ApiClient:
        """Start node ``i`` again from its data dir (it rejoins from its address book)."""
        self.procs[i], self.clients[i] = self._spawn(self.dirs[i], host, None, auto_accept)
        return self.clients[i]

    def _spawn(self, d: Path, host: str, bootstrap: str | None,
               auto_accept: bool) -> tuple[subprocess.Popen[bytes], ApiClient]:
        cmd = [sys.executable, "-m", "node", "run", "--init", "--data-dir", str(d),
               "--listen", f"/ip4/{host}/tcp/0", "--api", "/ip4/127.0.0.1/tcp/0",
               "--log-format", "json"]
        if bootstrap:
            cmd += ["--bootstrap", bootstrap]
        env = dict(os.environ, SPACEPANDA_DHT_SUBNET_PREFIX="32",
                   SPACEPANDA_AUTO_ACCEPT_INVITES="true" if auto_accept else "false")
        log = (self.root / f"{d.name}.log").open("ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"node in {d} exited with {proc.returncode}; see {log.name}")
            try:
                client = ApiClient.from_data_dir(d, timeout=10)
                client.node()
                return proc, client
            except (ConfigError, NodeUnreachable, ApiError, OSError):
                time.sleep(0.1)
        raise SystemExit(f"node in {d} did not start within {self.timeout} s")

    def wait(self, what: str, pred: Callable[[], bool]) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.timeout:
            try:
                if pred():
                    return time.monotonic() - t0
            except ApiError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"timed out after {self.timeout} s waiting for {what}")

    def stop_all(self) -> list[int]:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=20))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        return codes


def messages(c: ApiClient, cid: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = "0"
    while True:
        page, nxt = c.messages(cid, after=after, limit=1000)
        out += page
        if nxt == after:
            return out
        after = nxt


def member_ids(c: ApiClient, cid: str) -> set[str]:
    v = c.channel(cid)
    return {m["peer_id"] for m in v["members"]} if v["status"] == "active" else set()


def hosts(base: str, n: int) -> list[str]:
    first = ipaddress.IPv4Address(base)
    if not first.is_loopback:
        raise SystemExit("--host-base must be a loopback address (127.x.y.z)")
    return [str(first + i) for i in range(n)]


def run(args: argparse.Namespace, demo: Demo) -> bool:
    n = args.nodes
    names = [NAMES[i] if i < len(NAMES) else f"node{i}" for i in range(n)]
    addrs = hosts(args.host_base, n)
    # Everyone but bob auto-accepts (bob accepts by hand, below); the last node is the outsider.
    first = demo.start(addrs[0], None, auto_accept=True)
    boot = first.node()["addrs"][0]
    print(f"bootstrap node {names[0]}: {boot}")
    for i in range(1, n):
        demo.start(addrs[i], boot, auto_accept=(i != 1))
    c = demo.clients
    ids = [x.node()["peer_id"] for x in c]
    for name, pid, host in zip(names, ids, addrs, strict=True):
        print(f"  {name:7} {host:12} {pid}")
    t = demo.wait("the mesh", lambda: all(len(x.peers()) == n - 1 for x in c))
    print(f"\nmesh: every node linked to the {n - 1} others after {t:.1f} s")
    demo.wait("every node to join the DHT", lambda: all(_ready(x) for x in c))
    for x, name in zip(c, names, strict=True):
        x.set_profile(name)

    alice, bob = c[0], c[1]
    members = c[:-1]
    cid = alice.create_channel("general")["channel_id"]
    print(f"\n{names[0]} created channel 'general' ({cid[:16]}...)")
    for pid in ids[1 : n - 1]:
        alice.invite(cid, pid)
    print(f"{names[0]} invited {', '.join(names[1 : n - 1])}; {names[-1]} stays outside")
    demo.wait("bob's invite", lambda: len(bob.invites()) == 1)
    invite = bob.invites()[0]
    print(f"bob sees a pending invite to '{invite['name']}' from {invite['from'][:12]}...; "
          "bob accepts through the API")
    bob.accept_invite(invite["invite_id"])
    want = set(ids[:-1])
    t = demo.wait("everyone to join", lambda: all(member_ids(x, cid) == want for x in members))
    v = alice.channel(cid)
    print(f"channel formed in {t:.1f} s: epoch {v['epoch']}, {len(v['members'])} members, "
          f"fingerprint {v['epoch_fingerprint']} on every member")
    demo.wait("display names", lambda: all(
        all(m["display_name"] for m in x.channel(cid)["members"]) for x in members))

    said = {}
    member_names = names[: n - 1]
    for x, name in zip(members, member_names, strict=True):
        text = f"hello from {name}"
        x.send(cid, text)
        said[name] = text
    t = demo.wait("every message at every member",
                  lambda: all(len(messages(x, cid)) >= len(members) for x in members))
    print(f"\nevery member has every message after {t:.2f} s; what each one reads:")
    for x, name in zip(members, member_names, strict=True):
        got = sorted((m["sender_name"], m["text"]) for m in messages(x, cid))
        assert got == sorted(said.items()), (name, got)
        print(f"  {name}:")
        for m in messages(x, cid):
            print(f"    [{m['sender_name']:>6}] {m['text']}")

    gone, gone_name = members[-1], names[n - 2]
    alice.remove_member(cid, ids[n - 2])
    rest = members[:-1]
    want = set(ids[: n - 2])
    t = demo.wait(f"{gone_name}'s removal",
                  lambda: all(member_ids(x, cid) == want for x in rest))
    demo.wait(f"{gone_name} to learn it", lambda: gone.channel(cid)["status"] == "removed")
    print(f"\n{names[0]} removed {gone_name}: new epoch on every member after {t:.1f} s")
    before = len(messages(gone, cid))
    secret = "after the removal: only the remaining members can read this"
    rest[1].send(cid, secret)
    demo.wait("the last message", lambda: all(
        secret in [m["text"] for m in messages(x, cid)] for x in rest if x is not rest[1]))
    assert len(messages(gone, cid)) == before and secret not in [
        m["text"] for m in messages(gone, cid)]
    print(f"{names[1]}: {secret!r} -> read by {', '.join(names[: n - 2])}; "
          f"{gone_name} still has only its {before} earlier messages")

    # Offline delivery: bob stops; carol writes; once mailbox holders (nodes that are not
    # necessarily members) store the sealed envelope, carol's outbox lets go of it; bob starts
    # again and reads it from the mailboxes (no member forwards it to him).
    assert demo.stop(1) == 0
    away = "while you were away, bob"
    carol = rest[2] if len(rest) > 2 else rest[0]
    mid = carol.send(cid, away)
    t = demo.wait("the message to be stored at mailboxes", lambda: any(
        m["message_id"] == mid and m["status"]["stored"] for m in messages(carol, cid)))
    holding = [name for x, name in zip(c, names, strict=True) if x is not bob
               and x.network()["mailboxes"]["holder"]["envelopes"] > 0]
    print(f"\nbob stopped; {names[c.index(carol)]} wrote {away!r}: stored at the mailboxes "
          f"of {', '.join(holding)} after {t:.1f} s")
    bob = demo.restart(1, addrs[1], auto_accept=False)
    t = demo.wait("bob to read it", lambda: away in [m["text"] for m in messages(bob, cid)])
    fetched = bob.network()["mailboxes"]["client"]["collected_envelopes"]
    print(f"bob started again and read it {t:.1f} s after its API came up, from the mailboxes "
          f"({fetched} copies fetched from the holders, shown once)")
    secret_texts = [*said.values(), secret, away]

    codes = demo.stop_all()
    print(f"\nstopped every node (SIGTERM): exit codes {codes}")
    leak = _scan(demo.dirs[-1], secret_texts, cid)
    print(f"outsider {names[-1]}'s data dir holds " + (
        "none of the plaintexts and not the channel id" if not leak else f"LEAKS {leak}"))
    return not leak and all(code == 0 for code in codes)


def _ready(c: ApiClient) -> bool:
    try:
        c.request("GET", "/readyz")
    except ApiError:
        return False
    return True


def _scan(data_dir: Path, plaintexts: list[str], cid: str) -> list[str]:
    blob = b"".join(f.read_bytes() for f in data_dir.rglob("*") if f.is_file())
    found = [t for t in plaintexts if t.encode() in blob]
    if bytes.fromhex(cid) in blob or cid.encode() in blob:
        found.append("the channel id")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=6, help="at least 4 (default 6)")
    parser.add_argument("--host-base", default="127.0.0.1",
                        help="first loopback address; node i listens on base + i")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    args = parser.parse_args()
    if args.nodes < 4:
        parser.error("--nodes must be at least 4 (two members, one to remove, one outsider)")
    root = Path(tempfile.mkdtemp(prefix="spacepanda-demo-"))
    demo = Demo(root, args.timeout)
    ok = False
    try:
        ok = run(args, demo)
    finally:
        demo.stop_all()
        if args.keep:
            print(f"data dirs and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
