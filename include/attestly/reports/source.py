"""Read what a report needs: from the ledger (evidence and run records, digests) and from the bucket
(the evidence objects' findings, the digest objects). Nothing else: any past period can be re-rendered.

Evidence objects are read by the key and version id the ledger recorded and re-hashed; an object that
does not match its ledgered SHA-256 is reported as an ``error`` finding (never silently used).
Only whitelisted fields of an object are kept (see :mod:`attestly.reports.sanitize`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from attestly.evidence import EvidenceError, parse_item, sha256_hex
from attestly.reports.model import (
    EVENT_COLLECTORS,
    MANUAL_COLLECTOR,
    MAX_CADENCE_DAYS,
    PERIODIC_COLLECTORS,
    EvidenceIndex,
    EvidenceRecord,
    Period,
    RunRecord,
)
from attestly.reports.sanitize import clean_text

if TYPE_CHECKING:
    from attestly.ledger import Ledger
    from attestly.store import EvidenceStore

FINDING_FIELDS = ("resource", "status", "detail")


@dataclass(frozen=True)
class FindingRow:
    """A whitelisted, cleaned finding of an evidence object."""

    resource: str
    status: str
    detail: str


@dataclass(frozen=True)
class DigestRow:
    """A sealed digest: which ledger entries it covers and where it is in the bucket."""

    key: str
    version_id: str
    sha256: str
    first_seq: int
    last_seq: int

    def covers(self, seq: int) -> bool:
        return self.first_seq <= seq <= self.last_seq


@dataclass
class Snapshot:
    """The ledger's view of one period: the evidence index, and every digest row."""

    period: Period
    index: EvidenceIndex
    digests: list[DigestRow] = field(default_factory=list)
    #: Every policy bundle ledgered (kind ``policy``), by SHA-256: ``{key, version_id, sha256, seq}``.
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Exception responses, acceptances and closures (:mod:`attestly.deviations`), by exception id.
    exception_states: dict[str, Any] = field(default_factory=dict)

    def digests_covering(self, seqs: Iterable[int]) -> list[DigestRow]:
        wanted = set(seqs)
        return [d for d in self.digests if any(d.covers(s) for s in wanted)]

    def unsealed(self, seqs: Iterable[int]) -> list[int]:
        return sorted(s for s in set(seqs) if not any(d.covers(s) for d in self.digests))


def load_snapshot(*, ledger: Ledger, period: Period, cadences: Mapping[str, str] | None = None) -> Snapshot:
    """Evidence items that count for ``period`` (see :class:`EvidenceIndex`; ``cadences`` are the manual
    controls' — ``Policy.cadences()``), every run record, every digest row. Reads the ledger only."""
    from datetime import timedelta

    # Manual and periodic items count until their cadence runs out: look back far enough for them.
    lookback = period.start - timedelta(days=MAX_CADENCE_DAYS)
    runs: list[RunRecord] = []
    for e in ledger.entries(kind="run"):
        run = RunRecord.from_body(seq=e.seq, body=e.body)
        if run is not None:
            runs.append(run)
    evidence: list[EvidenceRecord] = []
    for e in ledger.entries(kind="evidence"):
        rec = EvidenceRecord.from_body(seq=e.seq, recorded_at=e.recorded_at, body=e.body)
        if rec.collector == MANUAL_COLLECTOR or rec.collector in PERIODIC_COLLECTORS:
            if rec.period_start.date() <= period.end and rec.last_day() >= lookback:
                evidence.append(rec)
        elif rec.collector in EVENT_COLLECTORS or rec.overlapped_days(period):
            evidence.append(rec)
    index = EvidenceIndex(period=period, evidence=evidence, runs=runs, cadences=cadences)
    digests = [
        DigestRow(
            key=str(r["key"]),
            version_id=str(r["version_id"]),
            sha256=str(r["sha256"]),
            first_seq=int(r["first_seq"]),
            last_seq=int(r["last_seq"]),
        )
        for r in ledger.digests()
    ]
    policies = {
        str(e.body["sha256"]): {
            "key": str(e.body["key"]),
            "version_id": str(e.body.get("version_id") or ""),
            "sha256": str(e.body["sha256"]),
            "seq": e.seq,
        }
        for e in ledger.entries(kind="policy")
    }
    from attestly.deviations import load_states

    return Snapshot(
        period=period,
        index=index,
        digests=digests,
        policies=policies,
        exception_states=load_states(ledger),
    )


class ObjectReader:
    """Reads evidence and digest objects from the bucket (concurrently), checks them, caches them."""

    def __init__(self, store: EvidenceStore, *, concurrency: int = 8) -> None:
        self.store = store
        self.concurrency = concurrency
        self._findings: dict[int, list[FindingRow]] = {}
        self._digests: dict[str, bytes] = {}
        self._raw: dict[str, bytes] = {}  # checked object bytes by SHA-256 (for the packet)

    def findings(self, records: Sequence[EvidenceRecord]) -> dict[int, list[FindingRow]]:
        """Whitelisted findings of each record's object, by ledger seq."""
        todo = [r for r in records if r.seq not in self._findings]
        if todo:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                for rec, rows in zip(todo, pool.map(self._read_findings, todo), strict=True):
                    self._findings[rec.seq] = rows
        return {r.seq: self._findings[r.seq] for r in records}

    def _read_findings(self, rec: EvidenceRecord) -> list[FindingRow]:
        try:
            raw = self.store.get_bytes(rec.key, rec.version_id or None)
        except Exception as exc:  # botocore ClientError and friends: report, never crash the report
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            return [
                FindingRow(rec.key, "error", f"evidence object cannot be read ({code}); run attestly verify")
            ]
        if sha256_hex(raw) != rec.sha256:
            return [
                FindingRow(
                    rec.key,
                    "error",
                    "stored object does not match its ledgered SHA-256; run attestly verify",
                )
            ]
        self._raw[rec.sha256] = raw
        try:
            item = parse_item(raw)
        except EvidenceError as exc:
            return [FindingRow(rec.key, "error", clean_text(str(exc)))]
        rows = []
        for f in item.get("findings") or []:
            if isinstance(f, dict):
                rows.append(
                    FindingRow(
                        resource=clean_text(f.get("resource"), limit=200),
                        status=clean_text(f.get("status"), limit=20),
                        detail=clean_text(f.get("detail")),
                    )
                )
        return rows

    def objects(self, refs: Sequence[Mapping[str, Any]]) -> dict[str, bytes]:
        """The bytes of each object ``{key, version_id, sha256}`` that can be read and matches its SHA-256,
        by key (read concurrently; what ``findings`` already read is not read again). An object that is
        missing or altered is left out: the packet's verifier then names it, as ``attestly verify`` does."""

        def read(ref: Mapping[str, Any]) -> tuple[str, bytes | None]:
            sha = str(ref["sha256"])
            raw = self._raw.get(sha)
            if raw is None:
                try:
                    raw = self.store.get_bytes(str(ref["key"]), str(ref.get("version_id") or "") or None)
                except Exception:  # botocore ClientError and friends: left out, the verifier reports it
                    return str(ref["key"]), None
                if sha256_hex(raw) != sha:
                    return str(ref["key"]), None
            return str(ref["key"]), raw

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return {key: raw for key, raw in pool.map(read, refs) if raw is not None}

    def digest(self, row: DigestRow) -> bytes:
        """The digest object's bytes (checked against the ledgered SHA-256)."""
        if row.key not in self._digests:
            raw = self.store.get_bytes(row.key, row.version_id or None)
            if sha256_hex(raw) != row.sha256:
                raise DigestMismatch(
                    f"digest {row.key} (version {row.version_id}) does not match its ledgered SHA-256 "
                    f"{row.sha256}; run attestly verify"
                )
            self._digests[row.key] = raw
        return self._digests[row.key]

    def digest_info(self, row: DigestRow) -> dict[str, Any]:
        """``{key, version_id, sha256, first_seq, last_seq, time_range, public_key_fingerprint}``."""
        body = json.loads(self.digest(row))
        digest = body.get("digest", {}) if isinstance(body, dict) else {}
        tr = digest.get("time_range") or {}
        return {
            "key": row.key,
            "version_id": row.version_id,
            "sha256": row.sha256,
            "first_seq": row.first_seq,
            "last_seq": row.last_seq,
            "time_range": {"start": str(tr.get("start", "")), "end": str(tr.get("end", ""))},
            "public_key_fingerprint": str(digest.get("public_key_fingerprint", "")),
        }


class DigestMismatch(RuntimeError):
    """A digest object in the bucket is not the one the ledger recorded (tampering): no packet is made."""
