"""deploy/compose.yaml: the compose CLI's own validation when present, its structure always, and
its two shell snippets (bootstrap-init, peer) run for real against this checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, REPO, base_env, check_settings, find_tool, load_yaml_docs

COMPOSE = DEPLOY / "compose.yaml"
LONG_RUNNING = ("bootstrap", "peer")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = load_yaml_docs(COMPOSE)  # PyYAML resolves the <<: merge keys like compose does
    return doc


def _compose_cli() -> list[str] | None:
    docker = find_tool("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        return [docker, "compose"]
    legacy = find_tool("docker-compose")
    return [legacy] if legacy else None


def test_compose_cli_accepts_the_file() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor docker-compose found (Debian docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEPANDA_")}
    r = subprocess.run([*cli, "-f", str(COMPOSE), "-p", "spacepanda", "config", "-q"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=DEPLOY)
    assert r.returncode == 0, r.stdout + r.stderr


def _volumes(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (source, mode) from short-syntax volume strings."""
    out = {}
    for v in service.get("volumes", []):
        source, target, *mode = v.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form for environment"
    return {k: str(v) for k, v in env.items()}


def test_services_and_startup_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"bootstrap-init", "bootstrap", "peer"}
    assert services["bootstrap"]["depends_on"] == {
        "bootstrap-init": {"condition": "service_completed_successfully"}}
    assert services["peer"]["depends_on"] == {
        "bootstrap-init": {"condition": "service_completed_successfully"},
        "bootstrap": {"condition": "service_healthy"}}
    assert services["bootstrap-init"]["restart"] == "no"
    assert services["peer"]["deploy"]["replicas"] >= 1


def test_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    dockerfile = (REPO / "Dockerfile").read_text()
    for name in LONG_RUNNING:
        hc = services[name]["healthcheck"]
        assert hc["test"][0] == "CMD" and hc["test"][1] == "spacepanda-healthcheck", name
        assert f"/opt/spacepanda/bin/{hc['test'][1]}" in dockerfile, "the image ships the probe"
        for key in ("interval", "timeout", "start_period"):
            assert re.fullmatch(r"\d+s", hc[key]), (name, key)
        assert hc["retries"] >= 1
    assert services["bootstrap-init"]["healthcheck"] == {"disable": True}


def test_volumes_keep_the_identity_and_share_only_the_peer_id(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(compose["volumes"]) == {"bootstrap-data", "bootstrap-id"}
    data_users = {n for n, s in services.items()
                  if any(src == "bootstrap-data" for src, _ in _volumes(s).values())}
    assert data_users == {"bootstrap-init", "bootstrap"}, "the identity key stays with them"
    assert _volumes(services["bootstrap-init"])["/data"][0] == "bootstrap-data"
    assert _volumes(services["bootstrap"])["/data"] == ("bootstrap-data", "rw")
    assert _volumes(services["bootstrap-init"])["/tmp"] == ("bootstrap-id", "rw")
    assert _volumes(services["peer"])["/bootstrap-id"] == ("bootstrap-id", "ro")
    used = {src for s in services.values() for src, _ in _volumes(s).values()}
    assert used == set(compose["volumes"]), "every named volume declared and used"


def test_hardening_and_private_api(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("user") in (None, "10001", "10001:10001"), name
        assert service.get("privileged") is not True, name
        for port in service.get("ports", []):
            assert "5001" not in str(port), f"{name} publishes the admin API"
        env = _env(service)
        check_settings(env, f"compose service {name}")
        assert "SPACEPANDA_API" not in env, f"{name}: keep the image's loopback API"


def _sh_script(service: dict[str, Any]) -> str:
    assert service["entrypoint"] == ["/bin/sh", "-ec"]
    (script,) = service["command"]
    # A lone "$" is compose interpolation (a host variable, or an error for "$("), never the
    # shell's: the shell must see "$$".
    assert "$" not in str(script).replace("$$", ""), f"unescaped $ in: {script}"
    return str(script).replace("$$", "$")  # compose's own escaping, undone as compose does


def _map_paths(script: str, mounts: dict[str, Path]) -> str:
    """Container paths to host dirs, in one pass (a host path may itself start with /tmp)."""
    alternatives = "|".join(re.escape(t) for t in sorted(mounts, key=len, reverse=True))
    pattern = rf"(?<![\w-])({alternatives})(?=/|\s|$|\")"
    return re.sub(pattern, lambda m: str(mounts[m.group(1)]), script)


def _shim_path(tmp_path: Path) -> str:
    """A PATH whose `spacepanda` is this checkout's CLI, as the image's venv provides it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "spacepanda"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m node "$@"\n')
    shim.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"


def test_init_and_peer_snippets_build_a_valid_bootstrap_address(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    if shutil.which("hostname") is None:
        pytest.skip("hostname(1) not installed (Debian hostname, essential in the image)")
    services = compose["services"]
    data, handoff = tmp_path / "bootstrap-data", tmp_path / "bootstrap-id"
    handoff.mkdir()
    env = base_env() | {"PATH": _shim_path(tmp_path)}
    init = _map_paths(_sh_script(services["bootstrap-init"]), {"/data": data, "/tmp": handoff})
    first = subprocess.run(["/bin/sh", "-ec", init], env=env, capture_output=True, text=True,
                           timeout=60)
    assert first.returncode == 0, first.stderr
    peer_id = (handoff / "peer_id").read_text().strip()
    assert peer_id == (data / "peer_id").read_text().strip()
    assert f"bootstrap PeerId: {peer_id}" in first.stdout
    again = subprocess.run(["/bin/sh", "-ec", init], env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0, again.stderr
    assert (handoff / "peer_id").read_text().strip() == peer_id, "init must keep the identity"
    assert not (handoff / "identity.key").exists(), "only the public PeerId is shared"

    # The peer's snippet, with `exec spacepanda run --init` swapped for the node's own config
    # loader: what it prints is what `run` would use.
    peer = _map_paths(_sh_script(services["peer"]), {"/bootstrap-id": handoff})
    run_line = "exec spacepanda run --init"
    assert run_line in peer
    loader = ("from node.config import load_config; c = load_config(data_dir='/nonexistent'); "
              "print(*c.bootstrap); print(*c.announce)")
    peer = peer.replace(run_line, f'exec "{sys.executable}" -c "{loader}"')
    peer_env = base_env() | _env(services["peer"])
    r = subprocess.run(["/bin/sh", "-ec", peer], env=peer_env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    bootstrap, announce = r.stdout.split("\n")[:2]
    assert bootstrap == f"/dns4/bootstrap/tcp/4001/p2p/{peer_id}"
    assert "bootstrap" in services, "the DNS name is the bootstrap's service name"
    assert re.fullmatch(r"/ip4/[\d.]+/tcp/4001", announce), announce
    image_listen = re.search(r"SPACEPANDA_LISTEN=(\S+)", (REPO / "Dockerfile").read_text())
    assert image_listen and image_listen.group(1).endswith("/tcp/4001"), "image listens on 4001"
    assert _env(services["bootstrap"])["SPACEPANDA_ANNOUNCE"] == "/dns4/bootstrap/tcp/4001"
