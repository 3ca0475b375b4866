"""Purge verified batches from the audit database: exactly the verified rows, all or nothing — and the
audit database itself refuses anything else (``db/migrations/audit/0004_purge_guard.sql``).

Per (source table, month), on the ``audit_archiver`` connection:

1. every active legal hold is mirrored into the audit database (``audit.place_hold``), which enforces
   them on its own; a hold released in ``attestly_db`` but not yet in the audit database keeps its rows
   (the custodian releases there: ``attestly hold release`` again);
2. each verified batch is *authorised* (``audit.authorize_purge``, once; usually already during its
   verification, see :mod:`attestly.archive.verify`): its scope, the row count and block digest of the
   archive, and the archive object's key, version and SHA-256. The audit database recomputes the count
   and digest of the scope's rows itself and refuses unless they are those, and refuses an authorisation
   whose rows are inside its online floor (by its own clock);
3. in one transaction: if the whole month's partition belongs to this run's first-round batches, it is
   dropped (``audit.drop_partition_authorized``: every row covered, each batch's checked row count
   unchanged under the partition lock — the table is append-only); otherwise each batch is purged
   (``audit.purge_batch``, which hashes the rows as it deletes them and undoes the delete unless they
   are exactly the authorised ones). Either way rows under hold stay (a later round purges them once
   released), and every purge is logged in ``audit.purge_log``;
4. after a crash between the commit and the journal, the next run finds the purge in that log and
   journals it — a purge is never repeated and never lost.

Purge ids are ``<batch id>#<round>``: round 1 is the first purge, later rounds purge rows whose holds
were released. A refused batch leaves its rows in place and the others are purged; the run then fails
with :class:`PurgeRefused` naming each refusal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attestly import failpoints
from attestly.archive.errors import ArchiveConfigError, PurgeRefused
from attestly.holds import audit_active_holds, list_holds, mirror_holds

if TYPE_CHECKING:
    from datetime import date

    import psycopg

    from attestly.archive.context import ArchiveContext
    from attestly.archive.journal import Batch

log = logging.getLogger(__name__)

_FUNCTIONS = (
    "audit.authorize_purge(text, timestamptz, timestamptz, text[], bigint, text, text, text, text, text)",
    "audit.purge_batch(text, text, jsonb)",
    "audit.drop_partition_authorized(date, text[], jsonb)",
)


@dataclass(frozen=True)
class Candidate:
    batch: Batch
    purge_id: str
    round: int


def _candidates(ctx: ArchiveContext, batches: list[Batch]) -> list[Candidate]:
    out: list[Candidate] = []
    for batch in batches:
        entries = ctx.journal.entries(batch.batch_id)
        if not entries:
            continue
        last = entries[-1]
        if last.state == "verified":
            out.append(Candidate(batch, f"{batch.batch_id}#1", 1))
        elif last.state == "purged" and int(last.details.get("residual_rows", 0)) > 0:
            n = sum(1 for e in entries if e.state == "purged") + 1
            out.append(Candidate(batch, f"{batch.batch_id}#{n}", n))
    return out


def _logged(conn: psycopg.Connection[Any], purge_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT purge_id, method, rows, purged_at, purged_by, detail FROM audit.purge_log WHERE purge_id = ANY(%s)",
        (purge_ids,),
    ).fetchall()
    conn.commit()
    return {
        r[0]: {
            "purge_id": r[0],
            "method": r[1],
            "rows": int(r[2]),
            "purged_at": r[3].isoformat(),
            "purged_by": r[4],
            **r[5],
        }
        for r in rows
    }


def _journal_purge(ctx: ArchiveContext, cand: Candidate, logged: dict[str, Any]) -> None:
    details = {
        "purge_id": cand.purge_id,
        "round": cand.round,
        "method": logged["method"],
        "purged_rows": logged["rows"],
        "purged_at": logged["purged_at"],
        "purged_by": logged["purged_by"],
        "residual_rows": int(logged.get("residual_rows", 0)),
        "held_by": logged.get("held_by", []),
        "content_digest": logged.get("content_digest"),
    }
    ctx.journal.advance(cand.batch.batch_id, state="purged", run_id=ctx.run_id, details=details)


def _require_functions(conn: psycopg.Connection[Any]) -> None:
    found = conn.execute(
        "SELECT " + ", ".join(f"to_regprocedure('{f}') IS NOT NULL" for f in _FUNCTIONS)
    ).fetchone()
    conn.commit()
    missing = [f for f, ok in zip(_FUNCTIONS, found or (), strict=False) if not ok]
    if missing:
        raise ArchiveConfigError(
            "the audit database lacks the guarded purge functions "
            f"({', '.join(m.split('(')[0] for m in missing)}); apply the reference migrations "
            "(include/attestly/db/migrations/audit/) or their equivalent for your table"
        )


def _refusal(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    return str(getattr(diag, "message_primary", None) or exc)


def authorize(
    conn: psycopg.Connection[Any],
    batch: Batch,
    *,
    rows: int,
    block_digest: str,
    bucket: str,
    key: str,
    version_id: str,
    object_sha256: str,
) -> None:
    """``audit.authorize_purge`` for ``batch``: the audit database recomputes the count and block digest
    of the batch's rows and records the authorisation only if they are these (idempotent; refusals are
    raised as psycopg errors)."""
    conn.execute(
        "SELECT audit.authorize_purge(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            batch.batch_id,
            batch.period_start,
            batch.period_end,
            list(batch.selector_values),
            rows,
            block_digest,
            bucket,
            key,
            version_id,
            object_sha256,
        ),
    )


def _authorize(conn: psycopg.Connection[Any], ctx: ArchiveContext, batch: Batch) -> None:
    """Record in the audit database what the archive verified for ``batch`` (idempotent)."""
    verified = ctx.journal.last_in_state(batch.batch_id, "verified")
    if verified is None:
        raise PurgeRefused(f"{batch.batch_id}: not verified")
    archive, obj = verified.details["archive"], verified.details["object"]
    if "block_digest" not in archive:
        raise PurgeRefused(
            f"{batch.batch_id}: verified by an earlier version without a block digest; verify it again"
        )
    authorize(
        conn,
        batch,
        rows=int(archive["rows"]),
        block_digest=archive["block_digest"],
        bucket=obj["bucket"],
        key=obj["key"],
        version_id=obj["version_id"],
        object_sha256=obj["sha256"],
    )


def _sync_holds(ctx: ArchiveContext, conn: psycopg.Connection[Any]) -> None:
    """Mirror the active holds into the audit database; warn about holds it still enforces that
    ``attestly_db`` has released (their rows stay until the custodian releases them there)."""
    holds = list_holds(ctx.journal.conn, include_released=True)
    active = [h for h in holds if h.active]
    mirror_holds(ctx, active, release=False, conn=conn)
    stale = sorted(audit_active_holds(conn) - {h.hold_id for h in active})
    for hold_id in stale:
        log.warning(
            "legal hold %s is released in attestly_db but still active in the audit database, which keeps "
            "its rows: run `attestly hold release %s` again to finish the release",
            hold_id,
            hold_id,
        )


def purge_month(ctx: ArchiveContext, *, month: date, batches: list[Batch]) -> list[dict[str, Any]]:
    """Purge what is due among ``batches`` (all of one source table and ``month``). Returns one summary
    per purge done or recovered. Raises :class:`PurgeRefused` (after purging the other batches) when the
    audit database refused a batch."""
    import psycopg
    from psycopg.types.json import Jsonb

    done: list[dict[str, Any]] = []
    with ctx.archiver() as conn:
        _require_functions(conn)
        # Recover purges that committed but were not journaled (crash after commit).
        candidates = _candidates(ctx, batches)
        logged = _logged(conn, [c.purge_id for c in candidates])
        for cand in candidates:
            if cand.purge_id in logged:
                _journal_purge(ctx, cand, logged[cand.purge_id])
                done.append({"batch_id": cand.batch.batch_id, "purge_id": cand.purge_id, "recovered": True})
        candidates = _candidates(ctx, batches)
        if not candidates:
            return done
        refused: list[str] = []
        attempted: list[Candidate] = []
        # The hold lock, from reading the holds to the commit: a hold added meanwhile waits for this purge.
        with ctx.journal.hold_lock():
            _sync_holds(ctx, conn)
            with conn.transaction():
                for cand in candidates:
                    if cand.round != 1:
                        attempted.append(cand)
                        continue
                    try:
                        with conn.transaction():
                            _authorize(conn, ctx, cand.batch)
                        attempted.append(cand)
                    except (psycopg.Error, PurgeRefused) as exc:
                        refused.append(f"{cand.batch.batch_id}: {_refusal(exc)}")
                dropped = False
                if attempted and all(c.round == 1 for c in attempted) and not refused:
                    try:
                        with conn.transaction():
                            conn.execute(
                                "SELECT audit.drop_partition_authorized(%s, %s, %s)",
                                (
                                    month,
                                    [c.batch.batch_id for c in attempted],
                                    Jsonb(
                                        {
                                            "batches": [c.batch.batch_id for c in attempted],
                                            "run_id": ctx.run_id,
                                        }
                                    ),
                                ),
                            )
                        dropped = True
                    except psycopg.Error as exc:  # rows held, not covered, or no partition: purge by rows
                        log.info(
                            "partition %s not dropped whole (%s); purging by batch", month, _refusal(exc)
                        )
                if not dropped:
                    for cand in attempted:
                        try:
                            with conn.transaction():
                                conn.execute(
                                    "SELECT audit.purge_batch(%s, %s, %s)",
                                    (
                                        cand.batch.batch_id,
                                        cand.purge_id,
                                        Jsonb({"round": cand.round, "run_id": ctx.run_id}),
                                    ),
                                )
                        except psycopg.Error as exc:
                            refused.append(f"{cand.batch.batch_id}: {_refusal(exc)}")
                failpoints.hit("archive.mid_purge_before_commit")
        failpoints.hit("archive.after_purge_before_journal")
        logged = _logged(conn, [c.purge_id for c in attempted])
        for cand in attempted:
            entry = logged.get(cand.purge_id)
            if entry is None:
                continue  # refused, or a later round whose rows are all still held: nothing was purged
            _journal_purge(ctx, cand, entry)
            done.append(
                {
                    "batch_id": cand.batch.batch_id,
                    "purge_id": cand.purge_id,
                    "method": entry["method"],
                    "rows": entry["rows"],
                }
            )
    if refused:
        raise PurgeRefused("purge refused, rows left in place: " + "; ".join(refused))
    return done
