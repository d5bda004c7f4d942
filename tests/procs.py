"""Separate `spacepanda run` processes on 127.0.0.x, driven through their admin APIs: the
``procs`` fixture and helpers shared by the multi-process tests."""

from __future__ import annotations

import json
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

    def __init__(self, data_dir: Path, host: str, env: dict[str, str] | None = None,
                 module: str = "node") -> None:
        self.data_dir = data_dir
        self.host = host
        self.extra_env = dict(env or {})
        # ``python -m <module> run ...``: "node", or a test wrapper that runs node.cli.main.
        self.module = module
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: ApiClient | None = None

    def init(self) -> str:
        """``spacepanda init`` before the first start; returns the PeerId (offline)."""
        subprocess.run([sys.executable, "-m", "node", "init", "--data-dir", str(self.data_dir)],
                       check=True, capture_output=True)
        out = subprocess.run([sys.executable, "-m", "node", "id", "--data-dir",
                              str(self.data_dir), "--json"],
                             check=True, capture_output=True, text=True).stdout
        return str(json.loads(out)["peer_id"])

    def start(self, *, port: int = 0, bootstrap: tuple[str, ...] = ()) -> Proc:
        cmd = [sys.executable, "-m", self.module, "run", "--init", "--data-dir",
               str(self.data_dir),
               "--listen", f"/ip4/{self.host}/tcp/{port}", "--api", "/ip4/127.0.0.1/tcp/0",
               "--log-format", "json"]
        for addr in bootstrap:
            cmd += ["--bootstrap", addr]
        # Tuned for speed on 127.0.0.x; a test's own env wins (test_lan_mesh puts defaults back).
        repo = str(Path(__file__).resolve().parents[1])  # for test wrappers (tests.*)
        path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, "SPACEPANDA_DHT_SUBNET_PREFIX": "32",
               "SPACEPANDA_KEEPALIVE_INTERVAL_S": "1", "SPACEPANDA_IDLE_TIMEOUT_S": "4",
               **self.extra_env}
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

    def kill(self) -> None:
        """kill -9: no shutdown at all."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=20)
        self.client = None

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


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

    def make(host: str, module: str = "node", **env: str) -> Proc:
        p = Proc(tmp_path / f"node{len(made)}", host, env, module)
        made.append(p)
        return p

    yield make
    for p in made:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.send_signal(signal.SIGCONT)
            p.proc.kill()
            p.proc.wait()




def full_mesh(nodes: list[Proc]) -> bool:
    ids = {n.peer_id for n in nodes}
    return all(n.peers() == ids - {n.peer_id} for n in nodes)
