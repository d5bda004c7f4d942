"""TreeKEM (RFC 9420 sections 7.4-7.6 and 12.4.2): creating and processing an UpdatePath.

The tree passed in is mutated (the path is merged into it): callers working on a provisional
epoch pass ``tree.copy()`` and keep the original until the commit is accepted. Private keys
are never mutated in place either: both directions return a new ``PathPrivate``.

``group_context`` is a function from the new tree hash to the encoded provisional
GroupContext, because the context that binds the HPKE encryptions includes the hash of the
tree after the path is merged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from mls.codec import Reader, Writer, decode_exact
from mls.crypto.hpke import Rng
from mls.crypto.labels import decrypt_with_label, derive_secret, encrypt_with_label
from mls.crypto.suite import CipherSuite
from mls.errors import CryptoError, DecodeError, ValidationError
from mls.messages.commit import UpdatePath, UpdatePathNode
from mls.messages.common import Capabilities, Credential, Extension, HPKECiphertext
from mls.messages.extensions import RequiredCapabilities
from mls.messages.leaf_node import LeafNode, LeafNodeSource
from mls.messages.tree import ParentNode
from mls.tree.hashes import apply_path_parent_hashes
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.validation import LeafValidationError, sign_leaf_node, validate_leaf_node

__all__ = [
    "UPDATE_PATH_LABEL",
    "CreatedPath",
    "PathPrivate",
    "ProcessedPath",
    "TreeKemError",
    "create_update_path",
    "derive_node_key_pair",
    "merge_update_path",
    "next_path_secret",
    "process_update_path",
]

UPDATE_PATH_LABEL = "UpdatePathNode"
GroupContextFn = Callable[[bytes], bytes]


class TreeKemError(ValidationError):
    """An UpdatePath cannot be applied or decrypted."""


def next_path_secret(suite: CipherSuite, path_secret: bytes) -> bytes:
    return derive_secret(suite, path_secret, "path")


def derive_node_key_pair(suite: CipherSuite, path_secret: bytes) -> tuple[bytes, bytes]:
    """node_secret = DeriveSecret(path_secret, "node"); -> DeriveKeyPair(node_secret)."""
    return suite.derive_key_pair(derive_secret(suite, path_secret, "node"))


@dataclass(frozen=True)
class PathPrivate:
    """One member's private tree state: its leaf HPKE key and the keys of the parents on its
    direct path that it knows (node index -> private key)."""

    leaf_index: int
    encryption_priv: bytes = field(repr=False)
    path_keys: dict[int, bytes] = field(default_factory=dict, repr=False)

    def key_for(self, x: int) -> bytes | None:
        if x == 2 * self.leaf_index:
            return self.encryption_priv
        return self.path_keys.get(x)

    def with_path_secret(
        self, suite: CipherSuite, tree: RatchetTree, node: int, path_secret: bytes
    ) -> tuple[PathPrivate, bytes]:
        """Install ``path_secret`` at ``node`` (an ancestor of our leaf, e.g. from a Welcome)
        and derive upward through the non-blank ancestors, checking every public key.

        Returns (new state, the secret one past the root: the commit secret).
        """
        if not tree.is_ancestor(node, 2 * self.leaf_index) or node & 1 == 0:
            raise TreeKemError(f"node {node} is not a parent above leaf {self.leaf_index}")
        chain = [node] + [p for p in tree.direct_path(node) if tree.node(p) is not None]
        keys = dict(self.path_keys)
        ps = path_secret
        for x in chain:
            pn = tree.node(x)
            if not isinstance(pn, ParentNode):
                raise TreeKemError(f"node {x} is blank")
            priv, pub = derive_node_key_pair(suite, ps)
            if pub != pn.encryption_key:
                raise TreeKemError(f"path secret does not match public key of node {x}")
            keys[x] = priv
            ps = next_path_secret(suite, ps)
        return replace(self, path_keys=keys), ps

    def pruned(self, tree: RatchetTree) -> PathPrivate:
        """Drop keys of nodes that are now blank, outside the tree or off our direct path."""
        leaf = 2 * self.leaf_index
        keep = {
            x: k
            for x, k in self.path_keys.items()
            if x < tree.n_nodes and tree.node(x) is not None and tree.is_ancestor(x, leaf)
        }
        return self if len(keep) == len(self.path_keys) else replace(self, path_keys=keep)

    def to_bytes(self) -> bytes:
        """Storage encoding (not a wire format): leaf index, leaf key, (node, key) pairs."""
        w = Writer().uint32(self.leaf_index).opaque(self.encryption_priv)
        items = sorted(self.path_keys.items())

        def item(w2: Writer, kv: tuple[int, bytes]) -> None:
            w2.uint32(kv[0]).opaque(kv[1])

        w.vector(items, item)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PathPrivate:
        def read(r: Reader) -> PathPrivate:
            idx = r.uint32()
            leaf_key = r.opaque(1024)
            pairs = r.vector(lambda r2: (r2.uint32(), r2.opaque(1024)), 1 << 20)
            keys = dict(pairs)
            if len(keys) != len(pairs):
                raise DecodeError("duplicate node in stored path keys")
            return cls(idx, leaf_key, keys)

        return decode_exact(data, read)


@dataclass(frozen=True)
class CreatedPath:
    """What the committer gets from ``create_update_path``."""

    update_path: UpdatePath
    private: PathPrivate
    commit_secret: bytes = field(repr=False)
    # (parent node, path secret) bottom-up along the filtered direct path: new members get
    # the one at their lowest common ancestor with the committer in the Welcome.
    path_secrets: tuple[tuple[int, bytes], ...] = field(repr=False)

    def path_secret_for(self, tree: RatchetTree, leaf_index: int) -> tuple[int, bytes] | None:
        """(node, path secret) for a member at ``leaf_index``: the committer's filtered
        direct-path node that is the lowest ancestor of that leaf; None if there is none."""
        x = 2 * leaf_index
        for node, secret in self.path_secrets:
            if tree.is_ancestor(node, x):
                return node, secret
        return None


@dataclass(frozen=True)
class ProcessedPath:
    """What a receiver gets from ``process_update_path``."""

    private: PathPrivate
    commit_secret: bytes = field(repr=False)
    node: int  # the common ancestor whose path secret was decrypted
    path_secret: bytes = field(repr=False)


def _filtered_resolution(tree: RatchetTree, x: int, exclude: frozenset[int]) -> list[int]:
    res = tree.resolution(x)
    if not exclude:
        return list(res)
    return [n for n in res if n & 1 or (n >> 1) not in exclude]


def _public_key(tree: RatchetTree, x: int) -> bytes:
    node = tree.node(x)
    if node is None:
        raise TreeKemError(f"node {x} is blank")
    return node.encryption_key


def create_update_path(
    tree: RatchetTree,
    sender: int,
    *,
    group_id: bytes,
    signature_priv: bytes,
    group_context: GroupContextFn,
    rng: Rng,
    hpke_rng: Rng | None = None,
    exclude: Iterable[int] = (),
    capabilities: Capabilities | None = None,
    credential: Credential | None = None,
    extensions: tuple[Extension, ...] | None = None,
) -> CreatedPath:
    """Rekey ``sender``'s path in ``tree`` (mutated) and encrypt the path secrets.

    ``tree`` already has this commit's proposals applied. ``exclude``: leaf indices added by
    this commit (they learn the path secret from the Welcome instead). The new leaf copies the
    old leaf's credential, capabilities and extensions unless given.

    ``rng`` draws the leaf key and the first path secret. ``hpke_rng`` draws the HPKE
    ephemeral keys; ``None`` lets the crypto library draw them from its CSPRNG, which takes
    its native single-shot HPKE (about 3.5x faster per recipient than the injected-rng
    path, and a commit to a large group is dominated by these encryptions). Pass ``rng``
    again for fully deterministic output.
    """
    suite = tree.suite
    old = tree.leaf(sender)
    if old is None:
        raise TreeKemError(f"sender leaf {sender} is blank")
    excluded = frozenset(exclude)
    fdp = tree.filtered_direct_path(sender)

    leaf_priv, leaf_pub = suite.generate_key_pair(rng)
    ps = rng(suite.nh)
    secrets: list[tuple[int, bytes]] = []
    keys: dict[int, bytes] = {}
    pubs: list[bytes] = []
    tree.blank_path(sender)
    for p, _ in fdp:
        priv, pub = derive_node_key_pair(suite, ps)
        secrets.append((p, ps))
        keys[p] = priv
        pubs.append(pub)
        tree.set_parent(p, ParentNode(pub))
        ps = next_path_secret(suite, ps)
    # The secret one past the root (the fresh one itself when the path is empty).
    commit_secret = ps
    leaf_ph = apply_path_parent_hashes(tree, fdp)
    leaf = LeafNode(
        encryption_key=leaf_pub,
        signature_key=old.signature_key,
        credential=old.credential if credential is None else credential,
        capabilities=old.capabilities if capabilities is None else capabilities,
        leaf_node_source=LeafNodeSource.COMMIT,
        extensions=old.extensions if extensions is None else extensions,
        parent_hash=leaf_ph,
    )
    leaf = sign_leaf_node(suite, leaf, signature_priv, group_id, sender)
    tree.set_leaf(sender, leaf)

    ctx = group_context(tree.tree_hash())
    nodes = []
    for (_, sib), (_, secret), pub in zip(fdp, secrets, pubs, strict=True):
        cts = []
        for r in _filtered_resolution(tree, sib, excluded):
            kem_output, ct = encrypt_with_label(
                suite, _public_key(tree, r), UPDATE_PATH_LABEL, ctx, secret, rng=hpke_rng
            )
            cts.append(HPKECiphertext(kem_output, ct))
        nodes.append(UpdatePathNode(pub, tuple(cts)))
    private = PathPrivate(sender, leaf_priv, keys)
    return CreatedPath(UpdatePath(leaf, tuple(nodes)), private, commit_secret, tuple(secrets))


def merge_update_path(
    tree: RatchetTree,
    sender: int,
    path: UpdatePath,
    *,
    group_id: bytes,
    now: int | None = None,
    required_capabilities: RequiredCapabilities | None = None,
    group_extension_types: Iterable[int] = (),
    new_member: bool = False,
) -> list[tuple[int, int]]:
    """Validate ``path``'s public part and merge it into ``tree`` (mutated).

    Checks the new leaf (RFC 9420 7.3, source commit, new encryption key), that there is one
    path node per filtered-direct-path node, and that the leaf's parent hash matches the
    chain computed over the merged tree. Returns the filtered direct path used.
    ``new_member``: an external commit, whose leaf was just placed at ``sender`` (so there
    is no older encryption key to differ from).
    """
    old = tree.leaf(sender)
    if old is None:
        raise TreeKemError(f"sender leaf {sender} is blank")
    leaf = path.leaf_node
    try:
        validate_leaf_node(
            tree.suite,
            leaf,
            source=LeafNodeSource.COMMIT,
            group_id=group_id,
            leaf_index=sender,
            now=now,
            required_capabilities=required_capabilities,
            tree=tree,
            replacing=sender,
            group_extension_types=group_extension_types,
        )
    except LeafValidationError as exc:
        raise TreeKemError(f"update path leaf: {exc}") from None
    if not new_member and leaf.encryption_key == old.encryption_key:
        raise TreeKemError("update path leaf reuses the old encryption key")
    fdp = tree.filtered_direct_path(sender)
    if len(fdp) != len(path.nodes):
        raise TreeKemError(
            f"update path has {len(path.nodes)} nodes, filtered direct path {len(fdp)}"
        )
    tree.blank_path(sender)
    for (p, _), upn in zip(fdp, path.nodes, strict=True):
        tree.set_parent(p, ParentNode(upn.encryption_key))
    ph = apply_path_parent_hashes(tree, fdp)
    if leaf.parent_hash != ph:
        raise TreeKemError("update path leaf parent hash does not match the path")
    tree.set_leaf(sender, leaf)
    return fdp


def process_update_path(
    tree: RatchetTree,
    private: PathPrivate,
    sender: int,
    path: UpdatePath,
    *,
    group_id: bytes,
    group_context: GroupContextFn,
    exclude: Iterable[int] = (),
    now: int | None = None,
    required_capabilities: RequiredCapabilities | None = None,
    group_extension_types: Iterable[int] = (),
    new_member: bool = False,
) -> ProcessedPath:
    """Merge ``path`` into ``tree`` (mutated), decrypt our path secret and derive the rest.

    ``exclude``: leaf indices added by the same commit (not encrypted to). Raises
    TreeKemError if the path is malformed, does not decrypt, or its public keys do not
    match the path secrets.
    """
    suite = tree.suite
    me = private.leaf_index
    if me == sender:
        raise TreeKemError("cannot process our own update path")
    excluded = frozenset(exclude)
    fdp = merge_update_path(
        tree,
        sender,
        path,
        group_id=group_id,
        now=now,
        required_capabilities=required_capabilities,
        group_extension_types=group_extension_types,
        new_member=new_member,
    )
    my_node = 2 * me
    i = next((k for k, (_, c) in enumerate(fdp) if tree.is_ancestor(c, my_node)), -1)
    if i < 0:
        raise TreeKemError(f"leaf {me} is not under the sender's filtered direct path")
    sib = fdp[i][1]
    res = _filtered_resolution(tree, sib, excluded)
    cts = path.nodes[i].encrypted_path_secret
    if len(cts) != len(res):
        raise TreeKemError(
            f"path node {fdp[i][0]} has {len(cts)} ciphertexts for {len(res)} recipients"
        )
    ctx = group_context(tree.tree_hash())
    j = next((k for k, r in enumerate(res) if private.key_for(r) is not None), -1)
    if j < 0:
        raise TreeKemError("no private key for any node in the copath resolution")
    key = private.key_for(res[j])
    assert key is not None
    try:
        ps = decrypt_with_label(
            suite, key, UPDATE_PATH_LABEL, ctx, cts[j].kem_output, cts[j].ciphertext
        )
    except CryptoError as exc:
        raise TreeKemError(f"cannot decrypt path secret: {exc}") from None
    if len(ps) != suite.nh:
        raise TreeKemError("path secret has the wrong length")
    first = ps
    keys = dict(private.pruned(tree).path_keys)
    for (p, _), upn in zip(fdp[i:], path.nodes[i:], strict=True):
        priv, pub = derive_node_key_pair(suite, ps)
        if pub != upn.encryption_key:
            raise TreeKemError(f"derived public key does not match path node {p}")
        keys[p] = priv
        ps = next_path_secret(suite, ps)
    # Keys for sender-path nodes we did not re-derive were blanked above; drop them.
    for p, _ in fdp[:i]:
        keys.pop(p, None)
    new_private = replace(private, path_keys=keys)
    return ProcessedPath(new_private, ps, fdp[i][0], first)
