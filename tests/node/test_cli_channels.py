"""The channel commands against real in-process nodes, each behind its own API server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import structlog.testing

from api.server import ApiServer, create_app
from node.cli import main
from node.cli_channels import match_channel
from node.core.errors import SpacePandaError
from node.core.identity import Identity
from node.core.multiaddr import Multiaddr
from node.datadir import DataDir
from node.metrics import node_registry
from tests.api.channel_harness import mesh
from tests.harness import Running, StartNode, wait_for

REPO = Path(__file__).resolve().parents[2]
Serve = Callable[[Running], Awaitable[str]]


@pytest.fixture(autouse=True)
def quiet_nodes() -> Iterator[None]:
    """The nodes run in this process: keep their log lines out of the CLI's captured stdout."""
    with structlog.testing.capture_logs():
        yield


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """``await serve(running)``: a data dir (token, API address) for the CLI to talk to it."""
    servers: list[ApiServer] = []

    async def start(running: Running) -> str:
        d = DataDir(tmp_path / f"cli{len(servers)}")
        d.create()
        app = create_app(running.node, d.read_token(), node_registry(running.node))
        server = ApiServer(app, Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True))
        servers.append(server)
        d.write_api_address(await server.start())
        return str(d.path)

    yield start
    for s in servers:
        await s.stop()


class Cli:
    """Runs ``spacepanda`` commands for one node (off the loop that serves its API)."""

    def __init__(self, data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.data_dir, self.capsys = data_dir, capsys

    async def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, [*argv, "--data-dir", self.data_dir])
        out, err = self.capsys.readouterr()
        return code, out, err

    async def ok(self, *argv: str) -> str:
        code, out, err = await self.run(*argv)
        assert code == 0, err
        return out

    async def json(self, *argv: str) -> dict[str, object]:
        body = json.loads(await self.ok(*argv, "--json"))
        assert isinstance(body, dict)
        return body

    async def fails(self, *argv: str) -> str:
        code, out, err = await self.run(*argv)
        assert code == 1 and out == "", (code, out, err)
        assert "Traceback" not in err
        return err


async def test_channel_commands_text_and_json(
    start_node: StartNode, serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = await mesh(start_node, 2)
    cli_a, cli_b = Cli(await serve(a), capsys), Cli(await serve(b), capsys)
    peer_b = str(b.node.peer_id)

    # create: the id alone on stdout (for scripts), or the channel as JSON.
    cid = (await cli_a.ok("channel", "create", "general")).strip()
    assert len(cid) == 64
    other = await cli_a.json("channel", "create", "random")
    assert other["name"] == "random" and other["epoch"] == 0

    lines = (await cli_a.ok("channel", "list")).splitlines()
    assert lines[0].split() == ["CHANNEL", "NAME", "STATUS", "EPOCH", "MEMBERS"]
    assert [cid[:12], "general", "active", "0", "1"] in [line.split() for line in lines[1:]]
    listed = await cli_a.json("channel", "list")
    assert sorted(c["name"] for c in listed["channels"]) == ["general", "random"]  # type: ignore[attr-defined]

    shown = await cli_a.ok("channel", "show", "general")
    assert f"channel      {cid}" in shown and "status       active" in shown
    assert f"{a.node.peer_id}  admin" in shown
    assert (await cli_a.json("channel", "show", cid[:8]))["channel_id"] == cid

    # invite, list invites, accept.
    out = await cli_a.ok("channel", "invite", "general", peer_b)
    assert out.startswith(f"invited {peer_b} to 'general' (invite ")
    await wait_for(lambda: len(b.node.channels.invites()) == 1, timeout=10)
    lines = (await cli_b.ok("invites")).splitlines()
    assert lines[0].split() == ["INVITE", "CHANNEL", "NAME", "FROM"]
    invite_id, prefix, name, sender = lines[1].split()
    assert (prefix, name, sender) == (cid[:12], "general", str(a.node.peer_id))
    invites = await cli_b.json("invites")
    assert invites["invites"][0]["invite_id"] == invite_id  # type: ignore[index]
    out = await cli_b.ok("invites", "accept", invite_id)
    assert out.startswith(f"accepted invite {invite_id}: channel {cid}")
    await wait_for(lambda: len(a.node.channels.view(bytes.fromhex(cid)).members) == 2,
                   timeout=15)
    await wait_for(lambda: bytes.fromhex(cid) in b.node.channels.manager.channels, timeout=15)

    # A second invite (to the other channel), declined, in JSON.
    body = await cli_a.json("channel", "invite", "random", peer_b)
    second = str(body["invite_id"])
    await wait_for(lambda: len(b.node.channels.invites()) == 1, timeout=10)
    assert await cli_b.json("invites", "decline", second) == {
        "invite_id": second, "declined": True}
    assert (await cli_b.ok("invites")).strip() == "no pending invites"
    err = await cli_b.fails("invites", "accept", second)
    assert "404" in err and "no pending invite" in err

    # profile, send, messages.
    assert (await cli_b.ok("profile", "--name", "bob")).strip() == "display name set to 'bob'"
    assert await cli_a.json("profile", "--name", "ann") == {"display_name": "ann"}
    out = await cli_a.ok("send", "general", "hello from a")
    assert out.startswith("sent ") and len(out.split()[1]) == 32
    sent = await cli_b.json("send", cid[:6], "hello from b")
    assert sent["channel_id"] == cid
    await wait_for(lambda: _count(a, cid) == 2 and _count(b, cid) == 2, timeout=10)
    lines = (await cli_a.ok("messages", "general")).splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == ["ann: hello from a", "bob: hello from b"]
    page = await cli_b.json("messages", "general", "--limit", "1")
    assert [m["text"] for m in page["messages"]] == ["hello from b"]  # type: ignore[attr-defined]
    everything = await cli_b.json("messages", "general")
    assert page["next"] == everything["next"]
    assert (await cli_a.ok("messages", "random")).strip() == "no messages"

    # admin rights: the last admin cannot leave; make b admin, then remove it.
    err = await cli_a.fails("channel", "leave", "general")
    assert "409" in err and "admin first" in err
    err = await cli_b.fails("channel", "remove", "general", str(a.node.peer_id))
    assert "403" in err
    assert (await cli_a.ok("channel", "admin", "general", peer_b)).strip() == (
        f"making {peer_b} an admin of 'general'")
    await wait_for(lambda: _role(a, cid, peer_b) == "admin", timeout=15)
    assert await cli_a.json("channel", "remove", "general", peer_b) == {
        "channel_id": cid, "requested": "remove", "peer_id": peer_b}
    await wait_for(lambda: b.node.channels.view(bytes.fromhex(cid)).status == "removed",
                   timeout=15)
    err = await cli_b.fails("send", "general", "still here?")
    assert "409" in err
    assert (await cli_a.ok("channel", "leave", "random")).strip() == "leaving 'random'"
    assert await cli_a.json("channel", "leave", "general") == {
        "channel_id": cid, "requested": "leave"}


def _count(r: Running, cid: str) -> int:
    store = r.node.channels._store  # type: ignore[attr-defined]
    return sum(1 for m in store._messages if m.channel_id == bytes.fromhex(cid))


def _role(r: Running, cid: str, peer: str) -> str:
    view = r.node.channels.view(bytes.fromhex(cid))
    return next(m.role for m in view.members if m.peer_id == peer)


async def test_channel_names_errors(
    start_node: StartNode, serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    (a,) = await mesh(start_node, 1)
    cli = Cli(await serve(a), capsys)
    await cli.ok("channel", "create", "twin")
    await cli.ok("channel", "create", "twin")
    err = await cli.fails("channel", "show", "twin")
    assert "'twin' is ambiguous: it matches 2 channels" in err
    err = await cli.fails("send", "nope", "x")
    assert "no channel matches 'nope'" in err
    err = await cli.fails("channel", "invite", "twin", str(Identity.generate().peer_id))
    assert "ambiguous" in err
    err = await cli.fails("channel", "create", "")
    assert "400" in err and "1..128 UTF-8 bytes" in err


def _ch(cid: str, name: str) -> dict[str, object]:
    return {"channel_id": cid, "name": name}


def test_match_channel() -> None:
    one, two = "abcdef01" + "0" * 56, "abcdef02" + "1" * 56
    channels = [_ch(one, "general"), _ch(two, "abcdef0"), _ch("12" * 32, "dup"),
                _ch("34" * 32, "dup")]
    assert match_channel(channels, one) == channels[0]
    assert match_channel(channels, "abcdef01") == channels[0]
    assert match_channel(channels, "general") == channels[0]
    assert match_channel(channels, "121212") == channels[2]
    # "abcdef0" is both a name and a prefix of two ids.
    with pytest.raises(SpacePandaError, match="ambiguous: it matches 2 channels"):
        match_channel(channels, "abcdef0")
    with pytest.raises(SpacePandaError, match="ambiguous"):
        match_channel(channels, "dup")
    with pytest.raises(SpacePandaError, match="at least 6 hex digits"):
        match_channel(channels, "abcde")
    with pytest.raises(SpacePandaError, match="no channel matches 'General'"):
        match_channel(channels, "General")
    with pytest.raises(SpacePandaError, match="no channel matches"):
        match_channel(channels, "ABCDEF01")  # ids are lowercase


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["channel"], "ACTION"),
        (["channel", "frob"], "invalid choice"),
        (["channel", "create"], "NAME"),
        (["channel", "invite", "general", "not-a-peer"], "PeerId"),
        (["channel", "admin", "general"], "PEER_ID"),
        (["invites", "accept", "nothex"], "invite id"),
        (["invites", "decline"], "ID"),
        (["messages", "general", "--limit", "0"], "positive"),
        (["send", "general"], "TEXT"),
        (["profile"], "--name"),
    ],
)
def test_channel_usage_errors_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_options_before_and_after_the_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --data-dir given before the action is not reset by the action's own parser.
    for argv in (["invites", "--data-dir", str(tmp_path), "accept", "ab" * 16],
                 ["invites", "accept", "ab" * 16, "--data-dir", str(tmp_path)],
                 ["channel", "--data-dir", str(tmp_path), "list"]):
        assert main(argv) == 1
        assert f"no {tmp_path / 'api'} file" in capsys.readouterr().err


async def test_messages_follow_until_ctrl_c(
    start_node: StartNode, serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = await mesh(start_node, 2)
    dir_a, dir_b = await serve(a), await serve(b)
    cli_a, cli_b = Cli(dir_a, capsys), Cli(dir_b, capsys)
    cid = (await cli_a.ok("channel", "create", "live")).strip()
    await cli_a.ok("channel", "invite", "live", str(b.node.peer_id))
    await wait_for(lambda: len(b.node.channels.invites()) == 1, timeout=10)
    await cli_b.ok("invites", "accept", b.node.channels.invites()[0]["invite_id"])
    await wait_for(lambda: bytes.fromhex(cid) in b.node.channels.manager.channels, timeout=15)
    await wait_for(lambda: len(a.node.channels.view(bytes.fromhex(cid)).members) == 2,
                   timeout=15)
    await cli_b.ok("send", "live", "before")

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node", "messages", "live", "--follow", "--json",
        "--data-dir", dir_b,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None

        async def next_text() -> str:
            async with asyncio.timeout(20):
                line = await proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "follow ended early"
            return str(json.loads(line)["text"])

        assert await next_text() == "before"
        await cli_a.ok("send", "live", "from a")  # announced by an event on b
        assert await next_text() == "from a"
        await cli_b.ok("send", "live", "from b itself")  # no event: found by polling
        assert await next_text() == "from b itself"
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await proc.wait() == 130
        assert proc.stderr is not None
        assert b"Traceback" not in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
