"""welcome.json: decrypt GroupSecrets and GroupInfo from a Welcome with the KeyPackage's init
key, verify the GroupInfo signature and the confirmation tag; plus tampering checks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mls.crypto import get_suite
from mls.key_packages import key_package_ref
from mls.messages import KeyPackage, MLSMessage, Welcome
from mls.transcript import verify_confirmation_tag
from mls.welcome import WelcomeError, open_welcome, verify_group_info_signature
from tests.vectors import case_id, vector_params

h = bytes.fromhex


CASES = vector_params("mls/welcome.json", case_id, suite_key="cipher_suite")


def _load(case: dict[str, Any]) -> tuple[Any, KeyPackage, Welcome]:
    suite = get_suite(int(case["cipher_suite"]))
    kp = MLSMessage.from_bytes(h(case["key_package"])).payload
    welcome = MLSMessage.from_bytes(h(case["welcome"])).payload
    assert isinstance(kp, KeyPackage) and isinstance(welcome, Welcome)
    return suite, kp, welcome


@pytest.mark.parametrize("case", CASES)
def test_welcome_vector(case: dict[str, Any]) -> None:
    suite, kp, welcome = _load(case)
    opened = open_welcome(suite, welcome, key_package_ref(suite, kp), h(case["init_priv"]))
    gi = opened.group_info
    assert verify_group_info_signature(suite, gi, h(case["signer_pub"]))
    verify_confirmation_tag(
        suite,
        opened.key_schedule.epoch.confirmation_key,
        opened.context.confirmed_transcript_hash,
        gi.confirmation_tag,
    )
    assert opened.context.encode() == gi.group_context
    assert gi.to_bytes() == MLSMessage(gi).to_bytes()[4:]


@pytest.mark.parametrize("case", CASES)
def test_welcome_vector_tampered(case: dict[str, Any]) -> None:
    suite, kp, welcome = _load(case)
    ref = key_package_ref(suite, kp)
    init_priv = h(case["init_priv"])
    egi = bytearray(welcome.encrypted_group_info)
    egi[-1] ^= 1
    with pytest.raises(WelcomeError):
        open_welcome(suite, replace(welcome, encrypted_group_info=bytes(egi)), ref, init_priv)
    with pytest.raises(WelcomeError):
        open_welcome(suite, welcome, bytes(len(ref)), init_priv)
    opened = open_welcome(suite, welcome, ref, init_priv)
    bad_sig = replace(opened.group_info, signer=opened.group_info.signer ^ 1)
    assert not verify_group_info_signature(suite, bad_sig, h(case["signer_pub"]))
