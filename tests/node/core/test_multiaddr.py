"""Multiaddr parsing: strict, canonical, round-tripping; only MultiaddrError escapes."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.ed25519 import is_strict_public_key
from node.core.errors import MultiaddrError
from node.core.identity import Identity, PeerId
from node.core.multiaddr import MAX_MULTIADDR_LEN, Multiaddr

PID = Identity.from_seed(bytes(range(32))).peer_id
PID2 = Identity.from_seed(bytes(32)).peer_id


@pytest.mark.parametrize(
    ("text", "family", "host", "port"),
    [
        ("/ip4/127.0.0.1/tcp/4001", "ip4", "127.0.0.1", 4001),
        ("/ip4/0.0.0.0/tcp/1", "ip4", "0.0.0.0", 1),
        ("/ip4/255.255.255.255/tcp/65535", "ip4", "255.255.255.255", 65535),
        ("/ip6/::1/tcp/4001", "ip6", "::1", 4001),
        ("/ip6/::/tcp/4001", "ip6", "::", 4001),
        ("/ip6/2001:db8::1/tcp/80", "ip6", "2001:db8::1", 80),
        ("/ip6/2001:db8:0:1:1:1:1:1/tcp/80", "ip6", "2001:db8:0:1:1:1:1:1", 80),
        ("/ip6/2001:0:0:1::1/tcp/80", "ip6", "2001:0:0:1::1", 80),
        ("/ip6/::ffff:102:304/tcp/80", "ip6", "::ffff:102:304", 80),
        ("/dns4/boot.example.org/tcp/4001", "dns4", "boot.example.org", 4001),
        ("/dns6/localhost/tcp/9", "dns6", "localhost", 9),
        ("/dns/a-b.c0.io/tcp/443", "dns", "a-b.c0.io", 443),
    ],
)
def test_parse_valid(text: str, family: str, host: str, port: int) -> None:
    ma = Multiaddr.parse(text)
    assert (ma.family, ma.host, ma.port, ma.peer_id) == (family, host, port, None)
    assert str(ma) == ma.to_string() == text
    assert ma.host_port() == (host, port)
    assert ma.is_ip == family.startswith("ip")
    with_id = Multiaddr.parse(f"{text}/p2p/{PID}")
    assert with_id.peer_id == PID
    assert str(with_id) == f"{text}/p2p/{PID.to_string()}"
    assert with_id.without_peer_id() == ma
    assert ma.with_peer_id(PID) == with_id
    assert ma.with_peer_id(PID2) != with_id
    assert Multiaddr.parse(str(with_id)) == with_id


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "start with '/'"),
        ("ip4/1.2.3.4/tcp/1", "start with '/'"),
        ("/", "empty component"),
        ("/ip4/1.2.3.4/tcp/1/", "empty component"),
        ("/ip4//tcp/1", "empty component"),
        ("/ip4", "needs a value"),
        ("/ip4/1.2.3.4", "missing /tcp"),
        ("/ip4/1.2.3.4/udp/1", "'udp'"),
        ("/ip4/1.2.3.4/tcp", "needs a port"),
        ("/ip4/1.2.3.4/tcp/0", "port 0"),
        ("/ip4/1.2.3.4/tcp/65536", "out of range"),
        ("/ip4/1.2.3.4/tcp/99999", "out of range"),
        ("/ip4/1.2.3.4/tcp/080", "invalid tcp port"),
        ("/ip4/1.2.3.4/tcp/+80", "invalid tcp port"),
        ("/ip4/1.2.3.4/tcp/8 0", "invalid tcp port"),
        ("/ip4/1.2.3.4/tcp/123456", "invalid tcp port"),
        ("/ip4/1.2.3/tcp/1", "invalid IPv4"),
        ("/ip4/1.2.3.256/tcp/1", "invalid IPv4"),
        ("/ip4/01.2.3.4/tcp/1", "IPv4"),
        ("/ip4/::1/tcp/1", "invalid IPv4"),
        ("/ip6/1.2.3.4/tcp/1", "invalid IPv6"),
        ("/ip6/::0001/tcp/1", "non-canonical IPv6"),
        ("/ip6/0:0:0:0:0:0:0:1/tcp/1", "'::1'"),
        ("/ip6/2001:DB8::1/tcp/1", "non-canonical IPv6"),
        ("/ip6/2001:db8:0:0:1:0:0:1/tcp/1", "'2001:db8::1:0:0:1'"),
        ("/ip6/2001:db8::1:1:1:1:1/tcp/1", "'2001:db8:0:1:1:1:1:1'"),
        ("/ip6/::ffff:1.2.3.4/tcp/1", "'::ffff:102:304'"),
        ("/ip6/fe80::1%eth0/tcp/1", "zone"),
        ("/dns4/Example.com/tcp/1", "lowercase"),
        ("/dns4/example.com./tcp/1", "invalid hostname"),
        ("/dns4/-a.com/tcp/1", "invalid hostname"),
        ("/dns4/a-.com/tcp/1", "invalid hostname"),
        ("/dns4/a..com/tcp/1", "invalid hostname"),
        ("/dns4/a_b.com/tcp/1", "invalid hostname"),
        ("/dns4/" + "a" * 64 + ".com/tcp/1", "invalid hostname"),
        ("/dns4/" + ".".join(["a" * 50] * 5) + "/tcp/1", "1..253"),
        ("/dns/1.2.3.4/tcp/1", "use /ip4"),
        ("/dns/bücher.de/tcp/1", "ASCII"),
        ("/dns/a\tb/tcp/1", "ASCII"),
        ("/ip4/1.2.3.4/tcp/1/p2p", "needs a PeerId"),
        ("/ip4/1.2.3.4/tcp/1/p2p/notapeer", "invalid /p2p PeerId"),
        ("/ip4/1.2.3.4/tcp/1/p2p/" + str(PID)[:-1] + "a", "invalid /p2p PeerId"),
        ("/ip4/1.2.3.4/tcp/1/p2p/" + str(PID).upper(), "invalid /p2p PeerId"),
        ("/ip4/1.2.3.4/tcp/1/p2p/" + str(PID) + "/tcp/2", "after /p2p"),
        ("/ip4/1.2.3.4/tcp/1/ws", "'ws'"),
        ("/ip4/1.2.3.4/tcp/1/ipfs/" + str(PID), "'ipfs'"),
        ("/udp/1", "'udp'"),
        ("/unix/tmp", "'unix'"),
        ("/p2p/" + str(PID), "cannot be dialled"),
        ("/ip4/1.2.3.4/tcp/1/p2p/" + "x" * MAX_MULTIADDR_LEN, "longer than"),
    ],
)
def test_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(MultiaddrError) as info:
        Multiaddr.parse(text)
    assert fragment in str(info.value)


def test_parse_rejects_non_str() -> None:
    with pytest.raises(MultiaddrError):
        Multiaddr.parse(b"/ip4/1.2.3.4/tcp/1")  # type: ignore[arg-type]


def test_port_zero_only_when_allowed() -> None:
    ma = Multiaddr.parse("/ip4/0.0.0.0/tcp/0", allow_port_zero=True)
    assert ma.port == 0
    assert str(ma) == "/ip4/0.0.0.0/tcp/0"
    with pytest.raises(MultiaddrError, match="port 0"):
        Multiaddr.from_host_port("0.0.0.0", 0)
    assert Multiaddr.from_host_port("0.0.0.0", 0, allow_port_zero=True).port == 0


def test_from_host_port() -> None:
    assert str(Multiaddr.from_host_port("127.0.0.1", 4001)) == "/ip4/127.0.0.1/tcp/4001"
    assert str(Multiaddr.from_host_port("0:0::0001", 5)) == "/ip6/::1/tcp/5"
    assert str(Multiaddr.from_host_port("[::1]", 5)) == "/ip6/::1/tcp/5"
    assert (
        str(Multiaddr.from_host_port("example.com", 5, PID)) == f"/dns/example.com/tcp/5/p2p/{PID}"
    )
    with pytest.raises(MultiaddrError, match="zone"):
        Multiaddr.from_host_port("fe80::1%lo", 5)
    with pytest.raises(MultiaddrError):
        Multiaddr.from_host_port("bad host", 5)
    with pytest.raises(MultiaddrError):
        Multiaddr.from_host_port("example.com", 70000)
    with pytest.raises(MultiaddrError):
        Multiaddr.from_host_port("example.com", True)


def test_constructor_validates() -> None:
    with pytest.raises(MultiaddrError, match="'udp'"):
        Multiaddr("udp", "1.2.3.4", 1)
    with pytest.raises(MultiaddrError):
        Multiaddr("ip4", "::1", 1)
    with pytest.raises(MultiaddrError):
        Multiaddr("ip4", "1.2.3.4", -1)
    with pytest.raises(MultiaddrError):
        Multiaddr("ip4", "1.2.3.4", 1, "sp...")  # type: ignore[arg-type]


def test_hashable_and_frozen() -> None:
    a = Multiaddr.parse(f"/ip4/1.2.3.4/tcp/1/p2p/{PID}")
    assert len({a, Multiaddr.parse(str(a))}) == 1
    with pytest.raises(AttributeError):
        a.port = 2  # type: ignore[misc]
    assert repr(a) == f"Multiaddr('{a}')"


# -- properties -------------------------------------------------------------------------

peer_ids = (
    st.binary(min_size=32, max_size=32).filter(is_strict_public_key).map(PeerId.from_public_key)
)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostnames = (
    st.lists(label, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda h: not h.replace(".", "").isdigit())
)


@st.composite
def multiaddrs(draw: st.DrawFn) -> Multiaddr:
    family = draw(st.sampled_from(["ip4", "ip6", "dns4", "dns6", "dns"]))
    if family == "ip4":
        host = str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
    elif family == "ip6":
        host = Multiaddr.from_host_port(
            str(ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))), 1
        ).host
    else:
        host = draw(hostnames)
    port = draw(st.integers(1, 65535))
    pid = draw(st.none() | peer_ids)
    return Multiaddr(family, host, port, pid)


@settings(max_examples=300)
@given(multiaddrs())
def test_roundtrip(ma: Multiaddr) -> None:
    text = str(ma)
    assert Multiaddr.parse(text) == ma
    assert str(Multiaddr.parse(text)) == text


@settings(max_examples=200)
@given(st.integers(0, 2**128 - 1))
def test_ip6_canonical_matches_rfc5952_shape(n: int) -> None:
    ma = Multiaddr.from_host_port(str(ipaddress.IPv6Address(n)), 1)
    assert ipaddress.IPv6Address(ma.host) == ipaddress.IPv6Address(n)
    assert ma.host == ma.host.lower()
    assert ma.host.count("::") <= 1
    assert ":0:0:" not in ":" + ma.host + ":" or "::" in ma.host
    assert Multiaddr.parse(str(ma)) == ma


@settings(max_examples=500)
@given(st.text(max_size=80))
def test_random_text_only_multiaddr_error(text: str) -> None:
    try:
        ma = Multiaddr.parse(text)
    except MultiaddrError:
        return
    assert str(ma) == text


@settings(max_examples=300)
@given(multiaddrs(), st.data())
def test_mutated_text_only_multiaddr_error(ma: Multiaddr, data: st.DataObject) -> None:
    text = str(ma)
    i = data.draw(st.integers(0, len(text) - 1))
    ch = data.draw(st.sampled_from("/.:-0123456789afzAZ%_ \x00é"))
    mutated = text[:i] + ch + text[i + 1 :]
    try:
        out = Multiaddr.parse(mutated)
    except MultiaddrError:
        return
    assert str(out) == mutated
