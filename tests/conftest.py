"""Shared test fixtures: where the official test vectors live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def vectors_root() -> Path:
    """``$SPACEPANDA_VECTORS`` or ``../shared/vectors`` next to the repo root."""
    env = os.environ.get("SPACEPANDA_VECTORS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "vectors"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    root = vectors_root()
    if not root.is_dir():
        pytest.skip(f"test vectors not found at {root} (set SPACEPANDA_VECTORS)")
    return root
