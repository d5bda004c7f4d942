"""The MLS key schedule (RFC 9420 section 8): init + commit + PSK secrets and the GroupContext
give the joiner, welcome and epoch secrets, and every secret derived from the epoch secret.

Intermediate secrets (member secret, epoch secret) are not kept: once the epoch's secrets
exist nothing may re-derive them (forward secrecy is the caller's job beyond that: drop the
old ``EpochSecrets`` when the epoch ends).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.crypto.hpke import Rng
from mls.crypto.labels import Label, derive_secret, expand_with_label
from mls.crypto.suite import CipherSuite
from mls.group_context import GroupContext

__all__ = [
    "EXTERNAL_INIT_EXPORTER_LABEL",
    "EpochSecrets",
    "KeyScheduleResult",
    "derive_epoch_secret",
    "derive_joiner_secret",
    "derive_welcome_secret",
    "external_init_receiver",
    "external_init_sender",
    "key_schedule",
    "key_schedule_from_joiner",
    "mls_exporter",
    "welcome_key_nonce",
]

EXTERNAL_INIT_EXPORTER_LABEL = b"MLS 1.0 external init secret"


def _ctx_bytes(group_context: GroupContext | bytes) -> bytes:
    return group_context.encode() if isinstance(group_context, GroupContext) else group_context


def derive_joiner_secret(
    suite: CipherSuite,
    init_secret: bytes,
    commit_secret: bytes,
    group_context: GroupContext | bytes,
) -> bytes:
    """``group_context`` is the *new* epoch's context (object or encoding)."""
    prk = suite.kdf_extract(init_secret, commit_secret)
    return expand_with_label(suite, prk, "joiner", _ctx_bytes(group_context), suite.nh)


def _member_secret(suite: CipherSuite, joiner_secret: bytes, psk_secret: bytes | None) -> bytes:
    return suite.kdf_extract(joiner_secret, bytes(suite.nh) if psk_secret is None else psk_secret)


def derive_welcome_secret(
    suite: CipherSuite, joiner_secret: bytes, psk_secret: bytes | None = None
) -> bytes:
    """``psk_secret=None`` means no PSKs (all-zero psk_secret)."""
    return derive_secret(suite, _member_secret(suite, joiner_secret, psk_secret), "welcome")


def derive_epoch_secret(
    suite: CipherSuite,
    joiner_secret: bytes,
    psk_secret: bytes | None,
    group_context: GroupContext | bytes,
) -> bytes:
    member = _member_secret(suite, joiner_secret, psk_secret)
    return expand_with_label(suite, member, "epoch", _ctx_bytes(group_context), suite.nh)


def welcome_key_nonce(suite: CipherSuite, welcome_secret: bytes) -> tuple[bytes, bytes]:
    """The AEAD key and nonce that protect a Welcome's GroupInfo (RFC 9420 section 12.4.3.1)."""
    key = expand_with_label(suite, welcome_secret, "key", b"", suite.nk)
    nonce = expand_with_label(suite, welcome_secret, "nonce", b"", suite.nn)
    return key, nonce


def mls_exporter(
    suite: CipherSuite, exporter_secret: bytes, label: Label, context: bytes, length: int
) -> bytes:
    """MLS-Exporter(Label, Context, Length) (RFC 9420 section 8.5)."""
    secret = derive_secret(suite, exporter_secret, label)
    return expand_with_label(suite, secret, "exported", suite.hash(context), length)


@dataclass(frozen=True)
class EpochSecrets:
    """Everything RFC 9420 table 4 derives from one epoch secret."""

    suite: CipherSuite
    sender_data_secret: bytes = field(repr=False)
    encryption_secret: bytes = field(repr=False)
    exporter_secret: bytes = field(repr=False)
    external_secret: bytes = field(repr=False)
    confirmation_key: bytes = field(repr=False)
    membership_key: bytes = field(repr=False)
    resumption_psk: bytes = field(repr=False)
    epoch_authenticator: bytes = field(repr=False)
    init_secret: bytes = field(repr=False)  # init_secret of the *next* epoch

    @classmethod
    def derive(cls, suite: CipherSuite, epoch_secret: bytes) -> EpochSecrets:
        def d(label: str) -> bytes:
            return derive_secret(suite, epoch_secret, label)

        return cls(
            suite,
            sender_data_secret=d("sender data"),
            encryption_secret=d("encryption"),
            exporter_secret=d("exporter"),
            external_secret=d("external"),
            confirmation_key=d("confirm"),
            membership_key=d("membership"),
            resumption_psk=d("resumption"),
            epoch_authenticator=d("authentication"),
            init_secret=d("init"),
        )

    def export(self, label: Label, context: bytes, length: int) -> bytes:
        return mls_exporter(self.suite, self.exporter_secret, label, context, length)

    def external_key_pair(self) -> tuple[bytes, bytes]:
        """-> (external_priv, external_pub) = DeriveKeyPair(external_secret)."""
        return self.suite.derive_key_pair(self.external_secret)

    @property
    def external_pub(self) -> bytes:
        return self.external_key_pair()[1]

    def confirmation_tag(self, confirmed_transcript_hash: bytes) -> bytes:
        return self.suite.mac(self.confirmation_key, confirmed_transcript_hash)


@dataclass(frozen=True)
class KeyScheduleResult:
    joiner_secret: bytes = field(repr=False)
    welcome_secret: bytes = field(repr=False)
    epoch: EpochSecrets


def key_schedule_from_joiner(
    suite: CipherSuite,
    joiner_secret: bytes,
    psk_secret: bytes | None,
    group_context: GroupContext | bytes,
) -> KeyScheduleResult:
    """The part of the schedule a Welcome recipient runs (it learns joiner_secret)."""
    member = _member_secret(suite, joiner_secret, psk_secret)
    welcome = derive_secret(suite, member, "welcome")
    epoch_secret = expand_with_label(suite, member, "epoch", _ctx_bytes(group_context), suite.nh)
    return KeyScheduleResult(joiner_secret, welcome, EpochSecrets.derive(suite, epoch_secret))


def key_schedule(
    suite: CipherSuite,
    init_secret: bytes,
    commit_secret: bytes | None,
    psk_secret: bytes | None,
    group_context: GroupContext | bytes,
) -> KeyScheduleResult:
    """Full schedule for the epoch described by ``group_context``.

    ``commit_secret=None`` / ``psk_secret=None`` stand for the all-zero values RFC 9420 uses
    when a commit has no path / no PSKs.
    """
    joiner = derive_joiner_secret(
        suite,
        init_secret,
        bytes(suite.nh) if commit_secret is None else commit_secret,
        group_context,
    )
    return key_schedule_from_joiner(suite, joiner, psk_secret, group_context)


def external_init_sender(
    suite: CipherSuite, external_pub: bytes, *, rng: Rng | None = None
) -> tuple[bytes, bytes]:
    """ExternalInit for a joiner -> (kem_output, init_secret) (RFC 9420 section 8.3)."""
    return suite.hpke.send_export(
        external_pub, b"", EXTERNAL_INIT_EXPORTER_LABEL, suite.nh, rng=rng
    )


def external_init_receiver(suite: CipherSuite, external_priv: bytes, kem_output: bytes) -> bytes:
    """The init_secret a member recovers from an ExternalInit proposal's kem_output."""
    return suite.hpke.receive_export(
        kem_output, external_priv, b"", EXTERNAL_INIT_EXPORTER_LABEL, suite.nh
    )
