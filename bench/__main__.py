"""``make bench``: every benchmark, each against its same-run baseline; writes bench/results/latest.json.

Sizes follow the issues (>= 10,000 evidence objects; >= 5 million events for the quality suite and the
archive). ``BENCH_QUICK=1`` runs small sizes to check the harness. Benchmarks whose module is not present
yet are listed as skipped.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Figure, fmt

QUICK = os.environ.get("BENCH_QUICK") == "1"
BENCHES: list[tuple[str, str, dict[str, Any]]] = [
    ("seed", "bench.bench_seed", {"rows": 100_000 if QUICK else 1_000_000}),
    (
        "verify",
        "bench.bench_verify",
        {"objects": 1_000 if QUICK else 10_000, "large": 4_000 if QUICK else 100_000},
    ),
    ("quality", "bench.bench_quality", {"quick": QUICK}),
    ("archive", "bench.bench_archive", {"quick": QUICK}),
    ("collection", "bench.bench_collection", {"quick": QUICK}),
    ("scanners", "bench.bench_scanners", {"quick": QUICK}),
    ("reports", "bench.bench_reports", {"quick": QUICK}),
]


def _figures(name: str, module: str, kwargs: dict[str, Any]) -> list[Figure]:
    mod = importlib.import_module(module)
    if hasattr(mod, "run"):
        return list(mod.run(**kwargs))
    raise RuntimeError(f"{module} has no run()")


def main() -> int:
    only = set(sys.argv[1:])
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "quick": QUICK,
        "benchmarks": {},
    }
    failed = False
    for name, module, kwargs in BENCHES:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            figures = _figures(name, module, kwargs)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                results["benchmarks"][name] = {"status": "skipped", "reason": f"{module} not present"}
                print(f"   skipped: {module} not present")
                continue
            raise
        except Exception as exc:  # a broken benchmark is reported, and the others still run
            failed = True
            results["benchmarks"][name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
            continue
        results["benchmarks"][name] = {
            "status": "ok",
            "seconds": round(time.perf_counter() - t0, 1),
            "figures": [f.to_dict() for f in figures],
        }
        for f in figures:
            print(
                f"   {f.name}: {fmt(f.value)} {f.unit}  vs  {f.baseline}: {fmt(f.baseline_value)}  ratio {f.ratio:.2f} "
                f"(target {f.target})" + (f"  peak {f.peak_rss_mb:.0f} MiB" if f.peak_rss_mb else "")
            )
    out = Path(__file__).parent / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print("\n| benchmark | figure | value | baseline | ratio | target | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results["benchmarks"].items():
        if r["status"] != "ok":
            print(f"| {name} | {r['status']}: {r.get('reason') or r.get('error')} | | | | | |")
            continue
        for f in r["figures"]:
            peak = f"{f['peak_rss_mb']:.0f}" if f.get("peak_rss_mb") else ""
            print(
                f"| {name} | {f['name']} | {fmt(f['value'])} {f['unit']} | {fmt(f['baseline_value'])} | "
                f"{f['ratio']:.2f} | {f['target']} | {peak} |"
            )
    print(f"\nwritten: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
