"""Separate `spacepanda run` processes on 127.0.0.x, driven through their admin APIs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.client import ApiClient, ApiError, NodeUnreachable
from node.core.errors import ConfigError


class Proc:
    """One node process with its own data dir."""

    def __init__(self, data_dir: Path, host: str) -> None:
        self.data_dir = data_dir
        self.host = host
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: ApiClient | None = None

    def start(self, *, port: int = 0, bootstrap: tuple[str, ...] = ()) -> Proc:
        cmd = [sys.executable, "-m", "node", "run", "--init", "--data-dir", str(self.data_dir),
               "--listen", f"/ip4/{self.host}/tcp/{port}", "--api", "/ip4/127.0.0.1/tcp/0",
               "--log-format", "json"]
        for addr in bootstrap:
            cmd += ["--bootstrap", addr]
        env = dict(os.environ, SPACEPANDA_DHT_SUBNET_PREFIX="32",
                   SPACEPANDA_KEEPALIVE_INTERVAL_S="1", SPACEPANDA_IDLE_TIMEOUT_S="4")
        log = (self.data_dir.parent / f"{self.data_dir.name}.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.data_dir.name} exited with {self.proc.returncode}: "
                                     + self.log_tail())
            try:
                client = ApiClient.from_data_dir(self.data_dir, timeout=5)
                client.node()
                self.client = client
                return self
            except (ConfigError, NodeUnreachable, ApiError, OSError):
                time.sleep(0.1)
        raise AssertionError(f"{self.data_dir.name} did not start: " + self.log_tail())

    def log_tail(self) -> str:
        path = self.data_dir.parent / f"{self.data_dir.name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    @property
    def api(self) -> ApiClient:
        assert self.client is not None
        return self.client

    @property
    def addr(self) -> str:
        return str(self.api.node()["addrs"][0])

    @property
    def peer_id(self) -> str:
        return str(self.api.node()["peer_id"])

    def peers(self) -> set[str]:
        return {p["peer_id"] for p in self.api.peers()}

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.client = None
        return code


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[[str], Proc]]:
    made: list[Proc] = []

    def make(host: str) -> Proc:
        p = Proc(tmp_path / f"node{len(made)}", host)
        made.append(p)
        return p

    yield make
    for p in made:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def test_two_processes_connect_notice_stop_and_reconnect(procs: Callable[[str], Proc]) -> None:
    a = procs("127.0.0.1").start()
    b = procs("127.0.0.2").start()
    b_port = int(b.addr.split("/")[4])
    status, body = a.api.request("POST", "/v1/peers", {"addr": b.addr})
    assert status == 201, body
    wait_until(lambda: a.peers() == {b.peer_id} and b.peers() == {a.peer_id}, 10,
               "both nodes to list each other")
    b_id = b.peer_id
    assert b.stop() == 0
    wait_until(lambda: a.peers() == set(), 10, "a to notice b stopped")
    # Restart b on the same address: a redials it from its address book, unasked.
    b.start(port=b_port)
    wait_until(lambda: a.peers() == {b_id} and b.peers() == {a.peer_id}, 20,
               "a to reconnect to the restarted b")
    assert a.stop() == 0 and b.stop() == 0


def full_mesh(nodes: list[Proc]) -> bool:
    ids = {n.peer_id for n in nodes}
    return all(n.peers() == ids - {n.peer_id} for n in nodes)


def test_bootstrap_mesh_survives_and_rejoins(procs: Callable[[str], Proc]) -> None:
    boot = procs("127.0.0.1").start()
    boot_addr = boot.addr
    nodes = [boot] + [procs(f"127.0.0.{i}").start(bootstrap=(boot_addr,)) for i in range(2, 11)]
    wait_until(lambda: full_mesh(nodes), 60, "a full mesh of 10 processes")
    ids = [n.peer_id for n in nodes]
    for n in nodes:
        for pid in ids:
            status, body = n.api.request("GET", f"/v1/dht/peers/{pid}")
            assert status == 200 and body["peer_id"] == pid, (status, body)
    # Kill the bootstrap node: the other nine stay fully connected.
    assert boot.stop() == 0
    rest = nodes[1:]
    wait_until(lambda: full_mesh(rest), 20, "the mesh without its bootstrap node")
    # A newcomer that knows only a non-bootstrap node joins everyone.
    newcomer = procs("127.0.0.20").start(bootstrap=(rest[4].addr,))
    group = [*rest, newcomer]
    wait_until(lambda: full_mesh(group), 60, "the newcomer to join the mesh")
    # A node restarted with no bootstrap address rejoins from what its data dir knows.
    leaver = rest[2]
    port = int(leaver.addr.split("/")[4])
    leaver_id = leaver.peer_id
    assert leaver.stop() == 0
    others = [n for n in group if n is not leaver]
    wait_until(lambda: all(leaver_id not in n.peers() for n in others), 20,
               "the others to notice the leaver")
    leaver.start(port=port)
    wait_until(lambda: full_mesh(group), 60, "the restarted node to rejoin")
    for n in group:
        assert n.stop() == 0
