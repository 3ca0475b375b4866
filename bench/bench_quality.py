"""Audit-log quality suite (GX 1.x, SQL push-down) against one hand-written SQL statement computing the
same aggregates over the same interval, in the same run.

The audit log is seeded (in a child process, so this process's peak RSS is the suite's own) with
``--rows`` events (default 5,000,000) over 25 days spanning two monthly partitions, with a few faults of
every kind planted on the first day, so both sides have something to count. At each checkpoint (1M and
the full size; just the full size below 1M) the suite validates the whole seeded range, then the SQL
baseline runs; their counts must agree. Printed: rows, seconds, ratio suite/SQL, peak RSS.

Run: ``python -m bench.bench_quality --rows 200000`` (a smoke run takes about a minute). The full 5M run
takes many minutes, mostly seeding.

Seeding note: ``seed_audit()`` asks the database for the chain heads on every call, and
``audit.chain_heads()`` evaluates a correlated ``max()`` for every row of the table (quadratic), so
seeding millions of rows day by day through it does not finish. The bench therefore plans each day with
the seeder's own ``plan_events()`` (same data, same faults, same hashing) and carries the chain heads
forward itself, loading with COPY through the writer role as the seeder does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.common import Figure, bench_stack, fmt, in_subprocess, peak_rss_mb, reset_database

START = date(2026, 1, 20)  # 25 days from here span the January and February partitions
DAYS = 25
CHECKPOINTS = (1_000_000, 5_000_000)
FAULTS = (
    "gap:source=billing,start={day}T03:00:00Z,hours=2",
    "seq-hole:source=ehr-api,count=3",
    "duplicate:count=2",
    "null:column=actor,count=4",
    "bad-enum:column=result,count=5",
    "phi-leak:count=6",
    "chain-break:count=7",
    "future:count=8",
)


# ------------------------------------------------------------------------------------------- seeding


def seed_days(*, start: str, days: int, events_per_day: int, plant_faults: bool) -> dict[str, Any]:
    """In a child process: append ``days`` days of events from ``start``, chains continued; faults on day 1."""
    bench_stack("quality")
    import psycopg
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from attestly.connections import pg_connect
    from attestly.policy import load_policy
    from attestly_dev import audit_seed as seed
    from attestly_dev.stack import core

    policy = load_policy()
    table = policy.sources.audit_table
    cols = dict(table.columns)
    declared = [(s.name, s.min_events_per_hour, s.quiet_allowed) for s in policy.sources.sources]
    ident = sql.Identifier
    tbl = sql.SQL("{}.{}").format(ident(table.schema_name), ident(table.table))
    heads: dict[str, seed.Head] = {}
    with psycopg.connect(core.server().admin_conninfo("audit")) as admin:
        for name, _, _ in declared:  # one index probe per source (not audit.chain_heads(): quadratic)
            row = admin.execute(
                sql.SQL(
                    "SELECT {seq}, {rh}, {ts} FROM {t} WHERE {src} = %s ORDER BY {seq} DESC LIMIT 1"
                ).format(
                    seq=ident(cols["sequence"]),
                    rh=ident(cols["row_hash"]),
                    ts=ident(cols["timestamp"]),
                    t=tbl,
                    src=ident(cols["source"]),
                ),
                (name,),
            ).fetchone()
            if row is not None:
                heads[name] = seed.Head(int(row[0]), bytes(row[1]), row[2])
    first = date.fromisoformat(start)
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        tbl, sql.SQL(", ").join(ident(c) for c in cols.values())
    )
    total, planted = 0, []
    t0 = time.perf_counter()
    with pg_connect("audit_writer") as conn:
        for d in range(days):
            day = first + timedelta(days=d)
            injections = (
                [seed.parse_injection(f.format(day=day.isoformat())) for f in FAULTS]
                if plant_faults and d == 0
                else []
            )
            plan = seed.plan_events(
                start=day, days=1, events_per_day=events_per_day, sources=declared, heads=heads,
                injections=injections, rng=random.Random(day.toordinal()), required_columns=list(table.required),
                enums={k: list(v) for k, v in table.enums.items()},
            )  # fmt: skip
            conn.execute(
                sql.SQL("SELECT {}.ensure_month_partition(%s)").format(ident(table.schema_name)),
                (day.replace(day=1),),
            )
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for r in plan.rows:
                    copy.write_row(
                        [Jsonb(r[k]) if k == "metadata" and r.get(k) is not None else r.get(k) for k in cols]
                    )
            conn.commit()
            for r in plan.rows:  # the new chain heads: highest sequence per source (earliest recorded)
                h = heads.get(r["source"])
                if h is None or r["sequence"] > h.seq:
                    heads[r["source"]] = seed.Head(r["sequence"], r["row_hash"], r["timestamp"])
            total += len(plan.rows)
            planted += plan.injected
    return {"rows": total, "seconds": time.perf_counter() - t0, "injected": planted}


# ------------------------------------------------------------------------------------------ baseline


def baseline_sql(start: datetime, end: datetime) -> str:
    """One hand-written statement computing every check's count over ``[start, end)``."""
    from attestly.audit.chain import sql_row_hash
    from attestly.policy import load_policy
    from attestly.quality.checks import full_hours, ident, literal, phi_predicate, ts_literal

    policy = load_policy()
    table = policy.sources.audit_table
    cols = dict(table.columns)

    def c(logical: str) -> str:
        return ident(cols[logical])

    tbl = f"{ident(table.schema_name)}.{ident(table.table)}"
    ts, src, seq, rid = c("timestamp"), c("source"), c("sequence"), c("id")
    s_lit, e_lit = ts_literal(start), ts_literal(end)
    per_row = [
        f"count(*) FILTER (WHERE {c(n)} IS NULL) AS {ident('required_not_null:' + n)}" for n in table.required
    ]
    per_row += [
        f"count(*) FILTER (WHERE {c(n)} IS NOT NULL AND {c(n)} NOT IN ({', '.join(literal(v) for v in vals)})) "
        f"AS {ident('enum:' + n)}"
        for n, vals in table.enums.items()
    ]
    text = "concat_ws(E'\\n', " + ", ".join(f"{c(n)}::text" for n in table.free_text) + ")"
    per_row += [
        f"count(*) FILTER (WHERE {ts} < {s_lit} OR {ts} >= {e_lit}) AS timestamp_in_interval",
        f"count(*) FILTER (WHERE {ts} > {c('recorded_at')} + INTERVAL '{table.clock_skew_seconds} seconds') "
        "AS timestamp_not_after_recorded",
        f"count(*) FILTER (WHERE {c('row_hash')} IS DISTINCT FROM {sql_row_hash(cols, 'iv')}) AS row_hash_recomputes",
        "count(*) FILTER (WHERE " + phi_predicate("ft.t") + ") AS no_clear_text_phi",
    ]
    expected = [(s.name, s.min_events_per_hour) for s in policy.sources.sources if not s.quiet_allowed]
    values = ", ".join(f"({literal(n)}, {m})" for n, m in expected if m > 0)
    hours = full_hours(start, end)
    assert hours is not None and values
    h0, h1 = (h.strftime("%Y-%m-%d %H:%M:%S") for h in hours)
    return f"""
WITH iv AS NOT MATERIALIZED (SELECT * FROM {tbl} WHERE {ts} >= {s_lit} AND {ts} < {e_lit}),
rowwise AS (SELECT count(*) AS rows, {", ".join(per_row)} FROM iv, LATERAL (SELECT {text} AS t) ft),
ids AS (SELECT coalesce(sum(n), 0) AS id_unique FROM (SELECT count(*) AS n FROM iv GROUP BY {rid} HAVING count(*) > 1) d),
per_source AS (SELECT {src} AS src, min({seq}) AS lo, max({seq}) AS hi, count(DISTINCT {seq}) AS distinct_n,
                      count(*) AS n FROM iv GROUP BY {src}),
seqs AS (SELECT coalesce(sum(n - distinct_n), 0) AS source_seq_unique,
                coalesce(sum(hi - lo + 1 - distinct_n), 0) AS sequence_contiguous FROM per_source),
continuity AS (
  SELECT coalesce(sum(CASE WHEN p.lo > prev.last_seq + 1 THEN p.lo - prev.last_seq - 1 ELSE 1 END)
                  FILTER (WHERE p.lo <> prev.last_seq + 1), 0) AS sequence_continuous_with_previous
  FROM per_source p
  CROSS JOIN LATERAL (SELECT max(e.{seq}) AS last_seq FROM {tbl} e WHERE e.{src} = p.src AND e.{ts} < {s_lit}) prev),
hourly AS (
  SELECT count(*) AS hourly_volume
  FROM (VALUES {values}) AS x(src, min_n)
  CROSS JOIN generate_series(TIMESTAMP '{h0}', TIMESTAMP '{h1}', INTERVAL '1 hour') AS h(h)
  LEFT JOIN (SELECT {src} AS src, date_trunc('hour', {ts} AT TIME ZONE 'UTC') AS h, count(*) AS n,
                    bool_or({c("action")} = {literal(table.heartbeat_action)}) AS hb
             FROM iv GROUP BY 1, 2) cnt ON cnt.src = x.src AND cnt.h = h.h
  WHERE NOT coalesce(cnt.n >= x.min_n OR cnt.hb, false)),
links AS (
  SELECT count(*) AS chain_links FROM iv r
  WHERE NOT EXISTS (SELECT 1 FROM iv p WHERE p.{src} = r.{src} AND p.{seq} = r.{seq} - 1
                                          AND p.{c("row_hash")} = r.{c("prev_hash")})
    AND (SELECT bool_or(q.{c("row_hash")} IS NOT DISTINCT FROM r.{c("prev_hash")}) FROM {tbl} q
         WHERE q.{src} = r.{src} AND q.{seq} = r.{seq} - 1) IS FALSE)
SELECT * FROM rowwise, ids, seqs, continuity, hourly, links
"""


def run_baseline(start: datetime, end: datetime) -> dict[str, int]:
    """Run :func:`baseline_sql` on the reader connection with the suite's session settings."""
    import psycopg

    from attestly.connections import get_conn
    from attestly.quality.suite import SESSION_OPTIONS

    conn = get_conn("audit_db")
    with psycopg.connect(conn.pg_conninfo(options=SESSION_OPTIONS)) as pg:
        cur = pg.execute(baseline_sql(start, end))
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        return {d.name: int(v) for d, v in zip(cur.description, row, strict=True)}


# ----------------------------------------------------------------------------------------------- run


def measure(*, rows: int = 5_000_000, keep_stack: bool = True) -> dict[str, Any]:
    """Seed up to ``rows`` events in steps, validate at each checkpoint; return the figures."""
    from attestly.db.migrate import MigrationError

    try:
        bench_stack("quality")
    except MigrationError:  # a migration changed since this bench stack last ran: its data is disposable
        reset_database("audit")
        reset_database("attestly")
        bench_stack("quality")
    reset_database("audit")
    from attestly.quality import run_quality
    from attestly.quality.suite import import_gx

    import_gx()  # loaded before the first measurement, so "before suite" includes GX itself

    per_day = max(1_000, min(200_000, math.ceil(rows / DAYS)))
    checkpoints = sorted({c for c in CHECKPOINTS if c < rows} | {rows})
    seeded_days, seeded_rows, seed_seconds = 0, 0, 0.0
    start = datetime(START.year, START.month, START.day, tzinfo=UTC)
    out: dict[str, Any] = {"events_per_day": per_day, "checkpoints": []}
    for target in checkpoints:
        days = max(1, math.ceil((target - seeded_rows) / per_day))
        seeded = in_subprocess(
            "bench.bench_quality", "seed_days", start=(START + timedelta(days=seeded_days)).isoformat(),
            days=days, events_per_day=per_day, plant_faults=seeded_days == 0,
        )  # fmt: skip
        seeded_days += days
        seeded_rows += int(seeded["rows"])
        seed_seconds += float(seeded["seconds"])
        end = start + timedelta(days=seeded_days)
        rss_before = peak_rss_mb()
        t0 = time.perf_counter()
        result = run_quality(start=start, end=end)
        suite_seconds = time.perf_counter() - t0
        rss_suite = peak_rss_mb()
        t0 = time.perf_counter()
        sql_counts = run_baseline(start, end)
        sql_seconds = time.perf_counter() - t0
        suite_counts = {c.name: c.unexpected_count for c in result.checks}
        disagree = {k: (v, sql_counts.get(k)) for k, v in suite_counts.items() if sql_counts.get(k) != v}
        point = {
            "rows": result.rows,
            "days": seeded_days,
            "suite_seconds": round(suite_seconds, 2),
            "sql_seconds": round(sql_seconds, 2),
            "ratio": round(suite_seconds / sql_seconds, 2) if sql_seconds else None,
            "peak_rss_mb_before_suite": round(rss_before, 1),
            "peak_rss_mb": round(rss_suite, 1),
            "failed_checks": {c.name: c.unexpected_count for c in result.failed},
            "counts_agree": not disagree,
            "disagreements": disagree,
        }
        out["checkpoints"].append(point)
        print(
            f"rows={point['rows']:>10,}  suite={suite_seconds:8.2f}s  sql={sql_seconds:8.2f}s  "
            f"ratio={point['ratio']}  peak_rss={rss_suite:,.0f} MB  counts_agree={not disagree}",
            flush=True,
        )
    out["seed_rows"] = seeded_rows
    out["seed_seconds"] = round(seed_seconds, 1)
    if not keep_stack:
        from attestly_dev.stack import core

        core.down()
    return out


def run(*, rows: int | None = None, quick: bool = False) -> list[Figure]:
    """Figures in the shared bench shape (``make bench``), one per checkpoint.

    ``rows`` defaults to 5,000,000, or 200,000 with ``quick`` (``BENCH_QUICK=1``).
    """
    figures = measure(rows=rows if rows is not None else (200_000 if quick else 5_000_000))
    return [
        Figure(
            name=f"audit_log_quality suite over {p['rows']:,} events",
            value=p["suite_seconds"],
            unit="s",
            baseline="one hand-written SQL statement, same aggregates, same session settings",
            baseline_value=p["sql_seconds"],
            ratio=p["ratio"] or 0.0,
            target="reported (no target set); counts must agree",
            peak_rss_mb=p["peak_rss_mb"],
            note=f"counts_agree={p['counts_agree']}",
        )
        for p in figures["checkpoints"]
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_QUALITY_ROWS", "5000000")))
    parser.add_argument("--down", action="store_true", help="stop the bench stack at the end")
    args = parser.parse_args(argv)
    figures = measure(rows=args.rows, keep_stack=not args.down)
    print(json.dumps(figures, indent=2, sort_keys=True, default=str))
    for p in figures["checkpoints"]:
        print(
            f"{fmt(p['rows'])} rows: suite {p['suite_seconds']} s, SQL {p['sql_seconds']} s, ratio {p['ratio']}"
        )
    return figures


if __name__ == "__main__":
    main()
