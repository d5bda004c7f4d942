"""Strict parsing of what a request carries: JSON bodies, path ids, query parameters.

Everything malformed is a 400 problem naming what was wrong; a body above the route's limit is
aiohttp's own 413. Handlers get typed values only.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import json
import re
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import PayloadEncodingError

from api.appkeys import LIMITS
from api.limits import ApiLimits
from api.problems import Problem
from node.core.errors import IdentityError
from node.core.identity import PeerId

__all__ = [
    "MAX_JSON_DEPTH",
    "bad_request",
    "channel_id_param",
    "decode_json",
    "invite_id_param",
    "json_depth",
    "json_fields",
    "only_query",
    "peer_id_param",
    "peer_id_value",
    "query_int",
    "read_body",
    "read_json",
    "utf8_text",
]

_DIGITS = re.compile(r"[0-9]{1,19}")
_JSON_TYPES: dict[type, str] = {str: "a string", int: "an integer", bool: "a boolean"}


def bad_request(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail)


MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")


def json_depth(raw: bytes) -> int:
    """How deeply ``raw`` nests arrays and objects (strings skipped), without parsing it:
    ``json.loads`` recurses, and a RecursionError must never be what stops a deep body."""
    brackets = _JSON_STRING.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS)
    return max(itertools.accumulate(array.array("b", brackets)), default=0)


def decode_json(raw: bytes) -> Any:
    """A request body as JSON: 400 for anything that is not (deeper than MAX_JSON_DEPTH,
    not UTF-8, not JSON, integers beyond Python's digit limit)."""
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise bad_request(f"request body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise bad_request("request body is not valid UTF-8") from None
    except RecursionError:  # unreachable after the depth check; keep the contract anyway
        raise bad_request("request body nests JSON too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int() past sys.get_int_max_str_digits
        raise bad_request(f"request body is not valid JSON: {str(exc)[:200]}") from None


def _body_timeout(request: web.Request) -> float:
    limits = request.app.get(LIMITS)
    return limits.body_timeout_s if limits is not None else ApiLimits().body_timeout_s


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body: 413 above ``limit``, 408 when it does not arrive within the body
    timeout (the connection is closed after the answer), 400 when the client hangs up."""
    size = request.content_length
    if size is not None and size > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
    timeout = _body_timeout(request)
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()  # raises 413 past the app's client_max_size
    except TimeoutError:
        request.protocol.close()  # no keep-alive for a client this slow
        raise Problem(408, "Request Timeout",
                      f"request body not received within {timeout:g} s") from None
    except (ConnectionError, ClientPayloadError, PayloadEncodingError):
        # Cut short: the client is gone or lied about the length. Its fault, not ours.
        request.protocol.close()
        raise bad_request("request body incomplete") from None
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    return raw


async def read_json(request: web.Request, limit: int) -> Any:
    """The body as JSON; aiohttp's 413 when it is larger than ``limit`` bytes."""
    return decode_json(await read_body(request, limit))


async def json_fields(request: web.Request, fields: dict[str, type], limit: int) -> dict[str, Any]:
    """A JSON object with exactly ``fields`` (name -> Python type), nothing else.

    An empty body counts as ``{}`` when no fields are expected (``POST .../leave``).
    """
    raw = await read_body(request, limit)
    if not fields and not raw:
        return {}
    body = decode_json(raw)
    shape = ", ".join(f'"{k}": {_JSON_TYPES[t].split()[-1]}' for k, t in fields.items())
    if not isinstance(body, dict):
        raise bad_request(f"body must be a JSON object {{{shape}}}")
    extra = sorted(set(body) - set(fields))
    if extra:
        raise bad_request(f"unknown field(s): {', '.join(extra)}")
    for name, kind in fields.items():
        if name not in body:
            raise bad_request(f'missing field "{name}"')
        value = body[name]
        # JSON true is not an integer here, nor 1.0.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad_request(f'field "{name}" must be {_JSON_TYPES[kind]}')
    return body


def utf8_text(what: str, value: str, *, min_bytes: int = 0, max_bytes: int | None = None) -> str:
    """``value`` if it is valid UTF-8 (no lone surrogates) within the byte bounds, else 400."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise bad_request(f"{what} is not valid UTF-8 (lone surrogate)") from None
    if size < min_bytes or (max_bytes is not None and size > max_bytes):
        bound = f"{min_bytes}..{max_bytes}" if max_bytes is not None else f">= {min_bytes}"
        raise bad_request(f"{what} must be {bound} UTF-8 bytes, not {size}")
    return value


def peer_id_value(text: str) -> PeerId:
    try:
        return PeerId.from_string(text)
    except IdentityError as exc:
        raise bad_request(f"invalid peer id: {exc}") from None


def peer_id_param(request: web.Request) -> PeerId:
    return peer_id_value(request.match_info["peer_id"])


def _hex_param(request: web.Request, name: str, size: int) -> bytes:
    text = request.match_info[name]
    if len(text) != 2 * size or not all(c in "0123456789abcdef" for c in text):
        raise bad_request(f"invalid {name.replace('_', ' ')}: expected {2 * size} lowercase "
                          f"hex digits, got {text!r:.80}")
    return bytes.fromhex(text)


def channel_id_param(request: web.Request) -> bytes:
    return _hex_param(request, "channel_id", 32)


def invite_id_param(request: web.Request) -> bytes:
    return _hex_param(request, "invite_id", 16)


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """A decimal query parameter in ``low..high`` (``default`` when absent)."""
    values = request.query.getall(name, [])
    if not values:
        return default
    if len(values) > 1:
        raise bad_request(f"query parameter {name} given more than once")
    text = values[0]
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise bad_request(f"query parameter {name} must be a decimal integer in {low}..{high}, "
                          f"not {text!r:.40}")
    return int(text)


def only_query(request: web.Request, *allowed: str) -> None:
    """400 for any query parameter the route does not take."""
    extra = sorted(set(request.query) - set(allowed))
    if extra:
        raise bad_request(f"unknown query parameter(s): {', '.join(extra)}")
