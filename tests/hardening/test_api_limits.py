"""Issue 11 items 4-6: the admin API under attack (real sockets on 127.0.0.x).

Idle, slow-header and slow-body clients are closed; a connection cap keeps /healthz served
however many idle clients there are (and a node with 1,024 descriptors survives 1,100 of them
without a log storm); deep JSON and aiohttp's own errors are problem+json 400s; the token
never reaches the log, not even through a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from api.limits import ApiLimits
from api.server import ApiServer, create_app
from node.core.multiaddr import Multiaddr
from node.logs import configure_logging
from tests.api.conftest import FakeNode
from tests.harness import wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hardening-test-token-0123456789abcdef"
AUTH = f"Bearer {TOKEN}"
FAST = ApiLimits(max_connections=40, header_timeout_s=1.0, body_timeout_s=1.0)


@contextlib.asynccontextmanager
async def serving(limits: ApiLimits, host: str = "127.0.0.40",
                  access_log: bool = False) -> AsyncIterator[ApiServer]:
    app = create_app(FakeNode(), TOKEN, CollectorRegistry(), limits=limits)
    server = ApiServer(app, Multiaddr.parse(f"/ip4/{host}/tcp/0", allow_port_zero=True),
                       access_log=access_log)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _connect(server: ApiServer, source: str) -> tuple[asyncio.StreamReader,
                                                            asyncio.StreamWriter]:
    assert server.address is not None
    host, port = server.address.host_port()
    return await asyncio.open_connection(host, port, local_addr=(source, 0))


async def _answer(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    async with asyncio.timeout(timeout):
        return await reader.read()


def _status_and_type(raw: bytes) -> tuple[int, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    ctype = next((h.split(":", 1)[1].split(";")[0].strip() for h in head[1:]
                  if h.lower().startswith("content-type:")), "")
    return status, ctype


async def _drip(writer: asyncio.StreamWriter, data: bytes, stop: asyncio.Event) -> None:
    """Send ``data`` one byte every 0.2 s (a slow client), until closed or stopped."""
    with contextlib.suppress(OSError):
        for i in range(len(data)):
            if stop.is_set() or writer.is_closing():
                return
            writer.write(data[i : i + 1])
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await stop.wait()


async def test_idle_slow_header_and_slow_body_clients_are_closed() -> None:
    async with serving(FAST) as server:
        stop = asyncio.Event()
        idle = [await _connect(server, f"127.0.41.{1 + i % 8}") for i in range(10)]
        slow_header = [await _connect(server, f"127.0.42.{1 + i % 8}") for i in range(10)]
        slow_body = [await _connect(server, f"127.0.43.{1 + i % 8}") for i in range(10)]
        drips = []
        for _, writer in slow_header:
            drips.append(asyncio.create_task(
                _drip(writer, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200, stop)))
        body_head = (f"POST /v1/peers HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n").encode()
        for _, writer in slow_body:
            writer.write(body_head)
            drips.append(asyncio.create_task(_drip(writer, b"{" + b" " * 199, stop)))
        try:
            idle_answers = await asyncio.gather(*(_answer(r) for r, _ in idle))
            header_answers = await asyncio.gather(*(_answer(r) for r, _ in slow_header))
            body_answers = await asyncio.gather(*(_answer(r) for r, _ in slow_body))
        finally:
            stop.set()
            await asyncio.gather(*drips)
            for _, writer in idle + slow_header + slow_body:
                writer.close()
        assert idle_answers == [b""] * 10  # closed without a word
        for raw in header_answers + body_answers:
            assert _status_and_type(raw) == (408, "application/problem+json"), raw[:200]
        assert server.guard is not None
        await wait_for(lambda: server.guard is not None and server.guard.open_connections == 0)


async def test_the_connection_cap_keeps_healthz_served() -> None:
    limits = ApiLimits(max_connections=40, header_timeout_s=60.0)
    async with serving(limits, host="127.0.0.44") as server:
        idle = []
        try:
            for i in range(200):
                idle.append(await _connect(server, f"127.0.45.{1 + i % 50}"))
            assert server.guard is not None
            await wait_for(lambda: server.guard is not None
                           and server.guard.counters["evicted_idle"] >= 150)
            assert server.guard.open_connections <= limits.max_connections
            for path, headers in (("/healthz", ""), ("/v1/node", f"Authorization: {AUTH}\r\n")):
                reader, writer = await _connect(server, "127.0.0.46")
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}"
                             "Connection: close\r\n\r\n".encode())
                raw = await _answer(reader)
                writer.close()
                assert _status_and_type(raw)[0] == 200, raw[:200]
        finally:
            for _, writer in idle:
                writer.close()


@pytest.mark.parametrize("request_bytes", [
    b"GET /v1/\xff\xfe\xfd HTTP/1.1\r\nHost: x\r\n\r\n",  # a raw non-ASCII path
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",  # oversized
    b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
    b"NOT-HTTP\r\n\r\n",
], ids=["non-ascii-path", "oversized-header", "too-many-headers", "garbage"])
async def test_aiohttp_own_errors_are_problem_json(request_bytes: bytes) -> None:
    async with serving(FAST, host="127.0.0.47") as server:
        reader, writer = await _connect(server, "127.0.0.48")
        writer.write(request_bytes)
        raw = await _answer(reader)
        writer.close()
        status, ctype = _status_and_type(raw)
        assert 400 <= status < 500 and ctype == "application/problem+json", raw[:300]
        body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        assert body["status"] == status and body["title"]


@pytest.mark.parametrize("body", [
    b"[" * 5000 + b"]" * 5000,
    b'{"addr": ' * 1500 + b"1" + b"}" * 1500,
    b'{"addr": ' + b"1" * 5000 + b"}",  # beyond Python's int digit limit
], ids=["deep-array", "deep-object", "huge-int"])
async def test_deep_or_odd_json_is_a_400_problem(body: bytes) -> None:
    async with serving(FAST, host="127.0.0.49") as server:
        reader, writer = await _connect(server, "127.0.0.50")
        writer.write(b"POST /v1/peers HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH.encode()
                     + b"\r\nConnection: close\r\nContent-Type: application/json\r\n"
                     + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        raw = await _answer(reader)
        writer.close()
        assert _status_and_type(raw) == (400, "application/problem+json"), raw[:300]


async def test_the_token_never_reaches_the_log() -> None:
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    try:
        # With the access log on: the request's line is how we know it was handled.
        async with serving(FAST, host="127.0.0.51", access_log=True) as server:
            # A valid token, a body cut short.
            _, writer = await _connect(server, "127.0.0.52")
            writer.write(f"POST /v1/peers HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                         '{"addr": "/ip4/1'.encode())
            await writer.drain()
            writer.close()
            await wait_for(lambda: "/v1/peers" in out.getvalue(), 10.0)
            # And a traceback whose frames and message hold it.
            def fail(header: str) -> None:
                raise RuntimeError(f"failed with {header}")

            try:
                fail(AUTH)
            except RuntimeError:
                structlog.get_logger("test").exception("boom", token_len=len(TOKEN))
        configure_logging("console", "debug", stream=out)
        try:
            fail(f"x{TOKEN}x")
        except RuntimeError:
            structlog.get_logger("test").exception("boom")
    finally:
        configure_logging("console", "info")
    text = out.getvalue()
    assert ("boom" in text and "Traceback" in text) or '"exception"' in text
    assert TOKEN not in text
    assert "handler_failed" not in text


def _spawn(data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "node", "run", "--init", "--data-dir", str(data_dir),
         "--listen", "/ip4/127.0.0.53/tcp/0", "--api", "/ip4/127.0.0.53/tcp/0",
         "--log-format", "json"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        preexec_fn=limit,
    )


def _healthz(port: int) -> int:
    with socket.create_connection(("127.0.0.53", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return int(s.recv(64).split()[1])


def test_1100_idle_clients_on_a_1024_descriptor_node(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    proc = _spawn(tmp_path / "d", log)
    socks: list[socket.socket] = []
    try:
        api = tmp_path / "d" / "api"
        deadline = time.monotonic() + 30
        while not api.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert api.exists(), log.read_text()[-2000:]
        port = Multiaddr.parse(api.read_text().strip()).port
        for i in range(1100):
            s = socket.socket()
            s.bind((f"127.0.54.{1 + i % 200}", 0))
            s.settimeout(5)
            with contextlib.suppress(OSError):
                s.connect(("127.0.0.53", port))
                socks.append(s)
                continue
            s.close()
        assert len(socks) >= 1000
        assert _healthz(port) == 200  # served during the flood
        statuses = [_healthz(port) for _ in range(5)]
        assert statuses == [200] * 5
    finally:
        for s in socks:
            s.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    lines = log.read_text(errors="replace").splitlines()
    assert not any("Too many open files" in line for line in lines)
    assert len(lines) < 60, lines[-5:]
    assert web  # the API is aiohttp's
