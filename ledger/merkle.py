"""Merkle trees over entry hashes as in RFC 6962/9162 (domain-separated leaves and nodes)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(entry_hash: bytes) -> bytes:
    """The tree leaf of an entry hash."""
    return hashlib.sha256(b"\x00" + entry_hash).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """Largest power of two strictly smaller than size (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def root(entry_hashes: Sequence[bytes]) -> bytes:
    """Merkle tree hash of the entry hashes, in order (RFC 6962 MTH); non-empty input."""
    if not entry_hashes:
        raise ValueError("a Merkle tree needs at least one leaf")
    level = [leaf_hash(value) for value in entry_hashes]
    # Iterative form of MTH: pairing left to right and promoting a lone last node gives the
    # same tree as the recursive split at the largest power of two.
    while len(level) > 1:
        paired = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def audit_path(entry_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Sibling hashes from leaf `index` up to the root (RFC 6962 PATH)."""
    if not 0 <= index < len(entry_hashes):
        raise IndexError("leaf index outside the tree")
    path: list[bytes] = []
    level = [leaf_hash(value) for value in entry_hashes]
    position = index
    while len(level) > 1:
        sibling = position ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        paired = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        position //= 2
    return path


def root_from_path(entry_hash: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root implied by an inclusion proof (RFC 9162 §2.1.3.2), or None if the path is malformed."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    current = leaf_hash(entry_hash)
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            current = _node(sibling, current)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            current = _node(current, sibling)
        fn >>= 1
        sn >>= 1
    return current if sn == 0 else None
