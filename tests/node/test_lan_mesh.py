"""Issue 10's first complaint, as a test: eight ``spacepanda run`` processes on 127.0.0.1 with
default settings (no ``dht_subnet_prefix`` tuning) and one bootstrap address reach a full
mesh. Loopback stands in for any LAN, compose network or pod network: one subnet."""

from __future__ import annotations

from collections.abc import Callable

from tests.procs import Proc, full_mesh, procs, wait_until

__all__ = ["procs"]  # the fixture, used by name

# What tests.procs tunes for speed, put back to the defaults.
DEFAULTS = {
    "SPACEPANDA_DHT_SUBNET_PREFIX": "24",
    "SPACEPANDA_KEEPALIVE_INTERVAL_S": "15",
    "SPACEPANDA_IDLE_TIMEOUT_S": "45",
}


def test_eight_processes_on_one_host_mesh_with_default_settings(
    procs: Callable[..., Proc],
) -> None:
    boot = procs("127.0.0.1", **DEFAULTS).start()
    nodes = [boot] + [procs("127.0.0.1", **DEFAULTS).start(bootstrap=(boot.addr,))
                      for _ in range(7)]
    ids = {n.peer_id for n in nodes}
    assert len(ids) == 8
    wait_until(lambda: full_mesh(nodes), 60, "a full mesh of 8 default-settings processes")
    # Every node knows every other through the DHT too (its signed record resolves).
    for n in nodes:
        assert n.api.dht()["ready"] is True
        for pid in ids - {n.peer_id}:
            record = n.api.resolve(pid)
            assert record is not None and record["peer_id"] == pid
    for n in nodes:
        assert n.stop() == 0
