"""ledger.merkle against published RFC 6962 test vectors, not against a reference written here.

The vectors (data/rfc6962_vectors.json) come from Certificate Transparency implementations:
google/certificate-transparency python/ct/crypto/merkle_test.py (the eight leaves of the RFC's
examples, the root of every prefix, leaf hashes, an audit path from a production log) and
transparency-dev/merkle proof/verify_test.go (audit paths in the eight-leaf tree, and the ways it
corrupts a proof to check that a verifier refuses it). The file names the commits.

Our tree is RFC 6962's (0x00 leaf prefix, 0x01 node prefix, split at the largest power of two);
its leaves are the entries' chain hashes. One deliberate difference: the RFC defines the empty
tree (SHA-256 of nothing), while `merkle.root([])` refuses, since a checkpoint seals one entry or more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger import merkle

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "rfc6962_vectors.json").read_text())
LEAVES = [bytes.fromhex(leaf) for leaf in VECTORS["leaves"]]
ROOTS = [bytes.fromhex(root) for root in VECTORS["roots_by_size"]]
PROOFS = VECTORS["inclusion_proofs"]


def _hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(value) for value in values]


@pytest.mark.parametrize("case", VECTORS["leaf_hashes"], ids=lambda case: case["leaf"] or "empty")
def test_leaf_hash_is_sha256_of_0x00_and_the_leaf(case: dict[str, str]) -> None:
    assert merkle.leaf_hash(bytes.fromhex(case["leaf"])).hex() == case["hash"]


@pytest.mark.parametrize("size", range(1, 9))
def test_root_of_every_prefix_of_the_rfc_leaves(size: int) -> None:
    assert merkle.root(LEAVES[:size]) == ROOTS[size - 1]


def test_the_empty_tree_is_refused_where_the_rfc_hashes_nothing() -> None:
    assert VECTORS["empty_tree_root"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    with pytest.raises(ValueError, match="at least one leaf"):
        merkle.root([])


@pytest.mark.parametrize("proof", PROOFS, ids=lambda p: f"leaf{p['index']}-of-{p['size']}")
def test_audit_paths_are_the_published_ones_and_lead_to_the_published_root(proof: dict[str, Any]) -> None:
    index, size, path = proof["index"], proof["size"], _hexes(proof["path"])
    assert merkle.audit_path(LEAVES[:size], index) == path
    assert merkle.root_from_path(LEAVES[index], index, size, path) == ROOTS[size - 1]


Probe = tuple[str, int, int, bytes, list[bytes]]


def _corruptions(index: int, size: int, path: list[bytes], root: bytes) -> list[Probe]:
    """transparency-dev/merkle's corruptInclusionProof: (what, index, size, leaf, path), each wrong."""
    leaf = LEAVES[index]
    probes = [
        ("index - 1", index - 1, size, leaf, path),
        ("index + 1", index + 1, size, leaf, path),
        ("index ^ 2", index ^ 2, size, leaf, path),
        ("size * 2", index, size * 2, leaf, path),
        ("size / 2", index, size // 2, leaf, path),
        ("wrong leaf", index, size, b"WrongLeaf", path),
        ("trailing garbage", index, size, leaf, [*path, b""]),
        ("trailing root", index, size, leaf, [*path, root]),
        ("preceding garbage", index, size, leaf, [b"", *path]),
        ("preceding root", index, size, leaf, [root, *path]),
    ]
    for position in range(len(path)):
        flipped = list(path)
        flipped[position] = bytes([flipped[position][0] ^ 8]) + flipped[position][1:]
        probes.append((f"proof[{position}] bit 3 flipped", index, size, leaf, flipped))
    if path:
        probes.append(("removed component", index, size, leaf, path[:-1]))
    if len(path) > 1:
        some_hash = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
        probes.append(("inserted component", index, size, leaf, [path[0], some_hash, *path[1:]]))
    return probes


@pytest.mark.parametrize("proof", PROOFS, ids=lambda p: f"leaf{p['index']}-of-{p['size']}")
def test_corrupted_proofs_never_lead_to_the_root(proof: dict[str, Any]) -> None:
    index, size, path = proof["index"], proof["size"], _hexes(proof["path"])
    root = ROOTS[size - 1]
    accepted = [
        what
        for what, bad_index, bad_size, leaf, bad_path in _corruptions(index, size, path, root)
        if merkle.root_from_path(leaf, bad_index, bad_size, bad_path) == root
    ]
    assert accepted == []


def test_a_production_log_entry_proves_into_its_logs_root() -> None:
    entry = VECTORS["log_entry_proof"]
    leaf, path, root = bytes.fromhex(entry["leaf"]), _hexes(entry["path"]), bytes.fromhex(entry["root"])
    assert merkle.leaf_hash(leaf).hex() == entry["leaf_hash"]
    assert merkle.root_from_path(leaf, entry["index"], entry["size"], path) == root
    assert merkle.root_from_path(leaf, entry["index"] + 1, entry["size"], path) != root
    assert merkle.root_from_path(leaf, entry["index"], entry["size"], path[:-1]) is None
