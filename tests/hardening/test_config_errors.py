"""Issue 11 item 6: a non-UTF-8 (or otherwise unreadable) config.toml is a one-line error from
``spacepanda run``, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SPACEPANDA_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "node", "run", "--init", "--data-dir", str(data_dir),
         "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "/ip4/127.0.0.1/tcp/0"],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )


@pytest.mark.parametrize("content", [
    b'listen = "/ip4/127.0.0.1/tcp/0"\n# caf\xe9 in Latin-1\n',
    b"\xff\xfe l\x00i\x00s\x00t\x00",  # UTF-16 with a BOM
    b"max_connections = " + b"[" * 5000 + b"]" * 5000 + b"\n",  # RecursionError in tomllib
    b"x = " + b"{a=" * 5000 + b"1" + b"}" * 5000 + b"\n",
], ids=["latin-1", "utf-16", "nested-arrays", "nested-tables"])
def test_unreadable_config_is_a_one_line_error(tmp_path: Path, content: bytes) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir(mode=0o700)
    (data_dir / "config.toml").write_bytes(content)
    proc = _run(data_dir)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("spacepanda: error: config file ") and "config.toml" in errors[0]
