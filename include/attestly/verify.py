"""``attestly verify``: check the evidence bucket against its signed digests, from the bucket and a
public key alone (like ``aws cloudtrail validate-logs``).

What is checked:

1. every digest under ``digests/``: exactly one version (a rewrite is *digest altered*), not hidden by a
   delete marker (*digest missing*), its Ed25519/ECDSA signature under the given public key (*bad
   signature*), its Merkle root and entry hashes recomputed from its entries (*digest altered*);
2. the chain: each digest names the previous one by key, SHA-256 and signature and continues its entry
   sequence and entry hashes (*chain broken*);
3. every evidence object a digest records: the recorded version exists and re-hashes to the recorded
   SHA-256 (*altered* / *missing*), it is still the current version (*replaced by a newer version*; a delete
   marker on top is *missing*), its lock is COMPLIANCE and retain-until is not earlier than recorded;
4. optionally (``--ledger``), the ledger database against the digests: an entry edited in the database
   after it was sealed, and the unsealed tail's own chain.

Objects are fetched concurrently (one GET per object, by version id); version listings are read once
per prefix. Imports nothing from Airflow; the database check imports psycopg only when asked for.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attestly.evidence import canonical_json
from attestly.ledger import DIGEST_PREFIX, DIGEST_SCHEMA, GENESIS, entry_hash
from attestly.merkle import merkle_root
from attestly.signing import fingerprint, verify_signature

if TYPE_CHECKING:
    from botocore.client import BaseClient

KINDS = (
    "altered",
    "missing",
    "replaced",
    "lock",
    "digest_missing",
    "digest_altered",
    "chain_broken",
    "bad_signature",
    "ledger_altered",
)
LABELS = {
    "altered": "ALTERED",
    "missing": "MISSING",
    "replaced": "REPLACED BY A NEWER VERSION",
    "lock": "LOCK",
    "digest_missing": "DIGEST MISSING",
    "digest_altered": "DIGEST ALTERED",
    "chain_broken": "CHAIN BROKEN",
    "bad_signature": "BAD SIGNATURE",
    "ledger_altered": "LEDGER ALTERED",
}


@dataclass(frozen=True)
class Problem:
    kind: str
    key: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "key": self.key, "detail": self.detail}

    def __str__(self) -> str:
        return f"{LABELS[self.kind]:<28} {self.key}  {self.detail}"


@dataclass
class Report:
    bucket: str
    requested: dict[str, str | None]
    digests_found: int = 0
    digests_valid: int = 0
    entries: int = 0
    objects_requested: int = 0
    objects_verified: int = 0
    bytes_verified: int = 0
    sealed_range: dict[str, str | None] = field(default_factory=lambda: {"start": None, "end": None})
    ledger_checked: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "bucket": self.bucket,
            "requested": self.requested,
            "found": {
                "digests": self.digests_found,
                "digests_valid": self.digests_valid,
                "ledger_entries": self.entries,
                "evidence_objects": self.objects_requested,
                "evidence_objects_verified": self.objects_verified,
                "bytes_verified": self.bytes_verified,
                "sealed_range": self.sealed_range,
            },
            "ledger_checked": self.ledger_checked,
            "problems": [p.to_dict() for p in self.problems],
        }

    def summary_lines(self) -> list[str]:
        lines = [str(p) for p in self.problems]
        lines.append(
            f"{'FAILED' if self.problems else 'OK'}: s3://{self.bucket} — {self.digests_valid}/{self.digests_found} "
            f"digests valid, {self.entries} ledger entries, {self.objects_verified}/{self.objects_requested} "
            f"evidence objects verified ({self.bytes_verified} bytes); sealed "
            f"{self.sealed_range['start'] or '-'} .. {self.sealed_range['end'] or '-'}; requested "
            f"{self.requested['from'] or 'beginning'} .. {self.requested['to'] or 'now'}"
            + ("" if self.ledger_checked else " (ledger database not checked)")
        )
        if self.problems:
            counts: dict[str, int] = {}
            for p in self.problems:
                counts[p.kind] = counts.get(p.kind, 0) + 1
            lines.append(
                "problems: " + ", ".join(f"{LABELS[k].lower()}: {n}" for k, n in sorted(counts.items()))
            )
        return lines


@dataclass(frozen=True)
class _Version:
    version_id: str
    last_modified: datetime
    is_latest: bool
    delete_marker: bool


def _versions(s3: BaseClient, bucket: str, prefix: str) -> dict[str, list[_Version]]:
    """All versions and delete markers under ``prefix``, oldest first per key."""
    out: dict[str, list[_Version]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            out.setdefault(v["Key"], []).append(
                _Version(v["VersionId"], v["LastModified"], v["IsLatest"], False)
            )
        for m in page.get("DeleteMarkers", []):
            out.setdefault(m["Key"], []).append(
                _Version(m["VersionId"], m["LastModified"], m["IsLatest"], True)
            )
    for versions in out.values():
        # LastModified has one-second resolution on some stores: among ties, the latest sorts last.
        versions.sort(key=lambda v: (v.last_modified, v.is_latest))
    return out


def _iso_to_dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _overlaps(period: dict[str, Any], start: datetime | None, end: datetime | None) -> bool:
    p_start = _iso_to_dt(period["period_start"]) if period.get("period_start") else None
    p_end = _iso_to_dt(period["period_end"]) if period.get("period_end") else None
    if start and p_end and p_end <= start:
        return False
    return not (end and p_start and p_start >= end)


def verify_bucket(
    *,
    s3: BaseClient,
    bucket: str,
    public_key_pem: bytes,
    start: datetime | None = None,
    end: datetime | None = None,
    concurrency: int = 16,
    ledger_entries: Iterator[dict[str, Any]] | None = None,
) -> Report:
    """Verify ``bucket``; ``ledger_entries`` (optional) are the database's rows, in seq order, as dicts
    with seq, kind, recorded_at (ISO), body, prev_hash, entry_hash."""
    report = Report(
        bucket=bucket,
        requested={"from": start.isoformat() if start else None, "to": end.isoformat() if end else None},
    )
    key_fp = fingerprint(public_key_pem)
    digest_versions = _versions(s3, bucket, DIGEST_PREFIX)
    report.digests_found = len(digest_versions)

    previous: dict[str, Any] | None = None  # key, sha256, signature, last_seq, last_entry_hash
    sealed: dict[int, str] = {}  # seq -> entry_hash, for the optional ledger check
    to_check: list[dict[str, Any]] = []  # evidence bodies to fetch
    for key in sorted(digest_versions):
        versions = digest_versions[key]
        real = [v for v in versions if not v.delete_marker]
        if not real:
            report.problems.append(
                Problem("digest_missing", key, "only delete markers remain; the digest is gone")
            )
            previous = None
            continue
        if versions[-1].delete_marker:
            report.problems.append(
                Problem("digest_missing", key, f"deleted: a delete marker hides version {real[0].version_id}")
            )
        if len(real) > 1:
            report.problems.append(
                Problem(
                    "digest_altered",
                    key,
                    f"rewritten: {len(real)} versions; the original is {real[0].version_id}, newest {real[-1].version_id}",
                )
            )
        raw = s3.get_object(Bucket=bucket, Key=key, VersionId=real[0].version_id)["Body"].read()
        digest_ok = True
        try:
            doc = json.loads(raw)
            digest = doc["digest"]
            signature = base64.b64decode(doc["signature"])
            if digest.get("schema") != DIGEST_SCHEMA:
                raise ValueError(f"schema is {digest.get('schema')!r}")
        except (ValueError, KeyError, TypeError) as exc:
            report.problems.append(Problem("digest_altered", key, f"not a readable digest ({exc})"))
            previous = None
            continue
        if not verify_signature(
            public_key_pem, str(digest.get("signature_algorithm")), canonical_json(digest), signature
        ):
            detail = "signature does not verify with the given public key"
            if digest.get("public_key_fingerprint") != key_fp:
                detail += f" (digest was signed by key {str(digest.get('public_key_fingerprint'))[:16]}…, given {key_fp[:16]}…)"
            report.problems.append(Problem("bad_signature", key, detail))
            digest_ok = False

        entries = digest.get("entries", [])
        recomputed_ok = True
        leaves = []
        for e in entries:
            content = {k: e[k] for k in ("seq", "kind", "recorded_at", "body", "prev_hash")}
            if entry_hash(content) != e.get("entry_hash"):
                report.problems.append(
                    Problem(
                        "digest_altered", key, f"ledger entry {e.get('seq')}: content does not match its hash"
                    )
                )
                recomputed_ok = False
            leaves.append(canonical_json(content))
        if merkle_root(leaves).hex() != digest.get("merkle_root"):
            report.problems.append(
                Problem("digest_altered", key, "Merkle root does not match the digest's entries")
            )
            recomputed_ok = False
        digest_ok = digest_ok and recomputed_ok

        # The chain between digests and between entries.
        expected_first = previous["last_seq"] + 1 if previous else 1
        expected_prev_hash = previous["last_entry_hash"] if previous else GENESIS
        prev_ref = digest.get("previous")
        named = prev_ref.get("key") if isinstance(prev_ref, dict) else None
        if named is not None and named not in digest_versions:
            report.problems.append(
                Problem("digest_missing", named, f"named as previous by {key} but not in the bucket")
            )
            digest_ok = False
        elif previous is not None:
            if named != previous["key"]:
                report.problems.append(
                    Problem("chain_broken", key, f"names previous digest {named}, expected {previous['key']}")
                )
                digest_ok = False
            elif (
                prev_ref.get("sha256") != previous["sha256"]
                or prev_ref.get("signature") != previous["signature"]
            ):
                report.problems.append(
                    Problem(
                        "chain_broken", key, f"the hash or signature it records for {previous['key']} differs"
                    )
                )
                digest_ok = False
        elif named is None and report.digests_found and key != sorted(digest_versions)[0]:
            report.problems.append(
                Problem("chain_broken", key, "names no previous digest but is not the first")
            )
            digest_ok = False
        if entries and int(entries[0]["seq"]) != expected_first:
            report.problems.append(
                Problem(
                    "chain_broken",
                    key,
                    f"gap: starts at ledger entry {entries[0]['seq']}, expected {expected_first}"
                    + (f" after {previous['key']}" if previous else ""),
                )
            )
            digest_ok = False
        elif entries and entries[0].get("prev_hash") != expected_prev_hash:
            report.problems.append(
                Problem(
                    "chain_broken",
                    key,
                    f"ledger entry {entries[0]['seq']} does not link to the previous entry",
                )
            )
            digest_ok = False
        for a, b in itertools.pairwise(entries):
            if int(b["seq"]) != int(a["seq"]) + 1 or b.get("prev_hash") != a.get("entry_hash"):
                report.problems.append(
                    Problem("chain_broken", key, f"ledger entry {b['seq']} does not follow entry {a['seq']}")
                )
                digest_ok = False

        report.entries += len(entries)
        if digest_ok:
            report.digests_valid += 1
        tr = digest.get("time_range", {})
        if report.sealed_range["start"] is None:
            report.sealed_range["start"] = tr.get("start")
        report.sealed_range["end"] = tr.get("end")
        for e in entries:
            sealed[int(e["seq"])] = e["entry_hash"]
            if e.get("kind") == "evidence" and _overlaps(e["body"], start, end):
                to_check.append(e["body"])
        previous = {
            "key": key,
            "sha256": hashlib.sha256(raw).hexdigest(),
            "signature": doc["signature"],
            "last_seq": int(entries[-1]["seq"]) if entries else expected_first - 1,
            "last_entry_hash": entries[-1]["entry_hash"] if entries else expected_prev_hash,
        }

    _check_objects(s3, bucket, to_check, report, concurrency=concurrency)
    if ledger_entries is not None:
        _check_ledger(ledger_entries, sealed, report)
    return report


def _check_objects(
    s3: BaseClient, bucket: str, bodies: list[dict[str, Any]], report: Report, *, concurrency: int
) -> None:
    report.objects_requested = len(bodies)
    if not bodies:
        return
    object_versions = _versions(s3, bucket, "objects/")

    def check(body: dict[str, Any]) -> tuple[list[Problem], int]:
        key, version_id = body["key"], body["version_id"]
        problems: list[Problem] = []
        versions = object_versions.get(key, [])
        if versions and versions[-1].version_id != version_id:
            newest = versions[-1]
            if newest.delete_marker:
                problems.append(
                    Problem("missing", key, f"deleted: a delete marker hides recorded version {version_id}")
                )
            else:
                problems.append(
                    Problem(
                        "replaced", key, f"recorded version {version_id}, current version {newest.version_id}"
                    )
                )
        try:
            obj = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)
        except s3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            problems.append(Problem("missing", key, f"recorded version {version_id} cannot be read ({code})"))
            return problems, 0
        data = obj["Body"].read()
        found = hashlib.sha256(data).hexdigest()
        if found != body["sha256"]:
            problems.append(
                Problem("altered", key, f"sha256 is {found}, the ledger recorded {body['sha256']}")
            )
        mode = obj.get("ObjectLockMode")
        if mode != "COMPLIANCE":
            problems.append(Problem("lock", key, f"lock mode is {mode!r}, expected 'COMPLIANCE'"))
        retain = obj.get("ObjectLockRetainUntilDate")
        recorded = _iso_to_dt(body["retain_until"]) if body.get("retain_until") else None
        if recorded and (retain is None or retain.astimezone(UTC) < recorded):
            problems.append(
                Problem("lock", key, f"retain-until {retain} is earlier than recorded {recorded.isoformat()}")
            )
        return problems, len(data)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for problems, size in pool.map(check, bodies):
            report.problems.extend(problems)
            if not problems:
                report.objects_verified += 1
                report.bytes_verified += size


def _check_ledger(rows: Iterator[dict[str, Any]], sealed: dict[int, str], report: Report) -> None:
    report.ledger_checked = True
    prev = GENESIS
    expected = 1
    for row in rows:
        seq = int(row["seq"])
        content = {k: row[k] for k in ("seq", "kind", "recorded_at", "body", "prev_hash")}
        recomputed = entry_hash(content)
        where = f"ledger entry {seq}"
        if seq != expected:
            report.problems.append(
                Problem("ledger_altered", where, f"entries {expected}..{seq - 1} are missing")
            )
        if recomputed != row["entry_hash"]:
            report.problems.append(
                Problem("ledger_altered", where, "the database row no longer matches its own hash (edited)")
            )
        elif seq in sealed and sealed[seq] != row["entry_hash"]:
            report.problems.append(Problem("ledger_altered", where, "differs from the sealed digest"))
        if row["prev_hash"] != prev:
            report.problems.append(Problem("ledger_altered", where, "does not link to the previous entry"))
        prev = row["entry_hash"]
        expected = seq + 1
    missing_sealed = [s for s in sealed if s >= expected]
    if missing_sealed:
        report.problems.append(
            Problem(
                "ledger_altered",
                f"ledger entry {min(missing_sealed)}",
                "sealed in a digest but absent from the database",
            )
        )


def ledger_rows(conn_id: str = "attestly_db") -> Iterator[dict[str, Any]]:
    """The ledger database's rows for the optional cross-check (needs psycopg and the connection)."""
    from attestly.evidence import iso
    from attestly.ledger import Ledger

    with Ledger.connect(conn_id) as ledger:
        for e in ledger.entries():
            yield {
                "seq": e.seq,
                "kind": e.kind,
                "recorded_at": iso(e.recorded_at),
                "body": e.body,
                "prev_hash": e.prev_hash,
                "entry_hash": e.entry_hash,
            }
