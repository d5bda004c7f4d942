"""deploy/spacepanda@.service: exposure score, syntax, per-instance ports and its sandbox, for real.

The ExecStart line is run the way systemd would run it (specifiers, $$ and ${VAR} expansion,
Environment= then the EnvironmentFile= values, $STATE_DIRECTORY), with the node binary replaced by
this checkout's ``python -m node``. Listening stays on 127.0.0.1: the "env file" moves
SPACEPANDA_LISTEN off 0.0.0.0, which is also how an operator pins it to one address.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, NodeProcess, base_env, free_port, require_tool

UNIT = DEPLOY / "spacepanda@.service"
NODE_BINARY = "/usr/local/bin/spacepanda"
MAX_EXPOSURE = 3.0


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; backslash-newline joins lines with a space."""
    joined = re.sub(r"\\\n", " ", text)
    section, out = "", []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in unit_entries(UNIT.read_text()) if s == section and k == key]


def _specifiers(text: str, instance: str) -> str:
    return re.sub(r"%[%i]", lambda m: "%" if m.group() == "%%" else instance, text)


def _expand_vars(word: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)",
                  lambda m: "$" if m.group() == "$$" else env.get(m.group(1) or m.group(2), ""),
                  word)


def exec_start(instance: str, state_dir: Path, env_file: dict[str, str]) -> tuple[list[str], dict]:
    """The argv and environment systemd would give ExecStart for ``spacepanda@<instance>``."""
    env = base_env()
    for assignment in values("Environment"):
        for token in shlex.split(_specifiers(assignment, instance)):
            name, _, value = token.partition("=")
            env[name] = value
    files = values("EnvironmentFile")
    assert files == ["-/etc/spacepanda/%i.env"], files
    env.update(env_file)
    env["STATE_DIRECTORY"] = str(state_dir)
    (line,) = values("ExecStart")
    argv = [_expand_vars(w, env) for w in shlex.split(_specifiers(line, instance))]
    script = argv[-1]
    assert f"exec {NODE_BINARY} " in script, script
    python = shlex.quote(sys.executable)
    argv[-1] = script.replace(f"exec {NODE_BINARY} ", f"exec {python} -m node ")
    return argv, env


def test_exposure_at_most_3(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "Debian systemd")
    unit = tmp_path / "spacepanda@4001.service"
    shutil.copy(UNIT, unit)
    r = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    if m is None and "offline" in r.stderr:
        pytest.skip(f"this systemd-analyze has no --offline: {r.stderr.strip()}")
    assert m, r.stdout + r.stderr
    exposure = float(m.group(1))
    print(f"systemd-analyze security: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, r.stdout


def test_verify_clean(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "Debian systemd")
    unit = tmp_path / "spacepanda@4001.service"
    shutil.copy(UNIT, unit)
    r = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    ours = [ln for ln in (r.stdout + r.stderr).splitlines() if "spacepanda@" in ln]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


def test_install_comments_match_the_unit() -> None:
    text = UNIT.read_text()
    assert values("User") == ["spacepanda"] and values("Group") == ["spacepanda"]
    assert values("StateDirectory") == ["spacepanda/%i"]
    assert values("WantedBy", "Install") == ["multi-user.target"]
    assert "systemctl enable --now spacepanda@4001" in text


def _start(tmp_path: Path, instance: str, env_file: dict[str, str],
           procs: list[NodeProcess]) -> NodeProcess:
    state = tmp_path / "var-lib-spacepanda" / instance
    state.mkdir(parents=True, mode=0o700)
    argv, env = exec_start(instance, state, env_file)
    node = NodeProcess(argv, env, state, tmp_path / f"{instance}.log")
    procs.append(node)
    return node


def test_instance_name_sets_listen_and_api_ports(
    tmp_path: Path, node_processes: list[NodeProcess]
) -> None:
    port = free_port(also=1000)
    node = _start(tmp_path, str(port),
                  {"SPACEPANDA_LISTEN": f"/ip4/127.0.0.1/tcp/{port}"}, node_processes)
    assert node.wait_api() == f"/ip4/127.0.0.1/tcp/{port + 1000}"
    from api.client import ApiClient

    addrs = ApiClient.from_data_dir(node.data_dir).node()["addrs"]
    assert any(f"/ip4/127.0.0.1/tcp/{port}/" in a or a.endswith(f"/tcp/{port}") for a in addrs)
    assert (node.data_dir / "identity.key").exists(), "--init created the data dir's identity"
    assert node.stop() == 0


def test_env_file_overrides_the_derived_api(
    tmp_path: Path, node_processes: list[NodeProcess]
) -> None:
    port, api = free_port(), free_port()
    env_file = {"SPACEPANDA_LISTEN": f"/ip4/127.0.0.1/tcp/{port}",
                "SPACEPANDA_API": f"/ip4/127.0.0.1/tcp/{api}"}
    node = _start(tmp_path, str(port), env_file, node_processes)
    assert node.wait_api() == f"/ip4/127.0.0.1/tcp/{api}"
    assert node.stop() == 0


@pytest.mark.parametrize("instance", ["main", "4001x", "0", "64536", "99999"])
def test_bad_instance_names_refused(tmp_path: Path, instance: str) -> None:
    argv, env = exec_start(instance, tmp_path, {})
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"spacepanda@{instance}:" in r.stderr
    assert 2 in [int(x) for x in " ".join(values("RestartPreventExitStatus")).split()]


def test_node_runs_inside_the_units_syscall_filter(
    tmp_path: Path, node_processes: list[NodeProcess]
) -> None:
    """SystemCallFilter= and MemoryDenyWriteExecute= emulated with seccomp and PR_SET_MDWE."""
    require_tool("systemd-analyze", "Debian systemd")
    system_python = shutil.which("python3", path="/usr/bin")
    if system_python is None or subprocess.run(
        [system_python, "-c", "import seccomp"], capture_output=True
    ).returncode:
        pytest.skip("libseccomp's Python binding not found (Debian python3-seccomp)")
    filters = values("SystemCallFilter")
    assert filters, "the unit has a SystemCallFilter"
    assert values("SystemCallErrorNumber") == ["EPERM"]
    wrapper = [system_python, str(Path(__file__).with_name("seccomp_exec.py"))]
    if values("MemoryDenyWriteExecute") == ["yes"]:
        wrapper.append("--mdwe")
    for spec in filters:
        wrapper += ["--filter", spec]
    port = free_port(also=1000)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    argv, env = exec_start(str(port), state, {"SPACEPANDA_LISTEN": f"/ip4/127.0.0.1/tcp/{port}"})
    node = NodeProcess([*wrapper, "--", *argv], env, state, tmp_path / "sandboxed.log")
    node_processes.append(node)
    try:
        node.wait_api()
    except AssertionError:
        if node.proc.returncode == 3:
            pytest.skip(f"kernel/libseccomp cannot emulate the sandbox: {node.log_tail()}")
        raise
    status = Path(f"/proc/{node.proc.pid}/status").read_text()
    assert re.search(r"^Seccomp:\s+2$", status, re.M), "the filter is in force"
    from api.client import ApiClient

    client = ApiClient.from_data_dir(state)
    assert client.node()["peer_id"] == (state / "peer_id").read_text().strip()
    assert client.dht()["ready"] is True
    assert node.stop() == 0, node.log_tail()
    assert "Operation not permitted" not in node.log_tail()
