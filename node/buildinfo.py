"""What build this is: the version and the git commit.

The commit comes from, in order: ``node/BUILD_COMMIT``, written at build time (the Dockerfile
writes its ``SPACEPANDA_COMMIT`` build argument there; any packaging step may); the git
checkout this code runs from, read from ``.git`` without running git (worktrees and packed
refs included); else ``"unknown"``.
"""

from __future__ import annotations

import platform
import re
from functools import cache
from importlib import metadata
from pathlib import Path

__all__ = ["COMMIT_FILE", "VERSION", "build_info", "commit", "git_head", "version"]

VERSION = "0.1.0"  # when the package is not installed (running from a checkout)
COMMIT_FILE = Path(__file__).with_name("BUILD_COMMIT")
_HEX = re.compile(r"[0-9a-f]{7,64}")
_MAX = 4096


def version() -> str:
    try:
        return metadata.version("spacepanda")
    except metadata.PackageNotFoundError:
        return VERSION


def _read(path: Path, limit: int = _MAX) -> str | None:
    try:
        with path.open("rb") as fh:
            return fh.read(limit).decode("utf-8", "replace").strip()
    except OSError:
        return None


def _git_dir(root: Path) -> Path | None:
    dot = root / ".git"
    if dot.is_dir():
        return dot
    text = _read(dot)  # a worktree or submodule: "gitdir: <path>"
    if text is None or not text.startswith("gitdir:"):
        return None
    target = Path(text[len("gitdir:"):].strip())
    return target if target.is_absolute() else (root / target).resolve()


def git_head(root: Path) -> str | None:
    """The commit checked out in the git repository at ``root``, or None."""
    git = _git_dir(root)
    if git is None:
        return None
    head = _read(git / "HEAD")
    if head is None:
        return None
    if _HEX.fullmatch(head):
        return head  # detached HEAD
    if not head.startswith("ref:"):
        return None
    ref = head[len("ref:"):].strip()
    common_text = _read(git / "commondir")
    common = git if common_text is None else (git / common_text).resolve()
    for base in (git, common):
        value = _read(base / ref)
        if value is not None and _HEX.fullmatch(value):
            return value
    packed = _read(common / "packed-refs", 64 << 20)
    for line in (packed or "").splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _HEX.fullmatch(sha):
            return sha
    return None


@cache
def commit() -> str:
    recorded = _read(COMMIT_FILE)
    if recorded is not None and _HEX.fullmatch(recorded):
        return recorded
    return git_head(Path(__file__).resolve().parent.parent) or "unknown"


def build_info() -> dict[str, str]:
    """``spacepanda version --json`` and the ``spacepanda_build_info`` metric's labels."""
    return {
        "version": version(),
        "commit": commit(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
