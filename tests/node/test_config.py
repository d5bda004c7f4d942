from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from node.config import NodeConfig, default_config_toml, load_config
from node.core.errors import ConfigError
from node.core.identity import Identity
from node.core.multiaddr import Multiaddr

BOOT_A = "/ip4/10.0.0.1/tcp/4001"
BOOT_B = "/dns4/boot.example/tcp/4001"


def _write(d: Path, text: str) -> None:
    (d / "config.toml").write_text(text)


def test_defaults(tmp_path: Path) -> None:
    c = load_config({}, {}, data_dir=tmp_path)
    assert c.data_dir == tmp_path
    assert c.listen == Multiaddr.parse("/ip4/127.0.0.1/tcp/4001")
    assert c.api == Multiaddr.parse("/ip4/127.0.0.1/tcp/5001")
    assert c.bootstrap == ()
    assert (c.log_format, c.log_level) == ("console", "info")
    assert (c.max_connections, c.min_connections, c.target_degree, c.full_mesh_below) == (
        64,
        8,
        8,
        16,
    )
    assert (c.handshake_timeout_s, c.idle_timeout_s, c.keepalive_interval_s) == (10, 45, 15)
    assert (c.dial_timeout_s, c.send_queue_frames, c.jitter) == (10, 256, "off")


def test_written_default_file_matches_defaults_when_uncommented(tmp_path: Path) -> None:
    text = default_config_toml()
    assert tomllib.loads(text) == {}  # all commented out
    settings = [ln[2:] for ln in text.splitlines() if ln.startswith("# ") and " = " in ln]
    _write(tmp_path, "\n".join(settings) + "\n")
    assert load_config({}, {}, data_dir=tmp_path) == load_config(
        {}, {}, data_dir=tmp_path, config_file=tmp_path / "absent.toml"
    )


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    _write(
        tmp_path,
        'listen = "/ip4/127.0.0.1/tcp/1111"\napi = "/ip4/127.0.0.1/tcp/2222"\n'
        'log_level = "warning"\nmax_connections = 10\n',
    )
    env = {"SPACEPANDA_LISTEN": "/ip4/127.0.0.1/tcp/3333", "SPACEPANDA_LOG_LEVEL": "debug"}
    flags = {"listen": "/ip4/127.0.0.1/tcp/4444", "api": None}
    c = load_config(flags, env, data_dir=tmp_path)
    assert c.listen.port == 4444  # flag beats env and file
    assert c.log_level == "debug"  # env beats file
    assert c.api.port == 2222  # file beats default; a None flag is "not given"
    assert c.max_connections == 10
    assert c.min_connections == 8  # default


def test_bootstrap_sources(tmp_path: Path) -> None:
    _write(tmp_path, f'bootstrap = ["{BOOT_A}"]\n')
    assert load_config({}, {}, data_dir=tmp_path).bootstrap == (Multiaddr.parse(BOOT_A),)
    env = {"SPACEPANDA_BOOTSTRAP": f" {BOOT_A} , {BOOT_B} "}
    got = load_config({}, env, data_dir=tmp_path).bootstrap
    assert [str(a) for a in got] == [BOOT_A, BOOT_B]
    assert load_config({}, {"SPACEPANDA_BOOTSTRAP": ""}, data_dir=tmp_path).bootstrap == ()
    flags = {"bootstrap": [BOOT_B]}
    assert load_config(flags, env, data_dir=tmp_path).bootstrap == (Multiaddr.parse(BOOT_B),)


def test_data_dir_from_env_and_its_config_file(tmp_path: Path) -> None:
    _write(tmp_path, 'jitter = "standard"\n')
    c = load_config({}, {"SPACEPANDA_DATA_DIR": str(tmp_path)})
    assert c.data_dir == tmp_path and c.jitter == "standard"


def test_port_zero_allowed_for_bind_addresses(tmp_path: Path) -> None:
    c = load_config(
        {"listen": "/ip4/127.0.0.1/tcp/0", "api": "/ip6/::1/tcp/0"}, {}, data_dir=tmp_path
    )
    assert (c.listen.port, c.api.port) == (0, 0)


@pytest.mark.parametrize(
    ("flags", "env", "file", "needles"),
    [
        ({"listen": "/ip4/1.2.3/tcp/1"}, {}, "", ["flag --listen", "/ip4/1.2.3/tcp/1", "IPv4"]),
        ({}, {"SPACEPANDA_API": "nope"}, "", ["environment SPACEPANDA_API", "'nope'"]),
        ({}, {"SPACEPANDA_MAX_CONNECTIONS": "ten"}, "", ["SPACEPANDA_MAX_CONNECTIONS", "'ten'"]),
        ({}, {"SPACEPANDA_LOG_FORMAT": "xml"}, "", ["SPACEPANDA_LOG_FORMAT", "console, json"]),
        ({}, {}, 'max_connections = "64"\n', ["key 'max_connections'", "integer"]),
        ({}, {}, "max_connections = true\n", ["key 'max_connections'", "True"]),
        ({}, {}, "idle_timeout_s = -1\n", ["key 'idle_timeout_s'", "positive"]),
        ({}, {}, "idle_timeout_s = nan\n", ["key 'idle_timeout_s'", "positive"]),
        ({}, {}, 'bootstrap = ["/ip4/1.1.1.1/tcp/0"]\n', ["key 'bootstrap'", "item 0"]),
        ({}, {}, 'bootstrap = "/ip4/1.1.1.1/tcp/1"\n', ["key 'bootstrap'", "list"]),
        ({"bootstrap": ["/ip4/1.1.1.1/udp/1"]}, {}, "", ["flag --bootstrap", "udp"]),
        ({}, {"SPACEPANDA_LISTEN": f"{BOOT_A}/p2p/x"}, "", ["SPACEPANDA_LISTEN"]),
        ({}, {}, "min_connections = 100\n", ["min_connections", "max_connections", "default"]),
        (
            {},
            {"SPACEPANDA_KEEPALIVE_INTERVAL_S": "60"},
            "",
            ["keepalive_interval_s", "environment SPACEPANDA_KEEPALIVE_INTERVAL_S"],
        ),
    ],
)
def test_bad_values_name_source_and_value(
    tmp_path: Path, flags: dict[str, object], env: dict[str, str], file: str, needles: list[str]
) -> None:
    _write(tmp_path, file)
    with pytest.raises(ConfigError) as info:
        load_config(flags, env, data_dir=tmp_path)
    for n in needles:
        assert n in str(info.value)


def test_unknown_file_keys_rejected(tmp_path: Path) -> None:
    _write(tmp_path, 'listen = "/ip4/127.0.0.1/tcp/1"\nlisten_addr = 1\n[mesh]\nx = 1\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'listen_addr', 'mesh'"):
        load_config({}, {}, data_dir=tmp_path)


def test_data_dir_key_rejected_in_file(tmp_path: Path) -> None:
    _write(tmp_path, 'data_dir = "/elsewhere"\n')
    with pytest.raises(ConfigError, match="data_dir"):
        load_config({}, {}, data_dir=tmp_path)


def test_invalid_toml_named(tmp_path: Path) -> None:
    _write(tmp_path, "listen = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({}, {}, data_dir=tmp_path)


def test_unknown_flag_is_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown configuration flag"):
        load_config({"colour": "blue"}, {}, data_dir=tmp_path)


def test_config_is_frozen(tmp_path: Path) -> None:
    c = load_config({}, {}, data_dir=tmp_path)
    with pytest.raises(AttributeError):
        c.jitter = "high"  # type: ignore[misc]
    assert isinstance(c, NodeConfig)


_FIELD_NAMES = [
    "listen",
    "api",
    "bootstrap",
    "log_format",
    "log_level",
    "max_connections",
    "min_connections",
    "target_degree",
    "full_mesh_below",
    "handshake_timeout_s",
    "idle_timeout_s",
    "keepalive_interval_s",
    "dial_timeout_s",
    "send_queue_frames",
    "jitter",
    "relay_shards",
    "blocked_peers",
]
_toml_values = st.recursive(
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(_FIELD_NAMES), text=st.text(max_size=60))
def test_any_env_text_is_config_error_or_valid(name: str, text: str) -> None:
    try:
        c = load_config({}, {f"SPACEPANDA_{name.upper()}": text}, data_dir=Path("/nonexistent"))
    except ConfigError as exc:
        assert f"SPACEPANDA_{name.upper()}" in str(exc)
    else:
        assert isinstance(c, NodeConfig)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(_FIELD_NAMES), value=_toml_values)
def test_any_toml_value_is_config_error_or_valid(name: str, value: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.toml").write_text(tomli_w.dumps({name: value}))
        try:
            c = load_config({}, {}, data_dir=Path(tmp))
        except ConfigError as exc:
            assert f"'{name}'" in str(exc) or "max_connections" in str(exc)
        else:
            assert isinstance(c, NodeConfig)


def test_blocked_peers_from_toml_and_env() -> None:
    a, b = Identity.generate().peer_id, Identity.generate().peer_id
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.toml").write_text(tomli_w.dumps({"blocked_peers": [str(a), str(a)]}))
        assert load_config({}, {}, data_dir=Path(tmp)).blocked_peers == (a,)
        env = {"SPACEPANDA_BLOCKED_PEERS": f" {a} , {b} "}
        assert load_config({}, env, data_dir=Path(tmp)).blocked_peers == (a, b)
        with pytest.raises(ConfigError, match="item 1"):
            load_config({}, {"SPACEPANDA_BLOCKED_PEERS": f"{a},not-a-peer"},
                        data_dir=Path(tmp))
