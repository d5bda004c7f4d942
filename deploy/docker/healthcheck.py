#!/usr/bin/env python3
"""Container health probe for a SpacePanda node: ``GET /healthz`` (or ``/readyz``) on its API.

Installed in the image as ``spacepanda-healthcheck`` and used by its ``HEALTHCHECK`` and by
``deploy/compose.yaml``. It reads the API address the running node wrote to ``D/api``
(``D`` = ``--data-dir``, else ``$SPACEPANDA_DATA_DIR``), so it follows whatever ``SPACEPANDA_API``
says; a wildcard bind (``0.0.0.0`` / ``::``) is probed on loopback. Both probe paths need no token.

Exit 0 when the node answers 200, 1 otherwise, with one line saying why. Standard library only
and no proxy (an ``HTTP_PROXY`` in the container's environment must not reroute a loopback probe).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["main", "probe_url"]


def probe_url(api_addr: str, path: str) -> str:
    """``/ip4/127.0.0.1/tcp/5001`` -> ``http://127.0.0.1:5001/healthz``; ValueError otherwise."""
    parts = api_addr.strip().split("/")
    # "/ip4/H/tcp/P" splits into ["", "ip4", H, "tcp", P]
    if len(parts) != 5 or parts[0] or parts[3] != "tcp":
        raise ValueError(f"not an /ip4|ip6|dns*/<host>/tcp/<port> address: {api_addr.strip()!r}")
    family, host, port_text = parts[1], parts[2], parts[4]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {api_addr.strip()!r}")
    if family == "ip4":
        host = "127.0.0.1" if host == "0.0.0.0" else host
    elif family == "ip6":
        host = "[::1]" if host == "::" else f"[{host}]"
    elif family not in ("dns", "dns4", "dns6"):
        raise ValueError(f"unknown address family {family!r} in {api_addr.strip()!r}")
    return f"http://{host}:{int(port_text)}{path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="spacepanda-healthcheck", description="probe the local node's /healthz or /readyz"
    )
    parser.add_argument("--data-dir", metavar="D", help="default: $SPACEPANDA_DATA_DIR")
    parser.add_argument("--ready", action="store_true", help="probe /readyz instead of /healthz")
    parser.add_argument("--timeout", type=float, default=4.0, metavar="S")
    args = parser.parse_args(argv)

    raw_dir = args.data_dir or os.environ.get("SPACEPANDA_DATA_DIR")
    data_dir = Path(raw_dir).expanduser() if raw_dir else Path.home() / ".local/share/spacepanda"
    api_file = data_dir / "api"
    try:
        api_addr = api_file.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"unhealthy: node not running (cannot read {api_file}: {exc.strerror})")
        return 1
    path = "/readyz" if args.ready else "/healthz"
    try:
        url = probe_url(api_addr, path)
    except ValueError as exc:
        print(f"unhealthy: {api_file}: {exc}")
        return 1
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=args.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # 503 from /readyz while the node is joining
        status = exc.code
        exc.close()
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {getattr(exc, 'reason', exc)}")
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}")
        return 1
    print(f"ok: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
