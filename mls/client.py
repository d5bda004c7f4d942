"""A client: one identity (basic credential) and signature key, its KeyPackages' private
keys, and the groups it creates or joins."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from mls.crypto.hpke import Rng
from mls.crypto.suite import get_suite
from mls.errors import MlsError
from mls.events import ReInitError, UnexpectedMessageError
from mls.external import create_external_commit, parse_group_info
from mls.group import Clock, Group
from mls.group_context import GroupContext
from mls.group_extensions import ExtensionsError, check_group_extensions, unsupported_reason
from mls.key_packages import (
    DEFAULT_LIFETIME,
    KeyPackageBundle,
    create_key_package,
    decode_bundle,
    default_capabilities,
    encode_bundle,
    key_package_ref,
    supported_extension_types,
)
from mls.key_schedule import key_schedule
from mls.messages import (
    Add,
    Capabilities,
    Credential,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    MLSMessage,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    PSKType,
    ResumptionPSKUsage,
    Welcome,
    WireFormat,
)
from mls.proposals import PskStore, ResumptionLookup
from mls.secret_tree import SecretTree
from mls.state import GroupState
from mls.transcript import initial
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.treekem import PathPrivate
from mls.tree.validation import sign_leaf_node
from mls.welcome import OpenedWelcome, WelcomeError, join_from_welcome

__all__ = ["Client", "ExternalJoinOutput", "ReInitOutput"]


@dataclass(frozen=True)
class ReInitOutput:
    """``Client.create_reinit_group``'s result: the new group (epoch 1) and the Welcome
    (MLSMessage bytes) for the other members (``Client.join_reinit``)."""

    group: Group
    welcome: bytes | None


@dataclass(frozen=True)
class ExternalJoinOutput:
    """``Client.join_external``'s result: our group state (new epoch) and the commit to
    send to the group (MLSMessage bytes, a PublicMessage)."""

    group: Group
    commit: bytes


class Client:
    """``Client(identity, suite=1, signing_key=None, *, rng=None, clock=None, ...)``.

    ``signing_key`` is the suite's signature private key (for Ed25519 the 32-byte seed;
    generated when absent). ``clock`` returns Unix seconds; it is used for KeyPackage
    lifetimes (generated short, accepted tolerantly). ``extensions_supported``: non-default
    extension types every leaf we create advertises (KeyPackages, our leaf in groups we
    create, updates), so groups may carry group-context extensions of those types.

    Unused KeyPackage private keys live in memory; ``unused_key_packages()`` exports them
    for protected storage and ``restore_key_package()`` takes them back after a restart.
    """

    def __init__(
        self,
        identity: bytes,
        suite: int = 1,
        signing_key: bytes | None = None,
        *,
        rng: Rng | None = None,
        clock: Clock | None = None,
        psk_store: PskStore | None = None,
        handshake_format: WireFormat = WireFormat.PRIVATE_MESSAGE,
        max_past_epochs: int = 2,
        key_package_lifetime: int = DEFAULT_LIFETIME,
        extensions_supported: Sequence[int] = (),
    ) -> None:
        self.identity = bytes(identity)
        self.suite = get_suite(suite)
        self._rng = rng
        self._clock = clock
        self._psk_store = psk_store
        self.handshake_format = handshake_format
        self.max_past_epochs = max_past_epochs
        self.key_package_lifetime = key_package_lifetime
        self.extensions_supported = supported_extension_types(extensions_supported)
        if signing_key is None:
            signing_key, _ = self.suite.generate_signature_key_pair(self._draw)
        self._signing_key = signing_key
        self.signature_public_key = self.suite.signature_public_key(signing_key)
        self._bundles: dict[bytes, KeyPackageBundle] = {}

    def __repr__(self) -> str:
        return f"Client(identity={self.identity!r}, suite={self.suite.suite_id})"

    def _draw(self, n: int) -> bytes:
        return (self._rng or os.urandom)(n)

    def _now(self) -> int:
        if self._clock is None:
            raise MlsError("a clock is needed to date KeyPackages")
        return int(self._clock())

    @property
    def credential(self) -> Credential:
        return Credential.basic(self.identity)

    def _group(self, state: GroupState) -> Group:
        return Group(
            state,
            rng=self._rng,
            clock=self._clock,
            psk_store=self._psk_store,
            handshake_format=self.handshake_format,
            extensions_supported=self.extensions_supported,
        )

    @property
    def capabilities(self) -> Capabilities:
        """What every leaf this client creates advertises."""
        return default_capabilities(self.suite, self.extensions_supported)

    def key_package(self) -> bytes:
        """A fresh KeyPackage as MLSMessage bytes; its private keys are kept to join later."""
        bundle = create_key_package(
            self.suite,
            self.credential,
            self._signing_key,
            rng=self._draw,
            now=self._now(),
            lifetime=self.key_package_lifetime,
            capabilities=self.capabilities,
        )
        self._bundles[bundle.ref(self.suite)] = bundle
        return bundle.to_message()

    def key_package_ref(self, key_package_message: bytes) -> bytes:
        """The KeyPackageRef (RFC 9420 5.2) of an MLSMessage(KeyPackage), in its own suite."""
        payload = MLSMessage.from_bytes(key_package_message).payload
        if not isinstance(payload, KeyPackage):
            raise UnexpectedMessageError("expected an MLSMessage carrying a KeyPackage")
        return key_package_ref(get_suite(payload.cipher_suite), payload)

    def unused_key_packages(self) -> dict[bytes, bytes]:
        """KeyPackageRef -> storage encoding (with private keys) of every KeyPackage made by
        ``key_package()`` (or restored) and not yet used by ``join()``.

        The values hold private keys: keep them in protected storage. They are
        ``SecretBytes``, whose repr never shows the bytes."""
        return {ref: encode_bundle(b) for ref, b in self._bundles.items()}

    def restore_key_package(self, data: bytes) -> bytes:
        """Take back one value of ``unused_key_packages()`` (e.g. after a restart) so that
        ``join()`` can use it; returns its KeyPackageRef. Raises DecodeError on anything
        that is not a consistent stored KeyPackage, KeyPackageError if it belongs to
        another suite or signature key."""
        bundle = decode_bundle(self.suite, data, self._signing_key)
        ref = bundle.ref(self.suite)
        self._bundles[ref] = bundle
        return ref

    def key_package_message(self, ref: bytes) -> bytes | None:
        """The KeyPackage (MLSMessage bytes, public) of an unused KeyPackage, as
        ``key_package()`` returned it; None when there is none with that ref."""
        bundle = self._bundles.get(bytes(ref))
        return None if bundle is None else bundle.to_message()

    def discard_key_package(self, ref: bytes) -> bool:
        """Forget an unused KeyPackage's private keys (e.g. its invite was withdrawn);
        False when there was none with that ref."""
        return self._bundles.pop(bytes(ref), None) is not None

    def create_group(
        self, group_id: bytes, *, extensions: Sequence[tuple[int, bytes]] = ()
    ) -> Group:
        """A one-member group at epoch 0 (RFC 9420 section 11) whose group context carries
        ``extensions`` (``(type, data)`` pairs; we must support every type)."""
        suite = self.suite
        exts = check_group_extensions(extensions)
        enc_priv, enc_pub = suite.generate_key_pair(self._draw)
        leaf = LeafNode(
            encryption_key=enc_pub,
            signature_key=self.signature_public_key,
            credential=self.credential,
            capabilities=self.capabilities,
            leaf_node_source=LeafNodeSource.KEY_PACKAGE,
            lifetime=_lifetime(self._clock, self.key_package_lifetime),
        )
        reason = unsupported_reason(leaf, exts)
        if reason is not None:
            raise ExtensionsError(f"our own leaf {reason} (see extensions_supported)")
        leaf = sign_leaf_node(suite, leaf, self._signing_key)
        tree = RatchetTree(suite, [leaf])
        ctx = GroupContext(suite.suite_id, bytes(group_id), 0, tree.tree_hash(), b"", exts)
        ks = key_schedule(suite, self._draw(suite.nh), None, None, ctx)
        secrets = ks.epoch
        hashes = initial(suite, secrets.confirmation_key)
        state = GroupState(
            suite=suite,
            context=ctx,
            tree=tree,
            private=PathPrivate(0, enc_priv, {}),
            signature_priv=self._signing_key,
            secrets=secrets,
            secret_tree=SecretTree(suite, secrets.encryption_secret, tree.n_leaves),
            interim_hash=hashes.interim,
            max_past_epochs=self.max_past_epochs,
        )
        return self._group(state)

    def join(self, welcome: bytes, ratchet_tree: bytes | None = None) -> Group:
        """Join from an MLSMessage(Welcome) addressed to one of our KeyPackages."""
        return self._join(welcome, ratchet_tree)

    def _join(
        self,
        welcome: bytes,
        ratchet_tree: bytes | None,
        resumption: ResumptionLookup | None = None,
        on_opened: Callable[[OpenedWelcome], None] | None = None,
    ) -> Group:
        payload = MLSMessage.from_bytes(welcome).payload
        if not isinstance(payload, Welcome):
            raise UnexpectedMessageError("expected an MLSMessage carrying a Welcome")
        refs = {s.new_member for s in payload.secrets}
        ref = next((r for r in self._bundles if r in refs), None)
        if ref is None:
            raise WelcomeError("Welcome is not for any of our KeyPackages")
        bundle = self._bundles[ref]
        state = join_from_welcome(
            self.suite,
            payload,
            bundle,
            ratchet_tree=ratchet_tree,
            psk_store=self._psk_store,
            max_past_epochs=self.max_past_epochs,
            resumption=resumption,
            on_opened=on_opened,
        )
        del self._bundles[ref]  # a KeyPackage is used once
        return self._group(state)

    # -- reinitialization (RFC 9420 11.2) --------------------------------------------------
    def create_reinit_group(
        self, old: Group, key_packages: Iterable[bytes | KeyPackage]
    ) -> ReInitOutput:
        """Step 3 of a ReInit: create the new group that ``old``'s committed ReInit describes
        (its group id, our suite = its suite, its extensions), add the other members by
        their KeyPackages for that suite, bound to ``old`` by a resumption PSK (usage
        reinit) of ``old``'s current epoch. Returns the new group (epoch 1) and the Welcome.
        Every KeyPackage must belong to a member of ``old``."""
        ri = old.reinit_pending
        if ri is None:
            raise ReInitError("no ReInit was committed in that group")
        if ri.cipher_suite != self.suite.suite_id:
            raise ReInitError(f"the new group uses suite {ri.cipher_suite}, this client another")
        if self.identity not in old.members:
            raise ReInitError("we are not a member of the old group")
        old_members = set(old.members)
        kps = old._key_packages(key_packages)
        for kp in kps:
            ident = kp.leaf_node.credential.identity
            if ident not in old_members or ident == self.identity:
                raise ReInitError(f"{ident!r} is not another member of the old group")
        group = self.create_group(
            ri.group_id, extensions=[(e.extension_type, e.extension_data) for e in ri.extensions]
        )
        pid = PreSharedKeyID.resumption(
            ResumptionPSKUsage.REINIT, old.group_id, old.epoch, self._draw(self.suite.nh)
        )
        proposals = [Proposal(Add(kp)) for kp in kps] + [Proposal(PreSharedKey(pid))]
        out = group._commit(proposals, cached_refs=(), resumption=old.state.resumption_psk)
        group.merge_pending_commit()
        return ReInitOutput(group, out.welcome)

    def join_reinit(self, welcome: bytes, old: Group, ratchet_tree: bytes | None = None) -> Group:
        """Join the group that replaces ``old`` after its ReInit, checking what RFC 9420
        11.2 requires: the new group's id, version, suite and extensions are the ReInit's,
        its epoch is 1, and the Welcome names the resumption PSK (usage reinit) of ``old``'s
        current epoch."""
        ri = old.reinit_pending
        if ri is None:
            raise ReInitError("no ReInit was committed in that group")
        want_exts = tuple((e.extension_type, e.extension_data) for e in ri.extensions)

        def check(opened: OpenedWelcome) -> None:
            ctx = opened.context
            if (ctx.group_id, ctx.version, ctx.cipher_suite, ctx.extensions, ctx.epoch) != (
                ri.group_id,
                ri.version,
                ri.cipher_suite,
                want_exts,
                1,
            ):
                raise WelcomeError("the Welcome's group does not match the ReInit")
            if not any(
                p.psktype == PSKType.RESUMPTION
                and p.usage == ResumptionPSKUsage.REINIT
                and p.psk_group_id == old.group_id
                and p.psk_epoch == old.epoch
                for p in opened.group_secrets.psks
            ):
                raise WelcomeError("the Welcome does not carry the ReInit's resumption PSK")

        return self._join(welcome, ratchet_tree, old.state.resumption_psk, check)

    def join_external(
        self,
        group_info: bytes,
        *,
        ratchet_tree: bytes | None = None,
        resync: bool = False,
        authenticated_data: bytes = b"",
    ) -> ExternalJoinOutput:
        """Join by external commit (RFC 9420 12.4.3.2) from an MLSMessage(GroupInfo) with
        the ``external_pub`` extension (``Group.group_info()``). Send ``commit`` to the
        group; ``group`` is already in the new epoch, and is useless if the members do not
        accept the commit (join again from a fresh GroupInfo then). ``resync``: replace
        our own leaf that is already in the group (state lost). ``ratchet_tree``: the tree,
        when the GroupInfo does not carry it."""
        gi = parse_group_info(group_info)
        joined = create_external_commit(
            self.suite,
            gi,
            signature_priv=self._signing_key,
            credential=self.credential,
            capabilities=self.capabilities,
            rng=self._draw,
            hpke_rng=self._rng,
            ratchet_tree=ratchet_tree,
            resync=resync,
            authenticated_data=authenticated_data,
            max_past_epochs=self.max_past_epochs,
        )
        return ExternalJoinOutput(self._group(joined.state), joined.commit)

    def group_from_bytes(self, data: bytes) -> Group:
        return Group.from_bytes(
            data,
            rng=self._rng,
            clock=self._clock,
            psk_store=self._psk_store,
            extensions_supported=self.extensions_supported,
        )


def _lifetime(clock: Clock | None, lifetime: int) -> Lifetime:
    if clock is None:
        # Creator's own leaf: no clock injected means no dating; a wide lifetime is accepted.
        return Lifetime(0, 0xFFFF_FFFF_FFFF_FFFF)
    now = int(clock())
    return Lifetime(max(0, now - 3600), now + lifetime)
