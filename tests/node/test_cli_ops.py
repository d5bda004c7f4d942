"""CLI parity with kubo: ``id`` offline, ``version`` with the commit, wildcard listen
addresses expanded (``id``, records, handshake; ``announce`` wins), shell completion."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from node import buildinfo
from node.cli import build_parser, main
from node.completion import script
from node.core.identity import PeerId
from node.core.multiaddr import Multiaddr
from node.datadir import DataDir
from node.netif import expand_listen, interface_addresses, parse_ip_json
from tests.harness import StartNode, wait_for

REPO = Path(__file__).resolve().parents[2]


def _init(d: Path, capsys: pytest.CaptureFixture[str], config: str = "") -> PeerId:
    assert main(["init", "--data-dir", str(d)]) == 0
    if config:
        (d / "config.toml").write_text(config)
    peer = PeerId.from_string(capsys.readouterr().out.strip())
    return peer


# ---- id, offline ------------------------------------------------------------------------


def test_id_offline_from_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPACEPANDA_LISTEN", raising=False)
    monkeypatch.delenv("SPACEPANDA_ANNOUNCE", raising=False)
    peer = _init(tmp_path, capsys)
    assert main(["id", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"peer id  {peer}"
    assert lines[1] == "status   not running; addresses from the configuration"
    assert lines[2].startswith(f"version  {buildinfo.version()} (commit ")
    assert lines[3] == f"addrs    /ip4/127.0.0.1/tcp/4001/p2p/{peer}"
    assert main(["id", "--data-dir", str(tmp_path), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body == {"peer_id": str(peer), "running": False, "version": buildinfo.version(),
                    "commit": buildinfo.commit(),
                    "addrs": [f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}"]}


def test_id_offline_expands_wildcards_and_announce_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPACEPANDA_ANNOUNCE", raising=False)
    monkeypatch.setenv("SPACEPANDA_LISTEN", "/ip4/0.0.0.0/tcp/4005")
    peer = _init(tmp_path, capsys)
    assert main(["id", "--data-dir", str(tmp_path), "--json"]) == 0
    addrs = json.loads(capsys.readouterr().out)["addrs"]
    v4 = [a for a in interface_addresses() if a.version == 4]
    assert sorted(addrs) == sorted(f"/ip4/{a}/tcp/4005/p2p/{peer}" for a in v4)
    assert not any("0.0.0.0" in a for a in addrs)

    monkeypatch.setenv("SPACEPANDA_ANNOUNCE", "/dns4/boot.example/tcp/4001")
    assert main(["id", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["addrs"] == [
        f"/dns4/boot.example/tcp/4001/p2p/{peer}"]


def test_id_offline_with_a_stale_api_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    peer = _init(tmp_path, capsys)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    DataDir(tmp_path).write_api_address(f"/ip4/127.0.0.1/tcp/{port}")
    assert main(["id", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"peer id  {peer}" in out and "not running (stale" in out


def test_id_of_an_uninitialised_dir_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["id", "--data-dir", str(tmp_path / "none")]) == 1
    assert "not initialised" in capsys.readouterr().err


# ---- version ------------------------------------------------------------------------------


def _git(*args: str) -> str | None:
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        return None
    r = subprocess.run([git, "-C", str(REPO), *args], capture_output=True, text=True,
                       timeout=30)
    return r.stdout.strip() if r.returncode == 0 else None


def test_version_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"spacepanda {buildinfo.version()}"
    assert lines[1].split() == ["commit", buildinfo.commit()]
    assert lines[2].split()[0] == "python"
    assert main(["version", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert set(body) == {"version", "commit", "python", "platform"}
    head = _git("rev-parse", "HEAD")
    if head is not None and not buildinfo.COMMIT_FILE.exists():
        assert body["commit"] == head  # read from the checkout without running git
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"spacepanda {buildinfo.version()} (commit {buildinfo.commit()})")


def test_git_head_reads_refs_packed_refs_worktrees_and_detached(tmp_path: Path) -> None:
    a, b, c = "a" * 40, "b" * 40, "c" * 40
    repo = tmp_path / "repo"
    git = repo / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text(a + "\n")
    assert buildinfo.git_head(repo) == a
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{b} refs/heads/main\n")
    assert buildinfo.git_head(repo) == b
    # A worktree: .git is a file naming its git dir, which names the common dir.
    wt_git = git / "worktrees" / "wt"
    wt_git.mkdir(parents=True)
    (wt_git / "HEAD").write_text("ref: refs/heads/topic\n")
    (wt_git / "commondir").write_text("../..\n")
    (git / "refs" / "heads" / "topic").write_text(c + "\n")
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {wt_git}\n")
    assert buildinfo.git_head(wt) == c
    (wt_git / "HEAD").write_text(a + "\n")  # detached
    assert buildinfo.git_head(wt) == a
    assert buildinfo.git_head(tmp_path / "nothing") is None
    (git / "HEAD").write_text("ref: refs/heads/gone\n")
    assert buildinfo.git_head(repo) is None


def test_build_commit_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = tmp_path / "BUILD_COMMIT"
    recorded.write_text("d" * 40 + "\n")
    monkeypatch.setattr(buildinfo, "COMMIT_FILE", recorded)
    buildinfo.commit.cache_clear()
    try:
        assert buildinfo.commit() == "d" * 40
        recorded.write_text("not a commit\n")
        buildinfo.commit.cache_clear()
        assert buildinfo.commit() != "not a commit"
    finally:
        buildinfo.commit.cache_clear()


# ---- interface addresses ------------------------------------------------------------------


def test_parse_ip_json_keeps_up_interfaces_only() -> None:
    text = json.dumps([
        {"ifname": "lo", "flags": ["LOOPBACK", "UP"], "addr_info": [
            {"family": "inet", "local": "127.0.0.1"}, {"family": "inet6", "local": "::1"}]},
        {"ifname": "eth0", "flags": ["UP"], "addr_info": [
            {"family": "inet", "local": "10.1.2.3"},
            {"family": "inet6", "local": "2001:db8::5", "tentative": True},
            {"family": "inet", "local": "not an address"}]},
        {"ifname": "down0", "flags": ["BROADCAST"], "addr_info": [
            {"family": "inet", "local": "10.9.9.9"}]},
        "garbage",
    ])
    assert [str(a) for a in parse_ip_json(text)] == ["127.0.0.1", "::1", "10.1.2.3"]
    assert parse_ip_json("not json") == []


def test_interface_addresses_match_ip_and_have_no_link_local() -> None:
    found = interface_addresses()
    assert any(a.is_loopback for a in found)
    assert not any(a.is_unspecified or (a.version == 6 and a.is_link_local) for a in found)
    ip = shutil.which("ip")
    if ip is not None:
        out = subprocess.run([ip, "-j", "addr"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            assert set(found) <= set(parse_ip_json(out.stdout))


def test_expand_listen_orders_and_leaves_out_loopback_for_others() -> None:
    ifs = [ipaddress.ip_address(a) for a in
           ("127.0.0.1", "10.0.0.5", "93.184.216.34", "::1", "2001:db8::1")]
    v4 = Multiaddr.parse("/ip4/0.0.0.0/tcp/4001")
    v6 = Multiaddr.parse("/ip6/::/tcp/4001")
    fixed = Multiaddr.parse("/ip4/192.0.2.1/tcp/9")
    assert [str(a) for a in expand_listen([v4, fixed, v6], ifs)] == [
        "/ip4/93.184.216.34/tcp/4001", "/ip4/10.0.0.5/tcp/4001", "/ip4/127.0.0.1/tcp/4001",
        "/ip4/192.0.2.1/tcp/9", "/ip6/2001:db8::1/tcp/4001", "/ip6/::1/tcp/4001"]
    assert [str(a) for a in expand_listen([v4], ifs, loopback=False)] == [
        "/ip4/93.184.216.34/tcp/4001", "/ip4/10.0.0.5/tcp/4001"]
    only_lo = [ipaddress.ip_address("127.0.0.1")]
    assert expand_listen([v4], only_lo, loopback=False) == [
        Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")]
    assert expand_listen([v6], only_lo) == [v6]  # nothing of that family: as it was


async def test_wildcard_listen_is_expanded_in_node_info_and_record(
    start_node: StartNode,
) -> None:
    a = await start_node(host="0.0.0.0")
    info = a.node.node_info()
    ifs = [x for x in interface_addresses() if x.version == 4]
    port = a.node.connections.listen_addrs[0].port
    assert sorted(info.addrs) == sorted(
        f"/ip4/{x}/tcp/{port}/p2p/{a.node.peer_id}" for x in ifs)
    record = await a.node.dht.resolve(a.node.peer_id)
    assert record is not None and record.addrs
    assert not any("0.0.0.0" in x for x in record.addrs)
    if any(not x.is_loopback for x in ifs):
        assert not any("/127." in x for x in record.addrs)
    # A peer dialling one of those addresses reaches it.
    b = await start_node(host="127.0.0.2")
    await b.node.dial(Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{port}/p2p/{a.node.peer_id}"))
    await wait_for(lambda: b.node.peer_id in a.peers(), timeout=10)


async def test_announce_wins_over_the_expansion(start_node: StartNode) -> None:
    announce = Multiaddr.parse("/dns4/node.example/tcp/4100")
    a = await start_node(host="0.0.0.0", announce=(announce,))
    assert a.node.node_info().addrs == [str(announce.with_peer_id(a.node.peer_id))]
    record = await a.node.dht.resolve(a.node.peer_id)
    assert record is not None and list(record.addrs) == [str(announce)]


async def test_inbound_peers_are_listed_where_they_listen(start_node: StartNode) -> None:
    a = await start_node(host="127.0.0.1")
    b = await start_node(host="127.0.0.2")
    await b.node.dial(a.addr)
    await wait_for(lambda: b.node.peer_id in a.peers(), timeout=10)
    (info,) = a.node.peer_list()
    assert info.direction == "inbound"
    assert info.addr == str(b.addr)  # not 127.0.0.2:<ephemeral port>


# ---- shell completion ---------------------------------------------------------------------


def _bash_complete(script_text: str, words: list[str]) -> list[str]:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed")
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (f"{script_text}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
               "_spacepanda; printf '%s\\n' \"${COMPREPLY[@]}\"")
    r = subprocess.run([bash, "--norc", "-c", program], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line]


def test_bash_completion_from_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    text = capsys.readouterr().out
    assert text == script(build_parser(), "bash")
    assert _bash_complete(text, ["spacepanda", "di"]) == ["disconnect"]
    assert _bash_complete(text, ["spacepanda", "un"]) == ["unblock"]
    assert _bash_complete(text, ["spacepanda", "channel", ""]) == [
        "create", "list", "show", "invite", "remove", "admin", "leave"]
    assert _bash_complete(text, ["spacepanda", "run", "--log-f"]) == ["--log-format"]
    assert _bash_complete(text, ["spacepanda", "run", "--log-format", ""]) == [
        "console", "json"]
    assert "debug-all" in _bash_complete(text, ["spacepanda", "run", "--log-level", ""])
    # An option's value is skipped when finding the command path.
    assert _bash_complete(text, ["spacepanda", "channel", "--data-dir", "x", "cr"]) == [
        "create"]
    assert _bash_complete(text, ["spacepanda", "completion", ""]) == ["bash", "zsh"]
    assert "--block" in _bash_complete(text, ["spacepanda", "disconnect", "--"])


def test_zsh_completion_script(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["completion", "zsh"]) == 0
    text = capsys.readouterr().out
    assert "bashcompinit" in text
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh not installed")
    # Run the function as zsh's bashcompinit does (sh emulation, 0-based arrays).
    program = (
        f"autoload -U compinit && compinit -u -d {tmp_path}/zcompdump\n" + text +
        "\nt() { emulate -L sh; setopt kshglob noshglob braceexpand\n"
        "COMP_WORDS=(spacepanda channel ''); COMP_CWORD=2; _spacepanda\n"
        "print -l -- \"${COMPREPLY[@]}\"; }\nt\n"
    )
    r = subprocess.run([zsh, "-f", "-c", program], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["create", "list", "show", "invite", "remove", "admin", "leave"]
