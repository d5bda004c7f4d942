"""Joining a group from a Welcome (RFC 9420 section 12.4.3.1).

``open_welcome`` decrypts our GroupSecrets and the GroupInfo and runs the joiner's key
schedule; ``join_from_welcome`` then checks the GroupInfo signature, the tree (from the
``ratchet_tree`` extension or given out of band) and the confirmation tag, and builds the
initial ``GroupState``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mls import tree_math
from mls.crypto.labels import decrypt_with_label, verify_with_label
from mls.crypto.suite import CipherSuite
from mls.errors import CryptoError, MlsError, ValidationError
from mls.group_context import GroupContext
from mls.key_packages import KeyPackageBundle, key_package_ref
from mls.key_schedule import (
    KeyScheduleResult,
    derive_welcome_secret,
    key_schedule_from_joiner,
    welcome_key_nonce,
)
from mls.messages import (
    ExtensionType,
    GroupInfo,
    GroupSecrets,
    RatchetTree,
    RequiredCapabilities,
    Welcome,
)
from mls.messages.extensions import find_extension
from mls.proposals import PskStore, ResumptionLookup, resolve_psks
from mls.proposals import required_capabilities as context_required_capabilities
from mls.psk import psk_secret
from mls.secret_tree import SecretTree
from mls.state import GroupState
from mls.transcript import interim_hash, verify_confirmation_tag
from mls.tree.ratchet_tree import RatchetTree as Tree
from mls.tree.treekem import PathPrivate, TreeKemError
from mls.tree.validation import validate_tree

__all__ = [
    "OpenedWelcome",
    "WelcomeError",
    "join_from_welcome",
    "open_welcome",
    "verified_tree",
    "verify_group_info_signature",
]

_WELCOME_LABEL = "Welcome"
_GROUP_INFO_LABEL = "GroupInfoTBS"


class WelcomeError(ValidationError):
    """A Welcome is not for us or cannot be used to join."""


@dataclass(frozen=True)
class OpenedWelcome:
    group_secrets: GroupSecrets = field(repr=False)
    group_info: GroupInfo
    context: GroupContext
    key_schedule: KeyScheduleResult = field(repr=False)


def open_welcome(
    suite: CipherSuite,
    welcome: Welcome,
    key_package_ref: bytes,
    init_priv: bytes,
    *,
    psk_store: PskStore | None = None,
    resumption: ResumptionLookup | None = None,
) -> OpenedWelcome:
    """Decrypt our GroupSecrets and the GroupInfo; no signature or tag checks yet."""
    if welcome.cipher_suite != suite.suite_id:
        raise WelcomeError("Welcome is for another cipher suite")
    mine = [s for s in welcome.secrets if s.new_member == key_package_ref]
    if not mine:
        raise WelcomeError("Welcome has no secrets for our KeyPackage")
    ct = mine[0].encrypted_group_secrets
    try:
        raw = decrypt_with_label(
            suite,
            init_priv,
            _WELCOME_LABEL,
            welcome.encrypted_group_info,
            ct.kem_output,
            ct.ciphertext,
        )
    except CryptoError as exc:
        raise WelcomeError(f"cannot decrypt GroupSecrets: {exc}") from None
    gs = GroupSecrets.from_bytes(raw)
    if len(gs.joiner_secret) != suite.nh:
        raise WelcomeError("joiner secret has the wrong length")
    psk_values = resolve_psks(suite, gs.psks, psk_store, resumption)
    psk_sec = psk_secret(suite, psk_values) if psk_values else None
    # The welcome secret does not depend on the context; derive it first.
    welcome_secret = derive_welcome_secret(suite, gs.joiner_secret, psk_sec)
    key, nonce = welcome_key_nonce(suite, welcome_secret)
    try:
        gi_raw = suite.aead_open(key, nonce, b"", welcome.encrypted_group_info)
    except CryptoError as exc:
        raise WelcomeError(f"cannot decrypt GroupInfo: {exc}") from None
    gi = GroupInfo.from_bytes(gi_raw)
    ctx = GroupContext.decode(gi.group_context)
    if ctx.cipher_suite != suite.suite_id:
        raise WelcomeError("GroupInfo names another cipher suite")
    ks = key_schedule_from_joiner(suite, gs.joiner_secret, psk_sec, ctx)
    return OpenedWelcome(gs, gi, ctx, ks)


def verify_group_info_signature(suite: CipherSuite, gi: GroupInfo, signer_pub: bytes) -> bool:
    return verify_with_label(suite, signer_pub, _GROUP_INFO_LABEL, gi.tbs(), gi.signature)


def verified_tree(
    suite: CipherSuite,
    gi: GroupInfo,
    ctx: GroupContext,
    ratchet_tree: Tree | bytes | None,
    error: type[ValidationError],
) -> Tree:
    """The ratchet tree a GroupInfo describes (its ``ratchet_tree`` extension, else the one
    given out of band), checked as a joiner must (RFC 9420 12.4.3.1): the GroupInfo
    signature by the ``signer`` leaf, the tree hash, and every leaf and parent, including
    support for the group's extensions. Raises ``error`` or a ValidationError subclass."""
    ext = find_extension(gi.extensions, ExtensionType.RATCHET_TREE)
    if ext is not None:
        tree = Tree.from_wire(suite, RatchetTree.from_bytes(ext.extension_data))
    elif isinstance(ratchet_tree, bytes):
        tree = Tree.from_bytes(suite, ratchet_tree)
    elif ratchet_tree is not None:
        tree = ratchet_tree.copy()
    else:
        raise error("no ratchet tree in the GroupInfo and none given")

    if gi.signer >= tree.n_leaves:
        raise error("GroupInfo signer outside the tree")
    signer = tree.leaf(gi.signer)
    if signer is None or not verify_group_info_signature(suite, gi, signer.signature_key):
        raise error("GroupInfo signature does not verify")
    rc: RequiredCapabilities | None = context_required_capabilities(ctx)
    # Every leaf, ours included, must support the group's extensions (RFC 9420 13.4).
    validate_tree(
        tree,
        group_id=ctx.group_id,
        tree_hash=ctx.tree_hash,
        now=None,
        required_capabilities=rc,
        group_extension_types=[t for t, _ in ctx.extensions],
    )
    return tree


def join_from_welcome(
    suite: CipherSuite,
    welcome: Welcome,
    bundle: KeyPackageBundle,
    *,
    ratchet_tree: Tree | bytes | None = None,
    psk_store: PskStore | None = None,
    now: int | None = None,
    max_past_epochs: int = 2,
    resumption: ResumptionLookup | None = None,
    on_opened: Callable[[OpenedWelcome], None] | None = None,
) -> GroupState:
    """Full join: returns the group state of the Welcome's epoch. Raises MlsError subclasses.

    ``resumption`` looks up resumption PSKs the Welcome names (e.g. the old group's for a
    ReInit); ``on_opened`` may inspect (and refuse, by raising) the decrypted GroupSecrets
    and GroupInfo before the tree is checked."""
    kp = bundle.key_package
    if kp.cipher_suite != suite.suite_id:
        raise WelcomeError("KeyPackage is for another cipher suite")
    opened = open_welcome(
        suite,
        welcome,
        key_package_ref(suite, kp),
        bundle.init_priv,
        psk_store=psk_store,
        resumption=resumption,
    )
    if on_opened is not None:
        on_opened(opened)
    gi, ctx = opened.group_info, opened.context

    tree = verified_tree(suite, gi, ctx, ratchet_tree, WelcomeError)

    me = next(
        (i for i, leaf in tree.leaves() if leaf == kp.leaf_node),
        None,
    )
    if me is None:
        raise WelcomeError("our leaf is not in the tree")

    secrets = opened.key_schedule.epoch
    verify_confirmation_tag(
        suite, secrets.confirmation_key, ctx.confirmed_transcript_hash, gi.confirmation_tag
    )

    private = PathPrivate(me, bundle.encryption_priv, {})
    if opened.group_secrets.path_secret is not None:
        node = tree_math.common_ancestor(2 * me, 2 * gi.signer)
        try:
            private, _ = private.with_path_secret(
                suite, tree, node, opened.group_secrets.path_secret.path_secret
            )
        except (TreeKemError, MlsError) as exc:
            raise WelcomeError(f"path secret: {exc}") from None

    return GroupState(
        suite=suite,
        context=ctx,
        tree=tree,
        private=private,
        signature_priv=bundle.signature_priv,
        secrets=secrets,
        secret_tree=SecretTree(suite, secrets.encryption_secret, tree.n_leaves),
        interim_hash=interim_hash(suite, ctx.confirmed_transcript_hash, gi.confirmation_tag),
        max_past_epochs=max_past_epochs,
    )
