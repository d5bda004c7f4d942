from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from node.core.errors import ConfigError, IdentityError
from node.core.identity import Identity, PeerId
from node.datadir import DataDir, atomic_write, default_data_dir


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_create_then_open_same_identity(tmp_path: Path) -> None:
    d = DataDir(tmp_path / "d")
    ident = d.create()
    assert _mode(d.path) == 0o700
    assert _mode(d.identity_path) == 0o600
    assert _mode(d.token_path) == 0o600
    assert d.peer_id_path.read_text().strip() == str(ident.peer_id)
    assert d.config_path.read_text().startswith("#")
    again = DataDir(tmp_path / "d").open()
    assert again.peer_id == ident.peer_id
    token = d.read_token()
    assert len(token) == 43  # 32 bytes, urlsafe base64 unpadded
    assert not list(d.path.glob(".*.tmp"))  # atomic writes left no temp files


def test_create_twice_refused(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    d.create()
    with pytest.raises(ConfigError, match="already initialised"):
        d.create()


def test_create_keeps_existing_config(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('log_level = "debug"\n')
    DataDir(tmp_path).create()
    assert (tmp_path / "config.toml").read_text() == 'log_level = "debug"\n'


def test_open_uninitialised_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="spacepanda init"):
        DataDir(tmp_path / "missing").open()
    with pytest.raises(ConfigError, match="not initialised"):
        DataDir(tmp_path).open()


def test_key_with_group_permissions_refused(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    d.create()
    os.chmod(d.identity_path, 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        d.open()


def test_token_with_other_permissions_refused(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    d.create()
    os.chmod(d.token_path, 0o604)
    with pytest.raises(ConfigError, match="group/other"):
        d.open()


def test_garbage_key_refused(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    d.create()
    atomic_write(d.identity_path, b"-----BEGIN PRIVATE KEY-----\nnope\n", 0o600)
    with pytest.raises(IdentityError, match=r"identity\.key"):
        d.open()


def test_swapped_key_refused(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    old = d.create()
    new = Identity.generate()
    atomic_write(d.identity_path, new.to_pem(), 0o600)
    with pytest.raises(IdentityError, match=str(old.peer_id)):
        d.open()


def test_missing_peer_id_file_recreated_and_lost_token_regenerated(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    ident = d.create()
    d.peer_id_path.unlink()
    d.token_path.unlink()
    assert d.open().peer_id == ident.peer_id
    assert PeerId.from_string(d.peer_id_path.read_text().strip()) == ident.peer_id
    assert _mode(d.token_path) == 0o600
    d.read_token()


def test_corrupt_peer_id_file_refused(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    d.create()
    d.peer_id_path.write_text("spnotapeerid\n")
    with pytest.raises(IdentityError, match="corrupt"):
        d.open()


def test_second_lock_names_holder_pid(tmp_path: Path) -> None:
    a, b = DataDir(tmp_path), DataDir(tmp_path)
    a.create()
    with a, pytest.raises(ConfigError, match=rf"PID {os.getpid()}"):
        b.lock()
    b.lock()  # released on exit
    b.unlock()


def test_lock_held_by_other_process(tmp_path: Path) -> None:
    code = (
        "import sys, time; from node.datadir import DataDir\n"
        "d = DataDir(sys.argv[1]); d.lock(); print('locked', flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"PID {proc.pid}"):
            DataDir(tmp_path).lock()
    finally:
        proc.kill()
        proc.wait()
    DataDir(tmp_path).lock()  # the OS released it with the process


def test_api_address_written_and_removed(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    d.create()
    with pytest.raises(ConfigError, match="node not running"):
        d.read_api_address()
    with d:
        d.write_api_address("/ip4/127.0.0.1/tcp/5999")
        assert d.read_api_address() == "/ip4/127.0.0.1/tcp/5999"
    assert not d.api_path.exists()


def test_atomic_write_sets_exact_mode_and_replaces(tmp_path: Path) -> None:
    p = tmp_path / "f"
    old = os.umask(0o077)
    try:
        atomic_write(p, b"one", 0o644)
    finally:
        os.umask(old)
    assert _mode(p) == 0o644
    atomic_write(p, b"two", 0o600)
    assert p.read_bytes() == b"two" and _mode(p) == 0o600


def test_default_data_dir_env() -> None:
    assert default_data_dir({"SPACEPANDA_DATA_DIR": "/x/y"}) == Path("/x/y")
    assert default_data_dir({}).parts[-3:] == (".local", "share", "spacepanda")
