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


def record_evidence(item: EvidenceItem, *, store: EvidenceStore, ledger: Ledger) -> dict[str, Any]:
    """Store and ledger ``item``; returns ``{sha256, key, version_id, seq, created}``."""
    stored = store.put_evidence(item)
    entry, created = ledger.record_evidence(item.sha256, stored, evidence_summary(item))
    return {
        "sha256": item.sha256,
        "key": stored.key,
        "version_id": stored.version_id,
        "seq": entry.seq,
        "created": created,
        "collector": item.collector,
        "result": item.result,
    }
