"""The channel part of the OpenAPI document: channels, members, messages, invites, profile,
and the event stream (served by ``api.channels`` and ``api.events``)."""

from __future__ import annotations

from typing import Any

from api.openapi_parts import (
    PEER_ID_PARAM,
    PROBLEM_TYPE_PREFIX,
    RECORD_NOT_FOUND,
    UNAUTHORIZED,
    json_request,
    json_response,
    problem,
)

__all__ = ["CHANNEL_PATHS", "CHANNEL_SCHEMAS"]

_HEX32 = "^[0-9a-f]{32}$"
_HEX64 = "^[0-9a-f]{64}$"


def _hex(pattern: str, description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern, "description": description}


def _object(required: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(required),
        "additionalProperties": False,
        "properties": required,
    }
    if description:
        schema["description"] = description
    return schema


def _t(kind: str) -> str:
    return PROBLEM_TYPE_PREFIX + kind


_CHANNEL_ID = _hex(_HEX64, "the channel's MLS group id (32 bytes, lowercase hex)")
_INVITE_ID = _hex(_HEX32, "invite id (16 bytes, lowercase hex)")
_MEMBER = {"$ref": "#/components/schemas/Member"}

CHANNEL_SCHEMAS: dict[str, Any] = {
    "Member": _object({
        "peer_id": {"type": "string", "description": "PeerId text form (sp...)"},
        "display_name": {"type": "string", "description": "as the member announced it"},
        "role": {"type": "string", "enum": ["admin", "member"]},
    }),
    "ChannelCreated": _object({
        "channel_id": _CHANNEL_ID,
        "name": {"type": "string"},
        "epoch": {"type": "integer", "minimum": 0},
        "members": {"type": "array", "items": _MEMBER},
    }),
    "Channel": _object({
        "channel_id": _CHANNEL_ID,
        "name": {"type": "string"},
        "epoch": {"type": "integer", "minimum": 0},
        "epoch_fingerprint": _hex(
            "^([0-9a-f]{2})+$",
            "hash of the current epoch's state (hex); equal on every member in the same epoch",
        ),
        "status": {
            "type": "string",
            "enum": ["active", "leaving", "removed"],
            "description": "this node's membership: leaving = asked to leave, waiting for "
            "the commit; removed = no longer a member (history stays readable)",
        },
        "members": {"type": "array", "items": _MEMBER},
        "committers": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the admins in this epoch's committer order (PeerIds): the first "
            "commits membership changes, the others are its backups in turn",
        },
        "dropped": {
            "type": "object",
            "description": "envelopes for this channel refused, counted by reason",
            "additionalProperties": {"type": "integer"},
        },
    }),
    "ChannelList": _object({
        "channels": {"type": "array", "items": {"$ref": "#/components/schemas/Channel"}}
    }),
    "CreateChannelRequest": _object({
        "name": {"type": "string", "minLength": 1, "description": "1..128 UTF-8 bytes"}
    }),
    "PeerRequest": _object({
        "peer_id": {"type": "string", "description": "PeerId text form (sp...)"}
    }),
    "InviteSent": _object({"invite_id": _INVITE_ID}),
    "SendMessageRequest": _object({
        "text": {"type": "string", "description": "at most 64 KiB as UTF-8"}
    }),
    "MessageSent": _object({"message_id": _hex(_HEX32, "message id (16 bytes, hex)")}),
    "Message": _object({
        "message_id": _hex(_HEX32, "message id (16 bytes, hex)"),
        "sender": {"type": "string", "description": "PeerId text form"},
        "sender_name": {"type": "string", "description": "the sender's display name then"},
        "text": {"type": "string"},
        "sent_at": {"type": "number", "description": "Unix time, seconds (sender's clock)"},
        "received_at": {"type": "number", "description": "Unix time, seconds (this node)"},
        "status": {
            "oneOf": [{"type": "null"}, _object({
                "state": {"type": "string", "enum": ["sent", "stored", "seen"],
                          "description": "sent: durably in the outbox; stored: every "
                          "member's node, or 2 of the 3 mailbox holders, acknowledged it (it "
                          "no longer needs this node online); seen: at least one other "
                          "member is known to have it"},
                "stored": {"type": "boolean",
                           "description": "acknowledged by every member or by 2 of 3 "
                           "mailbox holders"},
                "seen_by": {"type": "integer", "minimum": 0,
                            "description": "other members known to have it (from the Bloom "
                            "filters their own messages carry; no receipts are sent)"},
            })],
            "description": "for this node's own messages; null for others'",
        },
    }),
    "MessagePage": _object({
        "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
        "next": {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "cursor for the next page: pass it as ?after=; equals the given "
            "after when there is nothing new, so a client can poll with it",
        },
    }),
    "Invite": _object({
        "invite_id": _INVITE_ID,
        "channel_id": _CHANNEL_ID,
        "name": {"type": "string", "description": "the channel's name, as the inviter sent it"},
        "from": {"type": "string", "description": "the inviter's PeerId"},
    }),
    "InviteList": _object({
        "invites": {"type": "array", "items": {"$ref": "#/components/schemas/Invite"}}
    }),
    "InviteAccepted": _object({"channel_id": _CHANNEL_ID}),
    "Profile": _object({
        "display_name": {"type": "string", "description": "0..64 UTF-8 bytes"}
    }),
    "Event": {
        "type": "object",
        "description": "The data: line of one event. Always channel_id; the rest by event: "
        "message: message_id, sender, sender_name, text, sent_at; invite: invite_id, name, "
        "from; invite_declined: invite_id, peer_id; member_added / member_removed: peer_id; "
        "epoch: epoch, epoch_fingerprint.",
        "required": ["channel_id"],
        "properties": {"channel_id": _CHANNEL_ID},
    },
}

_CHANNEL_PARAM = {
    "name": "channel_id",
    "in": "path",
    "required": True,
    "description": "channel id (64 lowercase hex digits)",
    "schema": {"type": "string", "pattern": _HEX64},
}
_INVITE_PARAM = {
    "name": "invite_id",
    "in": "path",
    "required": True,
    "description": "invite id (32 lowercase hex digits)",
    "schema": {"type": "string", "pattern": _HEX32},
}
_UNAVAILABLE = {"503": problem(f"Channels not running yet ({_t('channels-unavailable')})")}
_BAD_CHANNEL_ID = "Malformed channel id"
_UNKNOWN_CHANNEL = f"Unknown channel ({_t('unknown-channel')})"
_NOT_ADMIN = f"This node is not an admin of the channel ({_t('not-admin')})"
_NOT_MEMBER = f"This node is no longer a member of the channel ({_t('not-member')})"
_TOO_LARGE = "Body too large"

CHANNEL_PATHS: dict[str, Any] = {
    "/v1/channels": {
        "get": {
            "operationId": "listChannels",
            "summary": "Every channel of this node (including ones it left)",
            "responses": {
                "200": json_response("ChannelList", "Channels"),
                **UNAUTHORIZED,
                **_UNAVAILABLE,
            },
        },
        "post": {
            "operationId": "createChannel",
            "summary": "Create a channel with this node as its only member and admin",
            "requestBody": json_request("CreateChannelRequest"),
            "responses": {
                "201": {
                    **json_response("ChannelCreated", "Created"),
                    "headers": {
                        "Location": {
                            "description": "/v1/channels/{channel_id}",
                            "schema": {"type": "string"},
                        }
                    },
                },
                "400": problem("Body not as documented, or name not 1..128 UTF-8 bytes"),
                **UNAUTHORIZED,
                "413": problem(_TOO_LARGE),
                **_UNAVAILABLE,
            },
        },
    },
    "/v1/channels/{channel_id}": {
        "parameters": [_CHANNEL_PARAM],
        "get": {
            "operationId": "getChannel",
            "summary": "One channel: members and roles, epoch, this node's status",
            "responses": {
                "200": json_response("Channel", "The channel"),
                "400": problem(_BAD_CHANNEL_ID),
                **UNAUTHORIZED,
                "404": problem(_UNKNOWN_CHANNEL),
                **_UNAVAILABLE,
            },
        },
    },
    "/v1/channels/{channel_id}/members": {
        "parameters": [_CHANNEL_PARAM],
        "post": {
            "operationId": "inviteMember",
            "summary": "Invite a peer (admins only); it joins once it accepts",
            "description": "Looks the invitee's signed peer record up in the DHT (its "
            "envelope key) and sends it a sealed invite. The invitee becomes a member after "
            "it accepts (events invite_declined or member_added tell the outcome).",
            "requestBody": json_request("PeerRequest"),
            "responses": {
                "202": json_response("InviteSent", "Invite sent"),
                "400": problem("Body not as documented, malformed channel id or PeerId"),
                **UNAUTHORIZED,
                "403": problem(_NOT_ADMIN),
                "404": problem(
                    f"{_UNKNOWN_CHANNEL}, or no signed record of the invitee in the DHT "
                    f"({RECORD_NOT_FOUND})"
                ),
                "409": problem(
                    f"The peer is already a member ({_t('already-member')}), or {_NOT_MEMBER}"
                ),
                "413": problem(_TOO_LARGE),
                **_UNAVAILABLE,
                "504": problem("DHT lookup of the invitee did not finish in time"),
            },
        },
    },
    "/v1/channels/{channel_id}/members/{peer_id}": {
        "parameters": [_CHANNEL_PARAM, PEER_ID_PARAM],
        "delete": {
            "operationId": "removeMember",
            "summary": "Remove a member (admins only; removing this node itself = leave)",
            "responses": {
                "202": {"description": "Removal requested; it takes effect with the commit"},
                "400": problem("Malformed channel id or PeerId"),
                **UNAUTHORIZED,
                "403": problem(_NOT_ADMIN),
                "404": problem(f"{_UNKNOWN_CHANNEL}, or the peer is not a member "
                                 f"({_t('unknown-member')})"),
                "409": problem(f"{_NOT_MEMBER}, or this node is the last admin"),
                **_UNAVAILABLE,
            },
        },
    },
    "/v1/channels/{channel_id}/admins": {
        "parameters": [_CHANNEL_PARAM],
        "post": {
            "operationId": "addAdmin",
            "summary": "Make a member an admin (admins only)",
            "requestBody": json_request("PeerRequest"),
            "responses": {
                "202": {"description": "Requested; it takes effect with the commit"},
                "400": problem("Body not as documented, malformed channel id or PeerId"),
                **UNAUTHORIZED,
                "403": problem(_NOT_ADMIN),
                "404": problem(f"{_UNKNOWN_CHANNEL}, or the peer is not a member "
                                 f"({_t('unknown-member')})"),
                "409": problem(_NOT_MEMBER),
                "413": problem(_TOO_LARGE),
                **_UNAVAILABLE,
            },
        },
    },
    "/v1/channels/{channel_id}/leave": {
        "parameters": [_CHANNEL_PARAM],
        "post": {
            "operationId": "leaveChannel",
            "summary": "Leave the channel (an admin commits the removal); no body, or {}",
            "responses": {
                "202": {"description": "Leaving; the status becomes removed with the commit"},
                "400": problem("Malformed channel id, or a body other than {}"),
                **UNAUTHORIZED,
                "404": problem(_UNKNOWN_CHANNEL),
                "409": problem(
                    f"{_NOT_MEMBER}, or this node is the last admin: make another member an "
                    f"admin first ({_t('last-admin')})"
                ),
                "413": problem(_TOO_LARGE),
                **_UNAVAILABLE,
            },
        },
    },
    "/v1/channels/{channel_id}/messages": {
        "parameters": [_CHANNEL_PARAM],
        "get": {
            "operationId": "listMessages",
            "summary": "Stored messages, oldest first, after a cursor",
            "parameters": [
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "a previous page's next; 0 or absent: from the start",
                    "schema": {"type": "string", "pattern": "^[0-9]+$", "default": "0"},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "most messages to return",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                },
            ],
            "responses": {
                "200": json_response("MessagePage", "A page of messages"),
                "400": problem("Malformed channel id, bad or unknown query parameter"),
                **UNAUTHORIZED,
                "404": problem(_UNKNOWN_CHANNEL),
                **_UNAVAILABLE,
            },
        },
        "post": {
            "operationId": "sendMessage",
            "summary": "Send a text message; answers once it is durably in the outbox",
            "requestBody": json_request("SendMessageRequest"),
            "responses": {
                "202": json_response("MessageSent", "Stored and queued for every member"),
                "400": problem("Body not as documented, or text not valid UTF-8"),
                **UNAUTHORIZED,
                "404": problem(_UNKNOWN_CHANNEL),
                "409": problem(_NOT_MEMBER),
                "413": problem(f"Text above 64 KiB ({_t('text-too-long')}), or body too large"),
                **_UNAVAILABLE,
            },
        },
    },
    "/v1/invites": {
        "get": {
            "operationId": "listInvites",
            "summary": "Invites to this node waiting for an answer",
            "responses": {
                "200": json_response("InviteList", "Pending invites"),
                **UNAUTHORIZED,
                **_UNAVAILABLE,
            },
        },
    },
    "/v1/invites/{invite_id}": {
        "parameters": [_INVITE_PARAM],
        "delete": {
            "operationId": "declineInvite",
            "summary": "Decline an invite (the inviter is told)",
            "responses": {
                "204": {"description": "Declined"},
                "400": problem("Malformed invite id"),
                **UNAUTHORIZED,
                "404": problem(f"No such pending invite ({_t('unknown-invite')})"),
                **_UNAVAILABLE,
            },
        },
    },
    "/v1/invites/{invite_id}/accept": {
        "parameters": [_INVITE_PARAM],
        "post": {
            "operationId": "acceptInvite",
            "summary": "Accept an invite; the channel appears once an admin adds this node",
            "responses": {
                "202": json_response("InviteAccepted", "Accepted; waiting for the Welcome"),
                "400": problem("Malformed invite id"),
                **UNAUTHORIZED,
                "404": problem(f"No such pending invite ({_t('unknown-invite')})"),
                **_UNAVAILABLE,
            },
        },
    },
    "/v1/profile": {
        "put": {
            "operationId": "setProfile",
            "summary": "Set this node's display name, announced in every channel",
            "requestBody": json_request("Profile"),
            "responses": {
                "200": json_response("Profile", "Saved"),
                "400": problem("Body not as documented, or name above 64 UTF-8 bytes"),
                **UNAUTHORIZED,
                "413": problem(_TOO_LARGE),
                **_UNAVAILABLE,
            },
        },
    },
    "/v1/events": {
        "get": {
            "operationId": "events",
            "summary": "Channel events as server-sent events (text/event-stream)",
            "description": "Event names: message, invite, invite_declined, member_added, "
            "member_removed, epoch, repair (an admin re-added a member left on a fork), "
            "mailbox_gap (this node was away longer than mailboxes keep envelopes); each "
            "data: line is one JSON object (schema Event). A "
            "comment line comes every 15 s. A client that reads too slowly is disconnected "
            "(the node never waits for it): reconnect and catch up with GET "
            ".../messages?after=. The stream ends cleanly when the node shuts down.",
            "responses": {
                "200": {
                    "description": "The event stream",
                    "content": {
                        "text/event-stream": {
                            "schema": {"type": "string"},
                            "x-event-data": {"$ref": "#/components/schemas/Event"},
                        }
                    },
                },
                **UNAUTHORIZED,
                **_UNAVAILABLE,
            },
        },
    },
}
