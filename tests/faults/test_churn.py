"""30% churn of 50 nodes (in one process, real sockets on 127.0.100.x): 15 nodes leave, 15
new ones join through random survivors, and the mesh of the live nodes stays connected."""

from __future__ import annotations

import random

from node.core.identity import PeerId
from tests.harness import Running, StartNode, wait_for


def _connected(nodes: list[Running]) -> bool:
    """Whether the links among ``nodes`` form one connected graph."""
    live = {n.node.peer_id: n for n in nodes}
    start = next(iter(live))
    seen: set[PeerId] = {start}
    todo = [start]
    while todo:
        for peer in live[todo.pop()].peers():
            if peer in live and peer not in seen:
                seen.add(peer)
                todo.append(peer)
    return len(seen) == len(live)


async def test_thirty_percent_churn_of_fifty_nodes(start_node: StartNode) -> None:
    rand = random.Random(50)
    boot = await start_node(host="127.0.100.1")
    nodes = [boot]
    for i in range(2, 51):
        nodes.append(await start_node(host=f"127.0.100.{i}", bootstrap=(boot.addr,)))
    await wait_for(lambda: _connected(nodes) and all(n.peers() for n in nodes), 120.0)
    leaving = rand.sample(nodes, 15)
    for node in leaving:
        await node.shutdown()
    live = [n for n in nodes if n not in leaving]
    for i in range(15):
        via = rand.choice(live)
        live.append(await start_node(host=f"127.0.101.{i + 1}", bootstrap=(via.addr,)))
    newcomers = live[-15:]
    await wait_for(lambda: all(n.peers() for n in newcomers) and _connected(live), 120.0)
    # Nobody holds a link to a node that left.
    gone = {n.node.peer_id for n in leaving}
    await wait_for(lambda: not any(gone & n.peers() for n in live), 60.0)
