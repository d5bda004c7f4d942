"""Issue 11's attacks against a real node process, with what an honest peer still gets.

    python -m bench.attacks [--victim-root DIR] [--only NAME ...] [--json]

The victim is ``spacepanda run`` started from ``--victim-root`` (default: this tree), so the
same attacker code measures the code before and after a change (docs/security.md). Everything
runs on 127.0.0.0/8: the victim on 127.0.0.200, attackers from their own /24s, the honest
peer from 127.0.0.1. Floods are bounded in count and time. Reported per attack: the honest
peer's dials that got through, DHT lookups answered, /healthz latency during the attack, and
the victim's RSS and open descriptors before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dht.service import DhtService
from node.core.identity import Identity
from node.core.multiaddr import Multiaddr
from tests.hardening.raw import IdleFlood, Sybil

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.200"


class Victim:
    def __init__(self, root: Path, work: Path, nofile: int | None = None) -> None:
        self.root, self.work, self.nofile = root, work, nofile
        self.data = work / "data"
        self.log = work / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api_port = 0
        self.port = 0
        self.peer_id = ""

    def start(self) -> None:
        def limit() -> None:
            if self.nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

        env = {**os.environ, "PYTHONPATH": str(self.root), "SPACEPANDA_DHT_SUBNET_PREFIX": "32"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node", "run", "--init", "--data-dir", str(self.data),
             "--listen", f"/ip4/{HOST}/tcp/0", "--api", f"/ip4/{HOST}/tcp/0",
             "--log-format", "json"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=self.root,
            preexec_fn=limit,
        )
        api = self.data / "api"
        deadline = time.monotonic() + 30
        while not api.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("victim did not start: " + self.log.read_text()[-2000:])
            time.sleep(0.1)
        self.api_port = Multiaddr.parse(api.read_text().strip()).port
        node = json.loads(self.http("GET", "/v1/node")[1])
        addr = Multiaddr.parse(node["addrs"][0])
        self.port, self.peer_id = addr.port, node["peer_id"]

    @property
    def token(self) -> str:
        return (self.data / "api.token").read_text().strip()

    def http(self, method: str, path: str, body: bytes = b"", timeout: float = 10) -> tuple[
            int, str]:
        import http.client

        conn = http.client.HTTPConnection(HOST, self.api_port, timeout=timeout)
        try:
            conn.request(method, path, body=body or None,
                         headers={"Authorization": f"Bearer {self.token}",
                                  "Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def fds(self) -> int:
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def cpu_s(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_lines(self) -> int:
        return len(self.log.read_bytes().splitlines())

    def address_book_rows(self) -> int:
        with contextlib.closing(sqlite3.connect(f"file:{self.data / 'node.db'}?mode=ro",
                                                uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM peers").fetchone()[0])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def _healthz_ms(v: Victim, n: int = 20) -> dict[str, float | int]:
    """/healthz latency from a fresh connection each time (what a probe sees)."""
    times: list[float] = []
    failed = 0
    for _ in range(n):
        t = time.perf_counter()
        try:
            async with asyncio.timeout(5):
                r, w = await asyncio.open_connection(HOST, v.api_port)
                w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                head = await r.read(12)
                w.close()
            if b" 200" not in head:
                failed += 1
                continue
            times.append((time.perf_counter() - t) * 1000)
        except (OSError, TimeoutError):
            failed += 1
        await asyncio.sleep(0.05)
    times.sort()
    return {"ok": len(times), "failed": failed,
            "p50_ms": round(times[len(times) // 2], 1) if times else -1,
            "max_ms": round(times[-1], 1) if times else -1}


async def _honest_dials(v: Victim, count: int) -> int:
    """Fresh honest identities dial; through = handshake done and still open 1 s later."""
    through = 0
    for _ in range(count):
        honest = Sybil()
        task = asyncio.create_task(honest.run(HOST, v.port, "127.0.0.1"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                while not (honest.admitted.is_set() or honest.closed.is_set()):
                    await asyncio.sleep(0.01)
        if honest.admitted.is_set():
            await asyncio.sleep(1.0)
            if not honest.closed.is_set():
                through += 1
        honest.close()
        await asyncio.gather(task, return_exceptions=True)
    return through


async def _lookups(v: Victim, count: int) -> int:
    """An honest DHT node bootstraps from the victim and resolves the victim's record."""
    svc = DhtService(Identity.generate(), host="127.0.0.2", port=0,
                     noise_static_key=os.urandom(32), envelope_key=os.urandom(32),
                     addrs_provider=lambda: [])
    answered = 0
    try:
        await svc.start([(HOST, v.port, None)])
        async with asyncio.timeout(20):
            while not svc.is_ready:
                await asyncio.sleep(0.1)
        from node.core.identity import PeerId

        target = PeerId.from_string(v.peer_id)
        for _ in range(count):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    if await svc.resolve(target) is not None:
                        answered += 1
    except (TimeoutError, OSError):
        pass
    finally:
        await svc.stop()
    return answered


async def _measure(v: Victim, attack: Callable[[], Awaitable[dict[str, Any]]],
                   honest_dials: int) -> dict[str, Any]:
    before = {"rss_mb": v.rss_mb(), "fds": v.fds(), "log_lines": v.log_lines()}
    out = await attack()
    out["honest_dials_through"] = f"{await _honest_dials(v, honest_dials)}/{honest_dials}"
    out["lookups_answered"] = f"{await _lookups(v, 5)}/5"
    out["healthz"] = await _healthz_ms(v)
    out["before"] = before
    out["during"] = {"rss_mb": v.rss_mb(), "fds": v.fds()}
    return out


async def lockout(v: Victim) -> dict[str, Any]:
    flood = IdleFlood(HOST, v.port, [f"127.0.{i}.1" for i in range(1, 9)], per_source=8,
                      max_connects=50_000)

    async def attack() -> dict[str, Any]:
        flood.start()
        await asyncio.sleep(3)
        return {}

    try:
        out = await _measure(v, attack, 36)
    finally:
        await flood.stop()
    out["attacker_connects"] = flood.connects
    return out


async def sybil(v: Victim) -> dict[str, Any]:
    sybils = [Sybil() for _ in range(100)]
    tasks: list[asyncio.Task[None]] = []

    async def attack() -> dict[str, Any]:
        for i, s in enumerate(sybils):
            tasks.append(asyncio.create_task(s.run(HOST, v.port, f"127.0.{40 + i % 4}.1")))
            async with asyncio.timeout(10):
                while not (s.admitted.is_set() or s.closed.is_set()):
                    await asyncio.sleep(0.01)
        return {"sybils_holding": sum(not s.closed.is_set() for s in sybils)}

    try:
        out = await _measure(v, attack, 52)
        out["sybils_holding_after"] = sum(not s.closed.is_set() for s in sybils)
    finally:
        for s in sybils:
            s.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    return out


async def address_book(v: Victim, count: int = 2000) -> dict[str, Any]:
    claim = "/ip4/127.0.60.1/tcp/9"  # nobody listens there
    rows_before = v.address_book_rows()

    async def attack() -> dict[str, Any]:
        for i in range(count):
            s = Sybil(listen_addrs=(claim,))
            task = asyncio.create_task(s.run(HOST, v.port, f"127.0.{61 + i % 4}.{1 + i % 200}"))
            async with asyncio.timeout(10):
                while not (s.admitted.is_set() or s.closed.is_set()):
                    await asyncio.sleep(0.005)
            s.close()
            await task
        await asyncio.sleep(5)
        cpu0 = v.cpu_s()
        await asyncio.sleep(10)
        return {"identities": count, "rows": f"{rows_before} -> {v.address_book_rows()}",
                "idle_cpu_pct_after": round((v.cpu_s() - cpu0) * 10, 1),
                "mesh": json.loads(v.http("GET", "/v1/dht")[1]).get("mesh")}

    return await _measure(v, attack, 10)


async def api_slow(v: Victim) -> dict[str, Any]:
    socks: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    head = (f"POST /v1/peers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {v.token}\r\n"
            "Content-Length: 100\r\n\r\n{").encode()

    async def attack() -> dict[str, Any]:
        for i in range(600):
            with contextlib.suppress(OSError):
                r, w = await asyncio.open_connection(HOST, v.api_port,
                                                     local_addr=(f"127.0.70.{1 + i % 200}", 0))
                if i % 3 == 1:
                    w.write(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
                elif i % 3 == 2:
                    w.write(head)
                socks.append((r, w))
        await asyncio.sleep(35)  # past the header (10 s) and body (30 s) deadlines
        still = 0
        for r, _ in socks:
            try:
                async with asyncio.timeout(0.05):
                    await r.read()  # returns at EOF: the node closed it
            except TimeoutError:
                still += 1
            except OSError:
                pass
        return {"slow_clients": len(socks), "still_open_after_35s": still}

    try:
        return await _measure(v, attack, 3)
    finally:
        for _, w in socks:
            w.close()


async def api_misc(v: Victim) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["deep_json_status"] = v.http("POST", "/v1/peers", b"[" * 5000 + b"]" * 5000)[0]
    out["huge_int_status"] = v.http("POST", "/v1/peers", b'{"addr": ' + b"1" * 5000 + b"}")[0]
    r, w = await asyncio.open_connection(HOST, v.api_port)
    w.write(b"GET /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = await r.read()
    w.close()
    out["non_ascii_path"] = raw.split(b"\r\n")[0].decode() + " " + next(
        (h.decode() for h in raw.split(b"\r\n") if h.lower().startswith(b"content-type")), "")
    r, w = await asyncio.open_connection(HOST, v.api_port)
    w.write(f"POST /v1/peers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {v.token}\r\n"
            "Content-Length: 1000\r\n\r\n{\"addr\"".encode())
    await w.drain()
    w.close()
    await asyncio.sleep(1)
    out["token_in_log"] = v.token in v.log.read_text(errors="replace")
    return out


async def emfile(v: Victim) -> dict[str, Any]:
    import socket

    socks: list[socket.socket] = []
    lines0 = v.log_lines()

    def connect_all() -> None:
        for i in range(1100):
            s = socket.socket()
            s.settimeout(2)
            s.bind((f"127.0.80.{1 + i % 200}", 0))
            try:
                s.connect((HOST, v.api_port))
            except OSError:
                s.close()
                continue
            socks.append(s)

    await asyncio.to_thread(connect_all)
    await asyncio.sleep(3)
    health = await _healthz_ms(v, 10)
    fds = v.fds()
    for s in socks:
        s.close()
    await asyncio.sleep(3)
    return {"idle_clients": len(socks), "healthz_during": health, "fds_during": fds,
            "log_lines_added": v.log_lines() - lines0,
            "emfile_lines": v.log.read_text(errors="replace").count("out of system resource")}


ATTACKS: dict[str, tuple[Callable[[Victim], Awaitable[dict[str, Any]]], int | None]] = {
    "lockout": (lockout, None),
    "sybil": (sybil, None),
    "address_book": (address_book, None),
    "api_slow": (api_slow, None),
    "api_misc": (api_misc, None),
    "emfile": (emfile, 1024),
}


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--victim-root", type=Path, default=ROOT)
    ap.add_argument("--only", nargs="*", default=list(ATTACKS))
    ap.add_argument("--work", type=Path, default=Path("/tmp/spacepanda-attacks"))
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    for name in args.only:
        attack, nofile = ATTACKS[name]
        work = args.work / name
        if work.exists():
            subprocess.run(["rm", "-rf", str(work)], check=True)
        work.mkdir(parents=True)
        victim = Victim(args.victim_root.resolve(), work, nofile)
        victim.start()
        try:
            results[name] = await attack(victim)
            results[name]["after"] = {"rss_mb": victim.rss_mb(), "fds": victim.fds(),
                                      "log_lines": victim.log_lines()}
        except Exception as exc:  # a measurement, not a test: report and go on
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            victim.stop()
        print(json.dumps({name: results[name]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
