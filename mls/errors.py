"""The mls package's single error tree."""

from __future__ import annotations


class MlsError(Exception):
    """Root of every error the mls package raises on purpose."""


class DecodeError(MlsError, ValueError):
    """Bytes do not decode as the expected RFC 9420 structure."""


class CryptoError(MlsError):
    """A cryptographic check failed (bad signature, AEAD tag, HPKE open, ...)."""


class ValidationError(MlsError):
    """A structurally valid message breaks an RFC 9420 rule."""


class SecretTreeError(CryptoError):
    """No key can be given for the requested (leaf, ratchet, generation)."""


class KeyReuseError(SecretTreeError):
    """The generation's key was already consumed (replay or nonce reuse attempt)."""


class GenerationTooOldError(SecretTreeError):
    """The generation fell behind the retention window and its key was forgotten."""


class GenerationTooFarError(SecretTreeError):
    """The generation is further ahead than the configured bound (or above 2^32 - 1)."""
