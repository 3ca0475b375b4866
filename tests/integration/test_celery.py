"""The CeleryExecutor, for real (slow: `make test-all`): the local stack's Airflow with Redis and two
`airflow celery worker` processes runs `evidence_collection` through the scheduler over a moto
organisation of 50 accounts x 3 regions. One worker is killed with SIGKILL (its whole process group, as
when a machine is lost) while it runs a collection; Airflow's heartbeat timeout and retries finish the
run on the other worker, and every account's evidence is in the ledger and the bucket exactly once.

Time: about 5-8 minutes on 2 cores.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from attestly.connections import aws_client
from attestly.ledger import Ledger
from attestly.policy import AWS_COLLECTORS
from tests.conftest import recreate_database
from tests.integration.org_support import build_org, org_policy
from tests.integration.test_backfill import _wait_parsed, api_token, log_tail

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACCOUNTS = 50
REGIONS = ["us-east-1", "eu-west-1", "us-west-2"]
TIMEOUT = float(os.environ.get("ATTESTLY_CELERY_TIMEOUT", "900"))


@contextmanager
def celery_airflow(extra_env: dict[str, str], *, workers: int = 2) -> Iterator[dict[str, Any]]:
    """Airflow with the CeleryExecutor on the test stack; stops its processes and restores the local
    executor afterwards (the stack belongs to the session)."""
    from attestly_dev.stack import airflow_services, core, procs

    table = procs.ProcTable(core.paths().procs)
    saved = {k: os.environ.get(k) for k in extra_env}
    os.environ.update(extra_env)
    try:
        yield airflow_services.start(quiet=True, executor="celery", workers=workers)
    finally:
        for name, proc in table.load().items():
            if name.startswith("airflow-") or name == "redis":
                procs.stop(proc)
                table.remove(name)
        core.set_executor("local")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_of(pid: int) -> str | None:
    from attestly_dev.stack import core, procs

    for name, proc in procs.ProcTable(core.paths().procs).load().items():
        if not name.startswith("airflow-celery-worker") or not proc.alive():
            continue
        tree = {proc.pid} | {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        if pid in tree:
            return name
    return None


def _kill_group(name: str) -> None:
    from attestly_dev.stack import core, procs

    proc = procs.ProcTable(core.paths().procs).load()[name]
    os.killpg(os.getpgid(proc.pid), signal.SIGKILL)


def test_two_celery_workers_collect_an_organisation_and_survive_a_killed_worker(
    stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = build_org({"celery": ACCOUNTS}, seed=False)
    members = org.ids("celery")
    policy_dir = org_policy(
        tmp_path / "policy",
        include_ous=[org.ous["celery"]],
        regions=REGIONS,
        collection="collection:\n  accounts_per_task: 5\n  max_parallel: 4",
    )
    recreate_database("attestly")
    bucket = f"celery-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    monkeypatch.setenv("ATTESTLY_EVIDENCE_BUCKET", bucket)
    env = {
        "ATTESTLY_POLICY_DIR": str(policy_dir),
        "ATTESTLY_EVIDENCE_BUCKET": bucket,
        "ATTESTLY_RETRY_DELAY_SECONDS": "2",
        # A lost worker stops heartbeating: the scheduler fails its task after this and retries it.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    }
    with celery_airflow(env, workers=2) as info:
        _wait_parsed(("evidence_collection",))  # unpausing schedules the interval that ended today
        client = httpx.Client(
            base_url=info["url"], headers={"Authorization": f"Bearer {api_token(info)}"}, timeout=30
        )
        run_id = _only_run(client)
        killed = _kill_a_worker_mid_collection(client, run_id, info)
        run = _wait_run(client, run_id, info)
        tis = _tis(client, run_id)
        worker_logs = {
            n: (Path(info["logs"]) / f"airflow-celery-worker-{n}.log").read_text(errors="replace")
            for n in (1, 2)
        }
    assert run["state"] == "success", (
        run,
        [(t["task_id"], t["map_index"], t["state"], t["try_number"]) for t in tis],
    )
    collect = [t for t in tis if t["task_id"] == "collect_aws"]
    assert len(collect) == 10 and all(t["state"] == "success" for t in collect)
    assert any(t["try_number"] > 1 for t in collect), "the killed worker's task was retried"
    assert all("evidence_collection" in log for log in worker_logs.values()), "tasks ran on both workers"
    assert killed

    with Ledger.connect() as ledger:
        items = [e.body for e in ledger.entries(kind="evidence")]
    aws = Counter(
        (i["scope"]["account"], i["collector"], i["scope"]["region"])
        for i in items
        if "account" in i["scope"]
    )
    per_account = 11 + 6 * len(REGIONS)
    assert len(aws) == ACCOUNTS * per_account and set(aws.values()) == {1}  # nothing missing, nothing twice
    assert {k[0] for k in aws} == set(members)
    assert len({i["collector"] for i in items if i["collector"] in AWS_COLLECTORS}) == len(AWS_COLLECTORS)
    observations = Counter(i["observation"] for i in items)
    assert set(observations.values()) == {1}
    # The bucket: exactly the ledgered objects under objects/ — a killed try's upload was adopted, not copied.
    s3 = aws_client("s3")
    keys = [
        v["Key"]
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="objects/")
        for v in page.get("Versions", [])
    ]
    assert sorted(keys) == sorted(i["key"] for i in items)


def _only_run(client: httpx.Client) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = client.get("/api/v2/dags/evidence_collection/dagRuns").json()["dag_runs"]
        if runs:
            assert len(runs) == 1, runs
            return str(runs[0]["dag_run_id"])
        time.sleep(2)
    pytest.fail("unpausing the DAG scheduled no run")


def _tis(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    resp = client.get(
        f"/api/v2/dags/evidence_collection/dagRuns/{run_id}/taskInstances", params={"limit": 200}
    )
    resp.raise_for_status()
    return list(resp.json()["task_instances"])


def _kill_a_worker_mid_collection(client: httpx.Client, run_id: str, info: dict[str, Any]) -> str:
    """SIGKILL the process group of worker 1 while it runs a collect_aws task (waits for that)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for ti in _tis(client, run_id):
            if ti["task_id"] == "collect_aws" and ti["state"] == "running" and ti.get("pid"):
                name = _worker_of(int(ti["pid"]))
                if name == "airflow-celery-worker-1":
                    time.sleep(2)  # well inside its collection
                    _kill_group(name)
                    return f"{name} killed during collect_aws[{ti['map_index']}]"
        time.sleep(1)
    pytest.fail("worker 1 never ran a collect_aws task\n" + log_tail(info, "airflow-scheduler"))


def _wait_run(client: httpx.Client, run_id: str, info: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        run = client.get(f"/api/v2/dags/evidence_collection/dagRuns/{run_id}").json()
        if run["state"] in ("success", "failed"):
            return dict(run)
        time.sleep(3)
    pytest.fail(f"run {run_id} not finished after {TIMEOUT:.0f}s\n" + log_tail(info, "airflow-scheduler"))
