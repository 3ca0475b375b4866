"""Print a filled ``.env`` for docker-compose.yaml: every empty variable of ``.env.example`` gets a fresh
random value (``python docker/generate_env.py --public-key attestly-public.pem > .env``).

Values are hex (safe in URLs, JSON and command lines); ``AIRFLOW_FERNET_KEY`` is a Fernet key and
``ATTESTLY_SIGNING_KEY`` a base64 raw Ed25519 private key, whose public key (PEM) is written to
``--public-key`` for auditors (``attestly verify --public-key``). Nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"


def _signing_key() -> tuple[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(raw).decode(), public


def value_for(name: str) -> tuple[str, bytes | None]:
    """A fresh value for variable ``name`` (and the public key PEM for the signing key)."""
    if name == "AIRFLOW_FERNET_KEY":
        return base64.urlsafe_b64encode(os.urandom(32)).decode(), None
    if name == "ATTESTLY_SIGNING_KEY":
        return _signing_key()
    if name in ("MINIO_ROOT_USER", "ATTESTLY_S3_ACCESS_KEY"):
        return ("attestly-" if name.startswith("ATTESTLY") else "root-") + secrets.token_hex(6), None
    return secrets.token_hex(24), None


def render(example: str) -> tuple[str, bytes | None]:
    """``example`` with every ``NAME=`` (empty) line filled; returns the text and the public key PEM."""
    public: bytes | None = None
    lines = []
    for line in example.splitlines():
        name, sep, current = line.partition("=")
        if sep and not line.startswith("#") and not current.strip():
            value, pem = value_for(name.strip())
            public = pem or public
            lines.append(f"{name.strip()}={value}")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n", public


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, default=EXAMPLE)
    parser.add_argument("--public-key", type=Path, help="write the signing public key (PEM) here")
    args = parser.parse_args(argv)
    text, public = render(args.example.read_text())
    if args.public_key and public:
        args.public_key.write_bytes(public)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
