"""The policy in force is itself evidence.

Every file under the policy directory (``ATTESTLY_POLICY_DIR`` or ``include/policy``, recursively, hidden
files and directories excluded) makes one *policy bundle*: the RFC 8785 (JCS) bytes of ::

    {"schema": "attestly.policy/v1",
     "files": [{"path": "aws.yaml", "sha256": "<hex of the file's bytes>", "size": n,
                "text": "<the file, UTF-8>"} ...]}   # "base64" instead of "text" for non-UTF-8 files

sorted by path. Its SHA-256 names the policy: every evidence item recorded under it carries
``policy: {"sha256": <hex>}``. The bundle is stored content-addressed and write-once (Object Lock,
COMPLIANCE) at ``policy/sha256/<hex>.json`` and ledgered (kind ``policy``, once per distinct bundle) the
first time an item names it; ``attestly verify`` re-hashes it at its recorded version, like evidence.

Imports nothing from Airflow.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestly.evidence import canonical_json, sha256_hex

if TYPE_CHECKING:
    from attestly.ledger import Ledger
    from attestly.store import EvidenceStore, StoredObject

POLICY_SCHEMA = "attestly.policy/v1"
MAX_BUNDLE_BYTES = 32 * 1024 * 1024


def policy_object_key(sha256: str) -> str:
    return f"policy/sha256/{sha256}.json"


@dataclass(frozen=True)
class PolicyBundle:
    """Every file of a policy directory, canonical: ``canonical`` are the bytes stored, ``sha256`` their
    hash (the policy's name), ``files`` ``[{path, sha256, size}]`` (what the ledger entry lists)."""

    canonical: bytes
    sha256: str
    files: tuple[dict[str, Any], ...]

    @property
    def key(self) -> str:
        return policy_object_key(self.sha256)


def _policy_files(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        out.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def bundle_policy(directory: Path | str | None = None) -> PolicyBundle:
    """The bundle of ``directory`` (default: the configured policy directory)."""
    from attestly.policy.loader import policy_dir

    root = Path(directory) if directory is not None else policy_dir()
    files: list[dict[str, Any]] = []
    total = 0
    for path in _policy_files(root):
        raw = path.read_bytes()
        total += len(raw)
        if total > MAX_BUNDLE_BYTES:
            raise ValueError(f"policy directory {root} holds more than {MAX_BUNDLE_BYTES:,} bytes")
        entry: dict[str, Any] = {
            "path": path.relative_to(root).as_posix(),
            "sha256": sha256_hex(raw),
            "size": len(raw),
        }
        try:
            entry["text"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            entry["base64"] = base64.b64encode(raw).decode("ascii")
        files.append(entry)
    body = canonical_json({"schema": POLICY_SCHEMA, "files": files})
    return PolicyBundle(
        canonical=body,
        sha256=hashlib.sha256(body).hexdigest(),
        files=tuple({k: f[k] for k in ("path", "sha256", "size")} for f in files),
    )


_lock = threading.Lock()
_bundles: dict[tuple[str, tuple[tuple[str, int, int], ...]], PolicyBundle] = {}
_locked: dict[tuple[str, str], datetime] = {}


def current_bundle(directory: Path | str | None = None) -> PolicyBundle:
    """:func:`bundle_policy`, cached per process while no file of the directory changes (size, mtime)."""
    from attestly.policy.loader import policy_dir

    root = Path(directory) if directory is not None else policy_dir()
    stamp = tuple(
        (p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in _policy_files(root)
    )
    key = (str(root.resolve()), stamp)
    with _lock:
        cached = _bundles.get(key)
    if cached is None:
        cached = bundle_policy(root)
        with _lock:
            _bundles[key] = cached
    return cached


def record_policy(
    bundle: PolicyBundle, *, store: EvidenceStore, ledger: Ledger, retain_until: datetime
) -> dict[str, Any]:
    """Store ``bundle`` write-once and ledger it (kind ``policy``, once per bundle); keep its lock at least
    until ``retain_until`` (the retention of the evidence naming it). Returns the ledgered body.

    The ledger is asked every time (one indexed lookup: it is the record); the bucket only when this
    process has not yet locked the bundle there until ``retain_until``."""
    cache_key = (store.bucket, bundle.sha256)
    existing = ledger.find(f"policy:{bundle.sha256}")
    with _lock:
        locked_until = _locked.get(cache_key)
    if existing is None:
        stored: StoredObject = store.put_bytes(
            bundle.key,
            bundle.canonical,
            retain_until=retain_until,
            content_type="application/json",
            expected_sha256=bundle.sha256,
        )
        if not stored.created:
            store.extend_retention(stored.key, stored.version_id, retain_until)
        entry, _ = ledger.append(
            "policy",
            {**stored.to_dict(), "schema": POLICY_SCHEMA, "files": list(bundle.files)},
            dedupe_key=f"policy:{bundle.sha256}",
        )
        body = dict(entry.body)
    else:
        body = dict(existing.body)
        if locked_until is None or locked_until < retain_until:
            try:
                store.extend_retention(str(body["key"]), str(body["version_id"]), retain_until)
            except store.s3.exceptions.ClientError:
                # Ledgered with another bucket (a store moved, a test's fresh bucket): keep a copy here
                # too; the ledger entry keeps naming the first one.
                store.put_bytes(
                    bundle.key,
                    bundle.canonical,
                    retain_until=retain_until,
                    content_type="application/json",
                    expected_sha256=bundle.sha256,
                )
    with _lock:
        if _locked.get(cache_key) is None or _locked[cache_key] < retain_until:
            _locked[cache_key] = retain_until
    return body
