"""Creating and processing Commits (RFC 9420 section 12.4), member committers only.

Both directions work on a provisional copy of the tree (``RatchetTree.copy()`` keeps the hash
caches, so only the touched paths are rehashed) and return a new ``GroupState``; the caller
swaps it in only when everything checked out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from mls import tree_math
from mls.crypto.hpke import Rng
from mls.crypto.labels import encrypt_with_label, sign_with_label
from mls.errors import CryptoError, ValidationError
from mls.group_context import GroupContext
from mls.key_packages import key_package_ref
from mls.key_schedule import (
    KeyScheduleResult,
    external_init_receiver,
    key_schedule,
    welcome_key_nonce,
)
from mls.messages import (
    AuthenticatedContent,
    Capabilities,
    Commit,
    EncryptedGroupSecrets,
    Extension,
    ExtensionType,
    ExternalInit,
    FramedContentAuthData,
    GroupContextExtensions,
    GroupInfo,
    GroupSecrets,
    HPKECiphertext,
    KeyPackage,
    LeafNode,
    MLSMessage,
    PathSecret,
    Proposal,
    ProposalOrRef,
    ProposalRef,
    ReInit,
    Remove,
    Sender,
    SenderType,
    Update,
    Welcome,
    WireFormat,
)
from mls.outbound import own_content, seal
from mls.proposals import (
    AppliedProposals,
    ProposalError,
    PskStore,
    ResolvedProposal,
    ResumptionLookup,
    apply_proposals,
    check_tree_supports,
    path_required,
    required_capabilities,
    resolve_proposals,
    resolve_psks,
    validate_external_proposal_list,
    validate_proposal,
    validate_proposal_list,
)
from mls.protection import VerifiedContent, sign_content
from mls.psk import psk_secret
from mls.secret_tree import SecretTree
from mls.state import GroupState
from mls.transcript import (
    confirmation_tag,
    confirmed_hash,
    interim_hash,
    verify_confirmation_tag,
)
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.treekem import PathPrivate, create_update_path, process_update_path

__all__ = [
    "GROUP_INFO_TBS_LABEL",
    "WELCOME_LABEL",
    "CommitError",
    "CreatedCommit",
    "ProcessedCommit",
    "create_commit",
    "process_commit",
    "sign_group_info",
]

GROUP_INFO_TBS_LABEL = "GroupInfoTBS"
WELCOME_LABEL = "Welcome"


class CommitError(ValidationError):
    """A commit cannot be created or applied."""


@dataclass(frozen=True)
class CreatedCommit:
    state: GroupState  # the next epoch, to install on merge
    message: bytes  # MLSMessage (PublicMessage or PrivateMessage)
    welcome: bytes | None  # MLSMessage(Welcome) when members were added
    group_info: bytes  # MLSMessage(GroupInfo) of the new epoch
    added: tuple[tuple[int, KeyPackage], ...] = ()
    removed: tuple[tuple[int, LeafNode], ...] = ()


@dataclass(frozen=True)
class ProcessedCommit:
    state: GroupState
    added: tuple[tuple[int, KeyPackage], ...] = ()
    removed: tuple[tuple[int, LeafNode], ...] = ()
    removed_self: bool = False
    committer: int = 0  # leaf index (for an external commit: the joiner's new leaf)
    psks: int = field(default=0)
    committer_leaf: LeafNode | None = None  # the committer's leaf in the new tree
    external: bool = False


def _provisional(state: GroupState, applied: AppliedProposals) -> GroupContext:
    ctx = state.context
    return replace(
        ctx,
        epoch=ctx.epoch + 1,
        extensions=ctx.extensions if applied.extensions is None else applied.extensions,
    )


def _psk_secret(
    state: GroupState,
    applied: AppliedProposals,
    store: PskStore | None,
    resumption: ResumptionLookup | None = None,
) -> bytes | None:
    if not applied.psks:
        return None
    values = resolve_psks(state.suite, applied.psks, store, resumption or state.resumption_psk)
    return psk_secret(state.suite, values)


def _next_state(
    state: GroupState,
    tree: RatchetTree,
    private: PathPrivate,
    ctx: GroupContext,
    ks: KeyScheduleResult,
    interim: bytes,
    reinit: ReInit | None = None,
) -> GroupState:
    past, psks = state.ended()
    secrets = ks.epoch
    return replace(
        state,
        reinit=reinit,
        context=ctx,
        tree=tree,
        private=private.pruned(tree),
        secrets=secrets,
        secret_tree=SecretTree(state.suite, secrets.encryption_secret, tree.n_leaves),
        interim_hash=interim,
        proposals={},
        past=past,
        resumption_psks=psks,
    )


def _select_cached(
    state: GroupState, now: int | None, *, skip_gce: bool = False
) -> tuple[list[ResolvedProposal], bool]:
    """Valid, mutually compatible cached proposals in arrival order; True if one of ours was
    an Update (then the commit must carry a path instead). ``skip_gce``: leave cached
    GroupContextExtensions out (the commit carries its own)."""
    out: list[ResolvedProposal] = []
    touched: set[int] = set()
    own_update = False
    me = state.leaf_index
    for sp in state.proposals.values():
        body = sp.proposal.body
        if isinstance(body, Update) and sp.sender.index == me:
            own_update = True
            continue
        if isinstance(body, ReInit):
            continue  # committed alone only, and only on request (Group.reinit)
        if isinstance(body, GroupContextExtensions) and (
            skip_gce or _gce_unsupported(state.tree, body)
        ):
            continue
        try:
            validate_proposal(
                state.suite,
                sp.proposal,
                sp.sender,
                context=state.context,
                tree=state.tree,
                now=now,
            )
        except ValidationError:
            continue
        target = None
        if isinstance(body, Update):
            target = sp.sender.index
        elif isinstance(body, Remove):
            if body.removed == me:
                continue
            target = body.removed
        if target is not None:
            if target in touched:
                continue
            touched.add(target)
        rp = ResolvedProposal(sp.proposal, sp.sender, sp.ref)
        try:
            validate_proposal_list([*out, rp], me, tree=state.tree)
        except ProposalError:
            continue
        out.append(rp)
    return out, own_update


def _gce_unsupported(tree: RatchetTree, body: GroupContextExtensions) -> bool:
    exts = tuple((e.extension_type, e.extension_data) for e in body.extensions)
    try:
        check_tree_supports(tree, exts)
    except ProposalError:
        return True
    return False


def _new_extensions(resolved: list[ResolvedProposal]) -> tuple[tuple[int, bytes], ...] | None:
    for rp in resolved:
        body = rp.proposal.body
        if isinstance(body, GroupContextExtensions):
            return tuple((e.extension_type, e.extension_data) for e in body.extensions)
    return None


def _ext_types(ctx: GroupContext) -> list[int]:
    return [t for t, _ in ctx.extensions]


def sign_group_info(state: GroupState, gi: GroupInfo) -> GroupInfo:
    sig = sign_with_label(state.suite, state.signature_priv, GROUP_INFO_TBS_LABEL, gi.tbs())
    return replace(gi, signature=sig)


def create_commit(
    state: GroupState,
    proposals: list[Proposal],
    *,
    rng: Rng,
    hpke_rng: Rng | None,
    wire_format: WireFormat,
    force_path: bool = False,
    psk_store: PskStore | None = None,
    now: int | None = None,
    ratchet_tree_extension: bool = True,
    authenticated_data: bytes = b"",
    capabilities: Capabilities | None = None,
    resumption: ResumptionLookup | None = None,
    cached_refs: Sequence[bytes] | None = None,
) -> CreatedCommit:
    """Commit every valid cached proposal plus ``proposals`` (by value, from us).

    A GroupContextExtensions among ``proposals`` replaces any cached one; its extensions
    apply when the other proposals are checked (RFC 9420 12.3), and every member of the
    resulting tree must support them. ``capabilities``: what our new leaf advertises when
    the commit carries a path (default: our current leaf's). ``resumption``: where
    resumption PSKs are looked up (default: this group's own epochs). ``cached_refs``:
    commit exactly these cached proposals instead of every valid one (a ReInit goes
    alone). The current epoch's handshake
    ratchet advances (PrivateMessage); nothing else in ``state`` changes: the result
    carries the next epoch's state."""
    suite = state.suite
    me = state.leaf_index
    committer = Sender.member(me)
    own_gce = any(isinstance(p.body, GroupContextExtensions) for p in proposals)
    if cached_refs is None:
        cached, own_update = _select_cached(state, now, skip_gce=own_gce)
    else:
        cached, own_update = [], False
        for ref in cached_refs:
            sp = state.proposals.get(ref)
            if sp is None:
                raise CommitError("no such cached proposal")
            try:
                validate_proposal(
                    suite, sp.proposal, sp.sender, context=state.context, tree=state.tree, now=now
                )
            except ProposalError as exc:
                raise CommitError(f"cannot commit proposal: {exc}") from None
            cached.append(ResolvedProposal(sp.proposal, sp.sender, ref))
    removed_by_ref = {
        rp.proposal.body.removed for rp in cached if isinstance(rp.proposal.body, Remove)
    }
    new_exts = _new_extensions(cached + [ResolvedProposal(p, committer, None) for p in proposals])
    vctx = state.context if new_exts is None else replace(state.context, extensions=new_exts)
    by_value: list[ResolvedProposal] = []
    for p in proposals:
        if isinstance(p.body, Remove) and p.body.removed in removed_by_ref:
            continue
        try:
            validate_proposal(suite, p, committer, context=vctx, tree=state.tree, now=now)
        except ProposalError as exc:
            raise CommitError(f"cannot commit proposal: {exc}") from None
        by_value.append(ResolvedProposal(p, committer, None))
    resolved = cached + by_value
    try:
        validate_proposal_list(resolved, me, tree=state.tree)
    except ProposalError as exc:
        raise CommitError(str(exc)) from None

    tree = state.tree.copy()
    try:
        applied = apply_proposals(tree, resolved)
        if applied.extensions is not None:
            check_tree_supports(tree, applied.extensions)
    except ProposalError as exc:
        raise CommitError(str(exc)) from None
    prov = _provisional(state, applied)
    psk_sec = _psk_secret(state, applied, psk_store, resumption)
    added_leaves = [i for i, _ in applied.added]

    private = state.private
    commit_secret: bytes | None = None
    path = None
    created = None
    if force_path or own_update or path_required(resolved):
        created = create_update_path(
            tree,
            me,
            group_id=prov.group_id,
            signature_priv=state.signature_priv,
            group_context=lambda th: replace(prov, tree_hash=th).encode(),
            rng=rng,
            hpke_rng=hpke_rng,
            exclude=added_leaves,
            capabilities=capabilities,
        )
        path = created.update_path
        private = created.private
        commit_secret = created.commit_secret

    items: list[ProposalOrRef] = [
        ProposalRef(rp.ref) if rp.ref is not None else rp.proposal for rp in resolved
    ]
    commit = Commit(tuple(items), path)
    content = own_content(state, commit, authenticated_data)
    signature = sign_content(suite, wire_format, content, state.signature_priv, state.context)
    confirmed = confirmed_hash(suite, state.interim_hash, wire_format, content, signature)
    new_ctx = replace(prov, tree_hash=tree.tree_hash(), confirmed_transcript_hash=confirmed)
    ks = key_schedule(suite, state.secrets.init_secret, commit_secret, psk_sec, new_ctx)
    tag = confirmation_tag(suite, ks.epoch.confirmation_key, confirmed)
    ac = AuthenticatedContent(wire_format, content, FramedContentAuthData(signature, tag))
    message = seal(state, ac, rng=rng)
    new_state = _next_state(
        state, tree, private, new_ctx, ks, interim_hash(suite, confirmed, tag), applied.reinit
    )

    exts: tuple[Extension, ...] = ()
    if ratchet_tree_extension:
        exts = (Extension(ExtensionType.RATCHET_TREE, tree.to_bytes()),)
    gi = sign_group_info(new_state, GroupInfo(new_ctx.encode(), exts, tag, me))
    welcome = None
    if applied.added:
        key, nonce = welcome_key_nonce(suite, ks.welcome_secret)
        encrypted_gi = suite.aead_seal(key, nonce, b"", gi.to_bytes())
        secrets = []
        for leaf_index, kp in applied.added:
            ps = None
            if created is not None:
                found = created.path_secret_for(tree, leaf_index)
                if found is not None:
                    ps = PathSecret(found[1])
            gs = GroupSecrets(ks.joiner_secret, ps, tuple(applied.psks))
            kem_output, ct = encrypt_with_label(
                suite, kp.init_key, WELCOME_LABEL, encrypted_gi, gs.to_bytes(), rng=hpke_rng
            )
            secrets.append(
                EncryptedGroupSecrets(key_package_ref(suite, kp), HPKECiphertext(kem_output, ct))
            )
        welcome = MLSMessage(Welcome(suite.suite_id, tuple(secrets), encrypted_gi)).to_bytes()
    return CreatedCommit(
        new_state,
        message,
        welcome,
        MLSMessage(gi).to_bytes(),
        tuple(applied.added),
        tuple(applied.removed),
    )


def process_commit(
    state: GroupState,
    vc: VerifiedContent,
    *,
    psk_store: PskStore | None = None,
    now: int | None = None,
    on_resolved: Callable[[list[ResolvedProposal]], None] | None = None,
) -> ProcessedCommit:
    """Apply another member's verified commit, or an external commit (sender
    new_member_commit, RFC 9420 12.4.3.2); returns the next epoch's state.

    ``on_resolved`` is called with the resolved proposal list once it is validated, before
    the tree is changed or the path decrypted; whatever it raises propagates.
    Raises CommitError / ProposalError / TreeKemError / CryptoError; ``state`` is untouched
    either way (all work is on copies)."""
    suite = state.suite
    commit = vc.content.content
    if not isinstance(commit, Commit):
        raise CommitError("not a commit")
    sender = vc.sender
    external = sender.sender_type == SenderType.NEW_MEMBER_COMMIT
    if external:
        resolved = _external_proposals(state, commit, sender, now)
    elif sender.sender_type == SenderType.MEMBER:
        resolved = _member_proposals(state, commit, sender, now)
    else:
        raise CommitError("commits come from members or from new members (external commits)")
    if commit.path is None and path_required(resolved):
        raise CommitError("commit must carry an UpdatePath")
    if on_resolved is not None:
        on_resolved(resolved)

    private = state.private
    me = private.leaf_index
    # Our own Update committed by someone else: install the leaf key we kept for it.
    for rp in resolved:
        if isinstance(rp.proposal.body, Update) and rp.sender.index == me and rp.ref:
            stored = state.proposals[rp.ref]
            if stored.encryption_priv is None:
                raise CommitError("commit applies an Update of ours we have no key for")
            private = replace(private, encryption_priv=stored.encryption_priv)

    tree = state.tree.copy()
    applied = apply_proposals(tree, resolved)
    if applied.extensions is not None:
        check_tree_supports(tree, applied.extensions)
    init_secret = state.secrets.init_secret
    if external:
        assert commit.path is not None
        # The joiner takes the leftmost free leaf, as if added (12.4.2), then its path.
        c = tree.add_leaf(commit.path.leaf_node)
        init_secret = _external_init_secret(state, resolved)
    else:
        c = sender.index
    added = tuple(applied.added)
    removed = tuple(applied.removed)
    if any(i == me for i, _ in removed):
        return ProcessedCommit(
            replace(state, active=False),
            added,
            removed,
            removed_self=True,
            committer=c,
            committer_leaf=commit.path.leaf_node if external and commit.path else None,
            external=external,
        )
    prov = _provisional(state, applied)
    psk_sec = _psk_secret(state, applied, psk_store)
    private = private.pruned(tree)
    commit_secret: bytes | None = None
    if commit.path is not None:
        processed = process_update_path(
            tree,
            private,
            c,
            commit.path,
            group_id=prov.group_id,
            group_context=lambda th: replace(prov, tree_hash=th).encode(),
            exclude=[i for i, _ in applied.added],
            required_capabilities=required_capabilities(prov),
            group_extension_types=_ext_types(prov),
            new_member=external,
        )
        private = processed.private
        commit_secret = processed.commit_secret

    signature = vc.auth.signature
    tag = vc.auth.confirmation_tag
    if tag is None:
        raise CommitError("commit has no confirmation tag")
    confirmed = confirmed_hash(suite, state.interim_hash, vc.wire_format, vc.content, signature)
    new_ctx = replace(prov, tree_hash=tree.tree_hash(), confirmed_transcript_hash=confirmed)
    ks = key_schedule(suite, init_secret, commit_secret, psk_sec, new_ctx)
    verify_confirmation_tag(suite, ks.epoch.confirmation_key, confirmed, tag)
    new_state = _next_state(
        state, tree, private, new_ctx, ks, interim_hash(suite, confirmed, tag), applied.reinit
    )
    return ProcessedCommit(
        new_state,
        added,
        removed,
        committer=c,
        psks=len(applied.psks),
        committer_leaf=tree.leaf(c),
        external=external,
    )


def _member_proposals(
    state: GroupState, commit: Commit, sender: Sender, now: int | None
) -> list[ResolvedProposal]:
    c = sender.index
    if c == state.leaf_index:
        raise CommitError("commit from our own leaf that is not our pending commit")
    if c >= state.tree.n_leaves or state.tree.leaf(c) is None:
        raise CommitError("commit from a blank leaf")
    resolved = resolve_proposals(commit.proposals, state.proposals, sender)
    new_exts = _new_extensions(resolved)
    vctx = state.context if new_exts is None else replace(state.context, extensions=new_exts)
    for rp in resolved:
        if rp.ref is None:
            validate_proposal(
                state.suite, rp.proposal, rp.sender, context=vctx, tree=state.tree, now=now
            )
    validate_proposal_list(resolved, c, tree=state.tree)
    return resolved


def _external_proposals(
    state: GroupState, commit: Commit, sender: Sender, now: int | None
) -> list[ResolvedProposal]:
    """RFC 9420 12.4.3.2 / 12.2: a path, proposals by value only, exactly one ExternalInit,
    at most one Remove (of the joiner's own old leaf: same identity), PSKs, nothing else."""
    if commit.path is None:
        raise CommitError("an external commit must carry an UpdatePath")
    resolved = []
    for item in commit.proposals:
        if not isinstance(item, Proposal):
            raise CommitError("an external commit cannot name proposals by reference")
        validate_proposal(
            state.suite, item, sender, context=state.context, tree=state.tree, now=now
        )
        resolved.append(ResolvedProposal(item, sender, None))
    validate_external_proposal_list(resolved, commit.path.leaf_node, tree=state.tree)
    return resolved


def _external_init_secret(state: GroupState, resolved: list[ResolvedProposal]) -> bytes:
    body = next(rp.proposal.body for rp in resolved if isinstance(rp.proposal.body, ExternalInit))
    assert isinstance(body, ExternalInit)
    external_priv, _ = state.secrets.external_key_pair()
    try:
        return external_init_receiver(state.suite, external_priv, body.kem_output)
    except CryptoError as exc:
        raise CommitError(f"ExternalInit does not decapsulate: {exc}") from None


def lowest_common_ancestor(a_leaf: int, b_leaf: int) -> int:
    return tree_math.common_ancestor(2 * a_leaf, 2 * b_leaf)
