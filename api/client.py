"""Small synchronous client for the admin API, used by the CLI.

Finds the running node through its data dir: the address in ``D/api`` (written by the daemon
while it runs) and the bearer token in ``D/api.token``. Synchronous (urllib) on purpose: each
CLI command makes one request, and no event loop is needed for that.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from api.openapi import RECORD_NOT_FOUND
from node.core.errors import MultiaddrError
from node.core.multiaddr import Multiaddr
from node.datadir import DataDir

__all__ = ["ApiClient", "ApiError", "EventStream", "NodeUnreachable"]

_MAX_RESPONSE = 8 * 1024 * 1024
_MAX_EVENT_LINE = 1024 * 1024  # a message event carries at most 64 KiB of text


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
        with self._open(method, path, data, "application/json") as resp:
            try:
                raw = resp.read(_MAX_RESPONSE + 1)
            except TimeoutError:
                raise NodeUnreachable(f"node API at {self.base} did not answer in time") from None
            except (OSError, http.client.HTTPException) as exc:
                raise NodeUnreachable(
                    f"connection to the node API at {self.base} failed: {exc}"
                ) from None
            return resp.status, _decode(raw)

    def _open(
        self, method: str, path: str, data: bytes | None, accept: str
    ) -> http.client.HTTPResponse:
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        req.add_header("Accept", f"{accept}, application/problem+json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            resp: http.client.HTTPResponse = urllib.request.urlopen(req, timeout=self.timeout)
            return resp
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

    def disconnect(self, peer_id: str, *, block: bool = False) -> None:
        """Disconnect from ``peer_id`` and forget it from the node's address book; with
        ``block``, also put it on the node's deny list."""
        path = "/v1/peers/" + urllib.parse.quote(peer_id, safe="")
        self.request("DELETE", path + ("?block=true" if block else ""))

    def blocks(self) -> list[dict[str, Any]]:
        """The node's deny list."""
        return _list(self.request("GET", "/v1/blocks")[1], "blocks")

    def unblock(self, peer_id: str) -> None:
        self.request("DELETE", "/v1/blocks/" + urllib.parse.quote(peer_id, safe=""))

    def dht(self) -> dict[str, Any]:
        """``GET /v1/dht``: the node's DHT statistics."""
        return _object(self.request("GET", "/v1/dht")[1])

    def network(self) -> dict[str, Any]:
        return _object(self.request("GET", "/v1/network")[1])

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

    # ---- channels ------------------------------------------------------------------------
    def create_channel(self, name: str) -> dict[str, Any]:
        return _object(self.request("POST", "/v1/channels", {"name": name})[1])

    def channels(self) -> list[dict[str, Any]]:
        return _list(self.request("GET", "/v1/channels")[1], "channels")

    def channel(self, channel_id: str) -> dict[str, Any]:
        return _object(self.request("GET", _channel(channel_id))[1])

    def invite(self, channel_id: str, peer_id: str) -> str:
        """Invite ``peer_id``; the invite id (the peer joins once it accepts)."""
        body = self.request("POST", _channel(channel_id, "members"), {"peer_id": peer_id})[1]
        return _text(_object(body), "invite_id")

    def remove_member(self, channel_id: str, peer_id: str) -> None:
        self.request("DELETE", _channel(channel_id, "members", peer_id))

    def make_admin(self, channel_id: str, peer_id: str) -> None:
        self.request("POST", _channel(channel_id, "admins"), {"peer_id": peer_id})

    def leave(self, channel_id: str) -> None:
        self.request("POST", _channel(channel_id, "leave"))

    def send(self, channel_id: str, text: str) -> str:
        """Send ``text``; the message id once the node has it durably queued."""
        body = self.request("POST", _channel(channel_id, "messages"), {"text": text})[1]
        return _text(_object(body), "message_id")

    def messages(
        self, channel_id: str, after: str = "0", limit: int = 100
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of messages after the cursor ``after``: (messages, next cursor)."""
        query = urllib.parse.urlencode({"after": after, "limit": limit})
        body = _object(self.request("GET", _channel(channel_id, "messages") + "?" + query)[1])
        return _list(body, "messages"), _text(body, "next")

    def invites(self) -> list[dict[str, Any]]:
        return _list(self.request("GET", "/v1/invites")[1], "invites")

    def accept_invite(self, invite_id: str) -> str:
        """Accept an invite; the channel id it is for."""
        path = "/v1/invites/" + urllib.parse.quote(invite_id, safe="") + "/accept"
        return _text(_object(self.request("POST", path)[1]), "channel_id")

    def decline_invite(self, invite_id: str) -> None:
        self.request("DELETE", "/v1/invites/" + urllib.parse.quote(invite_id, safe=""))

    def set_profile(self, display_name: str) -> dict[str, Any]:
        return _object(self.request("PUT", "/v1/profile", {"display_name": display_name})[1])

    def events(self) -> EventStream:
        """Open ``GET /v1/events``: subscribed once this returns; iterate for the events."""
        return EventStream(self._open("GET", "/v1/events", None, "text/event-stream"))


class EventStream:
    """Server-sent events as (name, data) pairs; ends when the node ends the stream.

    Reading raises :class:`NodeUnreachable` when the connection breaks or stays silent past
    the client's timeout (the node sends a comment every 15 s).
    """

    def __init__(self, resp: http.client.HTTPResponse) -> None:
        self._resp = resp

    def close(self) -> None:
        self._resp.close()

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        data: list[str]
        name, data = "", []  # the event being read: its name and data lines
        try:
            while True:
                raw = self._resp.readline(_MAX_EVENT_LINE)
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if name and data:
                        yield name, _event_data("\n".join(data))
                    name, data = "", []
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)
        except (OSError, http.client.HTTPException) as exc:
            raise NodeUnreachable(f"event stream from the node broke: {exc}") from None
        finally:
            self._resp.close()


def _channel(channel_id: str, *parts: str) -> str:
    return "/".join(
        ["/v1/channels", *(urllib.parse.quote(p, safe="") for p in (channel_id, *parts))]
    )


def _event_data(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise ApiError(502, "Bad Gateway", "node sent a non-JSON event") from None
    if not isinstance(data, dict):
        raise ApiError(502, "Bad Gateway", "node sent an event that is not a JSON object")
    return data


def _list(body: Any, key: str) -> list[dict[str, Any]]:
    items = _object(body).get(key)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ApiError(502, "Bad Gateway", f"malformed {key} list from node")
    return items


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ApiError(502, "Bad Gateway", f"node answered without {key}")
    return value


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
