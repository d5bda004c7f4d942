"""Issue 11 items 1, 2 and log hygiene: honest peers stay served while attackers hold slots.

Real sockets on loopback. Attackers use their own /24s (127.0.1.0/24 ...), the honest peers
dial from 127.0.0.1 (the kernel's source for 127.0.0.0/8), so per-prefix budgets apply as
they would on the internet. Floods are bounded in connections and in time; every wait is on a
condition, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import structlog

from node.core.errors import LimitExceeded, TransportError
from node.core.identity import PeerId
from node.transport.connections import ConnectionManager
from node.transport.messages import CloseCode
from tests.hardening.raw import IdleFlood, Sybil
from tests.harness import Running, StartNode, wait_for


def _pending(conns: ConnectionManager) -> int:
    value = conns.statistics()["pending_handshakes"]
    assert isinstance(value, int)
    return value


async def _honest_dials(honest: Running, victim: Running, count: int) -> int:
    """Dial ``count`` times; a dial is through when the victim lists the honest peer."""
    through = 0
    for _ in range(count):
        try:
            link = await honest.node.connections.dial(victim.addr)
        except TransportError:
            continue
        with contextlib.suppress(TimeoutError):
            # Decided either way: listed by the victim, or closed by it.
            await wait_for(lambda link=link: honest.node.peer_id in victim.peers()
                           or link.closed.is_set(), 5.0)
        if honest.node.peer_id in victim.peers() and not link.closed.is_set():
            through += 1
        await honest.node.disconnect(victim.node.peer_id)
        await wait_for(lambda: honest.node.peer_id not in victim.peers(), 5.0)
    return through


@pytest.mark.parametrize("sources", [
    # 8 addresses in 8 prefixes, 8 connections each: exactly the old 64-slot limit.
    [f"127.0.{i}.1" for i in range(1, 9)],
    # 16 addresses in one /24.
    [f"127.0.20.{i}" for i in range(1, 17)],
], ids=["8-prefixes", "one-prefix"])
async def test_handshake_slot_lockout(start_node: StartNode, sources: list[str]) -> None:
    victim = await start_node(host="127.0.0.5")
    honest = await start_node(host="127.0.0.6")
    outbound_target = await start_node(host="127.0.0.7")
    conns = victim.node.connections
    host, port = victim.addr.host_port()
    flood = IdleFlood(host, port, sources, per_source=8, max_connects=20_000)
    flood.start()
    try:
        # The flood holds every pending slot it can (the old code: all 64).
        cap = min(64, 8 * len(sources), 16 * len({s.rsplit(".", 1)[0] for s in sources}))
        await wait_for(lambda: _pending(conns) >= cap, 15.0)
        through = await _honest_dials(honest, victim, 12)
        assert through == 12, conns.statistics()
        # And the victim's own dials are not starved by inbound handshakes.
        await victim.node.dial(outbound_target.addr)
        assert outbound_target.node.peer_id in victim.peers()
    finally:
        await flood.stop()


async def test_refused_connections_make_one_log_line_per_window(start_node: StartNode) -> None:
    victim = await start_node(host="127.0.0.8")
    conns = victim.node.connections
    host, port = victim.addr.host_port()
    # One address, far over its per-address budget: almost every connect is refused.
    flood = IdleFlood(host, port, ["127.0.30.1"], per_source=40, max_connects=3000)
    with structlog.testing.capture_logs() as logs:
        loop = asyncio.get_running_loop()
        started = loop.time()
        flood.start()
        try:
            await wait_for(lambda: sum(conns.refused.values()) >= 500, 20.0)
        finally:
            await flood.stop()
        elapsed = loop.time() - started
        conns.refusal_log.flush()
    refused_lines = [e for e in logs if e["event"] == "inbound_refused"]
    windows = int(elapsed // conns.refusal_log.window_s) + 1
    assert 1 <= len(refused_lines) <= windows + 1, (len(refused_lines), elapsed)
    assert sum(e["count"] for e in refused_lines) == sum(conns.refused.values())
    assert "refused" in refused_lines[-1]["summary"] and "sources" in refused_lines[-1]["summary"]
    # No other per-connection line either.
    assert len(logs) < 50, {e["event"] for e in logs}


async def _sybils(host: str, port: int, count: int, prefixes: int) -> list[Sybil]:
    sybils = [Sybil() for _ in range(count)]
    for i, sybil in enumerate(sybils):
        sybil.task = asyncio.create_task(
            sybil.run(host, port, f"127.0.{40 + i % prefixes}.{1 + i % 7}"))
        # Decided (admitted, refused or reset) before the next one: bounded and orderly.
        await wait_for(lambda s=sybil: s.admitted.is_set() or s.closed.is_set(), 10.0)
    return sybils


async def test_sybil_slot_hold(start_node: StartNode) -> None:
    victim = await start_node(host="127.0.0.9")
    conns = victim.node.connections
    honest = await start_node(host="127.0.0.10")
    extra = await start_node(host="127.0.0.16")
    host, port = victim.addr.host_port()
    sybils = await _sybils(host, port, 100, prefixes=4)
    try:
        # Every slot an attacker can hold is held by a Sybil now.
        assert len([s for s in sybils if not s.closed.is_set()]) >= 40
        through = await _honest_dials(honest, victim, 10)
        assert through == 10, conns.statistics()
        # The victim still has room for its own dials.
        await victim.node.dial(extra.addr)
        assert extra.node.peer_id in victim.peers()
    finally:
        for sybil in sybils:
            sybil.close()


async def test_trim_never_takes_protected_or_dialled_peers(start_node: StartNode) -> None:
    victim = await start_node(host="127.0.0.9")
    conns = victim.node.connections
    friend = await start_node(host="127.0.0.11")  # protected, e.g. a channel co-member
    dialled = [await start_node(host=f"127.0.0.{12 + i}") for i in range(3)]
    victim.node.protect(lambda peer: peer == friend.node.peer_id)
    await friend.node.dial(victim.addr)
    for node in dialled:
        await victim.node.dial(node.addr)
    host, port = victim.addr.host_port()
    sybils = await _sybils(host, port, 100, prefixes=4)
    try:
        assert conns.evicted["inbound_trimmed"] >= 40
        peers = victim.peers()
        assert friend.node.peer_id in peers
        assert {n.node.peer_id for n in dialled} <= peers
        # Trimmed Sybils were told why.
        trimmed = [s for s in sybils if s.closed.is_set() and s.admitted.is_set()]
        assert trimmed and all(s.close_code == CloseCode.LIMIT_REACHED for s in trimmed)
    finally:
        for sybil in sybils:
            sybil.close()


async def test_active_inbound_links_are_not_displaced_by_newcomers(
    start_node: StartNode,
) -> None:
    # A small node: 4 inbound slots. Active peers (they sent Data) keep theirs; an unknown
    # newcomer is refused rather than displacing them; a protected newcomer is admitted.
    victim = await start_node(host="127.0.0.17", max_connections=5, min_connections=1)
    got: list[PeerId] = []
    victim.node.register_protocol("test/1", lambda peer, data: got.append(peer))
    actives = [await start_node(host=f"127.0.0.{18 + i}") for i in range(4)]
    for node in actives:
        await node.node.dial(victim.addr)
        await node.node.send(victim.node.peer_id, "test/1", b"hello")
    await wait_for(lambda: len(got) == 4)
    host, port = victim.addr.host_port()
    newcomer = Sybil()
    task = asyncio.create_task(newcomer.run(host, port, "127.0.50.1"))
    await wait_for(lambda: newcomer.closed.is_set(), 10.0)
    assert {n.node.peer_id for n in actives} <= victim.peers()
    assert newcomer.peer_id not in victim.peers()
    vip = Sybil()
    victim.node.protect(lambda peer: peer == vip.peer_id)
    task2 = asyncio.create_task(vip.run(host, port, "127.0.50.2"))
    await wait_for(lambda: vip.peer_id in victim.peers(), 10.0)
    assert len(victim.peers()) == 4
    vip.close()
    await asyncio.gather(task, task2, return_exceptions=True)


async def test_identities_coming_and_going_are_summed_up_not_logged_each(
    start_node: StartNode,
) -> None:
    victim = await start_node(host="127.0.0.24")
    host, port = victim.addr.host_port()
    with structlog.testing.capture_logs() as logs:
        for i in range(200):
            sybil = Sybil()
            task = asyncio.create_task(sybil.run(host, port, f"127.0.{90 + i % 4}.1"))
            await wait_for(lambda s=sybil: s.peer_id in victim.peers(), 10.0)
            sybil.close()
            await task
            await wait_for(lambda s=sybil: s.peer_id not in victim.peers(), 10.0)
        victim.node.connections.inbound_log.flush()
    loud = [e for e in logs if e["log_level"] in ("info", "warning", "error")]
    assert len(loud) < 20, sorted({e["event"] for e in loud})
    # One summary per 10 s window (however long this took), adding up to every link.
    summaries = [e for e in loud if e["event"] == "inbound_links"]
    assert sum(e["count"] for e in summaries) == 400
    assert sum(e["reasons"].get("opened", 0) for e in summaries) == 200


async def test_channel_co_members_survive_the_trim(start_node: StartNode) -> None:
    # Room for 4 links, 3 of them inbound. The victim has two inbound links: a channel
    # co-member (active) and an idle stranger; then it dials four peers. Each dial past the
    # limit trims one unprotected inbound link: the stranger goes, the co-member never does,
    # so the last dial finds nothing it may evict.
    victim = await start_node(host="127.0.0.25", max_connections=4, min_connections=0)
    member = await start_node(host="127.0.0.26", auto_accept_invites=True)
    await member.node.dial(victim.addr)
    await wait_for(lambda: member.node.peer_id in victim.peers())
    assert not victim.node.is_protected(member.node.peer_id)  # not a routing-table peer
    channels = victim.node.channels
    cid = bytes.fromhex((await channels.create("team")).channel_id)
    # The invitee's envelope key as its DHT record would give it (no DHT contact here, so
    # that only co-membership can protect the member).
    key = member.node.keys.envelope_public
    await channels.call(lambda now: channels.manager.invite(cid, member.node.peer_id, key, now))
    await wait_for(lambda: len(channels.view(cid).members) == 2, 15.0)
    assert channels.is_co_member(member.node.peer_id)
    assert victim.node.is_protected(member.node.peer_id)

    stranger = Sybil()
    host, port = victim.addr.host_port()
    stranger.task = asyncio.create_task(stranger.run(host, port, "127.0.60.1"))
    await wait_for(lambda: stranger.peer_id in victim.peers())
    dialled = [await start_node(host=f"127.0.0.{27 + i}") for i in range(4)]
    try:
        for node in dialled[:3]:
            await victim.node.dial(node.addr)
        await wait_for(lambda: stranger.closed.is_set())
        assert stranger.close_code == CloseCode.LIMIT_REACHED
        with pytest.raises(LimitExceeded):
            await victim.node.dial(dialled[3].addr)
        assert member.node.peer_id in victim.peers()
        assert victim.node.connections.evicted["inbound_trimmed"] == 1
        # Removed from the channel: no longer protected.
        await channels.remove(cid, member.node.peer_id)
        await wait_for(lambda: len(channels.view(cid).members) == 1, 15.0)
        assert not channels.is_co_member(member.node.peer_id)
        assert not victim.node.is_protected(member.node.peer_id)
    finally:
        stranger.close()
        await stranger.task
