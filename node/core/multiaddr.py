"""Text multiaddrs for TCP endpoints, libp2p style, restricted to what the node can dial.

Accepted forms (and nothing else)::

    /ip4/<A>/tcp/<N>[/p2p/<PeerId>]      A in canonical dotted-quad form
    /ip6/<A>/tcp/<N>[/p2p/<PeerId>]      A in canonical RFC 5952 form (lowercase, '::')
    /dns4/<H>/tcp/<N>[/p2p/<PeerId>]     H a lowercase RFC 1123 hostname
    /dns6/<H>/tcp/<N>[/p2p/<PeerId>]
    /dns/<H>/tcp/<N>[/p2p/<PeerId>]

Parsing is strict so that ``str(Multiaddr.parse(t)) == t`` always holds: a non-canonical spelling
is rejected with the canonical one in the message rather than silently rewritten.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from node.core.errors import IdentityError, MultiaddrError
from node.core.identity import PeerId

__all__ = ["FAMILIES", "MAX_MULTIADDR_LEN", "Multiaddr"]

FAMILIES = ("ip4", "ip6", "dns4", "dns6", "dns")
MAX_MULTIADDR_LEN = 512
_MAX_HOSTNAME_LEN = 253
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_DIGITS = re.compile(r"(?:0|[1-9][0-9]{0,4})\Z")


def _canonical_ip6(addr: ipaddress.IPv6Address) -> str:
    """RFC 5952 text: lowercase hex, no leading zeros, longest zero run (>= 2 groups) as '::'.

    Written out rather than using ``str()`` because CPython's rendering of some addresses
    (e.g. IPv4-mapped) differs between versions, and the wire text must not.
    """
    groups = [int.from_bytes(addr.packed[i : i + 2], "big") for i in range(0, 16, 2)]
    best_start, best_len = -1, 0
    i = 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    hexes = [f"{g:x}" for g in groups]
    if best_len < 2:
        return ":".join(hexes)
    head = ":".join(hexes[:best_start])
    tail = ":".join(hexes[best_start + best_len :])
    return f"{head}::{tail}"


def _check_ip4(text: str) -> None:
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError:
        raise MultiaddrError(f"invalid IPv4 address {text!r:.80}") from None
    if str(addr) != text:
        raise MultiaddrError(f"non-canonical IPv4 address {text!r} (write {str(addr)!r})")


def _check_ip6(text: str) -> None:
    if "%" in text:
        raise MultiaddrError(f"IPv6 zone ids are not supported: {text!r:.80}")
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        raise MultiaddrError(f"invalid IPv6 address {text!r:.80}") from None
    canonical = _canonical_ip6(addr)
    if canonical != text:
        raise MultiaddrError(f"non-canonical IPv6 address {text!r} (write {canonical!r})")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _check_hostname(text: str) -> None:
    if not text or len(text) > _MAX_HOSTNAME_LEN:
        raise MultiaddrError(f"hostname must be 1..{_MAX_HOSTNAME_LEN} characters")
    if text != text.lower():
        raise MultiaddrError(f"hostname must be lowercase: {text!r:.80}")
    if _is_ip(text):
        raise MultiaddrError(f"{text!r} is an IP address: use /ip4 or /ip6, not /dns*")
    for label in text.split("."):
        if not _LABEL.match(label):
            raise MultiaddrError(
                f"invalid hostname {text!r:.80}: labels are 1..63 of a-z, 0-9, '-' "
                "(not at either end), no empty labels or trailing dot"
            )


def _check_host(family: str, host: str) -> None:
    if family == "ip4":
        _check_ip4(host)
    elif family == "ip6":
        _check_ip6(host)
    elif family in ("dns4", "dns6", "dns"):
        _check_hostname(host)
    else:
        raise MultiaddrError(f"unsupported multiaddr protocol {family!r:.40}")


def _check_port(port: int, allow_port_zero: bool) -> None:
    if port == 0 and not allow_port_zero:
        raise MultiaddrError("tcp port 0 is only allowed for listening")
    if not 0 <= port <= 65535:
        raise MultiaddrError(f"tcp port {port} out of range 1..65535")


def _parse_peer_id(text: str) -> PeerId:
    try:
        return PeerId.from_string(text)
    except IdentityError as exc:
        raise MultiaddrError(f"invalid /p2p PeerId: {exc}") from None


@dataclass(frozen=True)
class Multiaddr:
    """A TCP endpoint, optionally bound to the PeerId expected there.

    Constructing one directly validates every field (port 0 is accepted here, meaning "any
    port" for a listen address); :meth:`parse` and :meth:`from_host_port` reject port 0 unless
    asked not to.
    """

    family: str
    host: str
    port: int
    peer_id: PeerId | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.family, str) or not isinstance(self.host, str):
            raise MultiaddrError("multiaddr family and host must be str")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise MultiaddrError("tcp port must be an int")
        if self.peer_id is not None and not isinstance(self.peer_id, PeerId):
            raise MultiaddrError("peer_id must be a PeerId or None")
        _check_host(self.family, self.host)
        _check_port(self.port, allow_port_zero=True)

    @classmethod
    def parse(cls, text: str, *, allow_port_zero: bool = False) -> Multiaddr:
        """Parse a multiaddr string; raise :class:`MultiaddrError` naming the problem."""
        if not isinstance(text, str):
            raise MultiaddrError(f"multiaddr must be str, not {type(text).__name__}")
        if len(text) > MAX_MULTIADDR_LEN:
            raise MultiaddrError(f"multiaddr longer than {MAX_MULTIADDR_LEN} characters")
        if not text.isascii() or not text.isprintable():
            raise MultiaddrError(f"multiaddr must be printable ASCII: {text!r:.80}")
        if not text.startswith("/"):
            raise MultiaddrError(f"multiaddr must start with '/': {text!r:.80}")
        parts = text[1:].split("/")
        if any(p == "" for p in parts):
            raise MultiaddrError(f"empty component in multiaddr {text!r:.80}")

        proto = parts[0]
        if proto == "p2p":
            raise MultiaddrError(
                "'/p2p/<PeerId>' alone names a peer but no transport address, so it cannot be "
                "dialled: use e.g. /ip4/<addr>/tcp/<port>/p2p/<PeerId>"
            )
        if proto not in FAMILIES:
            raise MultiaddrError(f"unsupported multiaddr protocol {proto!r:.40}")
        if len(parts) < 2:
            raise MultiaddrError(f"/{proto} needs a value")
        host = parts[1]
        _check_host(proto, host)
        if len(parts) < 3:
            raise MultiaddrError(f"missing /tcp/<port> after /{proto}/{host}")
        if parts[2] != "tcp":
            raise MultiaddrError(f"unsupported multiaddr protocol {parts[2]!r:.40} (expected tcp)")
        if len(parts) < 4:
            raise MultiaddrError("/tcp needs a port")
        if not _DIGITS.match(parts[3]):
            raise MultiaddrError(f"invalid tcp port {parts[3]!r:.40}")
        port = int(parts[3])
        _check_port(port, allow_port_zero)

        peer_id: PeerId | None = None
        rest = parts[4:]
        if rest:
            if rest[0] != "p2p":
                raise MultiaddrError(
                    f"unsupported multiaddr protocol {rest[0]!r:.40} (only /p2p may follow /tcp)"
                )
            if len(rest) < 2:
                raise MultiaddrError("/p2p needs a PeerId")
            peer_id = _parse_peer_id(rest[1])
            if len(rest) > 2:
                raise MultiaddrError(
                    f"unexpected component {rest[2]!r:.40} after /p2p (nothing may follow it)"
                )
        return cls(proto, host, port, peer_id)

    @classmethod
    def from_host_port(
        cls,
        host: str,
        port: int,
        peer_id: PeerId | None = None,
        *,
        allow_port_zero: bool = False,
    ) -> Multiaddr:
        """Build from a socket-style (host, port): IPs become ip4/ip6 (normalised), else dns."""
        if not isinstance(host, str):
            raise MultiaddrError(f"host must be str, not {type(host).__name__}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise MultiaddrError("tcp port must be an int")
        _check_port(port, allow_port_zero)
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            ip = ipaddress.ip_address(bare)
        except ValueError:
            ip = None
        if isinstance(ip, ipaddress.IPv4Address):
            return cls("ip4", str(ip), port, peer_id)
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.scope_id:
                raise MultiaddrError(f"IPv6 zone ids are not supported: {host!r:.80}")
            return cls("ip6", _canonical_ip6(ip), port, peer_id)
        return cls("dns", host, port, peer_id)

    def with_peer_id(self, peer_id: PeerId) -> Multiaddr:
        return replace(self, peer_id=peer_id)

    def without_peer_id(self) -> Multiaddr:
        return replace(self, peer_id=None)

    @property
    def is_ip(self) -> bool:
        return self.family in ("ip4", "ip6")

    def host_port(self) -> tuple[str, int]:
        """(host, port) as socket APIs take them (IPv6 without brackets)."""
        return self.host, self.port

    def to_string(self) -> str:
        base = f"/{self.family}/{self.host}/tcp/{self.port}"
        return base if self.peer_id is None else f"{base}/p2p/{self.peer_id.to_string()}"

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"Multiaddr({self.to_string()!r})"
