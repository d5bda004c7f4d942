"""The network a source address belongs to, for per-source budgets (pure)."""

from __future__ import annotations

import ipaddress

__all__ = ["source_prefix"]


def source_prefix(ip: str, v4: int = 24, v6: int = 64) -> str:
    """The network an address belongs to for budgets (``10.1.2.0/24``, ``2001:db8::/64``).

    IPv4-mapped IPv6 addresses count as IPv4. Anything unparsable is its own prefix.
    """
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    bits = v4 if addr.version == 4 else v6
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))
