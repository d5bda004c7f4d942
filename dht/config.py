"""DHT tunables in one frozen dataclass (the node maps its config file onto this)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dht.storage import StorageLimits

__all__ = ["DhtConfig"]


@dataclass(frozen=True)
class DhtConfig:
    ksize: int = 20
    alpha: int = 3
    # Records
    record_ttl: int = 3600
    republish_interval: float = 1800.0
    addr_check_interval: float = 5.0
    # Maintenance
    refresh_interval: float = 600.0
    snapshot_interval: float = 300.0
    bootstrap_backoff_initial: float = 0.5
    bootstrap_backoff_max: float = 30.0
    # RPC timeouts (seconds): adaptive between min and max, ``initial`` before any sample.
    initial_timeout: float = 1.0
    min_timeout: float = 0.05
    max_timeout: float = 5.0
    ping_retries: int = 2
    # Lookup and store RPCs are resent once after a timeout (lost datagrams are not death).
    request_retries: int = 1
    max_failures: int = 3
    max_outstanding: int = 1024
    max_lookup_rounds: int = 20
    # Rounds per bucket-refresh lookup right after joining (0 disables the refresh).
    join_refresh_rounds: int = 2
    # Abuse limits
    rate_per_source: float = 200.0
    burst_per_source: float = 400.0
    # Routing-table slots per address prefix, for public addresses (see docs/dht.md);
    # ``limit_local_subnets`` applies them to loopback/private/link-local/CGNAT ones too.
    subnet_prefix_v4: int = 24
    subnet_prefix_v6: int = 48
    max_per_subnet_bucket: int = 2
    max_per_subnet_table: int = 10
    limit_local_subnets: bool = False
    max_datagram: int = 1400
    amplification_factor: int = 3
    max_pending_identify: int = 64
    identify_ttl: float = 3600.0
    identify_negative_ttl: float = 30.0
    max_welcome_stores: int = 32
    storage: StorageLimits = field(default_factory=StorageLimits)
