"""Seeding throughput (``attestly seed audit``: generate, hash-chain, COPY through the writer role)
against raw ``COPY ... FROM`` of the same rows from a file into a plain table, in the same run."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import Figure, bench_stack, in_subprocess, reset_database


def seed_rows(*, rows: int) -> dict[str, Any]:
    """In a fresh process: seed ``rows`` events over 10 days; return timing."""
    bench_stack("seed")
    from attestly_dev import audit_seed as seed

    per_day = rows // 10
    t0 = time.perf_counter()
    report = seed.seed_audit(start=date(2026, 1, 1), days=10, events_per_day=per_day)
    return {"rows": report["rows"], "seconds": time.perf_counter() - t0}


def copy_baseline() -> dict[str, Any]:
    """In a fresh process: COPY the seeded rows out to a file, then time COPY FROM that file."""
    bench_stack("seed")
    import psycopg

    from attestly_dev.stack import core

    admin = core.server().admin_conninfo("audit")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.copy"
        with psycopg.connect(admin) as conn:
            with (
                path.open("wb") as out,
                conn.cursor().copy("COPY (SELECT * FROM audit.events) TO STDOUT") as copy,
            ):
                for chunk in copy:
                    out.write(chunk)
            conn.execute("DROP TABLE IF EXISTS public.bench_copy")
            conn.execute("CREATE TABLE public.bench_copy (LIKE audit.events INCLUDING DEFAULTS)")
            conn.commit()
            t0 = time.perf_counter()
            with path.open("rb") as src, conn.cursor().copy("COPY public.bench_copy FROM STDIN") as copy:
                while block := src.read(1 << 20):
                    copy.write(block)
            conn.commit()
            seconds = time.perf_counter() - t0
            n = conn.execute("SELECT count(*) FROM public.bench_copy").fetchone()[0]  # type: ignore[index]
            conn.execute("DROP TABLE public.bench_copy")
            conn.commit()
    return {"rows": n, "seconds": seconds}


def run(*, rows: int = 500_000) -> list[Figure]:
    bench_stack("seed")
    reset_database("audit")
    seeded = in_subprocess("bench.bench_seed", "seed_rows", rows=rows)
    baseline = in_subprocess("bench.bench_seed", "copy_baseline")
    seed_rate = seeded["rows"] / seeded["seconds"]
    copy_rate = baseline["rows"] / baseline["seconds"]
    return [
        Figure(
            name="seed audit (generate + hash chain + COPY)",
            value=seed_rate,
            unit="events/s",
            baseline="raw COPY FROM file, same rows",
            baseline_value=copy_rate,
            ratio=seed_rate / copy_rate,
            target="reported (no target set)",
            peak_rss_mb=seeded["peak_rss_mb"],
            note=f"{seeded['rows']:,} events",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_SEED_ROWS", "500000")))
    args = parser.parse_args()
    for f in run(rows=args.rows):
        print(f)


if __name__ == "__main__":
    main()
