"""The Group API: one member's view of an MLS group, driven with MLSMessage bytes.

Every inbound message is processed so that failure changes nothing: the secret tree is read
inside a transaction that undoes its changes on any error, and commits build a new
``GroupState`` that replaces the live one only when the message fully checked out. So a
tampered, replayed, wrong-epoch or wrong-group message raises a typed ``MlsError`` and
changes nothing. Randomness and time are injected (``rng``, ``clock``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from mls.commit import (
    CommitError,
    create_commit,
    process_commit,
    sign_group_info,
)
from mls.crypto.hpke import Rng
from mls.crypto.labels import make_proposal_ref
from mls.errors import MlsError
from mls.events import (
    ApplicationMessage,
    CommitApplied,
    CommitOutput,
    DuplicateProposalError,
    GroupInactiveError,
    PendingCommitError,
    ProposalMessage,
    ReInitPendingError,
    UnexpectedMessageError,
    UnknownMemberError,
    WrongEpochError,
    WrongGroupError,
)
from mls.group_codec import PendingCommit, StoredGroup, decode_group, encode_group
from mls.group_extensions import ExtensionsError, check_group_extensions
from mls.inbound import CheckFn, inbound_check, proposal_view, verify_sender
from mls.key_packages import KeyPackageError, supported_extension_types
from mls.messages import (
    MLS10,
    Add,
    Capabilities,
    ContentType,
    Extension,
    ExtensionType,
    ExternalPub,
    GroupContextExtensions,
    GroupInfo,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    MLSMessage,
    PreSharedKey,
    PreSharedKeyID,
    PrivateMessage,
    Proposal,
    PublicMessage,
    ReInit,
    Remove,
    ResumptionPSKUsage,
    Sender,
    SenderType,
    Update,
    WireFormat,
)
from mls.outbound import sign_and_seal
from mls.proposals import (
    ProposalError,
    PskError,
    PskStore,
    ResolvedProposal,
    ResumptionLookup,
    StoredProposal,
    validate_proposal,
)
from mls.protection import VerifiedContent, unprotect_private, unprotect_public
from mls.state import GroupState
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.validation import sign_leaf_node

__all__ = ["Clock", "Group", "Inbound"]

Clock = Callable[[], float]
Inbound = ApplicationMessage | ProposalMessage | CommitApplied


def _identity(leaf: LeafNode | None) -> bytes:
    return b"" if leaf is None else leaf.credential.identity


def _gce_proposal(extensions: Sequence[tuple[int, bytes]], error: type[MlsError]) -> Proposal:
    try:
        exts = check_group_extensions(extensions)
    except ExtensionsError as exc:
        raise error(str(exc)) from None
    return Proposal(GroupContextExtensions(tuple(Extension(t, d) for t, d in exts)))


def _authenticated_data(message: bytes) -> bytes:
    """The authenticated_data of one of our own framed messages (clear in both formats)."""
    payload = MLSMessage.from_bytes(message).payload
    if isinstance(payload, PublicMessage):
        return payload.content.authenticated_data
    assert isinstance(payload, PrivateMessage)
    return payload.authenticated_data


class Group:
    """One member's state of an MLS group (RFC 9420), sans I/O.

    ``handshake_format``: proposals and commits go out as PrivateMessage (default) or
    PublicMessage; both are accepted on receipt. ``max_past_epochs`` bounds how many ended
    epochs are kept to read late application messages.
    """

    def __init__(
        self,
        state: GroupState,
        *,
        rng: Rng | None = None,
        clock: Clock | None = None,
        psk_store: PskStore | None = None,
        handshake_format: WireFormat = WireFormat.PRIVATE_MESSAGE,
        ratchet_tree_extension: bool = True,
        padding: int = 0,
        extensions_supported: Sequence[int] = (),
    ) -> None:
        if handshake_format not in (WireFormat.PRIVATE_MESSAGE, WireFormat.PUBLIC_MESSAGE):
            raise ValueError("handshake messages are PublicMessage or PrivateMessage")
        self._state = state
        self._rng: Rng = rng or os.urandom
        # Without an injected rng, HPKE draws its ephemerals from the library CSPRNG (faster).
        self._hpke_rng: Rng | None = rng
        self._clock = clock
        self._psk_store = psk_store
        self.handshake_format: WireFormat = handshake_format
        self.ratchet_tree_extension = ratchet_tree_extension
        self.padding = padding
        self._pending: PendingCommit | None = None
        self._own_proposals: dict[bytes, bytes] = {}  # message bytes -> ref (echo detection)
        # Extension types our new leaves (updates, commit paths) advertise on top of the
        # current leaf's: a client that learned new types upgrades its leaf when it rekeys.
        self.extensions_supported = supported_extension_types(extensions_supported)

    def __repr__(self) -> str:
        s = self._state
        return (
            f"Group(group_id={s.context.group_id.hex()}, epoch={s.epoch}, "
            f"leaf={s.leaf_index}, members={s.tree.member_count()})"
        )

    # -- properties -----------------------------------------------------------------------
    @property
    def state(self) -> GroupState:
        return self._state

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def group_id(self) -> bytes:
        return self._state.context.group_id

    @property
    def cipher_suite(self) -> int:
        return self._state.suite.suite_id

    @property
    def leaf_index(self) -> int:
        return self._state.leaf_index

    @property
    def active(self) -> bool:
        return self._state.active

    @property
    def members(self) -> list[bytes]:
        """Member identities in leaf order."""
        return [_identity(leaf) for _, leaf in self._state.tree.leaves()]

    @property
    def epoch_authenticator(self) -> bytes:
        return self._state.secrets.epoch_authenticator

    @property
    def extensions(self) -> tuple[tuple[int, bytes], ...]:
        """The group context extensions of the current epoch, as ``(type, data)``."""
        return self._state.context.extensions

    def member_leaves(self) -> list[tuple[int, bytes, bytes]]:
        """``(leaf index, credential identity, signature public key)`` per member."""
        return [
            (i, leaf.credential.identity, leaf.signature_key)
            for i, leaf in self._state.tree.leaves()
        ]

    @property
    def has_pending_commit(self) -> bool:
        return self._pending is not None

    @property
    def pending_commit(self) -> CommitOutput | None:
        """Our commit awaiting ``merge_pending_commit()`` (its Welcome included), if any."""
        return None if self._pending is None else self._pending.output

    @property
    def pending_proposals(self) -> list[ProposalMessage]:
        return [self._proposal_event(sp) for sp in self._state.proposals.values()]

    def group_info(
        self, with_external_pub: bool = True, *, ratchet_tree: bool | None = None
    ) -> bytes:
        """A GroupInfo for the current epoch (MLSMessage bytes), signed by us.

        ``with_external_pub``: include the ``external_pub`` extension, so that whoever
        holds it can join by external commit (``Client.join_external``) until the epoch
        ends; share it only with clients allowed to join. ``ratchet_tree``: include the
        tree (default: the group's ``ratchet_tree_extension`` setting)."""
        self._check_sendable()
        state = self._state
        exts: list[Extension] = []
        if self.ratchet_tree_extension if ratchet_tree is None else ratchet_tree:
            exts.append(Extension(ExtensionType.RATCHET_TREE, state.tree.to_bytes()))
        if with_external_pub:
            pub = ExternalPub(state.secrets.external_pub)
            exts.append(pub.to_extension())
        # The epoch's confirmation tag, recomputed (RFC 9420 12.4.3).
        tag = state.secrets.confirmation_tag(state.context.confirmed_transcript_hash)
        gi = GroupInfo(state.context_bytes, tuple(exts), tag, state.leaf_index)
        return MLSMessage(sign_group_info(state, gi)).to_bytes()

    def export_secret(self, label: bytes | str, context: bytes, length: int) -> bytes:
        return self._state.secrets.export(label, context, length)

    def export_tree(self) -> bytes:
        return self._state.tree.to_bytes()

    def _now(self) -> int | None:
        return None if self._clock is None else int(self._clock())

    def _check_active(self) -> None:
        if not self._state.active:
            raise GroupInactiveError("we were removed from this group")

    def _check_sendable(self) -> None:
        self._check_active()
        if self._state.reinit is not None:
            raise ReInitPendingError("the group was reinitialized; use the new group")

    @property
    def reinit_pending(self) -> ReInit | None:
        """The ReInit a commit applied (RFC 9420 11.2): the group no longer sends or takes
        handshake messages (late application messages are still read). Its members move
        to a new group: ``Client.create_reinit_group`` / ``Client.join_reinit``."""
        return self._state.reinit

    # -- sending --------------------------------------------------------------------------
    def encrypt(self, data: bytes, aad: bytes = b"") -> bytes:
        """An application message (PrivateMessage) for the current epoch."""
        self._check_sendable()
        _, msg = sign_and_seal(
            self._state,
            data,
            WireFormat.PRIVATE_MESSAGE,
            rng=self._rng,
            aad=aad,
            padding=self.padding,
        )
        return msg

    def _key_packages(self, key_packages: Iterable[bytes | KeyPackage]) -> list[KeyPackage]:
        out = []
        for item in key_packages:
            if isinstance(item, KeyPackage):
                out.append(item)
                continue
            payload = MLSMessage.from_bytes(item).payload
            if not isinstance(payload, KeyPackage):
                raise KeyPackageError("expected an MLSMessage carrying a KeyPackage")
            out.append(payload)
        return out

    def check_key_package(self, key_package: bytes | KeyPackage) -> None:
        """Raise (KeyPackageError, ProposalError, DecodeError...) unless this KeyPackage could
        be added to the group now, as ``add``/``change`` would check it: lets a committer
        leave out one bad KeyPackage instead of failing the whole commit."""
        (kp,) = self._key_packages([key_package])
        state = self._state
        validate_proposal(
            state.suite,
            Proposal(Add(kp)),
            Sender.member(state.leaf_index),
            context=state.context,
            tree=state.tree,
            now=self._now(),
        )

    def _leaf_of(self, identity: bytes) -> int:
        for i, leaf in self._state.tree.leaves():
            if leaf.credential.identity == identity:
                return i
        raise UnknownMemberError(f"no member with identity {identity!r}")

    def add(
        self,
        key_packages: Iterable[bytes | KeyPackage],
        *,
        extensions: Sequence[tuple[int, bytes]] | None = None,
        authenticated_data: bytes = b"",
    ) -> CommitOutput:
        """Commit Adds of these KeyPackages (plus the valid cached proposals).

        ``extensions`` (every commit method): when not None, the commit also carries one
        GroupContextExtensions proposal setting the group's extensions to exactly this list
        (and therefore an UpdatePath). ``authenticated_data`` is sent in the clear, signed."""
        proposals = [Proposal(Add(kp)) for kp in self._key_packages(key_packages)]
        if not proposals:
            raise CommitError("nothing to add")
        return self._commit(proposals, extensions=extensions, authenticated_data=authenticated_data)

    def remove(
        self,
        identities: Iterable[bytes],
        *,
        extensions: Sequence[tuple[int, bytes]] | None = None,
        authenticated_data: bytes = b"",
    ) -> CommitOutput:
        leaves = [self._leaf_of(i) for i in identities]
        if self._state.leaf_index in leaves:
            raise CommitError("cannot remove ourselves with a commit")
        if not leaves:
            raise CommitError("nothing to remove")
        return self._commit(
            [Proposal(Remove(i)) for i in dict.fromkeys(leaves)],
            extensions=extensions,
            authenticated_data=authenticated_data,
        )

    def change(
        self,
        *,
        add: Iterable[bytes | KeyPackage] = (),
        remove: Iterable[bytes] = (),
        extensions: Sequence[tuple[int, bytes]] | None = None,
        authenticated_data: bytes = b"",
        force_path: bool = False,
    ) -> CommitOutput:
        """One commit that removes members (by identity), adds KeyPackages and, when
        ``extensions`` is not None, replaces the group context extensions: the whole
        membership change of an epoch at once. Empty lists and no extensions commit the
        cached proposals only (with a path)."""
        leaves = [self._leaf_of(i) for i in remove]
        if self._state.leaf_index in leaves:
            raise CommitError("cannot remove ourselves with a commit")
        proposals = [Proposal(Remove(i)) for i in dict.fromkeys(leaves)]
        proposals += [Proposal(Add(kp)) for kp in self._key_packages(add)]
        return self._commit(
            proposals,
            force_path=force_path or not proposals,
            extensions=extensions,
            authenticated_data=authenticated_data,
        )

    def update(
        self,
        *,
        extensions: Sequence[tuple[int, bytes]] | None = None,
        authenticated_data: bytes = b"",
    ) -> CommitOutput:
        """Commit a fresh UpdatePath (new leaf and path keys) plus any cached proposals."""
        return self._commit(
            [], force_path=True, extensions=extensions, authenticated_data=authenticated_data
        )

    def commit(
        self,
        *,
        force_path: bool = False,
        extensions: Sequence[tuple[int, bytes]] | None = None,
        authenticated_data: bytes = b"",
    ) -> CommitOutput:
        """Commit the cached proposals (an empty commit carries a path)."""
        return self._commit(
            [], force_path=force_path, extensions=extensions, authenticated_data=authenticated_data
        )

    def _leaf_capabilities(self) -> Capabilities:
        """Our current leaf's capabilities plus the extension types the client supports."""
        leaf = self._state.tree.leaf(self._state.leaf_index)
        assert leaf is not None
        caps = leaf.capabilities
        extra = [t for t in self.extensions_supported if t not in caps.extensions]
        if not extra:
            return caps
        return replace(caps, extensions=(*caps.extensions, *extra))

    def _commit(
        self,
        proposals: list[Proposal],
        *,
        force_path: bool = False,
        extensions: Sequence[tuple[int, bytes]] | None = None,
        authenticated_data: bytes = b"",
        cached_refs: Sequence[bytes] | None = None,
        resumption: ResumptionLookup | None = None,
    ) -> CommitOutput:
        self._check_sendable()
        if self._pending is not None:
            raise PendingCommitError("a commit is already pending")
        if extensions is not None:
            proposals = [*proposals, _gce_proposal(extensions, CommitError)]
        created = create_commit(
            self._state,
            proposals,
            rng=self._rng,
            hpke_rng=self._hpke_rng,
            wire_format=self.handshake_format,
            force_path=force_path,
            psk_store=self._psk_store,
            now=self._now(),
            ratchet_tree_extension=self.ratchet_tree_extension,
            authenticated_data=bytes(authenticated_data),
            capabilities=self._leaf_capabilities(),
            cached_refs=cached_refs,
            resumption=resumption,
        )
        output = CommitOutput(created.message, created.welcome, created.group_info)
        self._pending = PendingCommit(created, output)
        return output

    def merge_pending_commit(self) -> CommitApplied:
        if self._pending is None:
            raise PendingCommitError("no pending commit")
        created = self._pending.created
        # Keep the live secret tree of the epoch we leave (it may have advanced since the
        # commit was created), so late messages cannot be read twice.
        old_extensions = self._state.context.extensions
        past, psks = self._state.ended()
        self._install(replace(created.state, past=past, resumption_psks=psks))
        return CommitApplied(
            created.state.epoch,
            _identity(self._state.tree.leaf(self._state.leaf_index)),
            tuple(_identity(kp.leaf_node) for _, kp in created.added),
            tuple(_identity(leaf) for _, leaf in created.removed),
            own=True,
            extensions_changed=created.state.context.extensions != old_extensions,
            authenticated_data=_authenticated_data(created.message),
            reinit=created.state.reinit,
        )

    def clear_pending_commit(self) -> None:
        if self._pending is None:
            raise PendingCommitError("no pending commit")
        self._pending = None

    def _install(self, state: GroupState) -> None:
        self._state = state
        self._pending = None
        self._own_proposals = {}

    def _propose(self, proposal: Proposal, encryption_priv: bytes | None = None) -> bytes:
        self._check_sendable()
        state = self._state
        validate_proposal(
            state.suite,
            proposal,
            Sender.member(state.leaf_index),
            context=state.context,
            tree=state.tree,
            now=self._now(),
        )
        ac, msg = sign_and_seal(state, proposal, self.handshake_format, rng=self._rng)
        ref = make_proposal_ref(state.suite, ac.to_bytes())
        stored = StoredProposal(ref, proposal, ac.content.sender, encryption_priv)
        self._state = state.with_proposal(stored)
        self._own_proposals[msg] = ref
        return msg

    def propose_add(self, key_package: bytes | KeyPackage) -> bytes:
        (kp,) = self._key_packages([key_package])
        return self._propose(Proposal(Add(kp)))

    def propose_remove(self, identity: bytes) -> bytes:
        leaf = self._leaf_of(identity)
        return self._propose(Proposal(Remove(leaf)))

    def propose_external_psk(self, psk_id: bytes) -> bytes:
        """Propose injecting the external PSK ``psk_id`` (every member needs it in its
        PSK store, or the commit cannot be processed)."""
        pid = PreSharedKeyID.external(psk_id, self._rng(self._state.suite.nh))
        if self._psk_store is None or self._psk_store.get(psk_id) is None:
            raise PskError("unknown external PSK")
        return self._propose(Proposal(PreSharedKey(pid)))

    def propose_group_context_extensions(self, extensions: Sequence[tuple[int, bytes]]) -> bytes:
        """Propose replacing the group context extensions with exactly ``extensions``
        (whoever commits it must give the commit an UpdatePath)."""
        return self._propose(_gce_proposal(extensions, ProposalError))

    def _reinit_body(
        self,
        group_id: bytes | None,
        cipher_suite: int | None,
        extensions: Sequence[tuple[int, bytes]] | None,
        error: type[MlsError],
    ) -> ReInit:
        state = self._state
        try:
            exts = check_group_extensions(
                state.context.extensions if extensions is None else extensions
            )
        except ExtensionsError as exc:
            raise error(str(exc)) from None
        return ReInit(
            self._rng(state.suite.nh) if group_id is None else bytes(group_id),
            int(MLS10),
            state.suite.suite_id if cipher_suite is None else cipher_suite,
            tuple(Extension(t, d) for t, d in exts),
        )

    def reinit(
        self,
        *,
        group_id: bytes | None = None,
        cipher_suite: int | None = None,
        extensions: Sequence[tuple[int, bytes]] | None = None,
        authenticated_data: bytes = b"",
    ) -> CommitOutput:
        """Commit a ReInit (RFC 9420 11.2), alone: once merged, this group stops and its
        members move to a new group with ``group_id`` (default: fresh random),
        ``cipher_suite`` (default: this one) and group ``extensions`` (default: these),
        created by one of them with ``Client.create_reinit_group``."""
        body = self._reinit_body(group_id, cipher_suite, extensions, CommitError)
        return self._commit([Proposal(body)], cached_refs=(), authenticated_data=authenticated_data)

    def propose_reinit(
        self,
        *,
        group_id: bytes | None = None,
        cipher_suite: int | None = None,
        extensions: Sequence[tuple[int, bytes]] | None = None,
    ) -> bytes:
        """Propose a ReInit; a member commits it with ``commit_reinit()`` (ordinary commits
        leave a cached ReInit out, as RFC 9420 12.2 recommends)."""
        return self._propose(
            Proposal(self._reinit_body(group_id, cipher_suite, extensions, ProposalError))
        )

    def commit_reinit(self, *, authenticated_data: bytes = b"") -> CommitOutput:
        """Commit the (first) cached ReInit proposal, alone."""
        self._check_sendable()
        ref = next(
            (r for r, sp in self._state.proposals.items() if isinstance(sp.proposal.body, ReInit)),
            None,
        )
        if ref is None:
            raise CommitError("no ReInit proposal to commit")
        return self._commit([], cached_refs=(ref,), authenticated_data=authenticated_data)

    def propose_resumption_psk(self, epoch: int | None = None) -> bytes:
        """Propose injecting the resumption PSK of one of this group's epochs (default: the
        current one; older ones while kept, see ``GroupState.max_resumption_psks``)."""
        state = self._state
        epoch = state.epoch if epoch is None else epoch
        if state.resumption_psk(state.context.group_id, epoch) is None:
            raise PskError(f"the resumption PSK of epoch {epoch} is not kept")
        pid = PreSharedKeyID.resumption(
            ResumptionPSKUsage.APPLICATION, state.context.group_id, epoch, self._rng(state.suite.nh)
        )
        return self._propose(Proposal(PreSharedKey(pid)))

    def propose_update(self) -> bytes:
        state = self._state
        suite = state.suite
        old = state.tree.leaf(state.leaf_index)
        assert old is not None
        priv, pub = suite.generate_key_pair(self._rng)
        leaf = LeafNode(
            encryption_key=pub,
            signature_key=old.signature_key,
            credential=old.credential,
            capabilities=self._leaf_capabilities(),
            leaf_node_source=LeafNodeSource.UPDATE,
            extensions=old.extensions,
        )
        leaf = sign_leaf_node(suite, leaf, state.signature_priv, self.group_id, state.leaf_index)
        return self._propose(Proposal(Update(leaf)), encryption_priv=priv)

    # -- receiving ------------------------------------------------------------------------
    def process(self, message: bytes, *, check: CheckFn | None = None) -> Inbound:
        """Read one MLSMessage (PublicMessage or PrivateMessage) sent to the group.

        ``check`` is the application's policy hook: it gets an ``InboundCheck`` once the
        message is decrypted and its signature verified (for a commit: once its proposals
        are resolved and validated), before anything is stored or installed. If it raises,
        the exception propagates and the group state is exactly as before. It is not
        called for the echo of our own pending commit or of our own proposals."""
        pending = self._pending
        if pending is not None and message == pending.output.commit:
            return self.merge_pending_commit()
        own_ref = self._own_proposals.get(message)
        if own_ref is not None and own_ref in self._state.proposals:
            return self._proposal_event(self._state.proposals[own_ref])
        self._check_active()
        payload = MLSMessage.from_bytes(message).payload
        if isinstance(payload, PublicMessage):
            state, vc = self._open_public(payload)
            return self._dispatch(state, vc, check)
        if not isinstance(payload, PrivateMessage):
            raise UnexpectedMessageError(f"cannot process a {type(payload).__name__} here")
        state = self._state
        self._check_group(payload.group_id)
        if payload.epoch == state.epoch:
            # The live secret tree is read in place; the transaction undoes the consumed
            # key (and any derivation) if anything below fails, so the state is unchanged.
            with state.secret_tree.transaction():
                uc = unprotect_private(
                    state.suite,
                    payload,
                    group_context=state.context,
                    secret_tree=state.secret_tree,
                    sender_data_secret=state.secrets.sender_data_secret,
                    context_bytes=state.context_bytes,
                )
                return self._dispatch(state, verify_sender(uc, state.tree, state.context), check)
        past = next((p for p in state.past if p.context.epoch == payload.epoch), None)
        if past is None or payload.content_type != ContentType.APPLICATION:
            raise WrongEpochError(f"message for epoch {payload.epoch}, we are at {state.epoch}")
        with past.secret_tree.transaction():
            uc = unprotect_private(
                state.suite,
                payload,
                group_context=past.context,
                secret_tree=past.secret_tree,
                sender_data_secret=past.sender_data_secret,
            )
            vc = verify_sender(uc, past.tree, state.context)
            if check is not None:
                check(inbound_check(vc, past.tree))
            return self._application(state, vc, past_tree=past.tree)

    def _dispatch(
        self, state: GroupState, vc: VerifiedContent, check: CheckFn | None = None
    ) -> Inbound:
        ct = vc.content_type
        if ct == ContentType.APPLICATION:
            if check is not None:
                check(inbound_check(vc, state.tree))
            return self._application(state, vc)
        if state.reinit is not None:
            raise ReInitPendingError("the group was reinitialized: no more handshake messages")
        if ct == ContentType.PROPOSAL:
            return self._store_proposal(state, vc, check)
        return self._apply_commit(state, vc, check)

    def _check_group(self, group_id: bytes) -> None:
        if group_id != self.group_id:
            raise WrongGroupError("message is for another group")

    def _open_public(self, msg: PublicMessage) -> tuple[GroupState, VerifiedContent]:
        state = self._state
        self._check_group(msg.content.group_id)
        if msg.content.epoch != state.epoch:
            raise WrongEpochError(
                f"handshake message for epoch {msg.content.epoch}, we are at {state.epoch}"
            )
        uc = unprotect_public(
            state.suite,
            msg,
            group_context=state.context,
            membership_key=state.secrets.membership_key,
        )
        return state, verify_sender(uc, state.tree, state.context)

    def _application(
        self, state: GroupState, vc: VerifiedContent, past_tree: RatchetTree | None = None
    ) -> ApplicationMessage:
        data = vc.content.content
        assert isinstance(data, bytes)
        tree = past_tree or state.tree
        sender = _identity(tree.leaf(vc.sender.index))
        event = ApplicationMessage(sender, data, vc.content.authenticated_data, vc.content.epoch)
        self._state = state
        return event

    def _proposal_event(self, sp: StoredProposal) -> ProposalMessage:
        sender = None
        if sp.sender.sender_type == SenderType.MEMBER:
            sender = _identity(self._state.tree.leaf(sp.sender.index))
        return ProposalMessage(sp.ref, sp.proposal, sender)

    def _store_proposal(
        self, state: GroupState, vc: VerifiedContent, check: CheckFn | None = None
    ) -> ProposalMessage:
        proposal = vc.content.content
        assert isinstance(proposal, Proposal)
        ref = make_proposal_ref(state.suite, vc.to_bytes())
        if ref in state.proposals:
            raise DuplicateProposalError("proposal already received")
        validate_proposal(
            state.suite,
            proposal,
            vc.sender,
            context=state.context,
            tree=state.tree,
            now=self._now(),
        )
        if check is not None:
            view = proposal_view(proposal, vc.sender, state.tree)
            check(inbound_check(vc, state.tree, (view,)))
        stored = StoredProposal(ref, proposal, vc.sender)
        self._state = state.with_proposal(stored)
        return self._proposal_event(stored)

    def _apply_commit(
        self, state: GroupState, vc: VerifiedContent, check: CheckFn | None = None
    ) -> CommitApplied:
        on_resolved = None
        if check is not None:
            hook = check

            def on_resolved(resolved: list[ResolvedProposal]) -> None:
                views = tuple(
                    proposal_view(
                        rp.proposal, rp.sender, state.tree, by_reference=rp.ref is not None
                    )
                    for rp in resolved
                )
                hook(inbound_check(vc, state.tree, views))

        result = process_commit(
            state, vc, psk_store=self._psk_store, now=self._now(), on_resolved=on_resolved
        )
        committer_leaf = result.committer_leaf or state.tree.leaf(result.committer)
        added = tuple(_identity(kp.leaf_node) for _, kp in result.added)
        if result.external:
            added += (_identity(committer_leaf),)  # the joiner added itself
        event = CommitApplied(
            result.state.epoch if not result.removed_self else state.epoch,
            _identity(committer_leaf),
            added,
            tuple(_identity(leaf) for _, leaf in result.removed),
            removed_self=result.removed_self,
            extensions_changed=(
                not result.removed_self
                and result.state.context.extensions != state.context.extensions
            ),
            authenticated_data=vc.content.authenticated_data,
            external=result.external,
            reinit=None if result.removed_self else result.state.reinit,
        )
        self._install(result.state)
        return event

    # -- storage --------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Versioned storage encoding of everything, private keys and pending commit
        included: keep it in protected storage only (``mls.group_codec``)."""
        return encode_group(
            StoredGroup(
                self._state,
                self.handshake_format,
                self.ratchet_tree_extension,
                self.padding,
                self._pending,
            )
        )

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        rng: Rng | None = None,
        clock: Clock | None = None,
        psk_store: PskStore | None = None,
        extensions_supported: Sequence[int] = (),
    ) -> Group:
        """The group ``to_bytes()`` stored; DecodeError on anything else."""
        stored = decode_group(data)
        group = cls(
            stored.state,
            rng=rng,
            clock=clock,
            psk_store=psk_store,
            handshake_format=stored.handshake_format,
            ratchet_tree_extension=stored.ratchet_tree_extension,
            padding=stored.padding,
            extensions_supported=extensions_supported,
        )
        group._pending = stored.pending
        return group
