"""The archive manifest: what was archived, where, under which key, verified how, and what was purged.

The manifest of a purged batch becomes an evidence item (collector ``archive.manifest``, the controls
``policy.controls_for_collector("archive.manifest")``, period = the batch's month, ``retroactive``) and
an ``archive`` ledger entry (once per purge round, ``dedupe_key = archive:<batch id>:<journal step>``).
A verification failure is recorded as a ``fail`` evidence item naming the differences. Manifests hold
counts and hashes, never row content or subject ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attestly.archive.schema import BLOCK_DIGEST_DEFINITION, CONTENT_HASH_DEFINITION
from attestly.evidence import EvidenceItem, Finding, Method, Population

if TYPE_CHECKING:
    from attestly.archive.context import ArchiveContext
    from attestly.archive.journal import Batch

MANIFEST_SCHEMA = "attestly.archive-manifest/v1"
COLLECTOR = "archive.manifest"


def build_manifest(ctx: ArchiveContext, batch: Batch) -> dict[str, Any]:
    """The manifest of a verified (and possibly purged) batch, from the journal and the key registry."""
    entries = ctx.journal.entries(batch.batch_id)
    verified = [e for e in entries if e.state == "verified"]
    if not verified:
        raise ValueError(f"archive batch {batch.batch_id} is not verified; it has no manifest yet")
    v = verified[-1].details
    uploaded = [e for e in entries if e.state == "uploaded"][-1].details
    purges = [e.details for e in entries if e.state == "purged"]
    key = ctx.registry.record(batch.key_id)
    archive = v["archive"]
    return {
        "schema": MANIFEST_SCHEMA,
        "batch": batch.to_dict(),
        "object": v["object"],
        "key": {
            "key_id": key.key_id,
            "kms_key_id": key.kms_key_id,
            "dedicated_kms_key": key.dedicated_kms_key,
        },
        "format": {
            "container": "parquet",
            "compression": "zstd",
            "cipher": "AES-256-GCM",
            "kdf": "HKDF-SHA256",
            "chunk_size": uploaded.get("chunk_size"),
            "row_groups": v.get("row_groups"),
            "plaintext_bytes": v.get("plaintext_bytes"),
        },
        "rows": archive["rows"],
        "content_hash": {
            "algorithm": "sha256",
            "definition": CONTENT_HASH_DEFINITION,
            "value": archive["content_hash"],
        },
        "block_digest": {
            "algorithm": "sha256",
            "definition": BLOCK_DIGEST_DEFINITION,
            "value": archive.get("block_digest"),
        },
        "min_id": archive["min_id"],
        "max_id": archive["max_id"],
        "min_timestamp": archive["min_timestamp"],
        "max_timestamp": archive["max_timestamp"],
        "sources": archive["sources"],
        "database_at_verification": v["database"],
        "purges": [
            {
                "purge_id": p["purge_id"],
                "method": p["method"],
                "rows": p["purged_rows"],
                "purged_at": p["purged_at"],
                "held_online_after": p["residual_rows"],
            }
            for p in purges
        ],
        "purged_rows": sum(int(p["purged_rows"]) for p in purges),
        "held_online_rows": int(purges[-1]["residual_rows"]) if purges else archive["rows"],
        "held_by": list(purges[-1].get("held_by", [])) if purges else [],
    }


def _scope(ctx: ArchiveContext, batch: Batch) -> dict[str, str]:
    return {
        "database": str(ctx.reader().info.dbname),
        "table": batch.source_table,
        "class": batch.class_name,
        "batch": batch.batch_id,
    }


def manifest_item(ctx: ArchiveContext, batch: Batch, manifest: dict[str, Any]) -> EvidenceItem:
    held = manifest["held_online_rows"]
    detail = (
        f"{manifest['rows']} rows archived to {manifest['object']['key']} (version {manifest['object']['version_id']}), "
        f"verified, {manifest['purged_rows']} purged"
        + (f", {held} held online by legal hold" if held else "")
    )
    return EvidenceItem(
        collector=COLLECTOR,
        controls=tuple(ctx.policy.controls_for_collector(COLLECTOR)),
        period_start=batch.period_start,
        period_end=batch.period_end,
        scope=_scope(ctx, batch),
        retroactive=True,
        result="pass",
        findings=(Finding(resource=batch.object_key, status="pass", detail=detail),),
        data=manifest,
        airflow=ctx.airflow,
        observed_at=_last_purge(manifest),
        method=Method(COLLECTOR, parameters={"retention_class": batch.class_name}),
        population=Population(
            f"rows of {batch.source_table} in batch {batch.batch_id}",
            "the batch's rows exported by COPY, counted and hashed again from the object at verification",
            int(manifest["rows"]),
        ),
    )


def _last_purge(manifest: dict[str, Any]) -> datetime:
    """When the manifest's last step (its latest purge) was observed; now when nothing was purged yet."""
    times = [str(p["purged_at"]) for p in manifest.get("purges") or [] if p.get("purged_at")]
    if not times:
        return datetime.now(UTC)
    parsed = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times]
    return max(p if p.tzinfo else p.replace(tzinfo=UTC) for p in parsed)


def failure_item(ctx: ArchiveContext, batch: Batch, problems: list[str]) -> EvidenceItem:
    return EvidenceItem(
        collector=COLLECTOR,
        controls=tuple(ctx.policy.controls_for_collector(COLLECTOR)),
        period_start=batch.period_start,
        period_end=batch.period_end,
        scope=_scope(ctx, batch),
        retroactive=True,
        result="fail",
        findings=tuple(Finding(resource=batch.object_key, status="fail", detail=p[:500]) for p in problems),
        data={
            "schema": MANIFEST_SCHEMA,
            "batch": batch.to_dict(),
            "verification": "failed",
            "problems": problems,
        },
        airflow=ctx.airflow,
        observed_at=datetime.now(UTC),
        method=Method(COLLECTOR, parameters={"retention_class": batch.class_name}),
        population=Population(
            f"the archive object of batch {batch.batch_id}", "re-read from the bucket at verification", 1
        ),
    )


def record_manifest(ctx: ArchiveContext, batch: Batch) -> dict[str, Any] | None:
    """Store and ledger the manifest of the batch's latest purge round (idempotent); None if the batch
    has not been purged. Returns ``{sha256, collector, result, key, version_id, seq, created, batch_id}``."""
    from attestly.recording import record_evidence

    entries = ctx.journal.entries(batch.batch_id)
    purges = [e for e in entries if e.state == "purged"]
    if not purges:
        return None
    dedupe = f"archive:{batch.batch_id}:{purges[-1].step}"
    existing = ctx.ledger.find(dedupe)
    if existing is not None:
        b = existing.body
        return {
            "batch_id": batch.batch_id,
            "sha256": b["evidence"]["sha256"],
            "key": b["evidence"]["key"],
            "version_id": b["evidence"]["version_id"],
            "seq": existing.seq,
            "created": False,
            "collector": COLLECTOR,
            "result": "pass",
        }
    manifest = build_manifest(ctx, batch)
    recorded = record_evidence(manifest_item(ctx, batch, manifest), store=ctx.store, ledger=ctx.ledger)
    body = {
        "manifest": manifest,
        "evidence": {
            "sha256": recorded["sha256"],
            "key": recorded["key"],
            "version_id": recorded["version_id"],
        },
    }
    entry, created = ctx.ledger.append("archive", body, dedupe_key=dedupe)
    return {
        **recorded,
        "batch_id": batch.batch_id,
        "archive_seq": entry.seq,
        "created": recorded["created"] or created,
    }


def record_failure(ctx: ArchiveContext, batch: Batch, problems: list[str]) -> dict[str, Any]:
    """Store and ledger a ``fail`` item for a batch that did not verify (once per distinct failure)."""
    from attestly.recording import record_evidence

    return {
        **record_evidence(failure_item(ctx, batch, problems), store=ctx.store, ledger=ctx.ledger),
        "batch_id": batch.batch_id,
    }
