"""Channel routes: channels, members, admins, messages, invites, the profile.

Thin like the rest of the API: parse strictly (``api.parse``), call the channel service, turn
its answer into JSON. Statuses come from ``api.problems``; the few conditions the service
reports less specifically than the contract asks (an invitee without a peer record, one who is
already a member, the last admin leaving) are refined here into ``api.errors`` types.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from api.appkeys import CONTROL, RESOLVE_TIMEOUT_KEY
from api.control import ChannelControl, NodeControl
from api.errors import ChannelsUnavailable
from api.parse import (
    channel_id_param,
    invite_id_param,
    json_fields,
    only_query,
    peer_id_param,
    peer_id_value,
    query_int,
    utf8_text,
)
from api.problems import Problem
from node.channels.content import MAX_DISPLAY_NAME_BYTES, MAX_TEXT_BYTES
from node.channels.wire import MAX_NAME_BYTES
from node.core.errors import SpacePandaError
from node.storage.channelstore import MAX_PAGE, MessageRow

__all__ = [
    "MAX_DISPLAY_NAME_BYTES",
    "MAX_MESSAGE_BODY_BYTES",
    "MAX_NAME_BYTES",
    "MAX_TEXT_BYTES",
    "channel_service",
    "message_json",
    "routes",
]

# JSON may spell one byte of text as six ("\u0001"): room for any text at the limit, so the
# service's own check answers 413 with the text's size rather than the body's.
MAX_MESSAGE_BODY_BYTES = 6 * MAX_TEXT_BYTES + 1024
_BODY = 16 * 1024  # every other channel request
DEFAULT_PAGE = 100
_MAX_CURSOR = (1 << 63) - 1


def channel_service(control: NodeControl) -> ChannelControl:
    """The running channel service, or 503 while it does not run."""
    try:
        return control.channels
    except SpacePandaError as exc:
        raise ChannelsUnavailable(str(exc)) from None


def _service(request: web.Request) -> ChannelControl:
    return channel_service(request.app[CONTROL])


def _accepted(body: dict[str, Any] | None = None) -> web.Response:
    if body is None:
        return web.Response(status=202)
    return web.json_response(body, status=202)


def message_json(row: MessageRow, me: str | None = None) -> dict[str, Any]:
    """One message; ours (sender ``me``) also with its delivery status: how many other
    members are known (from their causal filters) to have it."""
    body: dict[str, Any] = {
        "message_id": row.message_id.hex(),
        "sender": str(row.sender),
        "sender_name": row.sender_name,
        "text": row.text,
        "sent_at": row.sent_at_ms / 1000,
        "received_at": row.received_at,
        "status": None,
    }
    if me is not None and str(row.sender) == me:
        state = "seen" if row.seen_by else "stored" if row.stored else "sent"
        body["status"] = {"state": state, "seen_by": row.seen_by, "stored": row.stored}
    return body


# ---- channels -------------------------------------------------------------------------------


async def create_channel(request: web.Request) -> web.Response:
    body = await json_fields(request, {"name": str}, _BODY)
    name = utf8_text("name", body["name"], min_bytes=1, max_bytes=MAX_NAME_BYTES)
    view = await _service(request).create(name)
    full = view.to_json()
    created = {k: full[k] for k in ("channel_id", "name", "epoch", "members")}
    return web.json_response(
        created, status=201, headers={"Location": f"/v1/channels/{view.channel_id}"}
    )


async def list_channels(request: web.Request) -> web.Response:
    views = _service(request).views()
    return web.json_response({"channels": [v.to_json() for v in views]})


async def get_channel(request: web.Request) -> web.Response:
    cid = channel_id_param(request)
    return web.json_response(_service(request).view(cid).to_json())


# ---- members --------------------------------------------------------------------------------


async def invite_member(request: web.Request) -> web.Response:
    cid = channel_id_param(request)
    body = await json_fields(request, {"peer_id": str}, _BODY)
    peer = peer_id_value(body["peer_id"])
    svc = _service(request)
    svc.view(cid)  # 404 for an unknown channel, before any DHT lookup
    limit = request.app[RESOLVE_TIMEOUT_KEY]
    try:
        async with asyncio.timeout(limit):
            invite_id = await svc.invite(cid, peer)
    except TimeoutError:
        raise Problem(
            504, "Gateway Timeout", f"DHT lookup of {peer} did not finish in {limit:g}s"
        ) from None
    return _accepted({"invite_id": invite_id.hex()})


async def remove_member(request: web.Request) -> web.Response:
    cid = channel_id_param(request)
    peer = peer_id_param(request)
    await _service(request).remove(cid, peer)
    return _accepted()


async def add_admin(request: web.Request) -> web.Response:
    cid = channel_id_param(request)
    body = await json_fields(request, {"peer_id": str}, _BODY)
    await _service(request).make_admin(cid, peer_id_value(body["peer_id"]))
    return _accepted()


async def leave_channel(request: web.Request) -> web.Response:
    cid = channel_id_param(request)
    await json_fields(request, {}, _BODY)
    await _service(request).leave(cid)
    return _accepted()


# ---- messages -------------------------------------------------------------------------------


async def send_message(request: web.Request) -> web.Response:
    cid = channel_id_param(request)
    body = await json_fields(request, {"text": str}, MAX_MESSAGE_BODY_BYTES)
    text = utf8_text("text", body["text"])  # its size is the service's check (413)
    message_id = await _service(request).send(cid, text)
    return _accepted({"message_id": message_id.hex()})


async def list_messages(request: web.Request) -> web.Response:
    cid = channel_id_param(request)
    only_query(request, "after", "limit")
    after = query_int(request, "after", 0, 0, _MAX_CURSOR)
    limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    rows = await _service(request).messages(cid, after, limit)
    following = str(rows[-1].cursor) if rows else str(after)
    me = request.app[CONTROL].node_info().peer_id
    return web.json_response({"messages": [message_json(r, me) for r in rows],
                              "next": following})


# ---- invites and profile ----------------------------------------------------------------------


async def list_invites(request: web.Request) -> web.Response:
    return web.json_response({"invites": _service(request).invites()})


async def accept_invite(request: web.Request) -> web.Response:
    invite_id = invite_id_param(request)
    channel_id = await _service(request).accept(invite_id)
    return _accepted({"channel_id": channel_id})


async def decline_invite(request: web.Request) -> web.Response:
    invite_id = invite_id_param(request)
    await _service(request).decline(invite_id)
    return web.Response(status=204)


async def set_profile(request: web.Request) -> web.Response:
    body = await json_fields(request, {"display_name": str}, _BODY)
    name = utf8_text("display_name", body["display_name"], max_bytes=MAX_DISPLAY_NAME_BYTES)
    control = request.app[CONTROL]
    channel_service(control)  # 503 while channels do not run, like every channel route
    await control.set_display_name(name)
    return web.json_response({"display_name": name})


def routes(router: web.UrlDispatcher) -> None:
    """Add the channel routes (allow_head=False: serve exactly what openapi.json documents)."""
    router.add_post("/v1/channels", create_channel)
    router.add_get("/v1/channels", list_channels, allow_head=False)
    router.add_get("/v1/channels/{channel_id}", get_channel, allow_head=False)
    router.add_post("/v1/channels/{channel_id}/members", invite_member)
    router.add_delete("/v1/channels/{channel_id}/members/{peer_id}", remove_member)
    router.add_post("/v1/channels/{channel_id}/admins", add_admin)
    router.add_post("/v1/channels/{channel_id}/leave", leave_channel)
    router.add_post("/v1/channels/{channel_id}/messages", send_message)
    router.add_get("/v1/channels/{channel_id}/messages", list_messages, allow_head=False)
    router.add_get("/v1/invites", list_invites, allow_head=False)
    router.add_post("/v1/invites/{invite_id}/accept", accept_invite)
    router.add_delete("/v1/invites/{invite_id}", decline_invite)
    router.add_put("/v1/profile", set_profile)
