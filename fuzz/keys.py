"""Fixed keys shared by the fuzz targets (to open) and the seeds (to seal)."""

from __future__ import annotations

from mls.crypto.hpke import KEM_X25519_HKDF_SHA256

ENVELOPE_KEY = bytes(range(32))
INVITE_PRIVATE_KEY, INVITE_PUBLIC_KEY = KEM_X25519_HKDF_SHA256.derive_key_pair(bytes(range(64)))
