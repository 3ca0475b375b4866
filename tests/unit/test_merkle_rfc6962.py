"""Known answers for the RFC 6962 Merkle tree hash (issue 16): the Certificate Transparency reference
leaves and tree heads for sizes 0..8 (google/certificate-transparency's test data, reproduced by every CT
implementation), the leaf/node prefixes from the RFC's definitions, and a from-the-definition reference
(section 2.1, written here independently of attestly.merkle) for every size up to 70."""

from __future__ import annotations

import hashlib

import pytest

from attestly.merkle import leaf_hash, merkle_root, node_hash

pytestmark = pytest.mark.unit

CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # empty tree: SHA-256("")
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("size", range(len(CT_ROOTS)))
def test_tree_heads_match_the_certificate_transparency_vectors(size: int) -> None:
    assert merkle_root(CT_LEAVES[:size]).hex() == CT_ROOTS[size]


def test_leaf_and_node_prefixes() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert leaf_hash(b"") == bytes.fromhex(CT_ROOTS[1])
    left, right = leaf_hash(CT_LEAVES[0]), leaf_hash(CT_LEAVES[1])
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert node_hash(left, right).hex() == CT_ROOTS[2]
    # A leaf whose data is two hashes is not the interior node over them (the point of the prefixes).
    assert merkle_root([left + right]) != merkle_root(CT_LEAVES[:2])


def _reference(data: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, literally: split at the largest power of two strictly less than n."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _reference(data[:k]) + _reference(data[k:])).digest()


def test_every_size_up_to_70_matches_the_definition() -> None:
    leaves = [bytes([i, (i * 7) % 256]) * (i % 5) for i in range(70)]
    for n in range(71):
        assert merkle_root(leaves[:n]) == _reference(leaves[:n]), n
