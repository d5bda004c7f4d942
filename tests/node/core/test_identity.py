from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.core.errors import IdentityError
from node.core.identity import Identity, PeerId


def test_peer_id_text_round_trips() -> None:
    ident = Identity.generate()
    text = ident.peer_id.to_string()
    assert PeerId.from_string(text) == ident.peer_id
    assert PeerId.from_public_key(ident.public_key_bytes) == ident.peer_id


def test_mistyped_peer_id_is_rejected() -> None:
    text = Identity.generate().peer_id.to_string()
    for i in range(2, len(text)):
        swapped = "a" if text[i] != "a" else "b"
        with pytest.raises(IdentityError):
            PeerId.from_string(text[:i] + swapped + text[i + 1 :])


def test_signature_verifies_against_peer_id_only() -> None:
    a, b = Identity.generate(), Identity.generate()
    sig = a.sign(b"hello")
    assert a.peer_id.verify(sig, b"hello")
    assert not a.peer_id.verify(sig, b"hellO")
    assert not b.peer_id.verify(sig, b"hello")


def test_pem_round_trip_and_repr_hides_key() -> None:
    ident = Identity.generate()
    assert Identity.from_pem(ident.to_pem()).peer_id == ident.peer_id
    assert ident.seed().hex() not in repr(ident)
    with pytest.raises(IdentityError):
        Identity.from_pem(b"not a key")


@given(st.text(max_size=100))
def test_from_string_only_raises_identity_error(text: str) -> None:
    try:
        peer = PeerId.from_string(text)
    except IdentityError:
        return
    assert peer.to_string() == text


@given(st.binary(max_size=40))
def test_from_bytes_only_raises_identity_error(data: bytes) -> None:
    try:
        peer = PeerId.from_bytes(data)
    except IdentityError:
        return
    assert peer.binary == data
