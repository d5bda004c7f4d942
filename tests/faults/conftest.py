"""Fixtures for fault tests: namespaces (skipped cleanly without the privilege)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.faults.netns import Namespaces, netns_unavailable
from tests.procs import procs

__all__ = ["namespaces", "procs"]


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    spaces = Namespaces(uuid.uuid4().hex[:3])
    try:
        yield spaces
    finally:
        spaces.close()
