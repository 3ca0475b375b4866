"""A manual statement's signature (no services): it verifies under the signing key's public half and
under nothing else; an altered item hash, signature, algorithm or a missing signature each say why."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attestly.manual import sign_item, verify_statement_signature
from attestly.signing import Ed25519Signer

pytestmark = pytest.mark.unit


def _signer() -> Ed25519Signer:
    from cryptography.hazmat.primitives import serialization

    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return Ed25519Signer.from_base64(base64.b64encode(raw).decode())


def test_a_statement_signature_verifies_only_as_signed() -> None:
    signer, other = _signer(), _signer()
    item = "ab" * 32
    body = {"sha256": item, "signature": sign_item(signer, item)}
    assert verify_statement_signature(body, signer.public_key_pem()) is None
    assert "does not verify" in str(verify_statement_signature(body, other.public_key_pem()))
    assert "does not verify" in str(
        verify_statement_signature({**body, "sha256": "cd" * 32}, signer.public_key_pem())
    )
    flipped = base64.b64decode(body["signature"]["signature"])
    forged = {
        **body["signature"],
        "signature": base64.b64encode(bytes([flipped[0] ^ 1]) + flipped[1:]).decode(),
    }
    assert "does not verify" in str(
        verify_statement_signature({**body, "signature": forged}, signer.public_key_pem())
    )
    wrong_alg = {**body["signature"], "algorithm": "ecdsa-p256-sha256"}
    assert verify_statement_signature({**body, "signature": wrong_alg}, signer.public_key_pem()) is not None
    assert "not base64" in str(
        verify_statement_signature(
            {**body, "signature": {**body["signature"], "signature": "%%%"}}, signer.public_key_pem()
        )
    )
    assert "no signature" in str(verify_statement_signature({"sha256": item}, signer.public_key_pem()))
