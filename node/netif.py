"""This host's interface addresses, to say what a node listening on ``0.0.0.0`` or ``::``
can actually be reached at (``spacepanda id``, the handshake, the signed DHT record).

No traffic is sent to find them. On Linux they are read from the kernel (``if_nameindex``
with the SIOCGIFFLAGS/SIOCGIFADDR ioctls for IPv4, ``/proc/net/if_inet6`` for IPv6): cheap
enough to re-read every minute. Elsewhere ``ip -j addr`` is asked when it exists; failing
everything, loopback. Only interfaces that are up count; IPv6 link-local, tentative and
failed addresses are left out (a multiaddr cannot carry a zone id).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from node.core.errors import MultiaddrError
from node.core.multiaddr import Multiaddr

__all__ = ["IPAddress", "expand_listen", "interface_addresses", "parse_ip_json"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_IFF_UP = 0x1
_IFA_F_DADFAILED = 0x08
_IFA_F_TENTATIVE = 0x40
_IF_INET6 = Path("/proc/net/if_inet6")
_UNSPECIFIED = ("0.0.0.0", "::")
_LOOPBACK: tuple[IPAddress, ...] = (
    ipaddress.IPv4Address("127.0.0.1"),
    ipaddress.IPv6Address("::1"),
)


def _usable(addr: IPAddress) -> bool:
    if addr.is_unspecified or addr.is_multicast:
        return False
    return not (isinstance(addr, ipaddress.IPv6Address) and addr.is_link_local)


def _ifreq(name: str) -> bytes:
    return struct.pack("256s", name.encode()[:15])


def _linux() -> list[IPAddress] | None:
    """None when this is not a Linux kernel interface (no ioctls or /proc)."""
    try:
        import fcntl

        names = socket.if_nameindex()
    except (ImportError, OSError):
        return None
    up: set[str] = set()
    found: list[IPAddress] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, name in names:
                try:
                    flags = struct.unpack_from("H", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS,
                                                                _ifreq(name)), 16)[0]
                except OSError:
                    continue
                if not flags & _IFF_UP:
                    continue
                up.add(name)
                with contextlib.suppress(OSError):  # EADDRNOTAVAIL: no IPv4 address
                    raw = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, _ifreq(name))
                    found.append(ipaddress.IPv4Address(raw[20:24]))
    except OSError:
        return None
    try:
        text = _IF_INET6.read_text()
    except OSError:
        text = ""  # no IPv6 on this host
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 6 or parts[5] not in up:
            continue
        try:
            flags = int(parts[4], 16)
            addr = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
        except ValueError:
            continue
        if not flags & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED):
            found.append(addr)
    return found


def parse_ip_json(text: str) -> list[IPAddress]:
    """Addresses of up interfaces from ``ip -j addr`` output (malformed parts are skipped)."""
    try:
        links = json.loads(text)
    except ValueError:
        return []
    found: list[IPAddress] = []
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict) or "UP" not in (link.get("flags") or []):
            continue
        for info in link.get("addr_info") or []:
            if not isinstance(info, dict) or info.get("tentative") or info.get("dadfailed"):
                continue
            local = info.get("local")
            if isinstance(local, str):
                with contextlib.suppress(ValueError):
                    found.append(ipaddress.ip_address(local))
    return found


def _ip_command() -> list[IPAddress] | None:
    ip = shutil.which("ip")
    if ip is None:
        return None
    try:
        out = subprocess.run([ip, "-j", "addr"], capture_output=True, text=True, timeout=2,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_ip_json(out)


def interface_addresses() -> list[IPAddress]:
    """Usable addresses of this host's up interfaces, unique, in the order found; loopback
    when nothing else can be read."""
    found = _linux()
    if not found:
        found = _ip_command()
    out: list[IPAddress] = []
    for addr in found or _LOOPBACK:
        if _usable(addr) and addr not in out:
            out.append(addr)
    return out or list(_LOOPBACK)


def _rank(addr: IPAddress) -> int:
    if addr.is_loopback:
        return 2
    return 1 if addr.is_private else 0


def expand_listen(
    addrs: Iterable[Multiaddr], interfaces: Sequence[IPAddress], *, loopback: bool = True
) -> list[Multiaddr]:
    """Each unspecified listen address (``0.0.0.0``, ``::``) as one address per interface
    address of its family: public first, then private, then loopback. ``loopback=False``
    leaves loopback out unless nothing else is left (what other hosts are told to dial).
    Other addresses pass through unchanged."""
    out: list[Multiaddr] = []
    for addr in addrs:
        if addr.host not in _UNSPECIFIED:
            out.append(addr)
            continue
        version = 4 if addr.host == "0.0.0.0" else 6
        hosts = sorted((a for a in interfaces if a.version == version), key=_rank)
        if not loopback and any(not a.is_loopback for a in hosts):
            hosts = [a for a in hosts if not a.is_loopback]
        expanded = []
        for host in hosts:
            with contextlib.suppress(MultiaddrError):
                expanded.append(Multiaddr.from_host_port(str(host), addr.port, addr.peer_id,
                                                         allow_port_zero=True))
        out.extend(expanded or [addr])
    return out
