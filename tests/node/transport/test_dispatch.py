"""The dispatcher: bounded per-protocol queues, consumers in a TaskGroup, errors counted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from node.core.errors import DecodeError
from node.core.identity import Identity
from node.transport.dispatch import Dispatcher
from tests.harness import StartNode, wait_for

PEER = Identity.from_seed(b"\x01" * 32).peer_id


class _Done(Exception):
    """Raised to leave a TaskGroup once a test's body is done (cancels the consumers)."""


async def _run(d: Dispatcher, body: Callable[[asyncio.TaskGroup], Awaitable[None]]) -> None:
    try:
        async with asyncio.TaskGroup() as tg:
            d.start(tg)
            await body(tg)
            raise _Done
    except* _Done:
        pass
    d.stop()


async def test_slow_protocol_does_not_hold_up_another() -> None:
    d = Dispatcher()
    release = asyncio.Event()
    fast: list[bytes] = []

    async def slow(peer: object, payload: bytes) -> None:
        await release.wait()

    d.register("slow", slow, queue_size=2)
    d.register("fast", lambda peer, payload: fast.append(payload))

    async def body(tg: asyncio.TaskGroup) -> None:
        assert d.deliver(PEER, "slow", b"1") is None  # taken by the consumer, which blocks
        await asyncio.sleep(0)
        assert d.deliver(PEER, "slow", b"2") is None
        assert d.deliver(PEER, "slow", b"3") is None
        full = d.deliver(PEER, "slow", b"4")  # queue of 2 is full: caller must wait
        assert full is not None
        waiter = tg.create_task(_await(full))
        assert d.deliver(PEER, "fast", b"x") is None
        await wait_for(lambda: fast == [b"x"])
        assert not waiter.done()
        release.set()
        await wait_for(waiter.done)
        await wait_for(lambda: d.queue_depths()["slow"] == 0)

    await _run(d, body)


async def _await(aw: object) -> None:
    await aw  # type: ignore[misc]


async def test_handler_errors_are_counted_and_the_consumer_lives_on() -> None:
    d = Dispatcher()
    seen: list[bytes] = []

    def handler(peer: object, payload: bytes) -> None:
        if payload == b"bad":
            raise DecodeError("peer sent junk")
        if payload == b"bug":
            raise RuntimeError("our bug")
        seen.append(payload)

    d.register("p", handler)
    d.deliver(PEER, "q", b"nobody listens")

    async def body(tg: asyncio.TaskGroup) -> None:
        for payload in (b"bad", b"bug", b"ok"):
            d.deliver(PEER, "p", payload)
        await wait_for(lambda: seen == [b"ok"])

    await _run(d, body)
    stats = d.statistics()
    assert stats["bad_payload"] == {"p": 1} and stats["handler_failed"] == {"p": 1}
    assert stats["unknown_protocol_frames"] == 1 and stats["received"] == {"p": 3}


def test_a_protocol_has_one_handler() -> None:
    d = Dispatcher()
    d.register("p", lambda peer, payload: None)
    with pytest.raises(ValueError):
        d.register("p", lambda peer, payload: None)


async def test_unregister_stops_the_consumer_and_frees_the_name() -> None:
    d = Dispatcher()
    old: list[bytes] = []
    new: list[bytes] = []
    d.register("p", lambda peer, payload: old.append(payload))

    async def body(tg: asyncio.TaskGroup) -> None:
        d.deliver(PEER, "p", b"1")
        await wait_for(lambda: old == [b"1"])
        d.unregister("p")
        assert d.deliver(PEER, "p", b"2") is None and d.unknown_protocol == 1
        d.register("p", lambda peer, payload: new.append(payload))
        d.deliver(PEER, "p", b"3")
        await wait_for(lambda: new == [b"3"])

    await _run(d, body)
    assert old == [b"1"]
    d.unregister("never registered")  # nothing to do


async def test_a_failing_handler_does_not_close_the_link(start_node: StartNode) -> None:
    a = await start_node()
    b = await start_node()
    got: list[bytes] = []

    def handler(peer: object, payload: bytes) -> None:
        if payload.startswith(b"bad"):
            raise DecodeError("rejected")
        if payload.startswith(b"bug"):
            raise RuntimeError("a bug")
        got.append(payload)

    b.node.register_protocol("t", handler)
    await a.node.dial(b.addr)
    for payload in (b"bad", b"bug", b"good"):
        await a.node.send(b.node.peer_id, "t", payload)
    await wait_for(lambda: got == [b"good"])
    assert a.node.peer_id in b.peers() and b.node.peer_id in a.peers()
    stats = b.node.dispatcher.statistics()
    assert stats["bad_payload"] == {"t": 1} and stats["handler_failed"] == {"t": 1}
