"""Shared by the benchmarks: an isolated stack, timing, peak memory, and the result shape.

Each benchmark measures Attestly against a baseline in the same run (e.g. raw COPY, plain boto3 GETs) and
returns figures ``{name, value, unit, baseline, baseline_value, ratio, target, peak_rss_mb}``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    ratio: float
    target: str
    peak_rss_mb: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_stack(name: str) -> dict[str, str]:
    """Start (or reuse) an isolated local stack for benchmark ``name`` and export its environment."""
    from attestly import config

    os.environ["ATTESTLY_HOME"] = str(config.project_dir() / ".attestly" / f"bench-{name}")
    from attestly_dev.stack import core

    core.up(quiet=True, migrate_airflow=False)
    return core.apply_environment()


def reset_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    from attestly.db import migrate
    from attestly_dev.stack import core

    srv = core.server()
    with psycopg.connect(srv.admin_conninfo(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    migrate.migrate(srv.admin_conninfo(name), name)


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - t0


def peak_rss_mb() -> float:
    """High-water resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_subprocess(module: str, func: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``module.func(**kwargs)`` in a fresh interpreter, so its peak RSS is its own."""
    import json

    code = (
        "import json, sys, importlib; "
        f"m = importlib.import_module({module!r}); "
        f"out = getattr(m, {func!r})(**json.loads(sys.argv[1])); "
        "import resource; out['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; "
        "print('BENCH-RESULT ' + json.dumps(out))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return dict(json.loads(line.removeprefix("BENCH-RESULT ")))
    raise RuntimeError(f"{module}.{func} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


Runner = Callable[..., list[Figure]]
