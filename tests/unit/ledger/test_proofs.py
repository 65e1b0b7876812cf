"""Pure ledger logic: canonical bytes, Merkle roots and proofs, signatures, credit strings."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import canonical, merkle
from ledger.amounts import credits_text, parse_credits
from ledger.signing import signer_from_key, verifier_from_key


def _reference_root(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH, written recursively as in the RFC."""
    if len(hashes) == 1:
        return hashlib.sha256(b"\x00" + hashes[0]).digest()
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + _reference_root(hashes[:k]) + _reference_root(hashes[k:])).digest()


def _leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest() for i in range(n)]


@pytest.mark.parametrize("size", [*range(1, 34), 100, 257])
def test_root_matches_rfc_6962_and_every_path_verifies(size: int) -> None:
    leaves = _leaves(size)
    root = merkle.root(leaves)
    assert root == _reference_root(leaves)
    for index in range(size):
        path = merkle.audit_path(leaves, index)
        assert merkle.root_from_path(leaves[index], index, size, path) == root
        assert merkle.root_from_path(leaves[(index + 1) % size], index, size, path) != root or size == 1


def test_malformed_paths_are_refused() -> None:
    leaves = _leaves(8)
    path = merkle.audit_path(leaves, 3)
    assert merkle.root_from_path(leaves[3], 3, 8, path[:-1]) is None
    assert merkle.root_from_path(leaves[3], 3, 8, [*path, path[0]]) is None
    assert merkle.root_from_path(leaves[3], 8, 8, path) is None
    with pytest.raises(ValueError, match="at least one leaf"):
        merkle.root([])


def test_canonical_bytes_are_unambiguous() -> None:
    assert canonical.canonical("ab", "c") != canonical.canonical("a", "bc")
    assert canonical.canonical(None) != canonical.canonical("")
    assert canonical.canonical(1) != canonical.canonical("1")
    assert canonical.canonical(b"x") != canonical.canonical("x")
    with pytest.raises(TypeError):
        canonical.canonical(True)


def test_entry_hash_binds_every_field() -> None:
    fields = ("capture", 2, 5_000_000, "hold-1", None, "job-1", "key-1", 1_700_000_000_000_000)
    body = canonical.entry_body(*fields)
    assert body == hashlib.sha256(canonical.canonical(canonical.ENTRY_VERSION, *fields)).digest()
    with_lot = ("grant", 1, 7, None, 42, "welcome", None, -5)
    assert canonical.entry_body(*with_lot) == hashlib.sha256(
        canonical.canonical(canonical.ENTRY_VERSION, *with_lot)
    ).digest()
    for position in range(len(fields)):
        changed = list(fields)
        changed[position] = 7 if position in (1, 2, 4, 7) else "other"
        assert canonical.entry_body(*changed) != body
    base = canonical.link(canonical.ZERO_HASH, 1000, 1, 10, 5, 0, body)
    assert (
        base
        == hashlib.sha256(
            bytes(32) + b"".join(v.to_bytes(8, "big", signed=True) for v in (1000, 1, 10, 5, 0)) + body
        ).digest()
    )
    assert canonical.link(canonical.ZERO_HASH, 1000, 1, 10, 5, 1, body) != base


@pytest.mark.parametrize("key", ["ed25519", "hmac:a-secret-of-at-least-16-bytes"])
def test_signatures_verify_only_with_the_right_key(key: str) -> None:
    if key == "ed25519":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = (
            Ed25519PrivateKey.generate()
            .private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            .decode()
        )
    signer = signer_from_key(key)
    signature = signer.sign(b"message")
    assert signer.verifier.verify(b"message", signature)
    assert not signer.verifier.verify(b"messagE", signature)
    public = signer.verifier.public_key_pem()
    verifier = verifier_from_key(public or key)
    assert verifier.key_id == signer.key_id
    assert verifier.verify(b"message", signature)
    other = signer_from_key("hmac:another-secret-of-16-bytes")
    assert not other.verifier.verify(b"message", signature)


def test_weak_or_wrong_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        signer_from_key("hmac:short")
    with pytest.raises(ValueError, match=r"PEM|key|deserialize"):
        signer_from_key("not a key")


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_credit_strings_round_trip(micro: int) -> None:
    assert parse_credits(credits_text(micro)) == micro
