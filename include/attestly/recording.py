"""Record evidence: store the item write-once in the bucket, then enter it in the ledger.

Crash-safe in either order of failure: a crash after the upload leaves an object the re-run finds
(same content, same key) and ledgers; nothing is ever ledgered that is not stored. Idempotent: the
same item is stored once and ledgered once.
"""

from __future__ import annotations

from typing import Any

from attestly.evidence import EvidenceItem, iso
from attestly.ledger import Ledger
from attestly.store import EvidenceStore


def evidence_summary(item: EvidenceItem) -> dict[str, Any]:
    """What the ledger keeps about an item (enough for reports and `evidence list`; no findings text)."""
    counts: dict[str, int] = {}
    for f in item.findings:
        counts[f.status] = counts.get(f.status, 0) + 1
    return {
        "collector": item.collector,
        "controls": sorted(set(item.controls)),
        "period_start": iso(item.period_start),
        "period_end": iso(item.period_end),
        "result": item.result,
        "retroactive": item.retroactive,
        "scope": dict(sorted(item.scope.items())),
        "findings": dict(sorted(counts.items())),
        "airflow": item.airflow.to_dict() if item.airflow else None,
    }


def _earlier_try(item: EvidenceItem, store: EvidenceStore) -> tuple[EvidenceItem, Any] | None:
    """The item as an earlier try of the same task made it, and its stored object, when that try stored
    it and was killed before ledgering it (a lost worker): that object is ledgered instead of a second
    copy of the same observation. Only looked for on a retry (try > 1): one HEAD per earlier try."""
    from dataclasses import replace

    a = item.airflow
    if a is None or a.try_number <= 1:
        return None
    for t in range(a.try_number - 1, 0, -1):
        candidate = replace(item, airflow=replace(a, try_number=t))
        try:
            store.s3.head_object(Bucket=store.bucket, Key=candidate.object_key)
        except store.s3.exceptions.ClientError:
            continue
        return candidate, store.put_evidence(candidate)  # confirms the stored bytes, writes nothing
    return None


def record_evidence(item: EvidenceItem, *, store: EvidenceStore, ledger: Ledger) -> dict[str, Any]:
    """Store and ledger ``item``; returns ``{sha256, key, version_id, seq, created, collector, result}``.

    An observation already in the ledger (same collector, scope, period, result, findings and data — from
    an earlier run or try) is not stored or ledgered again: the existing item is returned, so re-running
    an interval changes nothing. A crash between upload and ledger leaves an unledgered object that the
    same try's re-run finds and ledgers, and that a later try of the same task adopts (so a lost worker
    leaves one object per observation); a different run's re-upload is a distinct, unledgered object
    (harmless: verification covers what the ledger records).
    """
    observation = item.observation_sha256
    existing = ledger.find(f"evidence:{observation}")
    if existing is not None:
        b = existing.body
        return {
            "sha256": b["sha256"],
            "key": b["key"],
            "version_id": b["version_id"],
            "seq": existing.seq,
            "created": False,
            "collector": b["collector"],
            "result": b["result"],
        }
    earlier = _earlier_try(item, store)
    if earlier is not None:  # a killed earlier try stored this observation but never ledgered it
        item, stored = earlier
    else:
        stored = store.put_evidence(item)
    entry, created = ledger.record_evidence(
        item.sha256, stored, evidence_summary(item), observation=observation
    )
    return {
        "sha256": entry.body["sha256"],
        "key": entry.body["key"],
        "version_id": entry.body["version_id"],
        "seq": entry.seq,
        "created": created,
        "collector": item.collector,
        "result": item.result,
    }
