"""KeyPackages (RFC 9420 section 10): creation with basic credentials and validation.

Lifetimes follow a tolerant policy: we *generate* short lifetimes (``DEFAULT_LIFETIME``) but
*accept* any lifetime that covers the current time, give or take ``CLOCK_SKEW`` seconds, so
peers with long-lived KeyPackages and slightly wrong clocks can still be added.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from mls.codec import Reader, Writer, decode_exact
from mls.crypto.hpke import Rng
from mls.crypto.labels import make_key_package_ref, sign_with_label, verify_with_label
from mls.crypto.suite import SUITES, CipherSuite
from mls.errors import DecodeError, MlsError, ValidationError
from mls.messages import (
    MLS10,
    Capabilities,
    Credential,
    CredentialType,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    MLSMessage,
)
from mls.messages.extensions import RequiredCapabilities
from mls.redacted import SecretBytes
from mls.tree.validation import (
    DEFAULT_EXTENSION_TYPES,
    LeafValidationError,
    sign_leaf_node,
    validate_leaf_node,
)

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_LIFETIME",
    "KEY_PACKAGE_TBS_LABEL",
    "KeyPackageBundle",
    "KeyPackageError",
    "create_key_package",
    "decode_bundle",
    "default_capabilities",
    "encode_bundle",
    "key_package_ref",
    "supported_extension_types",
    "validate_key_package",
]

KEY_PACKAGE_TBS_LABEL = "KeyPackageTBS"
DEFAULT_LIFETIME = 90 * 24 * 3600
CLOCK_SKEW = 3600


class KeyPackageError(ValidationError):
    """A KeyPackage breaks a rule of RFC 9420 section 10.1."""


def default_capabilities(suite: CipherSuite, extensions: Iterable[int] = ()) -> Capabilities:
    """What our leaves advertise: MLS 1.0, every suite we implement, basic credentials, and
    the non-default ``extensions`` types (RFC 9420 7.2: default types are never listed)."""
    suites = tuple(sorted({suite.suite_id, *SUITES}))
    return Capabilities(
        versions=(MLS10,),
        cipher_suites=suites,
        extensions=supported_extension_types(extensions),
        credentials=(CredentialType.BASIC,),
    )


def supported_extension_types(extensions: Iterable[int]) -> tuple[int, ...]:
    """Sorted, deduplicated non-default extension types; ValueError on a non-uint16."""
    out: set[int] = set()
    for t in extensions:
        if not isinstance(t, int) or not 0 <= t <= 0xFFFF:
            raise ValueError(f"extension type {t!r} is not a uint16")
        if t not in DEFAULT_EXTENSION_TYPES:
            out.add(int(t))
    return tuple(sorted(out))


@dataclass(frozen=True)
class KeyPackageBundle:
    """A KeyPackage with the private keys its owner needs to join through it."""

    key_package: KeyPackage
    init_priv: bytes = field(repr=False)
    encryption_priv: bytes = field(repr=False)
    signature_priv: bytes = field(repr=False)

    def ref(self, suite: CipherSuite) -> bytes:
        return key_package_ref(suite, self.key_package)

    def to_message(self) -> bytes:
        return MLSMessage(self.key_package).to_bytes()


def key_package_ref(suite: CipherSuite, key_package: KeyPackage) -> bytes:
    return make_key_package_ref(suite, key_package.to_bytes())


def create_key_package(
    suite: CipherSuite,
    credential: Credential,
    signature_priv: bytes,
    *,
    rng: Rng,
    now: int,
    lifetime: int = DEFAULT_LIFETIME,
    capabilities: Capabilities | None = None,
) -> KeyPackageBundle:
    """Fresh init and leaf HPKE keys, a signed leaf node and a signed KeyPackage.

    The lifetime starts ``CLOCK_SKEW`` before ``now`` so receivers whose clock lags accept it.
    """
    init_priv, init_pub = suite.generate_key_pair(rng)
    enc_priv, enc_pub = suite.generate_key_pair(rng)
    leaf = LeafNode(
        encryption_key=enc_pub,
        signature_key=suite.signature_public_key(signature_priv),
        credential=credential,
        capabilities=capabilities or default_capabilities(suite),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        lifetime=Lifetime(max(0, now - CLOCK_SKEW), now + lifetime),
    )
    leaf = sign_leaf_node(suite, leaf, signature_priv)
    kp = KeyPackage(suite.suite_id, init_pub, leaf)
    kp = replace(
        kp, signature=sign_with_label(suite, signature_priv, KEY_PACKAGE_TBS_LABEL, kp.tbs())
    )
    return KeyPackageBundle(kp, init_priv, enc_priv, signature_priv)


def validate_key_package(
    suite: CipherSuite,
    kp: KeyPackage,
    *,
    now: int | None,
    required_capabilities: RequiredCapabilities | None = None,
    group_extension_types: Iterable[int] = (),
) -> None:
    """RFC 9420 section 10.1 plus the leaf checks of 7.3 (source key_package), and support
    for every type in ``group_extension_types`` (the group context's extensions, 13.4).

    ``now=None`` skips the lifetime check; otherwise any lifetime covering ``now`` within
    ``CLOCK_SKEW`` is accepted, however long. Raises KeyPackageError.
    """
    if kp.version != MLS10:
        raise KeyPackageError("KeyPackage is not for MLS 1.0")
    if kp.cipher_suite != suite.suite_id:
        raise KeyPackageError("KeyPackage cipher suite does not match the group")
    leaf = kp.leaf_node
    if not verify_with_label(
        suite, leaf.signature_key, KEY_PACKAGE_TBS_LABEL, kp.tbs(), kp.signature
    ):
        raise KeyPackageError("bad KeyPackage signature")
    if kp.init_key == leaf.encryption_key:
        raise KeyPackageError("init key equals the leaf encryption key")
    if len(kp.init_key) != suite.npk:
        raise KeyPackageError("init key has the wrong length")
    try:
        validate_leaf_node(
            suite,
            leaf,
            source=LeafNodeSource.KEY_PACKAGE,
            required_capabilities=required_capabilities,
            group_extension_types=group_extension_types,
            require_suite=True,
        )
    except LeafValidationError as exc:
        raise KeyPackageError(f"KeyPackage leaf: {exc}") from None
    lt = leaf.lifetime
    if (
        now is not None
        and lt is not None
        and not (lt.not_before - CLOCK_SKEW <= now <= lt.not_after + CLOCK_SKEW)
    ):
        raise KeyPackageError("KeyPackage lifetime does not cover the current time")


# -- storage of unused KeyPackages -----------------------------------------------------------

_BUNDLE_MAGIC = b"MLSK"
_BUNDLE_VERSION = 1
_MAX_PRIVATE_KEY = 256  # far above any suite's HPKE private key (P-521: 66 bytes)
_MAX_KEY_PACKAGE = 1 << 20


def encode_bundle(bundle: KeyPackageBundle) -> SecretBytes:
    """``"MLSK" || uint16 version || KeyPackage<V> || init_priv<V> || encryption_priv<V>``.

    Holds private keys: keep it in protected storage. The signature private key is not in
    it: the client restoring it supplies its own, and it must match the KeyPackage."""
    w = Writer().raw(_BUNDLE_MAGIC).uint16(_BUNDLE_VERSION)
    w.opaque(bundle.key_package.to_bytes())
    w.opaque(bundle.init_priv).opaque(bundle.encryption_priv)
    return SecretBytes(w.getvalue())


def decode_bundle(suite: CipherSuite, data: bytes, signature_priv: bytes) -> KeyPackageBundle:
    """Strict inverse of ``encode_bundle`` for a client of ``suite`` signing with
    ``signature_priv``.

    Raises DecodeError for anything that is not a consistent stored KeyPackage (bad framing,
    trailing bytes, bad KeyPackage signature, private keys that do not match its public
    keys) and KeyPackageError for a well-formed one that belongs to another suite or
    signature key."""

    def read(r: Reader) -> tuple[KeyPackage, bytes, bytes]:
        if r.raw(4) != _BUNDLE_MAGIC:
            raise DecodeError("not a stored KeyPackage")
        version = r.uint16()
        if version != _BUNDLE_VERSION:
            raise DecodeError(f"unsupported stored KeyPackage version {version}")
        kp = KeyPackage.from_bytes(r.opaque(_MAX_KEY_PACKAGE))
        return kp, r.opaque(_MAX_PRIVATE_KEY), r.opaque(_MAX_PRIVATE_KEY)

    try:
        kp, init_priv, enc_priv = decode_exact(bytes(data), read)
    except DecodeError:
        raise
    except (ValueError, MlsError) as exc:
        raise DecodeError(f"bad stored KeyPackage: {exc}") from None
    if kp.cipher_suite != suite.suite_id:
        raise KeyPackageError("stored KeyPackage is for another cipher suite")
    if kp.leaf_node.signature_key != suite.signature_public_key(signature_priv):
        raise KeyPackageError("stored KeyPackage belongs to another signature key")
    try:
        validate_key_package(suite, kp, now=None)
        matches = (
            suite.hpke_public_key(init_priv) == kp.init_key
            and suite.hpke_public_key(enc_priv) == kp.leaf_node.encryption_key
        )
    except (MlsError, ValueError) as exc:
        raise DecodeError(f"bad stored KeyPackage: {exc}") from None
    if not matches:
        raise DecodeError("stored private keys do not match the KeyPackage")
    return KeyPackageBundle(kp, init_priv, enc_priv, signature_priv)
