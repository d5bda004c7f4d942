"""passive-client-welcome.json, passive-client-handling-commit.json, passive-client-random.json:
join from the Welcome with the vector's private keys (and external PSKs, out-of-band tree),
then process every epoch's proposals and commit, matching epoch_authenticator each time."""

from __future__ import annotations

from typing import Any

import pytest

from mls import DictPskStore, Group
from mls.crypto import get_suite
from mls.key_packages import KeyPackageBundle
from mls.messages import KeyPackage, MLSMessage, Welcome
from mls.welcome import join_from_welcome
from tests.vectors import case_id, vector_params

h = bytes.fromhex
FILES = (
    "passive-client-welcome.json",
    "passive-client-handling-commit.json",
    "passive-client-random.json",
)


def _params(name: str) -> list[Any]:
    return vector_params(
        f"mls/{name}",
        lambda i, c: case_id(i, c, f"epochs{len(c['epochs'])}"),
        suite_key="cipher_suite",
    )


def _join(case: dict[str, Any]) -> Group:
    suite = get_suite(case["cipher_suite"])
    kp = MLSMessage.from_bytes(h(case["key_package"])).payload
    assert isinstance(kp, KeyPackage)
    bundle = KeyPackageBundle(
        kp, h(case["init_priv"]), h(case["encryption_priv"]), h(case["signature_priv"])
    )
    store = DictPskStore({h(p["psk_id"]): h(p["psk"]) for p in case["external_psks"]})
    welcome = MLSMessage.from_bytes(h(case["welcome"])).payload
    assert isinstance(welcome, Welcome)
    tree = h(case["ratchet_tree"]) if case["ratchet_tree"] else None
    state = join_from_welcome(suite, welcome, bundle, ratchet_tree=tree, psk_store=store)
    return Group(state, psk_store=store)


def _follow(case: dict[str, Any]) -> None:
    group = _join(case)
    assert group.epoch_authenticator == h(case["initial_epoch_authenticator"])
    for n, epoch in enumerate(case["epochs"]):
        for proposal in epoch["proposals"]:
            group.process(h(proposal))
        before = group.epoch
        group.process(h(epoch["commit"]))
        assert group.epoch == before + 1, f"epoch step {n}"
        assert group.epoch_authenticator == h(epoch["epoch_authenticator"]), f"epoch step {n}"


@pytest.mark.parametrize("case", _params(FILES[0]))
def test_passive_client_welcome(case: dict[str, Any]) -> None:
    _follow(case)


@pytest.mark.parametrize("case", _params(FILES[1]))
def test_passive_client_handling_commit(case: dict[str, Any]) -> None:
    _follow(case)


@pytest.mark.parametrize("case", _params(FILES[2]))
def test_passive_client_random(case: dict[str, Any]) -> None:
    _follow(case)
