"""SIGSTOP a node: its peers drop it (idle timeout) while the rest of the mesh holds; SIGCONT:
it notices its dead links and rejoins everyone (separate processes on 127.0.0.x)."""

from __future__ import annotations

import signal
from collections.abc import Callable

from tests.procs import Proc, full_mesh, wait_until


def test_sigstop_then_sigcont(procs: Callable[[str], Proc]) -> None:
    boot = procs("127.0.0.101").start()
    nodes = [boot] + [procs(f"127.0.0.{102 + i}").start(bootstrap=(boot.addr,))
                      for i in range(3)]
    wait_until(lambda: full_mesh(nodes), 60, "a full mesh of 4 processes")
    frozen = nodes[2]
    frozen_id = frozen.peer_id
    others = [n for n in nodes if n is not frozen]
    frozen.freeze()
    try:
        wait_until(lambda: all(frozen_id not in n.peers() for n in others), 30,
                   "the others to drop the frozen node")
        wait_until(lambda: full_mesh(others), 20, "the rest of the mesh to hold")
    finally:
        assert frozen.proc is not None
        frozen.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: full_mesh(nodes), 90, "the thawed node to rejoin everyone")
    for n in nodes:
        assert n.stop() == 0
