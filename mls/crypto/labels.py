"""RFC 9420's labeled functions (sections 5.1-5.2, 8): every use is domain-separated by
an ``"MLS 1.0 " + label`` prefix inside a TLS-encoded struct."""

from __future__ import annotations

from mls.codec import Writer, encode_varint
from mls.crypto.hpke import Rng
from mls.crypto.suite import CipherSuite

__all__ = [
    "MLS_PREFIX",
    "Label",
    "decrypt_with_label",
    "derive_secret",
    "derive_tree_secret",
    "encrypt_with_label",
    "expand_with_label",
    "make_key_package_ref",
    "make_proposal_ref",
    "ref_hash",
    "sign_with_label",
    "verify_with_label",
]

MLS_PREFIX = b"MLS 1.0 "
Label = str | bytes


def _full(label: Label) -> bytes:
    return MLS_PREFIX + (label.encode() if isinstance(label, str) else bytes(label))


# Encoded ``opaque label<V>`` per label: the secret tree derives several keys per message.
_LABEL_CACHE: dict[Label, bytes] = {}
_LABEL_CACHE_MAX = 256


def _encoded_label(label: Label) -> bytes:
    enc = _LABEL_CACHE.get(label)
    if enc is None:
        full = _full(label)
        enc = encode_varint(len(full)) + full
        if len(_LABEL_CACHE) < _LABEL_CACHE_MAX:
            _LABEL_CACHE[label] = enc
    return enc


def expand_with_label(
    suite: CipherSuite, secret: bytes, label: Label, context: bytes, length: int
) -> bytes:
    kdf_label = b"".join(
        (length.to_bytes(2, "big"), _encoded_label(label), encode_varint(len(context)), context)
    )
    return suite.kdf_expand(secret, kdf_label, length)


def derive_secret(suite: CipherSuite, secret: bytes, label: Label) -> bytes:
    return expand_with_label(suite, secret, label, b"", suite.nh)


def derive_tree_secret(
    suite: CipherSuite, secret: bytes, label: Label, generation: int, length: int
) -> bytes:
    return expand_with_label(suite, secret, label, generation.to_bytes(4, "big"), length)


def ref_hash(suite: CipherSuite, label: Label, value: bytes) -> bytes:
    # RefHash uses the label without the "MLS 1.0 " prefix (the labels already carry it).
    raw = label.encode() if isinstance(label, str) else bytes(label)
    return suite.hash(Writer().opaque(raw).opaque(value).getvalue())


def make_key_package_ref(suite: CipherSuite, key_package: bytes) -> bytes:
    """``key_package`` is the encoded KeyPackage."""
    return ref_hash(suite, "MLS 1.0 KeyPackage Reference", key_package)


def make_proposal_ref(suite: CipherSuite, authenticated_content: bytes) -> bytes:
    """``authenticated_content`` is the encoded AuthenticatedContent carrying the proposal."""
    return ref_hash(suite, "MLS 1.0 Proposal Reference", authenticated_content)


def _sign_content(label: Label, content: bytes) -> bytes:
    return b"".join((_encoded_label(label), encode_varint(len(content)), content))


def sign_with_label(suite: CipherSuite, priv: bytes, label: Label, content: bytes) -> bytes:
    return suite.sign(priv, _sign_content(label, content))


def verify_with_label(
    suite: CipherSuite, pub: bytes, label: Label, content: bytes, signature: bytes
) -> bool:
    return suite.verify(pub, _sign_content(label, content), signature)


def _encrypt_context(label: Label, context: bytes) -> bytes:
    return Writer().opaque(_full(label)).opaque(context).getvalue()


def encrypt_with_label(
    suite: CipherSuite,
    pub: bytes,
    label: Label,
    context: bytes,
    plaintext: bytes,
    *,
    rng: Rng | None = None,
) -> tuple[bytes, bytes]:
    """-> (kem_output, ciphertext), as in an HPKECiphertext."""
    return suite.hpke_seal(pub, _encrypt_context(label, context), b"", plaintext, rng=rng)


def decrypt_with_label(
    suite: CipherSuite,
    priv: bytes,
    label: Label,
    context: bytes,
    kem_output: bytes,
    ciphertext: bytes,
) -> bytes:
    """Raises CryptoError if the ciphertext does not open."""
    return suite.hpke_open(priv, kem_output, _encrypt_context(label, context), b"", ciphertext)
