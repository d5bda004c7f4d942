"""Group-context extensions (RFC 9420 sections 7.2, 12.1.7, 13.4): checking a proposed list
and checking that a leaf supports a group's list.

Every extension in the GroupContext is mandatory: each member's leaf must list each
non-default type in ``capabilities.extensions`` (13.4), and a ``required_capabilities``
extension adds required extension, proposal and credential types (11.1). Extension types
that RFC 9420 places elsewhere (``application_id`` in leaves, ``ratchet_tree`` and
``external_pub`` in GroupInfo) are refused in a GroupContext.
"""

from __future__ import annotations

from collections.abc import Iterable

from mls.errors import MlsError, ValidationError
from mls.group_context import MAX_EXTENSION_DATA, RawExtension
from mls.messages import (
    ExtensionType,
    ExternalSenders,
    LeafNode,
    RequiredCapabilities,
)
from mls.tree.validation import DEFAULT_EXTENSION_TYPES, DEFAULT_PROPOSAL_TYPES

__all__ = [
    "NOT_IN_GROUP_CONTEXT",
    "ExtensionsError",
    "check_group_extensions",
    "required_capabilities_of",
    "unsupported_reason",
]

NOT_IN_GROUP_CONTEXT = frozenset(
    {ExtensionType.APPLICATION_ID, ExtensionType.RATCHET_TREE, ExtensionType.EXTERNAL_PUB}
)


class ExtensionsError(ValidationError):
    """A group-context extension list is malformed or not supported by a leaf."""


def check_group_extensions(extensions: Iterable[RawExtension]) -> tuple[RawExtension, ...]:
    """The list as a tuple of ``(type, data)`` if it may be a GroupContext's extensions:
    uint16 types, each at most once, none of the leaf/GroupInfo-only types, and parseable
    ``required_capabilities`` / ``external_senders`` bodies. Raises ExtensionsError."""
    out: list[RawExtension] = []
    seen: set[int] = set()
    for item in extensions:
        ext_type, data = item
        if not isinstance(ext_type, int) or not 0 <= ext_type <= 0xFFFF:
            raise ExtensionsError(f"extension type {ext_type!r} is not a uint16")
        if not isinstance(data, bytes | bytearray) or len(data) > MAX_EXTENSION_DATA:
            raise ExtensionsError(f"extension {ext_type}: data must be bytes, at most 1 MiB")
        if ext_type in seen:
            raise ExtensionsError(f"extension type {ext_type} appears twice")
        if ext_type in NOT_IN_GROUP_CONTEXT:
            raise ExtensionsError(f"extension type {ext_type} cannot be a group extension")
        seen.add(ext_type)
        data = bytes(data)
        try:
            if ext_type == ExtensionType.REQUIRED_CAPABILITIES:
                RequiredCapabilities.from_bytes(data)
            elif ext_type == ExtensionType.EXTERNAL_SENDERS:
                ExternalSenders.from_bytes(data)
        except MlsError as exc:
            raise ExtensionsError(f"extension {ext_type} does not parse: {exc}") from None
        out.append((int(ext_type), data))
    return tuple(out)


def required_capabilities_of(
    extensions: Iterable[RawExtension],
) -> RequiredCapabilities | None:
    for ext_type, data in extensions:
        if ext_type == ExtensionType.REQUIRED_CAPABILITIES:
            try:
                return RequiredCapabilities.from_bytes(data)
            except MlsError as exc:
                raise ExtensionsError(f"bad required_capabilities: {exc}") from None
    return None


def unsupported_reason(leaf: LeafNode, extensions: Iterable[RawExtension]) -> str | None:
    """Why ``leaf`` cannot be in a group with these context extensions, or None if it can."""
    exts = tuple(extensions)
    caps = leaf.capabilities
    for ext_type, _ in exts:
        if ext_type not in DEFAULT_EXTENSION_TYPES and ext_type not in caps.extensions:
            return f"does not support group extension {ext_type}"
    rc = required_capabilities_of(exts)
    if rc is not None:
        for t in rc.extension_types:
            if t not in DEFAULT_EXTENSION_TYPES and t not in caps.extensions:
                return f"lacks required extension {t}"
        for t in rc.proposal_types:
            if t not in DEFAULT_PROPOSAL_TYPES and t not in caps.proposals:
                return f"lacks required proposal type {t}"
        for t in rc.credential_types:
            if t not in caps.credentials:
                return f"lacks required credential type {t}"
    return None
