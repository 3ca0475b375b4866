"""``verify`` from the Evidence view: run :func:`attestly.verify.verify_bucket` on demand, keep the last
result in a small file.

Contract:

- :func:`run_verify` checks the whole bucket with the ledger cross-check (what ``attestly verify
  --ledger --json`` does) and writes ``{"checked_at", "duration_seconds", "public_key_source",
  "report": Report.to_dict()}`` atomically to :func:`verify_cache_path`
  (``$ATTESTLY_HOME/ui/last-verify.json``); only one check runs at a time in a process
  (:class:`VerifyBusy` otherwise).
- :func:`last_verify` returns that dict, or None when no check has run (or the file is unreadable).
- The public key is the file named by ``ATTESTLY_UI_PUBLIC_KEY`` when set (an independent copy, as an
  auditor holds), else derived from the ``attestly_signing`` connection.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestly import config
from attestly.evidence import iso

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from botocore.client import BaseClient

PUBLIC_KEY_ENV = "ATTESTLY_UI_PUBLIC_KEY"
_LOCK = threading.Lock()


class VerifyBusy(RuntimeError):
    """A check is already running in this process."""


def verify_cache_path() -> Path:
    return config.home() / "ui" / "last-verify.json"


def last_verify(path: Path | None = None) -> dict[str, Any] | None:
    """The last cached result (see module doc), or None."""
    path = path or verify_cache_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _public_key() -> tuple[bytes, str]:
    from attestly.signing import load_public_key, signer_from_connection

    file = os.environ.get(PUBLIC_KEY_ENV)
    if file:
        return load_public_key(Path(file)), f"file {file}"
    return signer_from_connection().public_key_pem(), "connection attestly_signing"


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


def run_verify(
    *,
    s3: BaseClient | None = None,
    bucket: str | None = None,
    public_key_pem: bytes | None = None,
    ledger_rows: Callable[[], Iterator[dict[str, Any]]] | None = None,
    path: Path | None = None,
) -> dict[str, Any]:
    """Verify the bucket now (defaults: ``aws_default``, the evidence bucket, the key as in the module
    doc, the ``attestly_db`` ledger); cache and return the result. Raises :class:`VerifyBusy`."""
    from attestly.connections import aws_client
    from attestly.verify import ledger_rows as default_rows
    from attestly.verify import verify_bucket

    if not _LOCK.acquire(blocking=False):
        raise VerifyBusy("a verify is already running; reload the page in a moment")
    try:
        started = time.monotonic()
        key_source = "argument"
        if public_key_pem is None:
            public_key_pem, key_source = _public_key()
        report = verify_bucket(
            s3=s3 or aws_client("s3"),
            bucket=bucket or config.evidence_bucket(),
            public_key_pem=public_key_pem,
            ledger_entries=(ledger_rows or default_rows)(),
        )
        result = {
            "checked_at": iso(datetime.now(UTC)),
            "duration_seconds": round(time.monotonic() - started, 3),
            "public_key_source": key_source,
            "report": report.to_dict(),
            "summary": report.summary_lines(),
        }
        _write(path or verify_cache_path(), result)
        return result
    finally:
        _LOCK.release()
