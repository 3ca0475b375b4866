"""Record evidence: store the item write-once in the bucket, then enter it in the ledger.

Crash-safe in either order of failure: a crash after the upload leaves an object the re-run finds
(same content, same key) and ledgers; nothing is ever ledgered that is not stored. Idempotent: the
same item is stored once and ledgered once.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from attestly.evidence import EvidenceItem, iso
from attestly.ledger import Ledger
from attestly.store import EvidenceStore


def evidence_summary(item: EvidenceItem) -> dict[str, Any]:
    """What the ledger keeps about an item (enough for reports and `evidence list`; no findings text).
    v2 provenance, when the item has it: ``observed_at``, ``population``, ``method`` (collector, version,
    tool, parameters — the operations and queries stay in the object) and ``policy``."""
    counts: dict[str, int] = {}
    for f in item.findings:
        counts[f.status] = counts.get(f.status, 0) + 1
    extra: dict[str, Any] = {}
    if item.version == 2:
        if item.observed_at is not None:
            extra["observed_at"] = iso(item.observed_at)
        if item.population is not None:
            extra["population"] = item.population.to_dict()
        if item.method is not None:
            m = item.method.to_dict()
            extra["method"] = {k: m[k] for k in ("collector", "version", "parameters", "tool") if k in m}
        if item.policy is not None:
            extra["policy"] = item.policy
    return {
        **extra,
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


_tries_lock = threading.Lock()
_tries_noted: set[tuple[str, str, str, int, datetime]] = set()


def _note_try(item: EvidenceItem, ledger: Ledger) -> None:
    """Write down when this try observed (``observation_tries``) before it stores anything, once per
    process: a later try then knows the ``observed_at`` of the items a killed try may have stored."""
    a = item.airflow
    if a is None or item.observed_at is None:
        return
    key = (a.dag_id, a.run_id, a.task_id, a.try_number, item.observed_at)
    with _tries_lock:
        if key in _tries_noted:
            return
    ledger.conn.execute(
        "INSERT INTO attestly.observation_tries (dag_id, run_id, task_id, try_number, observed_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        key,
    )
    ledger.conn.commit()
    with _tries_lock:
        _tries_noted.add(key)


def _earlier_observations(item: EvidenceItem, ledger: Ledger) -> list[tuple[int, datetime | None]]:
    """``(try_number, observed_at)`` of the earlier tries of the item's task, latest first."""
    a = item.airflow
    assert a is not None
    if item.observed_at is None:
        return [(t, None) for t in range(a.try_number - 1, 0, -1)]
    rows = ledger.conn.execute(
        "SELECT try_number, observed_at FROM attestly.observation_tries WHERE dag_id = %s AND run_id = %s "
        "AND task_id = %s AND try_number < %s ORDER BY try_number DESC, observed_at DESC",
        (a.dag_id, a.run_id, a.task_id, a.try_number),
    ).fetchall()
    ledger.conn.commit()
    return [(int(t), at) for t, at in rows]


def _earlier_try(item: EvidenceItem, store: EvidenceStore, ledger: Ledger) -> tuple[EvidenceItem, Any] | None:
    """The item as an earlier try of the same task made it, and its stored object, when that try stored
    it and was killed before ledgering it (a lost worker): that object is ledgered instead of a second
    copy of the same observation. Only looked for on a retry (try > 1): one HEAD per earlier try (and
    observation moment it noted, see :func:`_note_try`)."""
    from dataclasses import replace

    a = item.airflow
    if a is None or a.try_number <= 1:
        return None
    for t, at in _earlier_observations(item, ledger):
        candidate = replace(item, airflow=replace(a, try_number=t))
        if at is not None:
            candidate = replace(candidate, observed_at=at)
        try:
            store.s3.head_object(Bucket=store.bucket, Key=candidate.object_key)
        except store.s3.exceptions.ClientError:
            continue
        return candidate, store.put_evidence(candidate)  # confirms the stored bytes, writes nothing
    return None


def with_policy(item: EvidenceItem, *, store: EvidenceStore, ledger: Ledger) -> EvidenceItem:
    """``item`` naming the policy in force (its bundle stored and ledgered first, once per bundle)."""
    from dataclasses import replace

    from attestly.policy_evidence import current_bundle, record_policy

    bundle = current_bundle()
    record_policy(bundle, store=store, ledger=ledger, retain_until=store.retain_until_for(item.period_end))
    return replace(item, policy=bundle.sha256)


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
    if item.version == 2 and item.policy is None:
        item = with_policy(item, store=store, ledger=ledger)
    earlier = _earlier_try(item, store, ledger)
    _note_try(item, ledger)
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
