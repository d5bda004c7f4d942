"""node.logs: JSON lines with every field structured, libraries quiet unless asked, the API's
access log off by default and structured (never the query string) when on."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from prometheus_client import CollectorRegistry

from api.server import ApiServer, create_app
from node.cli import build_parser
from node.config import load_config
from node.core.errors import ConfigError
from node.core.multiaddr import Multiaddr
from node.logs import LIBRARY_LOGGERS, REDACTED, configure_logging
from tests.api.conftest import TOKEN, FakeNode


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    configure_logging("console", "info")


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    out = []
    for line in text.splitlines():
        value = json.loads(line)  # every line is one whole JSON object
        assert isinstance(value, dict)
        out.append(value)
    return out


@pytest.mark.parametrize("level", ["debug", "info"])
def test_libraries_stay_quiet_below_warning(stream: io.StringIO, level: str) -> None:
    configure_logging("json", level, stream=stream)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(f"{name}.core").info("chatter %s", 1)
        logging.getLogger(f"{name}.core").debug("chatter %s", 2)
    logging.getLogger("kademlia.crawling").info("creating spider with peers: %s", [])
    logging.getLogger("aiohttp.access").info("GET / 200")
    logging.getLogger("aiosqlite").warning("something is wrong with %s", "x")
    structlog.get_logger("node.daemon").info("ours")
    events = [r["event"] for r in _lines(stream)]
    assert events == ["something is wrong with %s", "ours"]


def test_debug_all_lets_the_libraries_speak(stream: io.StringIO) -> None:
    configure_logging("json", "debug-all", stream=stream)
    logging.getLogger("aiosqlite").debug("executing %s", "SELECT 1")
    logging.getLogger("kademlia.crawling").info("creating spider with peers: %s", [])
    structlog.get_logger("node.daemon").debug("ours")
    records = _lines(stream)
    assert [r["event"] for r in records] == [
        "executing %s", "creating spider with peers: %s", "ours"]
    assert records[0]["args"] == ["SELECT 1"] and records[0]["level"] == "debug"
    assert records[1]["args"] == ["[]"]  # not a JSON value: its repr, as a string


def test_foreign_records_keep_data_out_of_the_message(stream: io.StringIO) -> None:
    configure_logging("json", "info", stream=stream)
    log = logging.getLogger("dht.service")
    log.warning("contact %s:%d answered %r", "127.0.0.1", 4001, b"\x00")
    log.warning("by name %(host)s", {"host": "h"})
    log.warning("no arguments at all, 100%")
    log.warning("header was %s", "Authorization: Bearer sekret-value")
    first, second, third, fourth = _lines(stream)
    assert first["event"] == "contact %s:%d answered %r"
    assert first["args"] == ["127.0.0.1", 4001, "b'\\x00'"]
    assert second["event"] == "by name %(host)s" and second["args"] == {"host": "h"}
    assert third["event"] == "no arguments at all, 100%" and "args" not in third
    assert fourth["args"] == [REDACTED] and "sekret" not in json.dumps(fourth)


def test_tracebacks_are_structured_not_text(stream: io.StringIO) -> None:
    configure_logging("json", "info", stream=stream)
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("node").exception("failed", peer="x")
        logging.getLogger("dht.protocol").exception("dht background job failed")
    ours, theirs = _lines(stream)
    for record in (ours, theirs):
        (exc,) = record["exception"]
        assert exc["exc_type"] == "ValueError" and exc["exc_value"] == "boom"
        assert isinstance(exc["frames"], list) and exc["frames"]
    assert ours["peer"] == "x"


def test_run_flags_for_access_log_and_debug_all(tmp_path: Path) -> None:
    args = build_parser().parse_args(["run", "--access-log", "--log-level", "DEBUG-ALL"])
    assert args.access_log is True and args.log_level == "debug-all"
    config = load_config({"access_log": "true", "log_level": "debug-all"}, env={},
                         data_dir=tmp_path)
    assert config.access_log is True and config.log_level == "debug-all"
    assert load_config({}, env={}, data_dir=tmp_path).access_log is False
    (tmp_path / "config.toml").write_text("access_log = true\n")
    assert load_config({}, env={}, data_dir=tmp_path).access_log is True


async def _serve_and_request(access_log: bool, stream: io.StringIO) -> None:
    configure_logging("json", "info", stream=stream)
    app = create_app(FakeNode(), TOKEN, CollectorRegistry())
    server = ApiServer(app, Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True),
                       access_log=access_log)
    addr = await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{addr.port}"
            async with session.get(f"{url}/v1/node?token=sekret-in-query",
                                   headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200
            async with session.get(f"{url}/healthz") as resp:
                assert resp.status == 200
    finally:
        await server.stop()


async def test_access_log_off_by_default(stream: io.StringIO) -> None:
    await _serve_and_request(False, stream)
    assert [r for r in _lines(stream) if r["event"] == "http_request"] == []


async def test_access_log_structured_without_query_or_headers(stream: io.StringIO) -> None:
    await _serve_and_request(True, stream)
    text = stream.getvalue()
    assert "sekret" not in text and TOKEN not in text
    requests = [r for r in _lines(stream) if r["event"] == "http_request"]
    assert [(r["method"], r["path"], r["status"]) for r in requests] == [
        ("GET", "/v1/node", 200), ("GET", "/healthz", 200)]
    for r in requests:
        assert r["logger"] == "api.access" and r["level"] == "info"
        assert isinstance(r["duration_ms"], float) and isinstance(r["bytes"], int)
        assert r["remote"] == "127.0.0.1"


def test_every_api_port_clash_names_the_address(tmp_path: Path) -> None:
    # (the DHT and transport ones: tests/node/test_joinwatch.py)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        async def start() -> None:
            app = create_app(FakeNode(), TOKEN, CollectorRegistry())
            await ApiServer(app, Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}")).start()

        with pytest.raises(ConfigError, match=rf"admin API on TCP 127\.0\.0\.1:{port}"):
            asyncio.run(start())
