"""RTT-based timeouts, subnet keys and address checks (pure; time is passed in). Per-source
rate limits are ``node.core.ratelimit.RateLimiter``, shared with the rest of the node."""

from __future__ import annotations

import functools
import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

__all__ = [
    "LOCAL_NETWORKS",
    "RttEstimator",
    "is_local_address",
    "subnet_key",
    "valid_contact_address",
]

# Addresses that are not reachable from the public internet: a mesh on a LAN, a container
# network, a pod network or one host lives here. The set go-libp2p's LAN DHT treats as
# local (manet.IsPrivateAddr), written out.
LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",  # loopback
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",  # RFC 1918
        "192.168.0.0/16",  # RFC 1918
        "100.64.0.0/10",  # RFC 6598 shared address space (carrier-grade NAT)
        "169.254.0.0/16",  # IPv4 link-local
        "::1/128",  # loopback
        "fc00::/7",  # RFC 4193 unique local
        "fe80::/10",  # link-local
    )
)


@functools.lru_cache(maxsize=65536)
def subnet_key(ip: str, prefix_v4: int, prefix_v6: int) -> str:
    """The network ``ip`` belongs to at the configured prefix length (for slot limits)."""
    addr = ipaddress.ip_address(ip)
    prefix = prefix_v4 if addr.version == 4 else prefix_v6
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@functools.lru_cache(maxsize=65536)
def is_local_address(ip: str) -> bool:
    """True for loopback, private (RFC 1918, RFC 4193), link-local and CGNAT (RFC 6598)
    addresses, also written as IPv4-mapped IPv6; False for everything else, documentation
    ranges included (they stand for public addresses in tests). Not an IP literal: False."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in LOCAL_NETWORKS if net.version == addr.version)


def valid_contact_address(ip: object, port: object, family: int | None = None) -> bool:
    """True for an IP literal (of ``family`` 4/6 if given) and a port in 1..65535.

    Refuses unspecified, multicast and broadcast addresses: we must never send to those on a
    hostile peer's say-so, and an invalid (host, port) must never reach ``sendto`` (it closes
    the asyncio transport for good).
    """
    if not isinstance(ip, str) or isinstance(port, bool) or not isinstance(port, int):
        return False
    if not 1 <= port <= 65535 or len(ip) > 45:
        return False
    version = _ip_version(ip)
    return version != 0 and (family is None or version == family)


@functools.lru_cache(maxsize=65536)
def _ip_version(ip: str) -> int:
    """4 or 6 for a usable unicast/loopback IP literal, 0 otherwise (cached: hot path)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return 0
    if addr.is_unspecified or addr.is_multicast:
        return 0
    if addr.version == 4 and ip == "255.255.255.255":
        return 0
    return addr.version


@dataclass
class _Rtt:
    srtt: float
    rttvar: float


class RttEstimator:
    """RFC 6298 style smoothed RTT per address; timeout = srtt + 4 * rttvar, clamped.

    Unknown addresses get a timeout from the estimate over all addresses, so one dead contact
    costs a few RTTs rather than a fixed five seconds.
    """

    def __init__(
        self, initial: float, minimum: float, maximum: float, max_entries: int = 8192
    ) -> None:
        self.initial = initial
        self.minimum = minimum
        self.maximum = maximum
        self.max_entries = max_entries
        self._per: OrderedDict[tuple[str, int], _Rtt] = OrderedDict()
        self._all: _Rtt | None = None

    @staticmethod
    def _update(est: _Rtt | None, sample: float) -> _Rtt:
        if est is None:
            return _Rtt(sample, sample / 2)
        est.rttvar = 0.75 * est.rttvar + 0.25 * abs(est.srtt - sample)
        est.srtt = 0.875 * est.srtt + 0.125 * sample
        return est

    def sample(self, addr: tuple[str, int], rtt: float) -> None:
        self._per[addr] = self._update(self._per.get(addr), rtt)
        self._per.move_to_end(addr)
        if len(self._per) > self.max_entries:
            self._per.popitem(last=False)
        self._all = self._update(self._all, rtt)

    def _clamp(self, value: float) -> float:
        return max(self.minimum, min(self.maximum, value))

    def timeout(self, addr: tuple[str, int]) -> float:
        est = self._per.get(addr)
        if est is not None:
            return self._clamp(est.srtt + 4 * est.rttvar)
        if self._all is not None:
            # An unknown contact: allow for more spread than the average.
            return self._clamp(2 * (self._all.srtt + 4 * self._all.rttvar))
        return self._clamp(self.initial)

    def backoff(self, addr: tuple[str, int]) -> None:
        """After a timeout, wait longer next time for this address (RFC 6298 5.5)."""
        est = self._per.get(addr)
        if est is not None:
            est.rttvar = min(self.maximum, est.rttvar * 2 + est.srtt / 2)
