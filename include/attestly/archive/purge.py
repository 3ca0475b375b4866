"""Purge verified batches from the audit database: exactly the verified rows, all or nothing.

Per (source table, month), in one transaction of the ``audit_archiver`` connection:

1. each candidate batch (verified, or purged earlier with rows held online) is re-checked: its rows in
   the database must still be exactly what was verified (count, min and max id — the table is
   append-only, rows leave only through this path, so an equal count over the same scope is the same
   set);
2. rows selected by an active legal hold are left alone (the hold lock is held from reading the holds
   to the commit, so a hold added meanwhile waits for this purge);
3. if every row of the month's partition belongs to candidates of this purge and none is held, the
   partition is dropped (``audit.drop_partition_logged``, which re-counts under an exclusive lock);
   otherwise each batch's unheld rows are staged in ``audit.purge_queue`` and deleted by
   ``audit.purge_staged``, which refuses unless exactly that many rows go;
4. ``audit.purge_log`` records every purge in the same transaction. After a crash between the commit
   and the journal, the next run finds the purge in that log and journals it — a purge is never
   repeated and never lost.

Purge ids are ``<batch id>#<round>``: round 1 is the first purge, later rounds purge rows whose holds
were released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attestly.archive import failpoints
from attestly.archive.errors import PurgeRefused
from attestly.archive.export import scope_where
from attestly.archive.holds import held_condition, list_holds

if TYPE_CHECKING:
    from datetime import date

    import psycopg

    from attestly.archive.context import ArchiveContext
    from attestly.archive.journal import Batch
    from attestly.archive.schema import TableLayout


@dataclass(frozen=True)
class Candidate:
    batch: Batch
    purge_id: str
    round: int
    expected_rows: int
    expected_min: str | None
    expected_max: str | None


def _candidates(ctx: ArchiveContext, batches: list[Batch]) -> list[Candidate]:
    out: list[Candidate] = []
    for batch in batches:
        entries = ctx.journal.entries(batch.batch_id)
        if not entries:
            continue
        last = entries[-1]
        purges = [e for e in entries if e.state == "purged"]
        if last.state == "verified":
            db = last.details["database"]
            out.append(
                Candidate(batch, f"{batch.batch_id}#1", 1, int(db["rows"]), db["min_id"], db["max_id"])
            )
        elif last.state == "purged" and int(last.details.get("residual_rows", 0)) > 0:
            d = last.details
            n = len(purges) + 1
            out.append(
                Candidate(
                    batch,
                    f"{batch.batch_id}#{n}",
                    n,
                    int(d["residual_rows"]),
                    d.get("residual_min_id"),
                    d.get("residual_max_id"),
                )
            )
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
        "residual_min_id": logged.get("residual_min_id"),
        "residual_max_id": logged.get("residual_max_id"),
        "held_by": logged.get("held_by", []),
    }
    ctx.journal.advance(cand.batch.batch_id, state="purged", run_id=ctx.run_id, details=details)


def _scope_figures(
    conn: psycopg.Connection[Any],
    layout: TableLayout,
    where: Any,
    params: list[Any],
    *,
    rows: int | None = None,
) -> tuple[int, str | None, str | None]:
    """Row count (unless given as ``rows``) and first/last id (in the id column's own order, as
    verification records them) of the rows matching ``where``, in one statement.

    The bounds are ordered by the table column itself (the text is only the output, under another name),
    so the primary key's index serves them instead of a scan and a sort of every row as text."""
    from psycopg import sql

    ident = sql.Identifier(layout.id_column)
    bound = sql.SQL("(SELECT {id}::text AS attestly_bound FROM {t} WHERE {w} ORDER BY {id} {dir} LIMIT 1)")
    count = sql.SQL("(SELECT count(*) FROM {t} WHERE {w})").format(t=layout.ident(), w=where)
    row = conn.execute(
        sql.SQL("SELECT {lo}, {hi}, {count}").format(
            lo=bound.format(id=ident, t=layout.ident(), w=where, dir=sql.SQL("ASC")),
            hi=bound.format(id=ident, t=layout.ident(), w=where, dir=sql.SQL("DESC")),
            count=count if rows is None else sql.SQL("NULL"),
        ),
        params * (3 if rows is None else 2),
    ).fetchone()
    lo, hi, n = row if row is not None else (None, None, 0)
    return (int(n or 0) if rows is None else rows), lo, hi


def _counts(
    conn: psycopg.Connection[Any], layout: TableLayout, scopes: list[tuple[Any, list[Any]]], period: Batch
) -> tuple[list[int], int]:
    """The rows of each scope (``scope_where`` of a batch), and of the whole period of ``period``, counted
    in one scan (rather than one per scope and one more for the period)."""
    from psycopg import sql

    ts = sql.Identifier(layout.timestamp_column)
    whole = sql.SQL("{ts} >= %s AND {ts} < %s").format(ts=ts)
    filters = [sql.SQL("count(*) FILTER (WHERE {})").format(w) for w, _ in scopes]
    filters.append(sql.SQL("count(*) FILTER (WHERE {})").format(whole))
    params = [p for _, ps in scopes for p in ps] + [period.period_start, period.period_end]
    starts = [period.period_start, *(ps[0] for _, ps in scopes)]
    ends = [period.period_end, *(ps[1] for _, ps in scopes)]
    row = conn.execute(
        sql.SQL("SELECT {} FROM {} WHERE {}").format(sql.SQL(", ").join(filters), layout.ident(), whole),
        [*params, min(starts), max(ends)],
    ).fetchone()
    counts = [int(v) for v in row] if row else [0] * (len(scopes) + 1)
    return counts[:-1], counts[-1]


def _partition_droppable(conn: psycopg.Connection[Any], layout: TableLayout, month: date) -> bool:
    """Whether the reference schema's monthly partition of ``month`` exists and can be dropped whole."""
    if layout.qualified != "audit.events":
        return False
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, "
        "to_regprocedure('audit.drop_partition_logged(date, text[], bigint[], jsonb)') IS NOT NULL",
        (f"audit.events_y{month:%Y}m{month:%m}",),
    ).fetchone()
    return bool(row and row[0] and row[1])


def purge_month(ctx: ArchiveContext, *, month: date, batches: list[Batch]) -> list[dict[str, Any]]:
    """Purge what is due among ``batches`` (all of one source table and ``month``). Returns one summary
    per purge done or recovered. Raises :class:`PurgeRefused` (after purging the other batches) when a
    batch's rows no longer match what was verified."""
    from psycopg import sql
    from psycopg.types.json import Jsonb

    layout = ctx.layout
    done: list[dict[str, Any]] = []
    with ctx.archiver() as conn:
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
        with ctx.journal.hold_lock():
            holds = list(list_holds(ctx.journal.conn, include_released=False))
            held_sql, held_params = held_condition(holds, layout)
            plans: list[tuple[Candidate, sql.Composable, list[Any], int, dict[str, Any]]] = []
            with conn.transaction():
                scopes = [scope_where(layout, cand.batch) for cand in candidates]
                counts, month_rows = _counts(conn, layout, scopes, batches[0])
                for cand, (where, params), count in zip(candidates, scopes, counts, strict=True):
                    rows, lo, hi = _scope_figures(conn, layout, where, params, rows=count)
                    if (rows, lo, hi) != (cand.expected_rows, cand.expected_min, cand.expected_max):
                        refused.append(
                            f"{cand.batch.batch_id}: the database holds {rows} rows ({lo} .. {hi}), "
                            f"{cand.expected_rows} ({cand.expected_min} .. {cand.expected_max}) were verified"
                        )
                        continue
                    held_where = sql.SQL("{} AND {}").format(where, held_sql)
                    h_rows, h_lo, h_hi = _scope_figures(conn, layout, held_where, params + held_params)
                    held_by = []
                    if h_rows:
                        for hold in holds:
                            cond, p = hold.sql_condition(layout)
                            hit = conn.execute(
                                sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {} AND {})").format(
                                    layout.ident(), where, cond
                                ),
                                params + p,
                            ).fetchone()
                            if hit and hit[0]:
                                held_by.append(hold.hold_id)
                    if cand.round > 1 and h_rows == rows:
                        continue  # still entirely held: nothing to purge yet
                    detail = {
                        "batch_id": cand.batch.batch_id,
                        "round": cand.round,
                        "residual_rows": h_rows,
                        "residual_min_id": h_lo,
                        "residual_max_id": h_hi,
                        "held_by": held_by,
                    }
                    plans.append((cand, where, params, rows - h_rows, detail))

                whole = (
                    plans
                    and not refused
                    and all(p[0].round == 1 and p[4]["residual_rows"] == 0 for p in plans)
                    and month_rows == sum(p[3] for p in plans)
                    and _partition_droppable(conn, layout, month)
                )
                if whole:
                    conn.execute(
                        "SELECT audit.drop_partition_logged(%s, %s, %s, %s)",
                        (
                            month,
                            [p[0].purge_id for p in plans],
                            [p[3] for p in plans],
                            Jsonb(
                                {
                                    "residual_rows": 0,
                                    "held_by": [],
                                    "batches": [p[0].batch.batch_id for p in plans],
                                }
                            ),
                        ),
                    )
                else:
                    for cand, where, params, unheld, detail in plans:
                        staged = conn.execute(
                            sql.SQL(
                                "INSERT INTO audit.purge_queue (purge_id, id, occurred_at) "
                                "SELECT %s, {id}, {ts} FROM {t} WHERE {w} AND NOT {held}"
                            ).format(
                                id=sql.Identifier(layout.id_column),
                                ts=sql.Identifier(layout.timestamp_column),
                                t=layout.ident(),
                                w=where,
                                held=held_sql,
                            ),
                            [cand.purge_id, *params, *held_params],
                        )
                        if staged.rowcount != unheld:
                            raise PurgeRefused(
                                f"{cand.batch.batch_id}: staged {staged.rowcount} rows, {unheld} were counted; "
                                "the table changed during the purge"
                            )
                        conn.execute(
                            "SELECT audit.purge_staged(%s, %s, %s, %s, %s)",
                            (
                                cand.purge_id,
                                cand.batch.period_start,
                                cand.batch.period_end,
                                unheld,
                                Jsonb(detail),
                            ),
                        )
                failpoints.hit("archive.mid_purge_before_commit")
        failpoints.hit("archive.after_purge_before_journal")
        logged = _logged(conn, [p[0].purge_id for p in plans])
        for cand, *_ in plans:
            entry = logged.get(cand.purge_id)
            if entry is None:
                raise PurgeRefused(
                    f"{cand.batch.batch_id}: purge {cand.purge_id} committed but is not in audit.purge_log"
                )
            if "residual_rows" not in entry or entry.get("batch_id") != cand.batch.batch_id:
                entry = {**entry, "residual_rows": 0, "held_by": []}
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
