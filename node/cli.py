"""``spacepanda`` command line (also ``python -m node``).

Exit codes: 0 success, 1 failure (with a one-line reason on stderr, never a traceback),
2 usage error (argparse's), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.client import ApiClient, ApiError, NodeUnreachable
from node.buildinfo import build_info, commit, version
from node.config import load_config
from node.core.errors import IdentityError, MultiaddrError, SpacePandaError
from node.core.identity import PeerId
from node.core.multiaddr import Multiaddr
from node.datadir import DataDir, default_data_dir
from node.logs import LOG_LEVELS, configure_logging
from node.netif import expand_listen, interface_addresses

__all__ = ["build_parser", "format_dht", "format_record", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# ---- argument types: a bad value is a usage error (exit 2) naming the argument ----------


def _dial_addr(text: str) -> str:
    try:
        Multiaddr.parse(text)
    except MultiaddrError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _bind_addr(text: str) -> str:
    try:
        addr = Multiaddr.parse(text, allow_port_zero=True)
    except MultiaddrError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if addr.peer_id is not None:
        raise argparse.ArgumentTypeError("a bind address must not end in /p2p/<PeerId>")
    return text


def _peer_id(text: str) -> str:
    try:
        PeerId.from_string(text)
    except IdentityError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# ---- output helpers ---------------------------------------------------------------------


def _out(text: str = "") -> None:
    print(text, file=sys.stdout)


def _json(value: Any) -> None:
    _out(json.dumps(value, indent=2, sort_keys=True))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (headers, *rows):
        cells = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def duration(seconds: float) -> str:
    s = max(0, int(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()


# ---- commands ---------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    d = DataDir(_data_dir(args))
    identity = d.create()
    if args.json:
        _json({"peer_id": str(identity.peer_id), "data_dir": str(d.path)})
    else:
        print(f"initialised {d.path}", file=sys.stderr)
        _out(str(identity.peer_id))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    d = DataDir(_data_dir(args))
    if not d.is_initialised():
        if not args.init:
            raise SpacePandaError(
                f"data dir {d.path} is not initialised; run `spacepanda init --data-dir "
                f"{d.path}` first or pass --init"
            )
        identity = d.create()
        print(f"initialised {d.path} as {identity.peer_id}", file=sys.stderr)
    flags = {
        "listen": args.listen,
        "api": args.api,
        "bootstrap": args.bootstrap,
        "log_format": args.log_format,
        "log_level": args.log_level,
        "access_log": "true" if args.access_log else None,
        "auto_accept_invites": "true" if args.auto_accept_invites else None,
    }
    config = load_config(flags, data_dir=d.path)
    configure_logging(config.log_format, config.log_level)
    # Imported here: the daemon pulls in the whole network stack, which the other
    # commands do not need.
    from node.daemon import run as run_daemon

    return int(run_daemon(config))


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient.from_data_dir(_data_dir(args))


def _offline_addrs(d: DataDir, peer_id: PeerId) -> list[str]:
    """Where the node will be reachable, from its configuration: announce addresses, else
    the listen address (0.0.0.0 / :: expanded to this host's interface addresses)."""
    config = load_config({}, data_dir=d.path)
    addrs = list(config.announce) or expand_listen([config.listen], interface_addresses())
    return [str(a.without_peer_id().with_peer_id(peer_id)) for a in addrs]


def cmd_id(args: argparse.Namespace) -> int:
    """Works without a running node (kubo's ``ipfs id`` does): the data dir has the PeerId
    and the configuration the addresses; a running node's API has the live answer."""
    d = DataDir(_data_dir(args))
    peer_id = d.read_peer_id()
    info: dict[str, Any] | None = None
    why_offline = "not running"
    if d.api_path.exists():
        try:
            info = _client(args).node()
        except NodeUnreachable:
            why_offline = f"not running (stale {d.api_path} file)"
    if info is not None:
        info = {**info, "running": True}
    else:
        info = {
            "peer_id": str(peer_id),
            "addrs": _offline_addrs(d, peer_id),
            "version": version(),
            "commit": commit(),
            "running": False,
        }
    if args.json:
        _json(info)
        return EXIT_OK
    addrs = [str(a) for a in info.get("addrs", [])] or ["-"]
    running = info["running"] is True
    rows = [
        ["peer id", str(info.get("peer_id", "?"))],
        ["status", "running" if running else f"{why_offline}; addresses from the configuration"],
        ["version", f"{info.get('version', '?')} (commit {str(info.get('commit', '?'))[:12]})"],
    ]
    if running:
        rows.append(["uptime", duration(float(info.get("uptime_s", 0)))])
    rows += [["addrs", addrs[0]], *[["", a] for a in addrs[1:]]]
    _out(table(["", ""], rows).split("\n", 1)[1])
    return EXIT_OK


def cmd_version(args: argparse.Namespace) -> int:
    info = build_info()
    if args.json:
        _json(info)
    else:
        _out(f"spacepanda {info['version']}")
        _out(table(["", ""], [[k, info[k]] for k in ("commit", "python", "platform")])
             .split("\n", 1)[1])
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    from node.completion import script

    sys.stdout.write(script(build_parser(), args.shell))
    return EXIT_OK


def cmd_peers(args: argparse.Namespace) -> int:
    peers = _client(args).peers()
    if args.json:
        _json({"peers": peers})
        return EXIT_OK
    if not peers:
        _out("no connected peers")
        return EXIT_OK
    now = time.time()
    rows = []
    for p in sorted(peers, key=lambda p: str(p.get("peer_id"))):
        rtt = p.get("rtt_ms")
        since = p.get("connected_since")
        rows.append(
            [
                str(p.get("peer_id", "?")),
                str(p.get("direction", "?")),
                "-" if rtt is None else f"{float(rtt):.1f}ms",
                "-" if since is None else duration(now - float(since)),
                str(p.get("addr", "?")),
            ]
        )
    _out(table(["PEER ID", "DIR", "RTT", "UP", "ADDRESS"], rows))
    return EXIT_OK


def cmd_connect(args: argparse.Namespace) -> int:
    info, created = _client(args).connect(args.multiaddr)
    if args.json:
        _json(info)
    else:
        verb = "connected to" if created else "already connected to"
        _out(f"{verb} {info.get('peer_id')} at {info.get('addr')}")
    return EXIT_OK


def cmd_disconnect(args: argparse.Namespace) -> int:
    _client(args).disconnect(args.peer_id, block=args.block)
    if args.json:
        _json({"peer_id": args.peer_id, "disconnected": True, "blocked": args.block})
    elif args.block:
        _out(f"disconnected and blocked {args.peer_id}")
    else:
        _out(f"disconnected {args.peer_id}")
    return EXIT_OK


def cmd_blocks(args: argparse.Namespace) -> int:
    blocks = _client(args).blocks()
    if args.json:
        _json({"blocks": blocks})
        return EXIT_OK
    if not blocks:
        _out("no blocked peers")
        return EXIT_OK
    rows = []
    for b in blocks:
        at = b.get("blocked_at")
        when = (
            datetime.fromtimestamp(float(at), tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            if isinstance(at, int | float) and not isinstance(at, bool)
            else "?"
        )
        rows.append([str(b.get("peer_id", "?")), when])
    _out(table(["PEER ID", "BLOCKED SINCE"], rows))
    return EXIT_OK


def cmd_unblock(args: argparse.Namespace) -> int:
    _client(args).unblock(args.peer_id)
    if args.json:
        _json({"peer_id": args.peer_id, "blocked": False})
    else:
        _out(f"unblocked {args.peer_id}")
    return EXIT_OK


def _count(value: Any) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "?"


def size(n: int) -> str:
    """Bytes for humans: ``512 B``, ``3.2 KiB``, ``1.5 MiB``."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def format_dht(stats: dict[str, Any]) -> str:
    """The readable ``spacepanda dht`` summary; tolerant of missing or extra fields."""
    ready = stats.get("ready")
    buckets = stats.get("buckets")
    if isinstance(buckets, list) and buckets:
        fill = " ".join(_count(b) for b in buckets)
        bucket_text = f"{len(buckets)}: {fill}"
    else:
        bucket_text = "-"
    records = _count(stats.get("records"))
    record_bytes = stats.get("record_bytes")
    if isinstance(record_bytes, int) and not isinstance(record_bytes, bool):
        records += f" ({size(record_bytes)})"
    lookups = stats.get("lookups")
    lk: dict[str, Any] = lookups if isinstance(lookups, dict) else {}
    lookup_text = (
        f"{_count(lk.get('total'))} ({_count(lk.get('found'))} found, "
        f"{_count(lk.get('missed'))} missed), {_count(lk.get('random_walks'))} random walks"
    )
    mean = lk.get("mean_rounds")
    if isinstance(mean, int | float) and not isinstance(mean, bool):
        lookup_text += f", {float(mean):.1f} rounds on average"
    rows = [
        ["node id", str(stats.get("node_id", "?"))],
        ["peer id", str(stats.get("peer_id", "?"))],
        ["ready", ("yes" if ready else "no") if isinstance(ready, bool) else "?"],
        ["contacts", _count(stats.get("contacts"))],
        ["buckets", bucket_text],
        ["records", records],
        ["lookups", lookup_text],
    ]
    boot = stats.get("bootstrap")
    if isinstance(boot, dict):
        rows.append(["bootstrap", _bootstrap_text(boot)])
        addrs = boot.get("addrs")
        if isinstance(addrs, list):
            rows.extend(["", f"via {a}"] for a in addrs)
        saved = boot.get("saved_contacts")
        if isinstance(saved, int) and saved > 0:
            rows.append(["", f"via {saved} saved contact(s)"])
    rpc = stats.get("rpc")
    if isinstance(rpc, dict) and "timeouts" in rpc:
        rows.append(["timeouts", f"{_count(rpc.get('timeouts'))} RPCs unanswered"])
    if "publishes" in stats:
        rows.append(
            ["publishes", f"{_count(stats.get('publishes'))} (seq {_count(stats.get('seq'))})"]
        )
    drops = stats.get("drops")
    counted = (
        sorted(
            ((str(k), v) for k, v in drops.items() if isinstance(v, int) and v > 0),
            key=lambda kv: (-kv[1], kv[0]),
        )
        if isinstance(drops, dict)
        else []
    )
    if not counted:
        rows.append(["drops", "none" if isinstance(drops, dict) else "?"])
    else:
        width = max(len(k) for k, _ in counted)
        for i, (reason, n) in enumerate(counted):
            rows.append(["drops" if i == 0 else "", f"{reason.ljust(width)}  {n}"])
    return table(["", ""], rows).split("\n", 1)[1]


def _bootstrap_text(boot: dict[str, Any]) -> str:
    state = boot.get("state")
    attempts, failures = _count(boot.get("attempts")), _count(boot.get("failures"))
    if state == "bootstrap_node":
        return "none: this is a bootstrap node"
    if state == "joined":
        after = boot.get("joined_after_s")
        text = f"joined after {attempts} attempt(s)"
        if isinstance(after, int | float) and not isinstance(after, bool):
            text += f" in {float(after):.1f} s"
        return text + (f", {failures} failed" if failures not in ("0", "?") else "")
    text = f"NOT JOINED: {attempts} attempt(s), {failures} failed"
    detail = boot.get("last_error_detail")
    if isinstance(detail, str):
        text += f"; last: {detail}"
    retry = boot.get("next_retry_in_s")
    if isinstance(retry, int | float) and not isinstance(retry, bool):
        text += f"; next in ~{float(retry):g} s"
    return text


def _expiry(expires_at: Any, now: float) -> str:
    if isinstance(expires_at, bool) or not isinstance(expires_at, int):
        return "?"
    try:
        when = datetime.fromtimestamp(expires_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(expires_at)
    left = expires_at - now
    return f"{when} (in {duration(left)})" if left > 0 else f"{when} (expired)"


def format_record(record: dict[str, Any], now: float) -> str:
    """The readable ``spacepanda resolve`` output."""
    addrs = record.get("addrs")
    addr_list = [str(a) for a in addrs] if isinstance(addrs, list) and addrs else ["-"]
    rows = [
        ["peer id", str(record.get("peer_id", "?"))],
        ["seq", _count(record.get("seq"))],
        ["expires", _expiry(record.get("expires_at"), now)],
        ["noise key", str(record.get("noise_static_key", "?"))],
        ["envelope key", str(record.get("envelope_key", "?"))],
        ["addrs", addr_list[0]],
        *[["", a] for a in addr_list[1:]],
    ]
    return table(["", ""], rows).split("\n", 1)[1]


def cmd_dht(args: argparse.Namespace) -> int:
    stats = _client(args).dht()
    if args.json:
        _json(stats)
    else:
        _out(format_dht(stats))
    return EXIT_OK


def cmd_resolve(args: argparse.Namespace) -> int:
    record = _client(args).resolve(args.peer_id)
    if record is None:
        return _error(f"no valid peer record for {args.peer_id} found in the DHT")
    if args.json:
        _json(record)
    else:
        _out(format_record(record, time.time()))
    return EXIT_OK


# ---- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spacepanda", description="SpacePanda peer-to-peer encrypted messenger node"
    )
    parser.add_argument(
        "--version", action="version", version=f"spacepanda {version()} (commit {commit()})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        metavar="D",
        help="data directory (default: $SPACEPANDA_DATA_DIR or ~/.local/share/spacepanda)",
    )
    with_json = argparse.ArgumentParser(add_help=False)
    with_json.add_argument("--json", action="store_true", help="print JSON instead of text")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, *parents: Any) -> Any:
        p = sub.add_parser(name, help=help, description=help, parents=[common, *parents])
        p.set_defaults(func=func)
        return p

    add("init", cmd_init, "create identity, config.toml and api.token; print the PeerId", with_json)

    run = add("run", cmd_run, "run the node in the foreground (SIGTERM/SIGINT stop it)")
    run.add_argument("--listen", metavar="MULTIADDR", type=_bind_addr, help="transport address")
    run.add_argument("--api", metavar="MULTIADDR", type=_bind_addr, help="admin API address")
    run.add_argument(
        "--bootstrap",
        metavar="MULTIADDR",
        type=_dial_addr,
        action="append",
        help="bootstrap peer (repeatable; replaces configured ones)",
    )
    run.add_argument("--init", action="store_true", help="initialise the data dir if missing")
    run.add_argument("--log-format", choices=("console", "json"))
    run.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.lower,
        help="debug-all: debug including the libraries' own output (otherwise warning and up)",
    )
    run.add_argument(
        "--access-log", action="store_true", help="log every admin API request (structured)"
    )
    run.add_argument(
        "--auto-accept-invites",
        action="store_true",
        help="accept channel invites without asking (bots, tests)",
    )

    add("id", cmd_id, "show the node's PeerId and addresses (running or not)", with_json)
    add("version", cmd_version, "show the version, git commit and Python", with_json)
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="print a shell completion script; bash: "
        "`source <(spacepanda completion bash)`, zsh: "
        "`source <(spacepanda completion zsh)` (after compinit)",
    )
    completion.add_argument("shell", choices=("bash", "zsh"))
    completion.set_defaults(func=cmd_completion)
    add("peers", cmd_peers, "list connected peers", with_json)
    connect = add("connect", cmd_connect, "dial a peer and wait for the handshake", with_json)
    connect.add_argument("multiaddr", metavar="MULTIADDR", type=_dial_addr)
    disconnect = add(
        "disconnect",
        cmd_disconnect,
        "close the connection to a peer and forget it from the address book",
        with_json,
    )
    disconnect.add_argument("peer_id", metavar="PEER_ID", type=_peer_id)
    disconnect.add_argument(
        "--block",
        action="store_true",
        help="also block it: refuse its connections and never dial it, across restarts",
    )
    add("blocks", cmd_blocks, "list blocked peers (see disconnect --block)", with_json)
    unblock = add("unblock", cmd_unblock, "take a peer off the block list", with_json)
    unblock.add_argument("peer_id", metavar="PEER_ID", type=_peer_id)
    add("dht", cmd_dht, "show the DHT: node id, contacts, buckets, records, lookups", with_json)
    resolve = add("resolve", cmd_resolve, "look up a peer's verified record in the DHT", with_json)
    resolve.add_argument("peer_id", metavar="PEER_ID", type=_peer_id)

    # Imported here: node.cli_network and node.cli_channels build on this module's helpers.
    from node import cli_channels, cli_network

    cli_network.add_commands(add, with_json)
    cli_channels.add_commands(add, with_json)
    return parser


def _error(message: str) -> int:
    print(f"spacepanda: error: {message}", file=sys.stderr)
    return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("spacepanda: error: a command is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ApiError as exc:
        hint = " (does D/api.token match the running node?)" if exc.status == 401 else ""
        return _error(f"node API: {exc}{hint}")
    except (SpacePandaError, NodeUnreachable) as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
