from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from api.server import ApiServer, create_app
from dht.errors import DhtError
from node.cli import duration, format_dht, format_record, main, size, table
from node.config import NodeConfig
from node.core.identity import Identity, PeerId
from node.core.multiaddr import Multiaddr
from node.datadir import DataDir
from node.logs import REDACTED, configure_logging
from tests.api.conftest import FakeNode, dht_stats, signed_record

REPO = Path(__file__).resolve().parents[2]


def test_init_prints_peer_id_and_creates_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "node"
    assert main(["init", "--data-dir", str(d)]) == 0
    out = capsys.readouterr().out.strip()
    assert PeerId.from_string(out) == DataDir(d).open().peer_id
    for name in ("identity.key", "config.toml", "api.token", "peer_id"):
        assert (d / name).is_file()


def test_init_json_and_refuses_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--data-dir", str(tmp_path), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["data_dir"] == str(tmp_path)
    assert main(["init", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "already initialised" in err and "Traceback" not in err


def test_init_uses_env_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SPACEPANDA_DATA_DIR", str(tmp_path / "env"))
    assert main(["init"]) == 0
    assert (tmp_path / "env" / "identity.key").is_file()


_SOME_PEER = str(Identity.generate().peer_id)


@pytest.mark.parametrize(
    "cmd",
    [["peers"], ["connect", "/ip4/127.0.0.1/tcp/4001"], ["dht"], ["resolve", _SOME_PEER]],
)
def test_commands_without_running_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cmd: list[str]
) -> None:
    assert main(["init", "--data-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main([*cmd, "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"node not running (no {tmp_path / 'api'} file)" in err


def test_stale_api_file_is_unreachable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init", "--data-dir", str(tmp_path)])
    # A port nothing listens on: bind one, note it, close it.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    DataDir(tmp_path).write_api_address(f"/ip4/127.0.0.1/tcp/{port}")
    capsys.readouterr()
    assert main(["peers", "--data-dir", str(tmp_path)]) == 1
    assert "cannot reach the node API" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "a command is required"),
        (["frobnicate"], "invalid choice"),
        (["connect", "/ip4/127.0.0.1/udp/1"], "udp"),
        (["connect"], "MULTIADDR"),
        (["disconnect", "not-a-peer"], "PeerId"),
        (["disconnect", "--block"], "PEER_ID"),
        (["unblock", "not-a-peer"], "PeerId"),
        (["resolve", "not-a-peer"], "PeerId"),
        (["resolve"], "PEER_ID"),
        (["dht", "extra"], "unrecognized arguments"),
        (["run", "--listen", "/ip4/1.2.3/tcp/1"], "--listen"),
        (["run", "--log-format", "xml"], "--log-format"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "connect" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("spacepanda ")


def test_run_requires_initialised_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--data-dir", str(tmp_path / "x")]) == 1
    assert "--init" in capsys.readouterr().err
    assert not (tmp_path / "x" / "identity.key").exists()


def test_run_reports_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init", "--data-dir", str(tmp_path)])
    (tmp_path / "config.toml").write_text("max_connections = 0\n")
    capsys.readouterr()
    assert main(["run", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "max_connections" in err and "config.toml" in err


def test_run_builds_config_and_calls_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import node.daemon

    seen: list[NodeConfig] = []

    def fake_run(config: NodeConfig) -> int:
        seen.append(config)
        return 7

    monkeypatch.setattr(node.daemon, "run", fake_run)
    monkeypatch.setenv("SPACEPANDA_LISTEN", "/ip4/127.0.0.1/tcp/1234")
    boot = f"/ip4/127.0.0.1/tcp/4999/p2p/{Identity.generate().peer_id}"
    argv = ["run", "--init", "--data-dir", str(tmp_path / "n"), "--api", "/ip4/127.0.0.1/tcp/0"]
    argv += ["--bootstrap", boot, "--log-format", "json", "--log-level", "WARNING"]
    try:
        assert main(argv) == 7
    finally:
        configure_logging("console", "info")
    (config,) = seen
    assert config.data_dir == tmp_path / "n"
    assert config.listen.port == 1234 and config.api.port == 0
    assert [str(a) for a in config.bootstrap] == [boot]
    assert (config.log_format, config.log_level) == ("json", "warning")
    assert (tmp_path / "n" / "identity.key").is_file()


# ---- against a live API served by an in-memory node -------------------------------------


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Path, FakeNode]]:
    d = DataDir(tmp_path)
    d.create()
    fake = FakeNode()
    app = create_app(fake, d.read_token(), CollectorRegistry())
    server = ApiServer(app, Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True))
    d.write_api_address(await server.start())
    try:
        yield tmp_path, fake
    finally:
        await server.stop()


async def _cli(*argv: str) -> int:
    # The CLI is synchronous; run it off the loop that serves the API.
    return await asyncio.to_thread(main, list(argv))


async def test_id_human_and_json(
    live: tuple[Path, FakeNode], capsys: pytest.CaptureFixture[str]
) -> None:
    d, fake = live
    assert await _cli("id", "--data-dir", str(d)) == 0
    out = capsys.readouterr().out
    assert f"peer id  {fake.identity.peer_id}" in out and "status   running\n" in out
    assert "uptime   12s" in out and "addrs    /ip4/127.0.0.1/tcp/4001/p2p/" in out
    assert "version  0.1.0-test (commit unknown)" in out
    assert await _cli("id", "--data-dir", str(d), "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["peer_id"] == str(fake.identity.peer_id) and body["running"] is True


async def test_connect_peers_disconnect(
    live: tuple[Path, FakeNode], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _fake = live
    assert await _cli("peers", "--data-dir", str(d)) == 0
    assert capsys.readouterr().out.strip() == "no connected peers"
    peer = Identity.generate().peer_id
    addr = f"/ip4/127.0.0.1/tcp/4100/p2p/{peer}"
    assert await _cli("connect", addr, "--data-dir", str(d)) == 0
    assert capsys.readouterr().out.strip() == f"connected to {peer} at /ip4/127.0.0.1/tcp/4100"
    assert await _cli("connect", addr, "--data-dir", str(d)) == 0
    assert capsys.readouterr().out.startswith("already connected to")

    assert await _cli("peers", "--data-dir", str(d)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["PEER", "ID", "DIR", "RTT", "UP", "ADDRESS"]
    assert lines[1].split()[:3] == [str(peer), "outbound", "0.4ms"]
    assert lines[0].index("DIR") == lines[1].index("outbound")  # aligned
    assert await _cli("peers", "--data-dir", str(d), "--json") == 0
    assert json.loads(capsys.readouterr().out)["peers"][0]["peer_id"] == str(peer)

    assert await _cli("disconnect", str(peer), "--data-dir", str(d)) == 0
    assert capsys.readouterr().out.strip() == f"disconnected {peer}"
    assert await _cli("disconnect", str(peer), "--data-dir", str(d)) == 1
    err = capsys.readouterr().err
    assert "404" in err and "not connected" in err


async def test_disconnect_block_blocks_and_unblock(
    live: tuple[Path, FakeNode], capsys: pytest.CaptureFixture[str]
) -> None:
    d, fake = live
    assert await _cli("blocks", "--data-dir", str(d)) == 0
    assert capsys.readouterr().out.strip() == "no blocked peers"
    peer = Identity.generate().peer_id
    assert await _cli("disconnect", "--block", str(peer), "--data-dir", str(d)) == 0
    assert capsys.readouterr().out.strip() == f"disconnected and blocked {peer}"
    assert list(fake.blocked) == [str(peer)]
    assert await _cli("blocks", "--data-dir", str(d)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["PEER", "ID", "BLOCKED", "SINCE"]
    assert lines[1] == f"{peer}  2023-11-14 22:13:20Z"
    assert await _cli("blocks", "--data-dir", str(d), "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "blocks": [{"peer_id": str(peer), "blocked_at": 1_700_000_000.5}]
    }
    assert await _cli("unblock", str(peer), "--data-dir", str(d)) == 0
    assert capsys.readouterr().out.strip() == f"unblocked {peer}"
    assert fake.blocked == {}
    assert await _cli("unblock", str(peer), "--data-dir", str(d)) == 1
    assert "not blocked" in capsys.readouterr().err


async def test_failed_dial_reports_reason(
    live: tuple[Path, FakeNode], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _ = live
    assert await _cli("connect", "/ip4/127.0.0.1/tcp/9001", "--data-dir", str(d)) == 1
    err = capsys.readouterr().err
    assert "504" in err and "timed out" in err and "Traceback" not in err


async def test_wrong_token_hint(
    live: tuple[Path, FakeNode], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _ = live
    (d / "api.token").write_text("x" * 43 + "\n")
    assert await _cli("id", "--data-dir", str(d)) == 1
    assert "api.token" in capsys.readouterr().err


async def test_dht_human_and_json(
    live: tuple[Path, FakeNode], capsys: pytest.CaptureFixture[str]
) -> None:
    d, fake = live
    assert await _cli("dht", "--data-dir", str(d)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"node id    {'ab' * 20}",
        f"peer id    {fake.identity.peer_id}",
        "ready      yes",
        "contacts   28",
        "buckets    3: 20 7 1",
        "records    5 (2.5 KiB)",
        "lookups    10 (8 found, 2 missed), 4 random walks, 2.2 rounds on average",
        "publishes  3 (seq 1700000000000)",
        "drops      bad_msgpack   3",
        "           rate_limited  2",
    ]
    assert await _cli("dht", "--data-dir", str(d), "--json") == 0
    assert json.loads(capsys.readouterr().out) == dht_stats(fake.identity.peer_id)


async def test_dht_unavailable_reports_reason(
    live: tuple[Path, FakeNode], capsys: pytest.CaptureFixture[str]
) -> None:
    d, fake = live
    fake.dht_error = DhtError("DHT service not started")
    assert await _cli("dht", "--data-dir", str(d)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "503" in captured.err and "DHT service not started" in captured.err
    assert "Traceback" not in captured.err


async def test_resolve_human_and_json(
    live: tuple[Path, FakeNode], capsys: pytest.CaptureFixture[str]
) -> None:
    d, fake = live
    rec = signed_record(seq=42)
    fake.records[str(rec.peer_id)] = rec
    assert await _cli("resolve", str(rec.peer_id), "--data-dir", str(d)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"peer id       {rec.peer_id}"
    assert lines[1] == "seq           42"
    assert lines[2].startswith("expires       ") and "(in 59m" in lines[2]
    assert lines[3] == f"noise key     {rec.noise_static_key.hex()}"
    assert lines[4] == f"envelope key  {rec.envelope_key.hex()}"
    assert lines[5:] == [
        "addrs         /ip4/127.0.0.1/tcp/4100",
        "              /ip6/::1/tcp/4100",
    ]
    assert await _cli("resolve", str(rec.peer_id), "--data-dir", str(d), "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["seq"] == 42 and body["envelope_key"] == rec.envelope_key.hex()
    assert bytes.fromhex(body["signed_record"]) == rec.encode()


async def test_resolve_not_found_exits_1_with_clear_message(
    live: tuple[Path, FakeNode], capsys: pytest.CaptureFixture[str]
) -> None:
    d, fake = live
    for extra in ([], ["--json"]):
        assert await _cli("resolve", _SOME_PEER, "--data-dir", str(d), *extra) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        # (stderr also carries the in-process server's access log)
        expected = f"spacepanda: error: no valid peer record for {_SOME_PEER} found in the DHT"
        assert expected in captured.err.splitlines()
        assert "Traceback" not in captured.err
    assert [str(p) for p in fake.resolved] == [_SOME_PEER, _SOME_PEER]


def test_format_dht_tolerates_missing_and_odd_fields() -> None:
    out = format_dht({"node_id": "00", "buckets": [], "drops": {}, "lookups": "x", "ready": 1})
    assert out.splitlines() == [
        "node id   00",
        "peer id   ?",
        "ready     ?",
        "contacts  ?",
        "buckets   -",
        "records   ?",
        "lookups   ? (? found, ? missed), ? random walks",
        "drops     none",
    ]
    assert "drops     ?" in format_dht({})


def test_format_record_expiry_and_missing_fields() -> None:
    out = format_record({"expires_at": 100, "addrs": []}, now=200.0).splitlines()
    assert out[2] == "expires       1970-01-01 00:01:40Z (expired)"
    assert out[5] == "addrs         -" and out[0] == "peer id       ?"
    huge = format_record({"expires_at": 2**64 - 1}, now=0.0).splitlines()
    assert huge[2] == f"expires       {2**64 - 1}"
    assert format_record({"expires_at": "soon"}, now=0.0).splitlines()[2] == "expires       ?"


def test_size_helper() -> None:
    assert [size(n) for n in (0, 1023, 1024, 2560, 3 * 1024 * 1024 // 2)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "2.5 KiB",
        "1.5 MiB",
    ]


def test_python_dash_m_node_runs_cli(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node", "init", "--data-dir", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert PeerId.from_string(json.loads(proc.stdout)["peer_id"])


def test_table_and_duration_helpers() -> None:
    assert table(["A", "LONG"], [["xyz", "1"], ["q", "22"]]).splitlines() == [
        "A    LONG",
        "xyz  1",
        "q    22",
    ]
    assert [duration(s) for s in (0, 59, 61, 3600 * 2 + 60, 86400 * 3 + 3600)] == [
        "0s",
        "59s",
        "1m01s",
        "2h01m",
        "3d01h",
    ]


# ---- node.logs (configured by `run`) -----------------------------------------------------


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    yield stream
    configure_logging("console", "info")


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_logs_redact_secrets_structlog_and_stdlib(log_stream: io.StringIO) -> None:
    structlog.get_logger("t").info(
        "hello",
        api_token="abc",
        private_key="k",
        keepalive_interval=5,
        headers={"Authorization": "Bearer zzz", "Accept": "json"},
        note="sent Bearer s3cr3t-value to peer",
    )
    logging.getLogger("aiohttp.server").warning("lib saw Bearer %s", "abc123xyz")
    first, second = _records(log_stream)
    assert first["event"] == "hello" and first["level"] == "info"
    assert first["api_token"] == REDACTED and first["private_key"] == REDACTED
    assert first["keepalive_interval"] == 5
    assert first["headers"] == {"Authorization": REDACTED, "Accept": "json"}
    assert "s3cr3t" not in json.dumps(first)
    # A library's message stays its template; its arguments are a field, redacted when
    # the formatted text carried a credential.
    assert second["event"] == "lib saw Bearer %s" and second["args"] == [REDACTED]
    assert "abc123xyz" not in json.dumps(second)
    assert second["logger"] == "aiohttp.server" and second["level"] == "warning"
    assert "timestamp" in second


def test_log_level_filters(log_stream: io.StringIO) -> None:
    configure_logging("json", "warning", stream=log_stream)
    structlog.get_logger().info("quiet")
    logging.getLogger("asyncio").info("quiet too")
    structlog.get_logger().error("loud")
    assert [r["event"] for r in _records(log_stream)] == ["loud"]


def test_console_format_and_bad_arguments() -> None:
    stream = io.StringIO()
    try:
        configure_logging("console", "info", stream=stream)
        structlog.get_logger().info("readable", token="t0ken")
        assert "readable" in stream.getvalue() and "t0ken" not in stream.getvalue()
        with pytest.raises(ValueError):
            configure_logging("xml", "info")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            configure_logging("json", "loud")
    finally:
        configure_logging("console", "info")
