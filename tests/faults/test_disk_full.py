"""Disk full during traffic: a node whose data dir sits on a small tmpfs keeps serving,
answers a clear error for what it cannot store, loses nothing it acknowledged, and stores
again once space returns. The database stays intact (and 0600, WAL and SHM included).

Needs root to mount the tmpfs (CI runs as root); skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.client import ApiError
from tests.procs import Proc, wait_until


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir(mode=0o700)
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root; CI runs this as root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _send(node: Proc, channel: str, text: str) -> tuple[int, dict[str, object]]:
    try:
        status, body = node.api.request("POST", f"/v1/channels/{channel}/messages",
                                        {"text": text})
        return status, body
    except ApiError as exc:
        return exc.status, {"type": exc.type, "detail": exc.detail}


def test_disk_full_during_traffic(small_disk: Path, procs: Callable[..., Proc]) -> None:
    node = procs("127.0.0.120")
    node.data_dir = small_disk / "d"
    node.start()
    channel = node.api.create_channel("disk")["channel_id"]
    accepted: list[str] = []
    for i in range(5):
        status, body = _send(node, channel, f"before {i} " + "x" * 2000)
        assert status == 202, body
        accepted.append(str(body["message_id"]))
    # Fill the disk, leaving a little room, then keep sending until the node says it is full.
    filler = small_disk / "filler"
    with filler.open("wb") as fh, contextlib.suppress(OSError):
        while _free(small_disk) > 64 * 1024:
            fh.write(b"\0" * 16384)
            fh.flush()
    refused: list[tuple[int, dict[str, object]]] = []
    for i in range(300):
        status, body = _send(node, channel, f"during {i} " + "y" * 4000)
        if status == 202:
            accepted.append(str(body["message_id"]))
        else:
            refused.append((status, body))
            if len(refused) >= 3:
                break
    assert refused, "the disk never filled up"
    # Clear errors: 507 "storage full" problems, not a dropped connection or a crash.
    assert all(status == 507 and str(body["type"]).endswith("storage-full")
               for status, body in refused), refused
    assert node.api.request("GET", "/healthz")[0] == 200
    assert "full" in node.log_tail().lower() or "space" in node.log_tail().lower()
    # Space returns: the node stores again, without a restart.
    filler.unlink()
    wait_until(lambda: _send(node, channel, "after")[0] == 202, 30, "sending to work again")
    # Nothing acknowledged was lost.
    stored, _ = node.api.messages(channel, limit=1000)
    ids = {str(m["message_id"]) for m in stored}
    assert set(accepted) <= ids
    assert node.stop() == 0
    db = node.data_dir / "node.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(db) + suffix)
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, suffix
