"""Archive throughput against raw COPY, and peak memory, on an isolated local stack.

    python -m bench.bench_archive --rows 5000000            # sizes 1M and 5M
    python -m bench.bench_archive --rows 1000000 --small 200000

For each size: fresh ``audit`` and ``attestly`` databases, one month of synthetic events (every source
but ``billing``, so the whole month is due at once: hipaa after 12 months online, security after 3 —
and the month's partition is dropped whole), then, each in a fresh subprocess so its RSS high-water
mark is its own:

- **baseline** — ``COPY (SELECT * FROM audit.events WHERE <the month>) TO STDOUT (FORMAT binary)``
  streamed to ``/dev/null``;
- **archive** — the whole workflow end to end, through the orchestration functions the DAG and the CLI
  run (:mod:`attestly.archive.runner`): plan, export (COPY -> Parquet/zstd -> AES-256-GCM -> multipart
  upload), verify (read back, decrypt, hash; the audit database checks its rows and authorises the
  purge meanwhile), purge, evidence — ``--workers`` batches at a time (default 2, as the DAG's mapped
  ``archive`` tasks on two worker slots; then one batch's verification overlaps the next one's export,
  and the export and verify phase figures are sums over batches that overlap in time);
- **I/O floor** — what any archive must pay on this machine and endpoint: ``COPY ... (FORMAT binary)``
  of the same rows to a file, then a plain boto3 ``upload_file`` of a file of the archive object's size
  and a ``get_object`` of it back, to the same S3 endpoint (a bucket without Object Lock).

Prints rows/s of each, the ratios archive/raw COPY (aim >= 0.35 at 5M on 2 cores, stretch 0.5) and
archive/I-O floor (aim >= 0.7); CPU seconds per million rows by process (archive, PostgreSQL, storage
server) and by phase (plan, export+encrypt+upload — one overlapped stream, so the processes tell the
export (PostgreSQL), Parquet+encryption (archive) and upload (storage) apart — verify, purge, evidence);
peak RSS per size and its growth from the smallest to the largest size (aim: within 10 %); and the load
average around each measurement (the machine is shared). ``main()`` returns the figures and writes them
to ``bench/results/bench_archive.json``.
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


class _CpuClock:
    """CPU seconds so far of this process (every thread), the PostgreSQL server (postmaster, its live
    backends and those already reaped) and the S3 server — read at each phase boundary."""

    def __init__(self) -> None:
        pids = _service_pids() if sys.platform.startswith("linux") else {}
        self.pg, self.s3 = pids.get("postgres"), pids.get("moto")

    def read(self) -> dict[str, float]:
        return {
            "archive": time.process_time(),
            "postgres": _tree_cpu(self.pg),
            "storage": _cpu_seconds(self.s3),
        }


def child_archive(workers: int = 1) -> dict[str, Any]:
    from attestly.archive import runner
    from attestly.archive import verify as verify_mod
    from attestly.archive.context import ArchiveContext

    _, as_of = _month()
    clock = _CpuClock()
    phases: dict[str, float] = {}
    cpu: dict[str, dict[str, float]] = {}

    def account(phase: str, seconds: float, before: dict[str, float]) -> None:
        after = clock.read()
        phases[phase] = phases.get(phase, 0.0) + seconds
        box = cpu.setdefault(phase, {})
        for k, v in after.items():
            box[k] = box.get(k, 0.0) + v - before[k]

    def timed(phase: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before, t = clock.read(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                account(phase, time.perf_counter() - t, before)

        return wrapper

    # The runner's own steps, measured from outside: uploading (export+encrypt+upload) and verifying.
    runner._ensure_uploaded = timed("export_encrypt_upload", runner._ensure_uploaded)  # type: ignore[method-assign]
    verify_mod.verify_batch = timed("verify", verify_mod.verify_batch)  # type: ignore[method-assign]

    started = time.perf_counter()
    with ArchiveContext.open(run_id="bench") as ctx:
        phases["open"] = time.perf_counter() - started
        planned = timed("plan", runner.plan_due)(ctx, as_of=as_of)
        batches = list(planned.batches)
        outcome = runner.archive_batches(ctx, batches, workers=workers)
        outcome.raise_for_failures()
        purged = timed("purge", runner.purge_due)(ctx, batches)
        timed("evidence", runner.record_due)(ctx, batches)
        uploads = [ctx.journal.last_in_state(b.batch_id, "uploaded") for b in batches]
        verified = [ctx.journal.last_in_state(b.batch_id, "verified") for b in batches]
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
        "phase_cpu_seconds": {ph: {k: round(v, 2) for k, v in c.items()} for ph, c in cpu.items()},
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_floor_copy() -> dict[str, Any]:
    """The I/O floor's export: binary COPY of the month's rows to a file (run before the archive, which
    purges them)."""
    import tempfile

    from psycopg import sql

    from attestly.archive.context import connect_audit
    from attestly.policy import add_months

    month, _ = _month()
    with tempfile.TemporaryDirectory(dir=HOME) as tmp:
        dump = Path(tmp) / "rows.copy"
        conn = connect_audit("audit_db")
        query = sql.SQL(
            "COPY (SELECT * FROM audit.events WHERE occurred_at >= %s AND occurred_at < %s) TO STDOUT (FORMAT binary)"
        )
        t = time.perf_counter()
        with (
            open(dump, "wb") as sink,
            conn.cursor() as cur,
            cur.copy(query, (month, add_months(month, 1))) as copy,
        ):
            for block in copy:
                sink.write(block)
        seconds = time.perf_counter() - t
        size = dump.stat().st_size
        conn.close()
    return {"seconds": seconds, "copy_bytes": size, "peak_rss_mb": _peak_rss_mb()}


def child_floor_store(object_bytes: int) -> dict[str, Any]:
    """The I/O floor's store and read-back: a plain boto3 PUT of a file of the archive's size and a GET of
    it back, to the same endpoint (a bucket without Object Lock)."""
    import tempfile

    from attestly.connections import aws_client

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=HOME) as tmp:
        # An incompressible file (like ciphertext) of the archive object's size; writing it is not timed.
        blob = Path(tmp) / "object.bin"
        with open(blob, "wb") as f:
            left = object_bytes
            while left > 0:
                n = min(left, 8 << 20)
                f.write(os.urandom(n))
                left -= n
        s3 = aws_client("s3")
        bucket = f"bench-floor-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=bucket)
        t = time.perf_counter()
        s3.upload_file(str(blob), bucket, "floor.bin")
        out["put_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        body = s3.get_object(Bucket=bucket, Key="floor.bin")["Body"]
        got = 0
        for chunk in body.iter_chunks(chunk_size=1 << 20):
            got += len(chunk)
        out["get_seconds"] = time.perf_counter() - t
        if got != object_bytes:
            raise RuntimeError(f"floor GET returned {got} bytes, PUT {object_bytes}")
        s3.delete_object(Bucket=bucket, Key="floor.bin")  # moto keeps objects in memory
        s3.delete_bucket(Bucket=bucket)
    out["object_bytes"] = object_bytes
    out["seconds"] = out["put_seconds"] + out["get_seconds"]
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _tree_cpu(pid: int | None) -> float:
    """CPU seconds of a server and its direct children (PostgreSQL's backends and parallel workers, live
    ones included: a backend's time reaches the postmaster's own children total only when it exits)."""
    if not pid:
        return 0.0
    total = _cpu_seconds(pid)
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


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


def _run_child(kind: str, *extra: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; adds the CPU seconds it took, those the database
    server and the S3 server spent meanwhile (where the time goes, beyond the wall clock), and the
    1-minute load average before and after (the machine is shared)."""
    pids = _service_pids() if sys.platform.startswith("linux") else {}
    before = {name: _tree_cpu(pid) if name == "postgres" else _cpu_seconds(pid) for name, pid in pids.items()}
    load_before = os.getloadavg()[0]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_archive", "--child", kind, *extra],
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
    cpu.update(
        {
            ("storage" if name == "moto" else name): (
                _tree_cpu(pid) if name == "postgres" else _cpu_seconds(pid)
            )
            - before[name]
            for name, pid in pids.items()
        }
    )
    figures["cpu_seconds"] = {k: round(v, 2) for k, v in cpu.items()}
    figures["load_1m"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
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
    parser.add_argument(
        "--child",
        choices=["copy", "archive", "floor-copy", "floor-store", "floor"],
        default=None,
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--object-bytes", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="archive batches at a time (as the DAG's mapped archive tasks on that many worker slots)",
    )
    args = parser.parse_args([] if argv is None else argv)  # main() alone: the defaults (make bench)

    os.environ["ATTESTLY_HOME"] = str(HOME)
    from attestly_dev.stack import core

    if args.child:
        core.apply_environment()
        if args.child == "floor-copy":
            figures = child_floor_copy()
        elif args.child == "floor-store":
            figures = child_floor_store(args.object_bytes)
        elif args.child == "floor":  # both halves in one child (only meaningful while the rows are there)
            copied, stored = child_floor_copy(), child_floor_store(args.object_bytes)
            figures = {
                **stored,
                "copy_to_file_seconds": copied["seconds"],
                "seconds": copied["seconds"] + stored["seconds"],
            }
        else:
            figures = child_copy() if args.child == "copy" else child_archive(args.workers)
        print(json.dumps(figures, sort_keys=True))
        return figures

    services = core.status()["services"]
    was_up = all(services.get(name, {}).get("healthy") for name in ("postgres", "moto"))
    core.up(quiet=True, migrate_airflow=False)
    core.apply_environment()
    try:
        return _measure(sorted({args.small, args.rows}), workers=args.workers)
    finally:
        if not was_up:
            core.down()  # leave the machine as found: stop what this run started


def _fmt(figures: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in figures.items())


def _per_million(cpu: dict[str, float], rows: int) -> dict[str, float]:
    return {k: round(v * 1e6 / rows, 2) for k, v in cpu.items()} if rows else {}


def _measure(sizes: list[int], *, workers: int = 1) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for n in sizes:
        prep = _prepare(n)
        baseline = _run_child("copy")
        floor_copy = _run_child("floor-copy")  # before the archive: it purges the rows
        archive = {**_run_child("archive", "--workers", str(workers)), "workers": workers}
        if archive["rows"] != baseline["rows"]:
            raise RuntimeError(f"archived {archive['rows']} rows, the baseline copied {baseline['rows']}")
        store = _run_child("floor-store", "--object-bytes", str(archive["object_bytes"]))
        floor = {
            "copy_to_file_seconds": floor_copy["seconds"],
            "copy_bytes": floor_copy["copy_bytes"],
            **{k: store[k] for k in ("put_seconds", "get_seconds", "object_bytes")},
            "seconds": floor_copy["seconds"] + store["seconds"],
            "cpu_seconds": {
                k: round(floor_copy["cpu_seconds"].get(k, 0.0) + store["cpu_seconds"].get(k, 0.0), 2)
                for k in {*floor_copy["cpu_seconds"], *store["cpu_seconds"]}
            },
            "load_1m": {"before": floor_copy["load_1m"]["before"], "after": store["load_1m"]["after"]},
        }
        rows = archive["rows"]
        archive_rate = rows / archive["seconds"]
        runs[str(n)] = {
            **prep,
            "baseline_copy": {**baseline, "rows_per_second": baseline["rows"] / baseline["seconds"]},
            "archive": {
                **archive,
                "rows_per_second": archive_rate,
                "cpu_seconds_per_million_rows": _per_million(archive["cpu_seconds"], rows),
                "phase_cpu_seconds_per_million_rows": {
                    ph: _per_million(c, rows) for ph, c in archive["phase_cpu_seconds"].items()
                },
            },
            "io_floor": {
                **floor,
                "rows_per_second": rows / floor["seconds"],
                "cpu_seconds_per_million_rows": _per_million(floor["cpu_seconds"], rows),
            },
            "ratio": archive_rate / (baseline["rows"] / baseline["seconds"]),
            "ratio_to_floor": archive_rate / (rows / floor["seconds"]),
        }
        r = runs[str(n)]
        a = r["archive"]
        phase_lines = "".join(
            f"\n{'':>14}{ph:<22} {_fmt(c)}" for ph, c in a["phase_cpu_seconds_per_million_rows"].items()
        )
        print(
            f"{n:>10,} rows: archive {archive_rate:>10,.0f} rows/s in {archive['seconds']:.2f} s; "
            f"COPY binary {r['baseline_copy']['rows_per_second']:>10,.0f} rows/s in {baseline['seconds']:.2f} s "
            f"(ratio {r['ratio']:.2f}); I/O floor {r['io_floor']['rows_per_second']:>10,.0f} rows/s in "
            f"{floor['seconds']:.2f} s (COPY to file {floor['copy_to_file_seconds']:.2f} + PUT {floor['put_seconds']:.2f}"
            f" + GET {floor['get_seconds']:.2f}, {floor['object_bytes'] / 2**20:.0f} MiB; ratio {r['ratio_to_floor']:.2f})\n"
            f"{'':>12}peak RSS archive {archive['peak_rss_mb']:.0f} MiB / copy {baseline['peak_rss_mb']:.0f} MiB\n"
            f"{'':>12}archive phases (s): {_fmt(archive['phases'])}\n"
            f"{'':>12}CPU s per 1M rows, by process: archive run {_fmt(a['cpu_seconds_per_million_rows'])}; "
            f"raw copy {_fmt(_per_million(baseline['cpu_seconds'], rows))}; "
            f"floor {_fmt(r['io_floor']['cpu_seconds_per_million_rows'])}\n"
            f"{'':>12}CPU s per 1M rows, by phase and process:{phase_lines}\n"
            f"{'':>12}load average (1 min) before/after: copy {baseline['load_1m']}, archive {archive['load_1m']}, "
            f"floor {floor['load_1m']}",
            file=sys.stderr,
        )
    small, large = runs[str(sizes[0])], runs[str(sizes[-1])]
    result = {
        "benchmark": "archive",
        "sizes": runs,
        "ratio_at_largest": large["ratio"],
        "ratio_target": 0.35,
        "ratio_stretch": 0.5,
        "ratio_to_floor_at_largest": large["ratio_to_floor"],
        "ratio_to_floor_target": 0.7,
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
    """Figures for ``make bench`` (bench/__main__.py): at each size, the archive against raw binary COPY
    and against the I/O floor, CPU per million rows; and memory growth."""
    from bench.common import Figure

    result = main(["--rows", "200000", "--small", "50000"] if quick else [])
    sizes = sorted(result["sizes"], key=int)
    small, large = result["sizes"][sizes[0]], result["sizes"][sizes[-1]]
    figures = []
    for size in sizes:
        r = result["sizes"][size]
        a = r["archive"]
        cpu = a["cpu_seconds_per_million_rows"]
        figures += [
            Figure(
                name=f"archive end to end ({int(size):,} rows: export, Parquet, encrypt, upload, verify, purge)",
                value=a["rows_per_second"],
                unit="rows/s",
                baseline="raw COPY ... TO STDOUT (FORMAT binary) of the same rows",
                baseline_value=r["baseline_copy"]["rows_per_second"],
                ratio=r["ratio"],
                target=">= 0.35 at 5M (stretch 0.5)",
                peak_rss_mb=a["peak_rss_mb"],
                note="CPU s/1M rows: "
                + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
                + f"; load {a['load_1m']['before']}->{a['load_1m']['after']}",
            ),
            Figure(
                name=f"archive vs I/O floor ({int(size):,} rows)",
                value=a["rows_per_second"],
                unit="rows/s",
                baseline="binary COPY to a file + boto3 PUT and GET of an object of the archive's size",
                baseline_value=r["io_floor"]["rows_per_second"],
                ratio=r["ratio_to_floor"],
                target=">= 0.7",
                note=", ".join(
                    f"{ph}: " + "/".join(f"{v:.1f}" for v in c.values())
                    for ph, c in a["phase_cpu_seconds_per_million_rows"].items()
                )
                + " CPU s/1M rows (archive/postgres/storage)",
            ),
        ]
    figures.append(
        Figure(
            name=f"archive peak RSS at {int(sizes[-1]):,} rows vs {int(sizes[0]):,}",
            value=large["archive"]["peak_rss_mb"],
            unit="MiB",
            baseline=f"{int(sizes[0]):,} rows",
            baseline_value=small["archive"]["peak_rss_mb"],
            ratio=large["archive"]["peak_rss_mb"] / small["archive"]["peak_rss_mb"],
            target="<= 1.10",
        )
    )
    return figures
