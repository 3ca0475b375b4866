"""The scheduled archive restore test (evidence ``archive.restore_test``).

Backup/restore controls (SOC 2 A1.3, HIPAA 164.308(a)(7)(ii)(B)/(D), PCI DSS 12.10.2) ask for proof that
archived records can actually be brought back. Each run picks one verified archive batch whose key still
exists — at random, but deterministically from the data interval, so a retry or a re-run of the quarter
tests the same batch — restores
it into a scratch table of ``archive_restore`` exactly as ``attestly archive restore`` does, reconciles
the restored rows with the manifest recorded at verification (row count, content hash, min/max id), drops
the scratch table, and records the outcome as an evidence item for the quarter. The item holds only
deterministic figures (no timings), so re-running the quarter records nothing new.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attestly.evidence import EvidenceItem, Finding, Method, Population

if TYPE_CHECKING:
    from attestly.archive.context import ArchiveContext
    from attestly.archive.journal import Batch

COLLECTOR = "archive.restore_test"
_POPULATION = "verified archive batches whose data key is live"
_HOW = (
    "the archive journal's batches that reached verified, whose data key in the key registry is not destroyed"
)


def candidates(ctx: ArchiveContext) -> list[Batch]:
    """Verified batches (uploaded, verified) whose data key still exists, by batch id."""
    from attestly.keys import KeyNotFound

    states = ctx.journal.states()
    out = []
    for batch_id in sorted(states):
        if ctx.journal.last_in_state(batch_id, "verified") is None:
            continue
        batch = ctx.journal.batch(batch_id)
        try:
            record = ctx.registry.record(batch.key_id)
        except KeyNotFound:
            continue
        if record.destroyed_at is not None:
            continue
        out.append(batch)
    return out


def pick(batches: list[Batch], seed: str) -> Batch | None:
    if not batches:
        return None
    n = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    return batches[n % len(batches)]


def _drop(ctx: ArchiveContext, schema: str, table: str) -> None:
    from psycopg import sql

    with ctx.archiver() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, table)))
        conn.commit()


def run_restore_test(
    ctx: ArchiveContext, *, seed: str, period_start: datetime, period_end: datetime
) -> dict[str, Any]:
    """Restore one batch and record the outcome; returns ``record_evidence``'s result plus ``batch_id``,
    ``rows`` and ``seconds`` (the latter for the task log only, never in the evidence)."""
    from attestly.archive.errors import ArchiveError, VerificationMismatch
    from attestly.archive.restore import RESTORE_SCHEMA, restore_batch
    from attestly.keys import KeyRegistryError
    from attestly.recording import record_evidence

    pool = candidates(ctx)
    batch = pick(pool, seed)
    controls = tuple(ctx.policy.controls_for_collector(COLLECTOR))
    base: dict[str, Any] = {
        "collector": COLLECTOR,
        "controls": controls,
        "period_start": period_start,
        "period_end": period_end,
        "retroactive": False,
        "airflow": ctx.airflow,
        "observed_at": datetime.now(UTC),
        "method": Method(
            COLLECTOR, parameters={"seed": seed, "selection": "one verified batch, drawn by seed"}
        ),
    }
    started = time.monotonic()
    if batch is None:
        item = EvidenceItem(
            **base,
            scope={"archive": "none"},
            result="not_applicable",
            findings=(),
            data={"candidates": 0, "reason": "no verified archive batch with a live key to restore"},
            population=Population(_POPULATION, _HOW, 0),
        )
        return {
            **record_evidence(item, store=ctx.store, ledger=ctx.ledger),
            "batch_id": None,
            "rows": 0,
            "seconds": 0.0,
        }
    table = "restore_test_" + hashlib.sha256(f"{seed}:{batch.batch_id}".encode()).hexdigest()[:16]
    _drop(ctx, RESTORE_SCHEMA, table)  # left by a killed earlier try
    data: dict[str, Any] = {
        "candidates": len(pool),
        "batch": {
            k: v
            for k, v in batch.to_dict().items()
            if k in ("batch_id", "source_table", "class", "month", "object_key")
        },
    }
    try:
        result = restore_batch(ctx, batch.batch_id, into=f"{RESTORE_SCHEMA}.{table}")
        findings: tuple[Finding, ...] = (
            Finding(
                resource=batch.object_key,
                status="pass",
                detail=f"restored {result['rows']} rows; count, content hash and id range match the manifest",
            ),
        )
        data["restored"] = {k: result[k] for k in ("rows", "content_hash", "min_id", "max_id")}
        outcome = "pass"
        rows = int(result["rows"])
    except VerificationMismatch as exc:
        findings = tuple(
            Finding(resource=batch.object_key, status="fail", detail=p[:500]) for p in exc.problems
        )
        data["problems"] = list(exc.problems)
        outcome, rows = "fail", 0
    except (ArchiveError, KeyRegistryError) as exc:
        findings = (Finding(resource=batch.object_key, status="error", detail=str(exc)[:500]),)
        data["problems"] = [str(exc)[:500]]
        outcome, rows = "error", 0
    finally:
        _drop(ctx, RESTORE_SCHEMA, table)  # restored audit rows never stay behind
    item = EvidenceItem(
        **base,
        scope={"archive_batch": batch.batch_id},
        result=outcome,  # type: ignore[arg-type]
        findings=findings,
        data=data,
        population=Population(_POPULATION, _HOW, len(pool)),
    )
    return {
        **record_evidence(item, store=ctx.store, ledger=ctx.ledger),
        "batch_id": batch.batch_id,
        "rows": rows,
        "seconds": round(time.monotonic() - started, 3),
    }
