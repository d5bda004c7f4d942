"""Small synchronous client for the admin API, used by the CLI.

Finds the running node through its data dir: the address in ``D/api`` (written by the daemon
while it runs) and the bearer token in ``D/api.token``. Synchronous (urllib) on purpose: each
CLI command makes one request, and no event loop is needed for that.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from api.openapi import RECORD_NOT_FOUND
from node.core.errors import MultiaddrError
from node.core.multiaddr import Multiaddr
from node.datadir import DataDir

__all__ = ["ApiClient", "ApiError", "NodeUnreachable"]

_MAX_RESPONSE = 8 * 1024 * 1024


class ApiError(Exception):
    """The API answered with an error (its problem+json fields, when it sent them)."""

    def __init__(self, status: int, title: str, detail: str = "", type: str = "") -> None:
        super().__init__(f"{status} {title}" + (f": {detail}" if detail else ""))
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type  # the problem's type URI, "" when the body had none


class NodeUnreachable(Exception):
    """Nothing answered at the address in ``D/api`` (node stopped or crashed)."""


def base_url(addr: Multiaddr) -> str:
    host = addr.host
    # A wildcard bind is reachable through loopback of the same family.
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if addr.family == "ip6" or ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{addr.port}"


class ApiClient:
    def __init__(self, base: str, token: str, *, timeout: float = 60.0) -> None:
        self.base = base.rstrip("/")
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ApiClient({self.base!r})"  # never the token

    @classmethod
    def from_data_dir(cls, data_dir: Path | str, *, timeout: float = 60.0) -> ApiClient:
        """ConfigError "node not running (no D/api file)" when the daemon is not up."""
        d = DataDir(data_dir)
        text = d.read_api_address()
        try:
            addr = Multiaddr.parse(text)
        except MultiaddrError as exc:
            raise NodeUnreachable(f"{d.api_path} holds a bad address {text!r}: {exc}") from None
        return cls(base_url(addr), d.read_token(), timeout=timeout)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request; returns (status, decoded JSON or None). Raises ApiError on >= 400."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        req.add_header("Accept", "application/json, application/problem+json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, _decode(resp.read(_MAX_RESPONSE + 1))
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            raise NodeUnreachable(
                f"cannot reach the node API at {self.base}: {reason} "
                "(node not running? stale D/api file?)"
            ) from None
        except TimeoutError:
            raise NodeUnreachable(f"node API at {self.base} did not answer in time") from None
        except ConnectionError as exc:
            raise NodeUnreachable(
                f"connection to the node API at {self.base} failed: {exc}"
            ) from None

    # ---- endpoints ---------------------------------------------------------------------
    def node(self) -> dict[str, Any]:
        return _object(self.request("GET", "/v1/node")[1])

    def peers(self) -> list[dict[str, Any]]:
        body = _object(self.request("GET", "/v1/peers")[1])
        peers = body.get("peers")
        if not isinstance(peers, list) or not all(isinstance(p, dict) for p in peers):
            raise ApiError(502, "Bad Gateway", "malformed peer list from node")
        return peers

    def connect(self, addr: str) -> tuple[dict[str, Any], bool]:
        """Dial ``addr``; returns (peer info, True when this made a new connection)."""
        status, body = self.request("POST", "/v1/peers", {"addr": addr})
        return _object(body), status == 201

    def disconnect(self, peer_id: str) -> None:
        """Disconnect from ``peer_id`` and forget it from the node's address book."""
        self.request("DELETE", "/v1/peers/" + urllib.parse.quote(peer_id, safe=""))

    def dht(self) -> dict[str, Any]:
        """``GET /v1/dht``: the node's DHT statistics."""
        return _object(self.request("GET", "/v1/dht")[1])

    def resolve(self, peer_id: str) -> dict[str, Any] | None:
        """The verified peer record for ``peer_id``, or None when the DHT has no valid one."""
        path = "/v1/dht/peers/" + urllib.parse.quote(peer_id, safe="")
        try:
            return _object(self.request("GET", path)[1])
        except ApiError as exc:
            # Only the typed 404 means "no record"; a plain 404 (e.g. an older node without
            # this route) stays an error.
            if exc.status == 404 and exc.type == RECORD_NOT_FOUND:
                return None
            raise


def _decode(raw: bytes) -> Any:
    if len(raw) > _MAX_RESPONSE:
        raise ApiError(502, "Bad Gateway", "response too large")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(502, "Bad Gateway", "node sent a non-JSON response") from None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(502, "Bad Gateway", "expected a JSON object from node")
    return body


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    title, detail = exc.reason if isinstance(exc.reason, str) else "Error", ""
    try:
        body = json.loads(exc.read(64 * 1024))
    except (ValueError, OSError):
        body = None
    type_ = ""
    if isinstance(body, dict):
        title = str(body.get("title", title))
        detail = str(body.get("detail", ""))
        type_ = str(body.get("type", ""))
    return ApiError(exc.code, title, detail, type_)
