"""Transport benchmark over real loopback TCP: handshakes, bulk throughput, small-frame rate.

Both ends run in this one process and one event loop (so every figure pays for the sender's
*and* the receiver's CPU on a single core), through the real stack: ``ConnectionManager.dial``
(TCP connect, Noise XX, Ed25519 identity check, admission) and ``Link.send`` -> write loop ->
``Session`` (CBOR Data message, ChaChaPoly, framing) -> socket -> ``Session.receive_data`` ->
the manager's data callback. The plain-TCP rows use the same asyncio stream API, the same
chunk size and the same read size, without any protocol or crypto.

    .venv/bin/python bench/transport.py [--seconds 3] [--handshakes 300] [--profile]

Targets (DESIGN.md section 8): handshake p50 <= 3 ms; bulk >= 50% of plain TCP and >= 300 MB/s;
>= 50,000 1 KiB frames/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import machine_line, percentile, quiet_logging, table

from node.core.identity import Identity
from node.core.keys import NodeKeys
from node.core.multiaddr import Multiaddr
from node.transport.connections import ConnectionManager, TransportSettings
from node.transport.link import Link
from node.transport.messages import MAX_DATA_PAYLOAD, CloseCode
from node.transport.session import Authenticated, Session

PROTOCOL = "bench"
SMALL = 1024
_READ_SIZE = 1 << 17  # what node.transport.link reads per call, so plain TCP reads the same way
_LISTEN = Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True)


@dataclass
class Counter:
    """What a receiver has seen; ``done`` fires once ``bytes`` reaches ``expect``."""

    bytes: int = 0
    messages: int = 0
    last: float = 0.0
    expect: int | None = None
    done: asyncio.Event | None = None

    def add(self, n: int) -> None:
        self.bytes += n
        self.messages += 1
        self.last = time.perf_counter()
        if self.expect is not None and self.bytes >= self.expect and self.done is not None:
            self.done.set()

    async def wait_for(self, total: int, timeout: float) -> None:
        self.expect = total
        self.done = asyncio.Event()
        if self.bytes >= total:
            return
        async with asyncio.timeout(timeout):
            await self.done.wait()


@dataclass(frozen=True)
class StreamResult:
    """Payload bytes and messages delivered in a timed window, by wall clock and CPU time."""

    bytes: int
    messages: int
    wall_s: float
    cpu_s: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.wall_s / 1e6

    @property
    def mb_per_cpu_s(self) -> float:
        return self.bytes / self.cpu_s / 1e6

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.wall_s

    @property
    def msgs_per_cpu_s(self) -> float:
        return self.messages / self.cpu_s


# -- secure links through the node's ConnectionManager ---------------------------------------


class Pair:
    """A listening manager ``server`` and a dialling manager ``client`` in one TaskGroup."""

    def __init__(self, tg: asyncio.TaskGroup, settings: TransportSettings) -> None:
        self.received = Counter()
        self.server_keys = NodeKeys.derive(Identity.generate())
        self.client_keys = NodeKeys.derive(Identity.generate())
        self.server = ConnectionManager(
            self.server_keys, settings, tg, deliver=self._on_data
        )
        self.client = ConnectionManager(
            self.client_keys, settings, tg, deliver=lambda link, proto, payload: None
        )
        self.addr: Multiaddr | None = None

    def _on_data(self, link: Link, protocol: str, payload: bytes) -> None:
        self.received.add(len(payload))

    async def start(self) -> Multiaddr:
        bound = await self.server.listen(_LISTEN)
        self.addr = bound.with_peer_id(self.server_keys.identity.peer_id)
        return self.addr

    async def dial(self) -> Link:
        assert self.addr is not None
        return await self.client.dial(self.addr)

    async def hang_up(self) -> None:
        server_peer = self.server_keys.identity.peer_id
        client_peer = self.client_keys.identity.peer_id
        await self.client.disconnect(server_peer, CloseCode.NORMAL, "bench")
        async with asyncio.timeout(5):
            while self.server.get(client_peer) is not None:
                await asyncio.sleep(0.001)

    async def close(self) -> None:
        await self.client.close()
        await self.server.close()


def _settings() -> TransportSettings:
    # Defaults except for the handshake flood guards: one IP dials hundreds of times in a row.
    return TransportSettings(max_pending_per_ip=1024, max_pending_handshakes=1024)


async def bench_handshakes(n: int, warmup: int) -> list[float]:
    """Milliseconds per ``ConnectionManager.dial`` (connect + Noise XX + identity + admit)."""
    times: list[float] = []
    async with asyncio.TaskGroup() as tg:
        pair = Pair(tg, _settings())
        await pair.start()
        for i in range(warmup + n):
            t0 = time.perf_counter()
            await pair.dial()
            elapsed = time.perf_counter() - t0
            if i >= warmup:
                times.append(elapsed * 1000.0)
            await pair.hang_up()
        await pair.close()
    return times


def handshake_cpu_ms(n: int) -> float:
    """Median CPU cost of one XX handshake with both Sessions in memory (no sockets)."""
    a = NodeKeys.derive(Identity.generate())
    b = NodeKeys.derive(Identity.generate())
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        ini = Session(a, initiator=True, now=0.0, expected_peer=b.identity.peer_id)
        res = Session(b, initiator=False, now=0.0)
        ini.start()
        res.receive_data(ini.data_to_send(), 0.0)  # message 1 -> 2
        events = ini.receive_data(res.data_to_send(), 0.0)  # message 2 -> 3
        events += res.receive_data(ini.data_to_send(), 0.0)
        out.append((time.perf_counter() - t0) * 1000.0)
        if sum(isinstance(e, Authenticated) for e in events) != 2:
            raise RuntimeError("in-memory handshake did not authenticate both sides")
    return statistics.median(out)


async def secure_stream(seconds: float, size: int) -> StreamResult:
    """Data messages of ``size`` bytes sent on one link for ``seconds``, until all arrived."""
    payload = bytes(size)
    async with asyncio.TaskGroup() as tg:
        pair = Pair(tg, _settings())
        await pair.start()
        link = await pair.dial()
        # Warm up the path (and the peer's read buffers) before timing.
        for _ in range(64):
            await link.send(PROTOCOL, payload)
        await pair.received.wait_for(64 * size, 30)
        base_bytes, base_msgs = pair.received.bytes, pair.received.messages
        sent = 0
        c0 = time.process_time()
        t0 = time.perf_counter()
        end = t0 + seconds
        send = link.send
        while time.perf_counter() < end:
            # Queue in bursts; each `send` only blocks when the per-peer queue is full.
            for _ in range(64):
                await send(PROTOCOL, payload)
            sent += 64
        await pair.received.wait_for(base_bytes + sent * size, 60)
        cpu = time.process_time() - c0
        elapsed = pair.received.last - t0
        got = pair.received.bytes - base_bytes
        msgs = pair.received.messages - base_msgs
        await pair.close()
    return StreamResult(got, msgs, elapsed, cpu)


# -- plain asyncio TCP with the same stream API ----------------------------------------------


async def plain_stream(seconds: float, size: int) -> StreamResult:
    """``size``-byte chunks written with write() + drain() for ``seconds``, no crypto."""
    received = Counter()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(_READ_SIZE):
            received.add(len(data))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = bytes(size)
    for _ in range(64):
        writer.write(chunk)
        await writer.drain()
    await received.wait_for(64 * size, 30)
    base = received.bytes
    sent = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for _ in range(64):
            writer.write(chunk)
            await writer.drain()
        sent += 64
    await received.wait_for(base + sent * size, 60)
    cpu = time.process_time() - c0
    elapsed = received.last - t0
    got = received.bytes - base
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return StreamResult(got, got // size, elapsed, cpu)


# -- reporting ---------------------------------------------------------------------------------


def _profiled(
    enabled: bool, label: str, make: Callable[[], Coroutine[Any, Any, StreamResult]]
) -> StreamResult:
    if not enabled:
        return asyncio.run(make())
    prof = cProfile.Profile()
    prof.enable()
    result = asyncio.run(make())
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
    print(f"\n--- cProfile, {label} (sorted by own time) ---")
    print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput phase")
    parser.add_argument("--handshakes", type=int, default=300, help="timed handshakes")
    parser.add_argument("--warmup", type=int, default=20, help="untimed handshakes first")
    parser.add_argument("--profile", action="store_true", help="cProfile the stream phases")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    quiet_logging()
    print(machine_line())
    print("One process, one event loop: sender and receiver share a core in every row.\n")

    hs = sorted(asyncio.run(bench_handshakes(args.handshakes, args.warmup)))
    hs_cpu = handshake_cpu_ms(100)
    bulk_size = MAX_DATA_PAYLOAD
    plain_bulk = asyncio.run(plain_stream(args.seconds, bulk_size))
    secure_bulk = _profiled(
        args.profile, "bulk", lambda: secure_stream(args.seconds, bulk_size)
    )
    plain_small = asyncio.run(plain_stream(args.seconds, SMALL))
    secure_small = _profiled(args.profile, "1 KiB", lambda: secure_stream(args.seconds, SMALL))

    p50, p99 = percentile(hs, 50), percentile(hs, 99)
    ratio = secure_bulk.mb_per_s / plain_bulk.mb_per_s
    cpu_ratio = secure_bulk.mb_per_cpu_s / plain_bulk.mb_per_cpu_s
    small_rate = secure_small.msgs_per_s

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISS"

    rows = [
        ["handshake p50 (dial: TCP + Noise XX + identity)", f"{p50:.2f} ms", "", "<= 3 ms",
         verdict(p50 <= 3)],
        ["handshake p99", f"{p99:.2f} ms", "", "", ""],
        ["handshake mean / max", f"{statistics.fmean(hs):.2f} / {hs[-1]:.2f} ms", "", "", ""],
        ["handshake CPU, both sides in memory (median)", f"{hs_cpu:.2f} ms", "", "", ""],
        [f"bulk plain TCP, {bulk_size} B chunks", f"{plain_bulk.mb_per_s:.0f} MB/s",
         f"{plain_bulk.mb_per_cpu_s:.0f} MB/s", "", ""],
        [f"bulk secure link, {bulk_size} B Data", f"{secure_bulk.mb_per_s:.0f} MB/s",
         f"{secure_bulk.mb_per_cpu_s:.0f} MB/s", ">= 300 MB/s",
         verdict(secure_bulk.mb_per_s >= 300)],
        ["bulk secure / plain", f"{ratio:.0%}", f"{cpu_ratio:.0%}", ">= 50%",
         verdict(ratio >= 0.5)],
        ["1 KiB plain TCP chunks", f"{plain_small.msgs_per_s:,.0f}/s",
         f"{plain_small.msgs_per_cpu_s:,.0f}/s", "", ""],
        ["1 KiB Data messages", f"{small_rate:,.0f}/s", f"{secure_small.msgs_per_cpu_s:,.0f}/s",
         ">= 50,000/s", verdict(small_rate >= 50_000)],
    ]
    print(f"{len(hs)} handshakes (+{args.warmup} warm-up), {args.seconds:g} s per stream phase\n")
    print(table(["measure", "wall clock", "per CPU-second", "target", ""], rows))
    print("\n'per CPU-second': the same delivery divided by this process's CPU time, which is")
    print("less sensitive to other load on a shared machine (both ends are in this process).")
    if args.json:
        print(json.dumps({
            "handshakes": len(hs), "handshake_p50_ms": round(p50, 3),
            "handshake_p99_ms": round(p99, 3), "handshake_cpu_ms": round(hs_cpu, 3),
            "bulk_plain_mbps": round(plain_bulk.mb_per_s, 1),
            "bulk_secure_mbps": round(secure_bulk.mb_per_s, 1),
            "bulk_plain_mb_per_cpu_s": round(plain_bulk.mb_per_cpu_s, 1),
            "bulk_secure_mb_per_cpu_s": round(secure_bulk.mb_per_cpu_s, 1),
            "bulk_ratio": round(ratio, 3), "bulk_ratio_cpu": round(cpu_ratio, 3),
            "small_msgs_per_s": round(small_rate),
            "small_msgs_per_cpu_s": round(secure_small.msgs_per_cpu_s),
            "small_plain_chunks_per_s": round(plain_small.msgs_per_s),
        }))


if __name__ == "__main__":
    main()
