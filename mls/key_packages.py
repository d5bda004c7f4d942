"""KeyPackages (RFC 9420 section 10): creation with basic credentials and validation.

Lifetimes follow a tolerant policy: we *generate* short lifetimes (``DEFAULT_LIFETIME``) but
*accept* any lifetime that covers the current time, give or take ``CLOCK_SKEW`` seconds, so
peers with long-lived KeyPackages and slightly wrong clocks can still be added.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mls.crypto.hpke import Rng
from mls.crypto.labels import make_key_package_ref, sign_with_label, verify_with_label
from mls.crypto.suite import SUITES, CipherSuite
from mls.errors import ValidationError
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
from mls.tree.validation import LeafValidationError, sign_leaf_node, validate_leaf_node

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_LIFETIME",
    "KEY_PACKAGE_TBS_LABEL",
    "KeyPackageBundle",
    "KeyPackageError",
    "create_key_package",
    "default_capabilities",
    "key_package_ref",
    "validate_key_package",
]

KEY_PACKAGE_TBS_LABEL = "KeyPackageTBS"
DEFAULT_LIFETIME = 90 * 24 * 3600
CLOCK_SKEW = 3600


class KeyPackageError(ValidationError):
    """A KeyPackage breaks a rule of RFC 9420 section 10.1."""


def default_capabilities(suite: CipherSuite) -> Capabilities:
    """What our leaves advertise: MLS 1.0, every suite we implement, basic credentials."""
    suites = tuple(sorted({suite.suite_id, *SUITES}))
    return Capabilities(
        versions=(MLS10,), cipher_suites=suites, credentials=(CredentialType.BASIC,)
    )


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
) -> None:
    """RFC 9420 section 10.1 plus the leaf checks of 7.3 (source key_package).

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
