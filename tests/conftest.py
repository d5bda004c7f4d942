"""Shared test fixtures: where the official test vectors live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness import start_node

__all__ = ["start_node"]  # a fixture for tests/node and tests/api

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


# ---- per-file counts at the end of a run (vector files show how many cases ran) ----------

_COUNTS: dict[str, dict[str, int]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        path = report.nodeid.split("::", 1)[0]
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        per_file = _COUNTS.setdefault(path, {})
        per_file[outcome] = per_file.get(outcome, 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _COUNTS:
        return
    terminalreporter.section("per-file counts")
    width = max(len(p) for p in _COUNTS)
    for path in sorted(_COUNTS):
        counts = _COUNTS[path]
        text = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        terminalreporter.write_line(f"{path:<{width}}  {text}")
