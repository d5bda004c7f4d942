"""Helpers for the deployment checks: repo paths, optional tools, real node processes.

Every external tool (hadolint, systemd-analyze, docker compose, PyYAML, kubernetes-validate,
promtool, libseccomp's Python binding) is optional: a test that needs one skips and says which
package provides it. Nothing here touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def find_tool(name: str) -> str | None:
    """``name`` on PATH, or next to this Python (a venv's bin/, where pip puts hadolint)."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def require_tool(name: str, provided_by: str) -> str:
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} not found (provided by {provided_by})")
    return path


def yaml_module() -> ModuleType:
    return pytest.importorskip("yaml", reason="PyYAML not installed (pip install pyyaml)")


def load_yaml_docs(path: Path) -> list[Any]:
    yaml = yaml_module()
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def setting_env_names() -> set[str]:
    """Every ``SPACEPANDA_*`` variable the node reads (one per NodeConfig field)."""
    from node.config import ENV_PREFIX, NodeConfig

    return {ENV_PREFIX + f.name.upper() for f in fields(NodeConfig)}


def check_settings(env: Mapping[str, str], where: str) -> None:
    """Fail unless every SPACEPANDA_* name is a real setting and every value parses."""
    from node.config import load_config
    from node.core.errors import ConfigError

    names = {k for k in env if k.startswith("SPACEPANDA_")}
    unknown = names - setting_env_names()
    assert not unknown, f"{where}: unknown setting(s) {sorted(unknown)}"
    values = {k: v for k, v in env.items() if k in names and k != "SPACEPANDA_DATA_DIR"}
    try:
        load_config(env=values, data_dir=REPO / "tests" / "deploy" / "no-such-data-dir")
    except ConfigError as exc:
        pytest.fail(f"{where}: {exc}")


def free_port(*, also: int = 0) -> int:
    """A TCP+UDP port free on 127.0.0.1 such that ``port + also`` is free too (TCP)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + also > 65535:
            continue
        try:
            with socket.socket() as a, socket.socket(type=socket.SOCK_DGRAM) as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port))
                if also:
                    with socket.socket() as c:
                        c.bind(("127.0.0.1", port + also))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair found")


class NodeProcess:
    """A real ``spacepanda run`` started through an arbitrary command line."""

    def __init__(self, argv: list[str], env: Mapping[str, str], data_dir: Path, log: Path):
        self.data_dir = data_dir
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def wait_api(self, timeout: float = 30.0) -> str:
        """The API address the node wrote to D/api, once /healthz answers."""
        from api.client import ApiClient, NodeUnreachable
        from node.core.errors import ConfigError

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                addr = (self.data_dir / "api").read_text().strip()
                ApiClient.from_data_dir(self.data_dir, timeout=5).node()
                return addr
            except (OSError, ConfigError, NodeUnreachable):
                time.sleep(0.1)
        raise AssertionError(f"node did not start within {timeout} s: {self.log_tail()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("node ignored SIGTERM for 20 s") from None
        return self.proc.returncode


@pytest.fixture
def node_processes() -> Iterator[list[NodeProcess]]:
    """Started processes are appended by the test; any still running are stopped after it."""
    started: list[NodeProcess] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def base_env() -> dict[str, str]:
    """The environment for a node subprocess: this one minus SPACEPANDA_*, repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEPANDA_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    env["SPACEPANDA_DHT_SUBNET_PREFIX"] = "32"
    return env
