"""Evidence collection at organisation scale: moto organisations of 10, 50 and 200 accounts x 4 regions,
each member seeded with a small known estate, collected by `evidence_collection` through the scheduler on
the local stack's executor (LocalExecutor, parallelism 4), against a same-run baseline that makes the same
AWS API calls sequentially with plain boto3 in one process (the API-call floor: every collector function
over every account and region, nothing recorded).

Figures per size: collection wall (first task start to last collection end) vs the floor, evidence items
per second, seconds per account, and the peak RSS of any task process; and the scaling ratio
wall(200) / wall(50) (linear would be 4.0; aim <= 4.5).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Figure, bench_stack, reset_database

REGIONS = ["us-east-1", "eu-west-1", "us-west-2", "eu-central-1"]


def _floor(accounts: list[str]) -> tuple[float, int]:
    """The same collector calls, one after another, plain boto3, nothing recorded: (seconds, units)."""
    from attestly.collectors.aws import REGISTRY
    from attestly.collectors.aws._common import DEFAULT_PARAMS, OBSERVED_AT_PARAM
    from attestly.collectors.aws._session import assume_role_session
    from attestly.policy import AWS_COLLECTORS

    params = {**DEFAULT_PARAMS, OBSERVED_AT_PARAM: datetime.now(UTC)}
    units = 0
    t0 = time.perf_counter()
    for account in accounts:
        session = assume_role_session(
            aws_conn_id="aws_default",
            role_arn=f"arn:aws:iam::{account}:role/AttestlyAudit",
            session_name="bench-floor",
            region_name=REGIONS[0],
        )
        for cid in AWS_COLLECTORS:
            spec = REGISTRY[cid]
            for region in [REGIONS[0]] if spec.scope == "account" else REGIONS:
                spec.func(session, region=region, account_id=account, params=params)
                units += 1
    return time.perf_counter() - t0, units


class _PeakRss:
    """Samples the RSS of every process under the scheduler (the executor's task processes)."""

    def __init__(self, root_pid: int) -> None:
        self.root = root_pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                for child in psutil.Process(self.root).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        self.peak = max(self.peak, child.memory_info().rss / 2**20)
            except psutil.Error:
                return
            time.sleep(0.5)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _collect(info: dict[str, Any], scheduler_pid: int) -> tuple[float, int, float]:
    """Unpause evidence_collection (which schedules the interval that ended today) and wait for that run;
    (collection wall seconds, AWS items, peak task RSS MiB)."""
    import httpx

    from attestly.ledger import Ledger
    from tests.integration.test_backfill import _airflow, _wait_parsed, api_token

    client = httpx.Client(
        base_url=info["url"], headers={"Authorization": f"Bearer {api_token(info)}"}, timeout=60
    )
    with _PeakRss(scheduler_pid) as rss:
        _wait_parsed(("evidence_collection",))
        polls = 0
        while True:
            runs = client.get("/api/v2/dags/evidence_collection/dagRuns").json().get("dag_runs") or []
            if runs and runs[0].get("state") in ("success", "failed"):
                break
            polls += 1
            if not runs and polls % 5 == 0:  # re-registered after the delete, paused again: unpause
                _airflow("dags", "unpause", "evidence_collection")
            time.sleep(2)
    run = runs[0]
    run_id = run["dag_run_id"]
    tis = client.get(
        f"/api/v2/dags/evidence_collection/dagRuns/{run_id}/taskInstances", params={"limit": 1000}
    ).json()["task_instances"]
    if run["state"] != "success":
        bad = [(t["task_id"], t["state"]) for t in tis if t["state"] != "success"]
        raise RuntimeError(f"run {run_id} {run['state']}: {bad}")
    work = [t for t in tis if t["task_id"] in ("discover_population", "collect_aws")]
    start = min(datetime.fromisoformat(t["start_date"]) for t in work)
    end = max(datetime.fromisoformat(t["end_date"]) for t in work)
    with Ledger.connect() as ledger:
        items = sum(1 for e in ledger.entries(kind="evidence") if "account" in e.body["scope"])
    return (end - start).total_seconds(), items, rss.peak


def run(*, quick: bool = False) -> list[Figure]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from attestly_dev.stack import airflow_services, core, procs
    from tests.integration.org_support import build_org, org_policy

    sizes = [4, 10] if quick else [10, 50, 200]
    bench_stack("collection")
    core.up(quiet=True)  # with Airflow's metadata database migrated
    home = core.paths().home
    from attestly.connections import aws_client
    from tests.integration.test_backfill import _airflow

    figures: list[Figure] = []
    walls: dict[int, float] = {}
    for n in sizes:
        org = build_org({"bench": n})
        accounts = org.ids("bench")
        policy_dir = org_policy(home / f"policy-{n}", include_ous=[org.ous["bench"]], regions=REGIONS)
        floor, units = _floor(accounts)
        # A clean ledger and bucket, and the DAG forgotten by Airflow, so its first run is this size's.
        reset_database("attestly")
        os.environ["ATTESTLY_EVIDENCE_BUCKET"] = f"bench-collection-{n}-{int(time.time())}"
        aws_client("s3").create_bucket(
            Bucket=os.environ["ATTESTLY_EVIDENCE_BUCKET"], ObjectLockEnabledForBucket=True
        )
        os.environ["ATTESTLY_POLICY_DIR"] = str(policy_dir)
        table = procs.ProcTable(core.paths().procs)
        try:
            info = airflow_services.start(quiet=True)
            _airflow("dags", "delete", "evidence_collection", "--yes")
            scheduler = table.load()["airflow-scheduler"].pid
            wall, items, peak = _collect(info, scheduler)
        finally:
            for name, proc in table.load().items():
                if name.startswith("airflow-"):
                    procs.stop(proc)
                    table.remove(name)
        if items != units:
            raise RuntimeError(f"{n} accounts: {items} AWS evidence items recorded, {units} collections made")
        walls[n] = wall
        figures.append(
            Figure(
                name=f"collection, {n} accounts x {len(REGIONS)} regions ({units} items)",
                value=round(wall, 1),
                unit="s",
                baseline="same API calls, sequential plain boto3",
                baseline_value=round(floor, 1),
                ratio=round(wall / floor, 2),
                target="<= 1.5",
                peak_rss_mb=round(peak, 1),
                note=f"{items / wall:.1f} items/s, {wall / n:.2f} s per account",
            )
        )
    big, mid = sizes[-1], sizes[-2]
    figures.append(
        Figure(
            name=f"scaling: wall({big} accounts) / wall({mid} accounts)",
            value=round(walls[big] / walls[mid], 2),
            unit="x",
            baseline=f"accounts ratio {big / mid:.1f}",
            baseline_value=round(big / mid, 2),
            ratio=round((walls[big] / walls[mid]) / (big / mid), 2),
            target=f"<= {4.5 if not quick else 1.125 * big / mid:.2f}x",
        )
    )
    return figures
