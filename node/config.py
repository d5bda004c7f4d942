"""Node configuration: one frozen :class:`NodeConfig`, loaded from four layers.

Precedence, highest first: command-line flags > ``SPACEPANDA_*`` environment > ``config.toml`` in
the data dir > defaults. Every setting is declared once in ``_FIELDS`` (name, parser, default,
help); the env var name, the TOML key and the commented ``config.toml`` written by ``init`` all
derive from that table, so they cannot drift apart. Each bad value is a ConfigError that names
where it came from and what it was.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from node.core.errors import ConfigError, IdentityError, MultiaddrError
from node.core.identity import PeerId
from node.core.multiaddr import Multiaddr
from node.datadir import default_data_dir

__all__ = [
    "ENV_PREFIX",
    "NodeConfig",
    "default_config_toml",
    "load_config",
]

ENV_PREFIX = "SPACEPANDA_"
LogFormat = Literal["json", "console"]
_LOG_LEVELS = ("debug-all", "debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class NodeConfig:
    """Everything the daemon needs to start. Connection counts are per node."""

    data_dir: Path
    listen: Multiaddr
    api: Multiaddr
    bootstrap: tuple[Multiaddr, ...] = ()
    # Addresses other nodes should dial (published in the DHT record and the handshake);
    # empty means the bound listen address. Needed when listening on 0.0.0.0 or behind NAT.
    announce: tuple[Multiaddr, ...] = ()
    log_format: LogFormat = "console"
    log_level: str = "info"
    # One structured line per admin API request (method, path without the query, status).
    access_log: bool = False
    max_connections: int = 64  # high watermark: trim above this
    min_connections: int = 8  # low watermark: dial more below this
    target_degree: int = 8
    full_mesh_below: int = 16  # networks smaller than this get a full mesh
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 45.0
    keepalive_interval_s: float = 15.0
    dial_timeout_s: float = 10.0
    send_queue_frames: int = 256
    # Send delays that blur when messages were written (off | standard | high).
    jitter: str = "off"
    # Relay shards (gossip topics); every node relays all of them (docs/PROTOCOL.md 14.1).
    relay_shards: int = 1
    # Routing-table slots are limited per IPv4 subnet of this prefix length (anti-eclipse);
    # 32 limits per address, which local meshes on 127.0.0.x need.
    dht_subnet_prefix: int = 24
    # Accept channel invites without asking (bots, tests); people decide by hand otherwise.
    auto_accept_invites: bool = False
    # Peers never dialled and refused when they dial us, besides the API's deny list (which
    # an operator can change at run time; these only by editing the config).
    blocked_peers: tuple[PeerId, ...] = ()

    def __post_init__(self) -> None:
        if self.min_connections > self.max_connections:
            raise ConfigError(
                f"min_connections ({self.min_connections}) must not exceed "
                f"max_connections ({self.max_connections})"
            )
        if self.keepalive_interval_s >= self.idle_timeout_s:
            raise ConfigError(
                f"keepalive_interval_s ({self.keepalive_interval_s}) must be smaller than "
                f"idle_timeout_s ({self.idle_timeout_s}), or idle links would be dropped"
            )


# ---- value parsers: (raw value, from_text) -> typed value; raise ValueError with a reason ----
# ``from_text`` is True for flags and env vars (always strings) and False for TOML values
# (already typed: a TOML string where a number is expected is an error, not coerced).


def _multiaddr(value: object, from_text: bool) -> Multiaddr:
    if not isinstance(value, str):
        raise ValueError("expected a multiaddr string")
    try:
        return Multiaddr.parse(value.strip())
    except MultiaddrError as exc:
        raise ValueError(str(exc)) from None


def _bind_addr(value: object, from_text: bool) -> Multiaddr:
    """A local address to bind: port 0 (any free port) allowed, no /p2p suffix."""
    if not isinstance(value, str):
        raise ValueError("expected a multiaddr string")
    try:
        addr = Multiaddr.parse(value.strip(), allow_port_zero=True)
    except MultiaddrError as exc:
        raise ValueError(str(exc)) from None
    if addr.peer_id is not None:
        raise ValueError("a bind address must not end in /p2p/<PeerId>")
    return addr


def _multiaddr_list(value: object, from_text: bool) -> tuple[Multiaddr, ...]:
    items: list[object]
    if isinstance(value, str) and from_text:
        items = [p for p in (s.strip() for s in value.split(",")) if p]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError("expected a list of multiaddr strings")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(_multiaddr(item, from_text))
        except ValueError as exc:
            raise ValueError(f"item {i} ({item!r}): {exc}") from None
    return tuple(out)


def _peer_id_list(value: object, from_text: bool) -> tuple[PeerId, ...]:
    items: list[object]
    if isinstance(value, str) and from_text:
        items = [p for p in (s.strip() for s in value.split(",")) if p]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError("expected a list of PeerId strings")
    out: list[PeerId] = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ValueError(f"item {i} ({item!r}): expected a PeerId string")
        try:
            peer = PeerId.from_string(item.strip())
        except IdentityError as exc:
            raise ValueError(f"item {i} ({item!r}): {exc}") from None
        if peer not in out:
            out.append(peer)
    return tuple(out)


def _int_at_least(minimum: int) -> Callable[[object, bool], int]:
    def parse(value: object, from_text: bool) -> int:
        if from_text and isinstance(value, str):
            try:
                value = int(value.strip(), 10)
            except ValueError:
                raise ValueError("expected an integer") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected an integer")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def _int_between(low: int, high: int) -> Callable[[object, bool], int]:
    at_least = _int_at_least(low)

    def parse(value: object, from_text: bool) -> int:
        number = at_least(value, from_text)
        if number > high:
            raise ValueError(f"must be at most {high}")
        return number

    return parse


def _positive_seconds(value: object, from_text: bool) -> float:
    if from_text and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError("expected a number of seconds") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number of seconds")
    f = float(value)
    if not math.isfinite(f) or f <= 0:
        raise ValueError("must be a positive, finite number of seconds")
    return f


def _bool(value: object, from_text: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_text and isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise ValueError("expected true or false")


def _choice(*options: str) -> Callable[[object, bool], str]:
    def parse(value: object, from_text: bool) -> str:
        if not isinstance(value, str) or value.strip().lower() not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value.strip().lower()

    return parse


@dataclass(frozen=True)
class _Field:
    name: str
    parse: Callable[[object, bool], Any]
    default: Any
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/4001"
_DEFAULT_API = "/ip4/127.0.0.1/tcp/5001"

_FIELDS: tuple[_Field, ...] = (
    _Field("listen", _bind_addr, _DEFAULT_LISTEN, "transport (TCP) and DHT (UDP) address"),
    _Field("api", _bind_addr, _DEFAULT_API, "admin API address (keep it on loopback)"),
    _Field("bootstrap", _multiaddr_list, [], "peers to contact on start (/.../p2p/<PeerId>)"),
    _Field("announce", _multiaddr_list, [], "addresses to publish instead of the listen address"),
    _Field("log_format", _choice("console", "json"), "console", '"console" or "json"'),
    _Field(
        "log_level",
        _choice(*_LOG_LEVELS),
        "info",
        "debug, info, warning, error, critical; debug-all adds the libraries' debug output",
    ),
    _Field("access_log", _bool, False, "log every admin API request (structured)"),
    _Field("max_connections", _int_at_least(1), 64, "high watermark: trim connections above"),
    _Field("min_connections", _int_at_least(0), 8, "low watermark: dial more peers below"),
    _Field("target_degree", _int_at_least(1), 8, "peers each node keeps in a large mesh"),
    _Field("full_mesh_below", _int_at_least(0), 16, "networks smaller than this: full mesh"),
    _Field("handshake_timeout_s", _positive_seconds, 10.0, "Noise handshake deadline"),
    _Field("idle_timeout_s", _positive_seconds, 45.0, "close a link silent for this long"),
    _Field("keepalive_interval_s", _positive_seconds, 15.0, "ping interval on idle links"),
    _Field("dial_timeout_s", _positive_seconds, 10.0, "TCP connect + handshake deadline"),
    _Field("send_queue_frames", _int_at_least(1), 256, "per-peer send queue bound"),
    _Field(
        "jitter",
        _choice("off", "standard", "high"),
        "off",
        "send delays: off; standard (exponential, mean 200 ms); high (mean 1 s, cover traffic)",
    ),
    _Field("relay_shards", _int_between(1, 64), 1,
           "relay shards (gossip topics) envelopes are spread over by routing tag"),
    _Field(
        "dht_subnet_prefix",
        _int_between(8, 32),
        24,
        "IPv4 prefix length grouping DHT contacts for per-subnet limits; 32 means per address",
    ),
    _Field("auto_accept_invites", _bool, False, "accept channel invites without asking"),
    _Field("blocked_peers", _peer_id_list, [],
           "PeerIds never dialled and refused when they dial (besides the API's deny list)"),
)
_BY_NAME = {f.name: f for f in _FIELDS}
assert set(_BY_NAME) | {"data_dir"} == {f.name for f in fields(NodeConfig)}


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    return repr(value)


def default_config_toml() -> str:
    """The ``config.toml`` that ``init`` writes: every setting, commented out at its default."""
    lines = [
        "# SpacePanda node configuration.",
        "# Precedence: command-line flags > SPACEPANDA_* environment > this file > defaults.",
        "# Uncomment a line to change it. Unknown keys are rejected.",
        "",
    ]
    for f in _FIELDS:
        lines.append(f"# {f.help} (env {f.env})")
        lines.append(f"# {f.name} = {_toml_literal(f.default)}")
        lines.append("")
    return "\n".join(lines)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise ConfigError(f"config file {path} is not valid TOML: nested too deeply") from None
    except UnicodeDecodeError as exc:
        # TOML is UTF-8; say where the first bad byte is, in one line (no traceback).
        raise ConfigError(
            f"config file {path} is not valid UTF-8 (byte {exc.object[exc.start]:#04x} at "
            f"offset {exc.start}); TOML files must be UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None


def load_config(
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    data_dir: Path | str | None = None,
    config_file: Path | None = None,
) -> NodeConfig:
    """Build a :class:`NodeConfig` from flags > env > ``config.toml`` > defaults.

    ``flags`` maps field names (``listen``, ``bootstrap``...) to values from argparse; ``None``
    values mean "not given". ``bootstrap`` may be a list of strings. ``env`` defaults to
    ``os.environ``. The data dir comes from ``data_dir`` (the ``--data-dir`` flag), else
    ``$SPACEPANDA_DATA_DIR``, else the default; its ``config.toml`` is read unless
    ``config_file`` names another file.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    unknown_flags = set(given) - set(_BY_NAME)
    if unknown_flags:
        raise ConfigError(f"unknown configuration flag(s): {', '.join(sorted(unknown_flags))}")

    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir(dict(environ))
    path = config_file if config_file is not None else root / "config.toml"
    file_values = _read_toml(path)
    if "data_dir" in file_values:
        raise ConfigError(
            f"config file {path}: key 'data_dir' is not allowed in the file it lives in; "
            f"use --data-dir or {ENV_PREFIX}DATA_DIR"
        )
    unknown = sorted(set(file_values) - set(_BY_NAME))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
            f"known keys: {', '.join(_BY_NAME)}"
        )

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in _FIELDS:
        if f.name in given:
            raw, from_text, source = given[f.name], True, f"flag {f.flag}"
        elif f.env in environ:
            raw, from_text, source = environ[f.env], True, f"environment {f.env}"
        elif f.name in file_values:
            raw, from_text, source = file_values[f.name], False, f"{path} key '{f.name}'"
        else:
            raw, from_text, source = f.default, False, "default"
        sources[f.name] = source
        try:
            values[f.name] = f.parse(raw, from_text)
        except ValueError as exc:
            raise ConfigError(f"invalid {f.name} from {source}: {raw!r}: {exc}") from None
    try:
        return NodeConfig(data_dir=root, **values)
    except ConfigError as exc:
        # Cross-field rules: say where each side of the conflict came from.
        named = [n for n in _BY_NAME if n in str(exc)]
        where = "; ".join(f"{n} from {sources[n]}" for n in named)
        raise ConfigError(f"{exc} ({where})" if where else str(exc)) from None
