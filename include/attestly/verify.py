"""``attestly verify``: check the evidence bucket against its signed digests, from the bucket and a
public key alone (like ``aws cloudtrail validate-logs``).

What is checked:

1. every digest under ``digests/``: exactly one version (a rewrite is *digest altered*), not hidden by a
   delete marker (*digest missing*), its Ed25519/ECDSA signature under the given public key (*bad
   signature*), its Merkle root and entry hashes recomputed from its entries (*digest altered*);
2. the chain: each digest names the previous one by key, SHA-256 and signature and continues its entry
   sequence and entry hashes (*chain broken*);
3. every object a ledger entry of an authenticated digest records — evidence items, report files and
   packets, archive objects, disposal certificates (:func:`ledgered_objects`): the recorded version exists
   and re-hashes to the recorded SHA-256 (*altered* / *missing*), it is still the current version
   (*replaced by a newer version*; a delete marker on top is *missing*), its lock is COMPLIANCE and
   retain-until is not earlier than recorded;
4. optionally (``--ledger``), the ledger database against the digests: an entry edited in the database
   after it was sealed, and the unsealed tail's own chain.

Anyone who can write to the bucket can put anything under ``digests/``: a digest is parsed with limits
(size, nesting, no duplicate keys, no non-finite numbers) and checked for shape before anything in it is
used, and a malformed one is a named problem (*malformed*), never a crash. Entries of a digest whose
signature does not verify are reported and not used (their objects are not "verified" on their word).

Objects are fetched concurrently, hashed as they stream: one GET per object of the key's current version,
which is the recorded one unless the object was replaced or deleted; only then is that key's version
listing read (to name what hides the recorded version) and the recorded version read by its id. No
listing of the whole bucket is held in memory (only the digests' own). Imports nothing from Airflow; the
database check imports psycopg only when asked for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attestly.evidence import CanonicalError, canonical_for
from attestly.ledger import DIGEST_PREFIX, DIGEST_SCHEMAS, GENESIS, entry_canonical, entry_hash
from attestly.merkle import merkle_root
from attestly.signing import fingerprint, verify_signature

if TYPE_CHECKING:
    from botocore.client import BaseClient

#: A digest larger than this is not read (malformed); a real one holds one seal's entries.
MAX_DIGEST_BYTES = 64 * 1024 * 1024
#: Nesting levels a digest may have (the evidence bodies inside entries included).
MAX_DIGEST_DEPTH = 64
_HEX64 = re.compile(r"[0-9a-f]{64}")

KINDS = (
    "malformed",
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
    "malformed": "MALFORMED",
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
    entries_untrusted: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
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
                "evidence_objects": self.by_kind.get("evidence", {}).get("requested", 0),
                "evidence_objects_verified": self.by_kind.get("evidence", {}).get("verified", 0),
                "ledgered_objects": self.objects_requested,
                "ledgered_objects_verified": self.objects_verified,
                "objects_by_kind": self.by_kind,
                "entries_untrusted": self.entries_untrusted,
                "bytes_verified": self.bytes_verified,
                "sealed_range": self.sealed_range,
            },
            "ledger_checked": self.ledger_checked,
            "problems": [p.to_dict() for p in self.problems],
        }

    def _kinds_text(self) -> str:
        return (
            ", ".join(f"{k} {v['verified']}/{v['requested']}" for k, v in sorted(self.by_kind.items()))
            or "none"
        )

    def summary_lines(self) -> list[str]:
        lines = [str(p) for p in self.problems]
        lines.append(
            f"{'FAILED' if self.problems else 'OK'}: s3://{self.bucket} — {self.digests_valid}/{self.digests_found} "
            f"digests valid, {self.entries} ledger entries, {self.objects_verified}/{self.objects_requested} "
            f"ledgered objects verified ({self._kinds_text()}; {self.bytes_verified} bytes); sealed "
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


def _overlaps_range(
    p_start: datetime | None, p_end: datetime | None, start: datetime | None, end: datetime | None
) -> bool:
    if start and p_end and p_end <= start:
        return False
    return not (end and p_start and p_start >= end)


def _overlaps(period: dict[str, Any], start: datetime | None, end: datetime | None) -> bool:
    p_start = _iso_to_dt(period["period_start"]) if period.get("period_start") else None
    p_end = _iso_to_dt(period["period_end"]) if period.get("period_end") else None
    return _overlaps_range(p_start, p_end, start, end)


# ------------------------------------------------------------------------------------ parsing digests


class MalformedDigest(ValueError):
    """A digest object that is not a well-formed digest; the message says where and why."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]!r} is out of range")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k[:40]!r}")
        out[k] = v
    return out


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
    return False


def _expect(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise MalformedDigest(f"{where}: {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def parse_digest(raw: bytes) -> tuple[dict[str, Any], bytes, str]:
    """``(digest, signature bytes, signature text)`` from a digest object's bytes, or
    :class:`MalformedDigest` naming the first thing wrong. Bounded: size, nesting, numbers, keys."""
    if len(raw) > MAX_DIGEST_BYTES:
        raise MalformedDigest(f"{len(raw):,} bytes; a digest may be at most {MAX_DIGEST_BYTES:,}")
    try:
        doc = json.loads(
            raw,
            parse_float=_finite_float,
            parse_constant=_no_constants,
            object_pairs_hook=_no_duplicate_keys,
        )
    except RecursionError:
        raise MalformedDigest(f"not readable JSON: nested deeper than {MAX_DIGEST_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedDigest(f"not readable JSON ({str(exc)[:200]})") from None
    if _too_deep(doc, MAX_DIGEST_DEPTH):
        raise MalformedDigest(f"nested deeper than {MAX_DIGEST_DEPTH} levels")
    _expect(isinstance(doc, dict), "document", "not a JSON object")
    digest, sig_text = doc.get("digest"), doc.get("signature")
    _expect(isinstance(digest, dict), "digest", "missing or not an object")
    _expect(isinstance(sig_text, str) and sig_text != "", "signature", "missing or not a string")
    try:
        signature = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedDigest("signature: not base64") from None
    _expect(
        isinstance(digest.get("schema"), str) and digest["schema"] in DIGEST_SCHEMAS,
        "digest.schema",
        f"is {str(digest.get('schema'))[:60]!r}, expected one of {sorted(DIGEST_SCHEMAS)}",
    )
    for name in ("signature_algorithm", "merkle_root"):
        _expect(isinstance(digest.get(name), str), f"digest.{name}", "missing or not a string")
    _expect(_opt_str(digest.get("public_key_fingerprint")), "digest.public_key_fingerprint", "not a string")
    prev = digest.get("previous")
    _expect(prev is None or isinstance(prev, dict), "digest.previous", "not an object")
    if isinstance(prev, dict):
        for name in ("key", "sha256", "signature"):
            _expect(_opt_str(prev.get(name)), f"digest.previous.{name}", "not a string")
    tr = digest.get("time_range", {})
    _expect(isinstance(tr, dict), "digest.time_range", "not an object")
    _expect(
        _opt_str(tr.get("start")) and _opt_str(tr.get("end")), "digest.time_range", "start/end not strings"
    )
    entries = digest.get("entries")
    _expect(isinstance(entries, list), "digest.entries", "missing or not a list")
    for i, e in enumerate(entries):
        where = f"digest.entries[{i}]"
        _expect(isinstance(e, dict), where, "not an object")
        _expect(_is_int(e.get("seq")) and e["seq"] >= 1, f"{where}.seq", "not a positive integer")
        _expect(isinstance(e.get("kind"), str), f"{where}.kind", "missing or not a string")
        _expect(isinstance(e.get("recorded_at"), str), f"{where}.recorded_at", "missing or not a string")
        _expect(isinstance(e.get("body"), dict), f"{where}.body", "missing or not an object")
        for name in ("prev_hash", "entry_hash"):
            _expect(
                isinstance(e.get(name), str) and _HEX64.fullmatch(e[name]) is not None,
                f"{where}.{name}",
                "not 64 lower-case hex digits",
            )
        if "format" in e:
            _expect(_is_int(e["format"]) and e["format"] == 2, f"{where}.format", "is present but not 2")
    return digest, signature, sig_text


_CONTENT_KEYS = ("seq", "kind", "recorded_at", "body", "prev_hash", "format")


def entry_content(e: dict[str, Any]) -> dict[str, Any]:
    """What an entry's hash covers: the entry without ``entry_hash`` (``format`` only when present)."""
    return {k: e[k] for k in _CONTENT_KEYS if k in e}


# ------------------------------------------------------------------------------------ ledgered objects


class _SeenRefs:
    """The (key, version) pairs already checked, in 16 bytes each (a BLAKE2b-128 of the pair), so a
    verify's memory stays flat in the number of objects: sorted NumPy runs, merged when a newer run is at
    least half the size of the one before it (so there are at most log2(n) runs)."""

    def __init__(self) -> None:
        self._runs: list[Any] = []

    @staticmethod
    def _id(key: str, version_id: str) -> bytes:
        return hashlib.blake2b(f"{key}\x00{version_id}".encode(), digest_size=16).digest()

    def new(self, refs: list[ObjectRef]) -> list[ObjectRef]:
        """The refs not seen before (the first of each pair, in order); all of them are then seen."""
        import numpy as np

        if not refs:
            return []
        ids = np.array([self._id(r.key, r.version_id) for r in refs], dtype="S16")
        seen = np.zeros(len(refs), dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, ids), len(run) - 1)
            seen |= run[at] == ids
        out: list[ObjectRef] = []
        fresh: set[bytes] = set()
        for r, ident, old in zip(refs, ids.tolist(), seen.tolist(), strict=True):
            if old or ident in fresh:
                continue
            fresh.add(ident)
            out.append(r)
        if fresh:
            self._runs.append(np.sort(np.array(list(fresh), dtype="S16")))
            while len(self._runs) > 1 and len(self._runs[-1]) * 2 >= len(self._runs[-2]):
                newer = self._runs.pop()
                self._runs[-1] = np.sort(np.concatenate([self._runs[-1], newer]))
        return out


@dataclass(frozen=True)
class ObjectRef:
    """An object a ledger entry records: where, which version, its SHA-256 and the lock it must have."""

    kind: str  # evidence | attachment | report | archive | disposal | scan
    seq: int
    key: str
    version_id: str
    sha256: str
    retain_until: str | None
    bucket: str | None = None


def _ref(kind: str, seq: int, d: Any, retain_until: Any = None) -> ObjectRef:
    where = f"ledger entry {seq} ({kind})"
    if not isinstance(d, dict):
        raise MalformedDigest(f"{where}: an object reference is not an object")
    for name in ("key", "version_id", "sha256"):
        if not isinstance(d.get(name), str) or not d[name]:
            raise MalformedDigest(f"{where}: object reference lacks {name!r}")
    if _HEX64.fullmatch(d["sha256"]) is None:
        raise MalformedDigest(f"{where}: sha256 of {d['key'][:80]} is not 64 hex digits")
    lock = d.get("retain_until", retain_until)
    if lock is not None and not isinstance(lock, str):
        raise MalformedDigest(f"{where}: retain_until of {d['key'][:80]} is not a string")
    bucket = d.get("bucket")
    return ObjectRef(
        kind, seq, d["key"], d["version_id"], d["sha256"], lock, bucket if isinstance(bucket, str) else None
    )


def _month_range(month: Any) -> tuple[datetime | None, datetime | None]:
    if not isinstance(month, str) or not re.fullmatch(r"\d{4}-\d{2}", month):
        return None, None
    y, m = int(month[:4]), int(month[5:])
    if not 1 <= m <= 12:
        return None, None
    start = datetime(y, m, 1, tzinfo=UTC)
    return start, datetime(y + m // 12, m % 12 + 1, 1, tzinfo=UTC)


def _day_range(period: Any) -> tuple[datetime | None, datetime | None]:
    from datetime import date, timedelta

    if not isinstance(period, dict):
        return None, None
    try:
        start = date.fromisoformat(str(period.get("start")))
        end = date.fromisoformat(str(period.get("end")))
    except ValueError:
        return None, None
    return (
        datetime(start.year, start.month, start.day, tzinfo=UTC),
        datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1),
    )


def ledgered_objects(entry: dict[str, Any], start: datetime | None, end: datetime | None) -> list[ObjectRef]:
    """The objects a (shape-checked) ledger entry records, when its period overlaps ``[start, end)``:

    - ``evidence``: the item itself (``body``: key, version_id, sha256, retain_until; period_start/end)
      and, for manual evidence, every attached file (``body.attachments[]``, kind ``attachment``);
    - ``report``: every stored file (``body.objects[]``) and the packet (``body.packet``), locked until
      ``body.retain_until``; period ``body.period`` (dates, inclusive);
    - ``archive``: the encrypted archive object (``body.manifest.object``, locked until its
      retain_until) and the manifest's evidence item (``body.evidence``); period ``manifest.batch.month``;
    - ``disposal``: the certificate's evidence item (``body.evidence``), whatever the range;
    - ``scan``: a scanner's raw output (``body.raw``, locked until ``body.retain_until``), whatever the
      range;
    - ``policy``: the policy bundle in force (``body``: key, version_id, sha256, retain_until), whatever
      the range.

    Kinds that record no stored object give none, deliberately: ``run``, ``hold``, ``hold_release``,
    ``erasure``, ``note``, ``refusal``, and the exceptions lifecycle and samples (``exception_response``,
    ``exception_accept``, ``exception_close``, ``sample``: their evidence items are ledgered on their own).

    Raises :class:`MalformedDigest` when a reference lacks a field or has the wrong type."""
    kind, seq, body = entry["kind"], int(entry["seq"]), entry["body"]
    refs: list[ObjectRef] = []
    if kind == "evidence":
        try:
            in_range = _overlaps(body, start, end)
        except (ValueError, TypeError, AttributeError):
            raise MalformedDigest(
                f"ledger entry {seq} (evidence): period_start/period_end are not times"
            ) from None
        if in_range:
            refs.append(_ref(kind, seq, body))
            # Manual evidence: the attached files (``body.attachments[]``), locked like the item.
            attachments = body.get("attachments", [])
            if not isinstance(attachments, list):
                raise MalformedDigest(f"ledger entry {seq} (evidence): attachments is not a list")
            refs.extend(_ref("attachment", seq, a) for a in attachments)
    elif kind == "report":
        p_start, p_end = _day_range(body.get("period"))
        if _overlaps_range(p_start, p_end, start, end):
            objects = body.get("objects", [])
            if not isinstance(objects, list):
                raise MalformedDigest(f"ledger entry {seq} (report): objects is not a list")
            lock = body.get("retain_until")
            refs.extend(_ref(kind, seq, o, lock) for o in objects)
            refs.append(_ref(kind, seq, body.get("packet"), lock))
    elif kind == "archive":
        manifest = body.get("manifest")
        if not isinstance(manifest, dict):
            raise MalformedDigest(f"ledger entry {seq} (archive): manifest is not an object")
        raw_batch = manifest.get("batch")
        batch: dict[str, Any] = raw_batch if isinstance(raw_batch, dict) else {}
        p_start, p_end = _month_range(batch.get("month"))
        if _overlaps_range(p_start, p_end, start, end):
            refs.append(_ref(kind, seq, manifest.get("object"), batch.get("retain_until")))
            refs.append(_ref("evidence", seq, body.get("evidence")))
    elif kind == "disposal" and "evidence" in body:
        refs.append(_ref("evidence", seq, body.get("evidence")))
    elif kind == "scan":
        refs.append(_ref(kind, seq, body.get("raw"), body.get("retain_until")))
    elif kind == "policy":
        refs.append(_ref(kind, seq, body))
    return refs


# ------------------------------------------------------------------------------------------- verify


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
    with seq, kind, recorded_at (ISO), body, prev_hash, entry_hash. Never raises for bucket content:
    everything wrong in it is a :class:`Problem` in the report."""
    report = Report(
        bucket=bucket,
        requested={"from": start.isoformat() if start else None, "to": end.isoformat() if end else None},
    )
    key_fp = fingerprint(public_key_pem)
    digest_versions = _versions(s3, bucket, DIGEST_PREFIX)
    report.digests_found = len(digest_versions)
    ordered = sorted(digest_versions)

    state: dict[str, Any] = {"previous": None}  # key, sha256, signature, last_seq, last_entry_hash
    # seq -> entry_hash, kept only for the optional ledger check (the one thing that grows with the ledger).
    sealed: dict[int, str] | None = {} if ledger_entries is not None else None
    # Each digest's objects are checked as soon as it is read (a digest is bounded), never a first
    # reference twice; their problems are reported after the digests', in first-reference order.
    seen = _SeenRefs()
    object_problems: list[Problem] = []
    pool = ThreadPoolExecutor(max_workers=concurrency)
    try:
        for key in ordered:
            found: list[ObjectRef] = []
            _verify_one_digest(
                s3,
                bucket,
                key,
                digest_versions[key],
                ordered,
                key_fp,
                public_key_pem,
                start,
                end,
                report,
                state,
                sealed,
                found,
            )
            _check_objects(s3, bucket, seen.new(found), report, object_problems, pool=pool)
    finally:
        pool.shutdown(wait=True)
    report.problems.extend(object_problems)
    if ledger_entries is not None and sealed is not None:
        _check_ledger(ledger_entries, sealed, report)
    return report


def _verify_one_digest(
    s3: BaseClient,
    bucket: str,
    key: str,
    versions: list[_Version],
    ordered: list[str],
    key_fp: str,
    public_key_pem: bytes,
    start: datetime | None,
    end: datetime | None,
    report: Report,
    state: dict[str, Any],
    sealed: dict[int, str] | None,
    found: list[ObjectRef],
) -> None:
    """One digest, its malformations reported (never raised); ``found`` receives the objects its
    entries record, only when the whole digest was read."""
    try:
        _verify_digest(
            s3,
            bucket,
            key,
            versions,
            ordered,
            key_fp,
            public_key_pem,
            start,
            end,
            report,
            state,
            sealed,
            found,
        )
        return
    except MalformedDigest as exc:
        report.problems.append(Problem("malformed", key, str(exc)))
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        OverflowError,
        RecursionError,
    ) as exc:
        # Shape checks should catch everything; this keeps a report (and exit 1) if they do not.
        report.problems.append(
            Problem("malformed", key, f"unexpected content ({type(exc).__name__}: {str(exc)[:200]})")
        )
    state["previous"] = None
    found.clear()


def _verify_digest(
    s3: BaseClient,
    bucket: str,
    key: str,
    versions: list[_Version],
    ordered: list[str],
    key_fp: str,
    public_key_pem: bytes,
    start: datetime | None,
    end: datetime | None,
    report: Report,
    state: dict[str, Any],
    sealed: dict[int, str] | None,
    found: list[ObjectRef],
) -> None:
    previous: dict[str, Any] | None = state["previous"]
    real = [v for v in versions if not v.delete_marker]
    if not real:
        report.problems.append(
            Problem("digest_missing", key, "only delete markers remain; the digest is gone")
        )
        state["previous"] = None
        return
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
    body = s3.get_object(Bucket=bucket, Key=key, VersionId=real[0].version_id)["Body"]
    try:
        raw = body.read(MAX_DIGEST_BYTES + 1)
    finally:
        body.close()
    digest, signature, sig_text = parse_digest(raw)
    digest_ok = True
    try:
        signed = canonical_for(DIGEST_SCHEMAS[digest["schema"]], digest)
    except CanonicalError as exc:
        raise MalformedDigest(f"digest ({digest['schema']}): {exc}") from None
    authentic = verify_signature(public_key_pem, str(digest["signature_algorithm"]), signed, signature)
    if not authentic:
        detail = "signature does not verify with the given public key"
        if digest.get("public_key_fingerprint") != key_fp:
            detail += f" (digest was signed by key {str(digest.get('public_key_fingerprint'))[:16]}…, given {key_fp[:16]}…)"
        report.problems.append(Problem("bad_signature", key, detail + "; its entries are not used"))
        digest_ok = False

    entries = digest["entries"]
    recomputed_ok = True
    leaves = []
    for e in entries:
        content = entry_content(e)
        try:
            canonical = entry_canonical(content)
        except CanonicalError as exc:
            raise MalformedDigest(f"ledger entry {e['seq']}: {exc}") from None
        if hashlib.sha256(canonical).hexdigest() != e["entry_hash"]:
            report.problems.append(
                Problem("digest_altered", key, f"ledger entry {e['seq']}: content does not match its hash")
            )
            recomputed_ok = False
        leaves.append(canonical)
    if merkle_root(leaves).hex() != digest["merkle_root"]:
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
    if named is not None and named not in ordered:
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
        elif not isinstance(prev_ref, dict) or (
            prev_ref.get("sha256") != previous["sha256"] or prev_ref.get("signature") != previous["signature"]
        ):
            report.problems.append(
                Problem(
                    "chain_broken", key, f"the hash or signature it records for {previous['key']} differs"
                )
            )
            digest_ok = False
    elif named is None and key != ordered[0]:
        report.problems.append(Problem("chain_broken", key, "names no previous digest but is not the first"))
        digest_ok = False
    if entries and entries[0]["seq"] != expected_first:
        report.problems.append(
            Problem(
                "chain_broken",
                key,
                f"gap: starts at ledger entry {entries[0]['seq']}, expected {expected_first}"
                + (f" after {previous['key']}" if previous else ""),
            )
        )
        digest_ok = False
    elif entries and entries[0]["prev_hash"] != expected_prev_hash:
        report.problems.append(
            Problem(
                "chain_broken", key, f"ledger entry {entries[0]['seq']} does not link to the previous entry"
            )
        )
        digest_ok = False
    for a, b in itertools.pairwise(entries):
        if b["seq"] != a["seq"] + 1 or b["prev_hash"] != a["entry_hash"]:
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
    if authentic and recomputed_ok:
        for e in entries:
            objs = ledgered_objects(e, start, end)
            found.extend(objs)
            if objs and e["kind"] == "evidence" and e["body"].get("collector") == "manual":
                # A manual statement is also signed on its own (over its item's hash) by the same key.
                from attestly.manual import verify_statement_signature

                why = verify_statement_signature(e["body"], public_key_pem)
                if why is not None:
                    report.problems.append(
                        Problem(
                            "bad_signature",
                            str(e["body"].get("key", ""))[:200],
                            f"ledger entry {e['seq']}: {why}",
                        )
                    )
        if sealed is not None:
            for e in entries:
                sealed[e["seq"]] = e["entry_hash"]
    else:
        report.entries_untrusted += len(entries)
    state["previous"] = {
        "key": key,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "signature": sig_text,
        "last_seq": entries[-1]["seq"] if entries else expected_first - 1,
        "last_entry_hash": entries[-1]["entry_hash"] if entries else expected_prev_hash,
    }


def _check_objects(
    s3: BaseClient,
    bucket: str,
    refs: list[ObjectRef],
    report: Report,
    problems_out: list[Problem],
    *,
    pool: ThreadPoolExecutor,
) -> None:
    report.objects_requested += len(refs)
    for r in refs:
        report.by_kind.setdefault(r.kind, {"requested": 0, "verified": 0})["requested"] += 1
    if not refs:
        return

    def current_version_problems(b: str, key: str, version_id: str) -> list[Problem]:
        """The recorded version must still be the key's current one (from the key's own version listing,
        oldest first; an empty listing says nothing here: the read below reports the object missing)."""
        versions = _versions(s3, b, key).get(key, [])
        if versions and versions[-1].version_id != version_id:
            newest = versions[-1]
            if newest.delete_marker:
                return [
                    Problem("missing", key, f"deleted: a delete marker hides recorded version {version_id}")
                ]
            return [
                Problem(
                    "replaced", key, f"recorded version {version_id}, current version {newest.version_id}"
                )
            ]
        return []

    def check(ref: ObjectRef) -> tuple[list[Problem], int]:
        b = ref.bucket or bucket
        key, version_id = ref.key, ref.version_id
        problems: list[Problem] = []
        # One request in the usual case: the key's current version, which is the recorded one. Anything
        # else (replaced, deleted, unreadable without a version id) is decided from the key's version
        # listing, as before, and the recorded version is then read by its id. No listing of the whole
        # prefix is held in memory.
        obj = None
        try:
            current = s3.get_object(Bucket=b, Key=key)
        except s3.exceptions.ClientError:
            current = None
        if current is not None and current.get("VersionId") == version_id:
            obj = current
        else:
            if current is not None:
                current["Body"].close()
            problems += current_version_problems(b, key, version_id)
        if obj is None:
            try:
                obj = s3.get_object(Bucket=b, Key=key, VersionId=version_id)
            except s3.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                problems.append(
                    Problem("missing", key, f"recorded version {version_id} cannot be read ({code})")
                )
                return problems, 0
        h = hashlib.sha256()
        size = 0
        body = obj["Body"]
        try:
            for chunk in body.iter_chunks(chunk_size=1024 * 1024):
                h.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        found = h.hexdigest()
        if found != ref.sha256:
            problems.append(Problem("altered", key, f"sha256 is {found}, the ledger recorded {ref.sha256}"))
        mode = obj.get("ObjectLockMode")
        if mode != "COMPLIANCE":
            problems.append(Problem("lock", key, f"lock mode is {mode!r}, expected 'COMPLIANCE'"))
        retain = obj.get("ObjectLockRetainUntilDate")
        try:
            recorded = _iso_to_dt(ref.retain_until) if ref.retain_until else None
        except ValueError:
            problems.append(
                Problem(
                    "malformed",
                    key,
                    f"ledger entry {ref.seq} records retain-until {str(ref.retain_until)[:40]!r}",
                )
            )
            recorded = None
        if recorded and (retain is None or retain.astimezone(UTC) < recorded.astimezone(UTC)):
            problems.append(
                Problem("lock", key, f"retain-until {retain} is earlier than recorded {recorded.isoformat()}")
            )
        return problems, size

    for ref, (problems, size) in zip(refs, pool.map(check, refs), strict=True):
        problems_out.extend(problems)
        if not problems:
            report.objects_verified += 1
            report.by_kind[ref.kind]["verified"] += 1
            report.bytes_verified += size


def _check_ledger(rows: Iterator[dict[str, Any]], sealed: dict[int, str], report: Report) -> None:
    report.ledger_checked = True
    prev = GENESIS
    expected = 1
    for row in rows:
        seq = int(row["seq"])
        content = entry_content(row)
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
    from attestly.ledger import Ledger

    with Ledger.connect(conn_id) as ledger:
        for e in ledger.entries():
            yield {**e.content(), "entry_hash": e.entry_hash}
