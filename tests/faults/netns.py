"""Network namespaces for fault tests: nodes in their own namespaces joined by veth pairs.

Everything is created by the test (names carry the test process id, so parallel runs and
other users of the machine never collide) and removed afterwards. Needs CAP_SYS_ADMIN and
iproute2 (CI runs as root); :func:`netns_unavailable` says why not otherwise, for a skip.

A node in a namespace is a ``spacepanda run`` process started with ``ip netns exec``; the
test talks to it with the CLI run in the same namespace (its API listens on the namespace's
own loopback, which the test's namespace cannot reach).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["Namespaces", "NsNode", "netns_unavailable", "wait_until"]


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=check)


def netns_unavailable() -> str | None:
    """None when namespaces can be made here, else the reason (for pytest.skip)."""
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN); CI runs these as root"
    probe = f"spx-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Namespaces:
    """Namespaces ``<prefix>-<name>`` and veth links between them; :meth:`close` removes all."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"spx{os.getpid() % 100000}{tag}"
        self.made: list[str] = []
        self.links: dict[tuple[str, str], tuple[str, str]] = {}

    def ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", full], check=True, capture_output=True)
        self.made.append(full)
        _ip("link", "set", "lo", "up", ns=full)
        return full

    def link(self, a: str, b: str, addr_a: str, addr_b: str) -> None:
        """A veth pair between namespaces ``a`` and ``b`` with /24 addresses."""
        n = len(self.links)
        va, vb = f"{self.prefix[-6:]}a{n}", f"{self.prefix[-6:]}b{n}"
        _ip("link", "add", va, "type", "veth", "peer", "name", vb)
        _ip("link", "set", va, "netns", a)
        _ip("link", "set", vb, "netns", b)
        _ip("addr", "add", f"{addr_a}/24", "dev", va, ns=a)
        _ip("addr", "add", f"{addr_b}/24", "dev", vb, ns=b)
        _ip("link", "set", va, "up", ns=a)
        _ip("link", "set", vb, "up", ns=b)
        self.links[(a, b)] = (va, vb)

    def cut(self, a: str, b: str) -> None:
        """Partition: the link carries nothing (both ends down)."""
        va, vb = self.links[(a, b)]
        _ip("link", "set", va, "down", ns=a)
        _ip("link", "set", vb, "down", ns=b)

    def heal(self, a: str, b: str) -> None:
        va, vb = self.links[(a, b)]
        _ip("link", "set", va, "up", ns=a)
        _ip("link", "set", vb, "up", ns=b)

    def close(self) -> None:
        for full in reversed(self.made):
            subprocess.run(["ip", "netns", "delete", full], capture_output=True)
        self.made.clear()


class NsNode:
    """A ``spacepanda run`` process inside a namespace, driven through the CLI there."""

    def __init__(self, ns: str, data_dir: Path, listen: str, **env: str) -> None:
        self.ns, self.data_dir, self.listen = ns, data_dir, listen
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "SPACEPANDA_KEEPALIVE_INTERVAL_S": "1",
                    "SPACEPANDA_IDLE_TIMEOUT_S": "4", "SPACEPANDA_DHT_SUBNET_PREFIX": "32", **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"

    def start(self) -> NsNode:
        cmd = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "node", "run", "--init",
               "--data-dir", str(self.data_dir), "--listen", self.listen,
               "--api", "/ip4/127.0.0.1/tcp/0", "--log-format", "json"]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     env=self.env, cwd=ROOT)
        wait_until(lambda: self._started(), 30, f"node in {self.ns} to start")
        return self

    def _started(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"node in {self.ns} exited: {self.log.read_text()[-2000:]}")
        return (self.data_dir / "api").exists() and self.cli("id", "--json") is not None

    def cli(self, *args: str) -> Any:
        proc = subprocess.run(
            ["ip", "netns", "exec", self.ns, sys.executable, "-m", "node", *args,
             "--data-dir", str(self.data_dir)],
            capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=30,
        )
        if proc.returncode != 0:
            return None
        return json.loads(proc.stdout) if "--json" in args else proc.stdout

    @property
    def peer_id(self) -> str:
        return str(self.cli("id", "--json")["peer_id"])

    def peers(self) -> set[str]:
        out = self.cli("peers", "--json")
        return {p["peer_id"] for p in out["peers"]} if out else set()

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
