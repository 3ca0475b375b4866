"""Signing digests: Ed25519 (key from a connection or secrets backend) or a KMS asymmetric key.

Verification needs only the public key (PEM), so an auditor can check signatures offline. This module
imports nothing from Airflow.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningError(ValueError):
    """A key that cannot be loaded or used; the message says which and why."""


class Signer(Protocol):
    algorithm: str

    def sign(self, message: bytes) -> bytes: ...

    def public_key_pem(self) -> bytes: ...


def fingerprint(public_pem: bytes) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex: names a key without showing it."""
    key = serialization.load_pem_public_key(public_pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass
class Ed25519Signer:
    _key: Ed25519PrivateKey
    algorithm: str = "ed25519"

    @classmethod
    def from_base64(cls, value: str) -> Ed25519Signer:
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise SigningError("signing key: not base64") from exc
        if len(raw) != 32:
            raise SigningError(f"signing key: Ed25519 private keys are 32 bytes, got {len(raw)}")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:  # never show the key
        return "Ed25519Signer(<private key>)"


def signer_from_connection(conn_id: str = "attestly_signing") -> Signer:
    """The signer configured in connection ``conn_id``: extra ``algorithm`` is ``ed25519`` (password =
    base64 raw private key) or ``kms`` (extra ``key_id``, signed through the ``aws_default`` connection)."""
    from attestly.connections import get_conn

    conn = get_conn(conn_id)
    algorithm = str(conn.extra.get("algorithm", "ed25519")).lower()
    if algorithm == "ed25519":
        if not conn.password:
            raise SigningError(
                f"connection {conn_id!r}: the password must hold the base64 Ed25519 private key"
            )
        return Ed25519Signer.from_base64(conn.password)
    if algorithm == "kms":
        key_id = conn.extra.get("key_id")
        if not key_id:
            raise SigningError(f"connection {conn_id!r}: extra.key_id is required for algorithm kms")
        return KmsSigner(key_id=str(key_id), aws_conn_id=str(conn.extra.get("aws_conn_id", "aws_default")))
    raise SigningError(f"connection {conn_id!r}: unknown algorithm {algorithm!r} (ed25519 or kms)")


@dataclass
class KmsSigner:
    """An ECC_NIST_P256 KMS key (SIGN_VERIFY); signatures are ECDSA_SHA_256, checkable with the public key."""

    key_id: str
    aws_conn_id: str = "aws_default"
    algorithm: str = "ecdsa-p256-sha256"

    def _client(self):  # type: ignore[no-untyped-def]
        from attestly.connections import aws_client

        return aws_client("kms", aws_conn_id=self.aws_conn_id)

    def sign(self, message: bytes) -> bytes:
        resp = self._client().sign(
            KeyId=self.key_id, Message=message, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256"
        )
        return bytes(resp["Signature"])

    def public_key_pem(self) -> bytes:
        der = self._client().get_public_key(KeyId=self.key_id)["PublicKey"]
        key = serialization.load_der_public_key(der)
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> bytes:
    """Read a PEM public key file; a clear error names the file if it is not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"{path}: cannot read public key ({exc.strerror})") from exc
    try:
        serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SigningError(f"{path}: not a PEM public key") from exc
    return data


def verify_signature(public_pem: bytes, algorithm: str, message: bytes, signature: bytes) -> bool:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_public_key(public_pem)
    try:
        if algorithm == "ed25519" and isinstance(key, Ed25519PublicKey):
            key.verify(signature, message)
            return True
        if algorithm == "ecdsa-p256-sha256" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False
