"""Separate `spacepanda run` processes on 127.0.0.x, driven through their admin APIs."""

from __future__ import annotations

from collections.abc import Callable

from tests.procs import Proc, full_mesh, procs, wait_until

__all__ = ["procs"]  # the fixture, used by name


def test_two_processes_connect_notice_stop_and_reconnect(procs: Callable[[str], Proc]) -> None:
    a = procs("127.0.0.1").start()
    b = procs("127.0.0.2").start()
    b_port = int(b.addr.split("/")[4])
    status, body = a.api.request("POST", "/v1/peers", {"addr": b.addr})
    assert status == 201, body
    wait_until(lambda: a.peers() == {b.peer_id} and b.peers() == {a.peer_id}, 10,
               "both nodes to list each other")
    b_id = b.peer_id
    assert b.stop() == 0
    wait_until(lambda: a.peers() == set(), 10, "a to notice b stopped")
    # Restart b on the same address: a redials it from its address book, unasked.
    b.start(port=b_port)
    wait_until(lambda: a.peers() == {b_id} and b.peers() == {a.peer_id}, 20,
               "a to reconnect to the restarted b")
    assert a.stop() == 0 and b.stop() == 0


def test_bootstrap_mesh_survives_and_rejoins(procs: Callable[[str], Proc]) -> None:
    boot = procs("127.0.0.1").start()
    boot_addr = boot.addr
    nodes = [boot] + [procs(f"127.0.0.{i}").start(bootstrap=(boot_addr,)) for i in range(2, 11)]
    wait_until(lambda: full_mesh(nodes), 60, "a full mesh of 10 processes")
    ids = [n.peer_id for n in nodes]
    for n in nodes:
        for pid in ids:
            status, body = n.api.request("GET", f"/v1/dht/peers/{pid}")
            assert status == 200 and body["peer_id"] == pid, (status, body)
    # Kill the bootstrap node: the other nine stay fully connected.
    assert boot.stop() == 0
    rest = nodes[1:]
    wait_until(lambda: full_mesh(rest), 20, "the mesh without its bootstrap node")
    # A newcomer that knows only a non-bootstrap node joins everyone.
    newcomer = procs("127.0.0.20").start(bootstrap=(rest[4].addr,))
    group = [*rest, newcomer]
    wait_until(lambda: full_mesh(group), 60, "the newcomer to join the mesh")
    # A node restarted with no bootstrap address rejoins from what its data dir knows.
    leaver = rest[2]
    port = int(leaver.addr.split("/")[4])
    leaver_id = leaver.peer_id
    assert leaver.stop() == 0
    others = [n for n in group if n is not leaver]
    wait_until(lambda: all(leaver_id not in n.peers() for n in others), 20,
               "the others to notice the leaver")
    leaver.start(port=port)
    wait_until(lambda: full_mesh(group), 60, "the restarted node to rejoin")
    for n in group:
        assert n.stop() == 0
