"""Archive throughput against raw COPY, and peak memory, on an isolated local stack.

    python -m bench.bench_archive --rows 5000000            # sizes 1M and 5M
    python -m bench.bench_archive --rows 1000000 --small 200000

For each size: fresh ``audit`` and ``attestly`` databases, one month of synthetic events (every source
but ``billing``, so the whole month is due at once: hipaa after 12 months online, security after 3 —
and the month's partition is dropped whole), then, each in a fresh subprocess so its RSS high-water
mark is its own:

- **baseline** — ``COPY (SELECT * FROM audit.events WHERE <the month>) TO STDOUT (FORMAT binary)``
  streamed to ``/dev/null``;
- **archive** — the whole workflow end to end: plan, export (COPY -> Parquet/zstd -> AES-256-GCM ->
  multipart upload), verify (read back, decrypt, hash, compare with the database), purge, evidence.

Prints rows/s of each, the ratio archive/baseline (aim >= 0.5), peak RSS per size and its growth from
the smallest to the largest size (aim: within 10 %: memory must not grow with the batch). ``main()``
returns the figures and writes them to ``bench/results/bench_archive.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".attestly" / "bench-archive"
SOURCES = ["ehr-api", "auth-service", "admin-console"]
DAYS = 28


def _month() -> tuple[date, date]:
    """The benchmark month (13 months back: due for every seeded class, inside every retention) and the
    as-of date of the run (the first of this month)."""
    from attestly.policy import add_months

    today = date.today()
    as_of = date(today.year, today.month, 1)
    return add_months(as_of, -13), as_of


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------------------- children


def child_copy() -> dict[str, Any]:
    from psycopg import sql

    from attestly.archive.context import connect_audit
    from attestly.policy import add_months

    month, _ = _month()
    conn = connect_audit("audit_db")
    query = sql.SQL(
        "COPY (SELECT * FROM audit.events WHERE occurred_at >= %s AND occurred_at < %s) TO STDOUT (FORMAT binary)"
    )
    started = time.perf_counter()
    size = 0
    with (
        open(os.devnull, "wb") as sink,
        conn.cursor() as cur,
        cur.copy(query, (month, add_months(month, 1))) as copy,
    ):
        for block in copy:
            sink.write(block)
            size += len(block)
    seconds = time.perf_counter() - started
    rows = conn.execute(
        "SELECT count(*) FROM audit.events WHERE occurred_at >= %s AND occurred_at < %s",
        (month, add_months(month, 1)),
    ).fetchone()
    conn.close()
    return {
        "seconds": seconds,
        "bytes": size,
        "rows": int(rows[0]) if rows else 0,
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_archive() -> dict[str, Any]:
    from attestly.archive import runner
    from attestly.archive.context import ArchiveContext
    from attestly.archive.planning import plan

    _, as_of = _month()
    phases: dict[str, float] = {}
    started = time.perf_counter()
    with ArchiveContext.open(run_id="bench") as ctx:
        phases["open"] = time.perf_counter() - started
        t = time.perf_counter()
        planned = plan(ctx, as_of=as_of)
        phases["plan"] = time.perf_counter() - t
        batches = list(planned.batches)
        t = time.perf_counter()
        for b in batches:
            runner.archive_batch(ctx, b)
        phases["export_upload_verify"] = time.perf_counter() - t
        t = time.perf_counter()
        purged = runner.purge_due(ctx, batches)
        phases["purge"] = time.perf_counter() - t
        t = time.perf_counter()
        runner.record_due(ctx, batches)
        phases["evidence"] = time.perf_counter() - t
        uploads = [ctx.journal.last_in_state(b.batch_id, "uploaded") for b in batches]
        verified = [ctx.journal.last_in_state(b.batch_id, "verified") for b in batches]
        phases["export_upload"] = sum(float(u.details.get("seconds", 0)) for u in uploads if u)
        phases["verify"] = phases["export_upload_verify"] - phases["export_upload"]
        rows = sum(int(v.details["archive"]["rows"]) for v in verified if v)
        object_bytes = sum(int(u.details.get("object_bytes", 0)) for u in uploads if u)
        csv_bytes = sum(int(u.details.get("csv_bytes", 0)) for u in uploads if u)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": rows,
        "batches": len(batches),
        "purges": [p.get("method") for p in purged],
        "object_bytes": object_bytes,
        "csv_bytes": csv_bytes,
        "phases": {k: round(v, 3) for k, v in phases.items()},
        "peak_rss_mb": _peak_rss_mb(),
    }


def _cpu_seconds(pid: int | None) -> float:
    """CPU time of a process and of its reaped children (PostgreSQL's backends and parallel workers)."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _service_pids() -> dict[str, int | None]:
    from attestly_dev.stack import core

    services = core.status()["services"]
    return {name: services.get(name, {}).get("pid") for name in ("postgres", "moto")}


def _run_child(kind: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; adds the CPU seconds it took, and those the database
    server and the S3 server spent meanwhile (where the time goes, beyond the wall clock)."""
    pids = _service_pids() if sys.platform.startswith("linux") else {}
    before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_archive", "--child", kind],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {kind} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    figures = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {"process": after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime}
    cpu.update({name: _cpu_seconds(pid) - before[name] for name, pid in pids.items()})
    figures["cpu_seconds"] = {k: round(v, 2) for k, v in cpu.items()}
    return figures


# ---------------------------------------------------------------------------------------------- parent


def _prepare(rows: int) -> dict[str, Any]:
    """Fresh databases and bucket; seed ``rows`` events over one month (oldest first)."""
    import psycopg
    from psycopg import sql

    from attestly.connections import aws_client
    from attestly.db import migrate
    from attestly_dev import audit_seed as seed
    from attestly_dev.stack import core

    srv = core.server()
    for name in ("audit", "attestly"):
        with psycopg.connect(srv.admin_conninfo(), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
        migrate.migrate(srv.admin_conninfo(name), name)
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    os.environ["ATTESTLY_EVIDENCE_BUCKET"] = bucket
    month, _ = _month()
    per_day = max(1, rows // DAYS)
    started = time.perf_counter()
    seeded = 0
    for d in range(DAYS):
        seeded += int(
            seed.seed_audit(start=month + timedelta(days=d), days=1, events_per_day=per_day, sources=SOURCES)[
                "rows"
            ]
        )
    with psycopg.connect(srv.admin_conninfo("audit"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE audit.events")
    return {"seeded_rows": seeded, "seed_seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_archive", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rows", type=int, default=5_000_000, help="largest size (rows)")
    parser.add_argument(
        "--small", type=int, default=1_000_000, help="smallest size (rows), for memory growth"
    )
    parser.add_argument("--child", choices=["copy", "archive"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None else argv)  # main() alone: the defaults (make bench)

    os.environ["ATTESTLY_HOME"] = str(HOME)
    from attestly_dev.stack import core

    if args.child:
        core.apply_environment()
        figures = child_copy() if args.child == "copy" else child_archive()
        print(json.dumps(figures, sort_keys=True))
        return figures

    services = core.status()["services"]
    was_up = all(services.get(name, {}).get("healthy") for name in ("postgres", "moto"))
    core.up(quiet=True, migrate_airflow=False)
    core.apply_environment()
    try:
        return _measure(sorted({args.small, args.rows}))
    finally:
        if not was_up:
            core.down()  # leave the machine as found: stop what this run started


def _fmt(figures: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in figures.items())


def _measure(sizes: list[int]) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for n in sizes:
        prep = _prepare(n)
        baseline = _run_child("copy")
        archive = _run_child("archive")
        if archive["rows"] != baseline["rows"]:
            raise RuntimeError(f"archived {archive['rows']} rows, the baseline copied {baseline['rows']}")
        runs[str(n)] = {
            **prep,
            "baseline_copy": {**baseline, "rows_per_second": baseline["rows"] / baseline["seconds"]},
            "archive": {**archive, "rows_per_second": archive["rows"] / archive["seconds"]},
            "ratio": (archive["rows"] / archive["seconds"]) / (baseline["rows"] / baseline["seconds"]),
        }
        r = runs[str(n)]
        print(
            f"{n:>10,} rows: archive {r['archive']['rows_per_second']:>10,.0f} rows/s "
            f"in {archive['seconds']:.2f} s, COPY binary {r['baseline_copy']['rows_per_second']:>10,.0f} rows/s "
            f"in {baseline['seconds']:.2f} s, ratio {r['ratio']:.2f}, peak RSS archive {archive['peak_rss_mb']:.0f} MiB"
            f" / copy {baseline['peak_rss_mb']:.0f} MiB\n"
            f"{'':>12}archive phases (s): {_fmt(archive['phases'])}\n"
            f"{'':>12}CPU (s) archive: {_fmt(archive['cpu_seconds'])}; copy: {_fmt(baseline['cpu_seconds'])}",
            file=sys.stderr,
        )
    small, large = runs[str(sizes[0])], runs[str(sizes[-1])]
    result = {
        "benchmark": "archive",
        "sizes": runs,
        "ratio_at_largest": large["ratio"],
        "ratio_target": 0.5,
        "peak_rss_mb": {k: v["archive"]["peak_rss_mb"] for k, v in runs.items()},
        "peak_rss_growth": large["archive"]["peak_rss_mb"] / small["archive"]["peak_rss_mb"] - 1.0,
        "peak_rss_growth_target": 0.10,
    }
    out = ROOT / "bench" / "results" / "bench_archive.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True))
    print(json.dumps(result, indent=2, sort_keys=True))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])


def run(*, quick: bool = False) -> list[Any]:
    """Figures for ``make bench`` (bench/__main__.py): the largest size against raw COPY, and memory growth."""
    from bench.common import Figure

    result = main(["--rows", "200000", "--small", "50000"] if quick else [])
    sizes = sorted(result["sizes"], key=int)
    small, large = result["sizes"][sizes[0]], result["sizes"][sizes[-1]]
    return [
        Figure(
            name=f"archive end to end ({int(sizes[-1]):,} rows: export, Parquet, encrypt, upload, verify, purge)",
            value=large["archive"]["rows_per_second"],
            unit="rows/s",
            baseline="raw COPY ... TO STDOUT (FORMAT binary) of the same rows",
            baseline_value=large["baseline_copy"]["rows_per_second"],
            ratio=large["ratio"],
            target=">= 0.5",
            peak_rss_mb=large["archive"]["peak_rss_mb"],
        ),
        Figure(
            name=f"archive peak RSS at {int(sizes[-1]):,} rows vs {int(sizes[0]):,}",
            value=large["archive"]["peak_rss_mb"],
            unit="MiB",
            baseline=f"{int(sizes[0]):,} rows",
            baseline_value=small["archive"]["peak_rss_mb"],
            ratio=large["archive"]["peak_rss_mb"] / small["archive"]["peak_rss_mb"],
            target="<= 1.10",
        ),
    ]
