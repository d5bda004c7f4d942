"""deploy/docker/healthcheck.py (the image's spacepanda-healthcheck) against real nodes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.conftest import DEPLOY, NodeProcess, base_env, free_port

SCRIPT = DEPLOY / "docker" / "healthcheck.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sp_healthcheck", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hc = _module()


@pytest.mark.parametrize(
    ("addr", "url"),
    [
        ("/ip4/127.0.0.1/tcp/5001\n", "http://127.0.0.1:5001/healthz"),
        ("/ip4/0.0.0.0/tcp/5001", "http://127.0.0.1:5001/healthz"),
        ("/ip6/::/tcp/5001", "http://[::1]:5001/healthz"),
        ("/ip6/::1/tcp/7", "http://[::1]:7/healthz"),
        ("/dns4/localhost/tcp/5001", "http://localhost:5001/healthz"),
    ],
)
def test_probe_url(addr: str, url: str) -> None:
    assert hc.probe_url(addr, "/healthz") == url


@pytest.mark.parametrize(
    "addr", ["", "/ip4/127.0.0.1/udp/5001", "/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/x",
             "/unix/run/api", "ip4/127.0.0.1/tcp/5001", "/ip4/127.0.0.1/tcp/5001/p2p/x"],
)
def test_probe_url_rejects(addr: str) -> None:
    with pytest.raises(ValueError):
        hc.probe_url(addr, "/healthz")


def _run(*args: str, env_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = base_env()
    if env_dir is not None:
        env["SPACEPANDA_DATA_DIR"] = str(env_dir)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=30, env=env
    )


def test_no_node_is_unhealthy(tmp_path: Path) -> None:
    r = _run("--data-dir", str(tmp_path / "missing"))
    assert r.returncode == 1
    assert "node not running" in r.stdout


def test_garbage_api_file_is_unhealthy(tmp_path: Path) -> None:
    (tmp_path / "api").write_text("not a multiaddr\n")
    r = _run(env_dir=tmp_path)
    assert r.returncode == 1
    assert "unhealthy" in r.stdout


def test_closed_port_is_unhealthy(tmp_path: Path) -> None:
    (tmp_path / "api").write_text(f"/ip4/127.0.0.1/tcp/{free_port()}\n")
    r = _run("--timeout", "2", env_dir=tmp_path)
    assert r.returncode == 1
    assert "unhealthy: http://127.0.0.1:" in r.stdout


def test_running_node_is_healthy_and_ready(
    tmp_path: Path, node_processes: list[NodeProcess]
) -> None:
    data = tmp_path / "d"
    env = base_env() | {
        "SPACEPANDA_DATA_DIR": str(data),  # what the image sets; the probe reads it too
        "SPACEPANDA_LISTEN": "/ip4/127.0.0.1/tcp/0",
        "SPACEPANDA_API": "/ip4/127.0.0.1/tcp/0",
    }
    node = NodeProcess([sys.executable, "-m", "node", "run", "--init"], env, data,
                       tmp_path / "node.log")
    node_processes.append(node)
    api = node.wait_api()
    healthy = _run(env_dir=data)
    assert healthy.returncode == 0, healthy.stdout
    assert healthy.stdout.strip() == f"ok: {hc.probe_url(api, '/healthz')}"
    ready = _run("--ready", env_dir=data)
    assert ready.returncode == 0, ready.stdout
    assert "/readyz" in ready.stdout
    assert node.stop() == 0
    after = _run(env_dir=data)  # the node removes D/api on a clean stop
    assert after.returncode == 1
