"""Backfills as the compliance team does them: `airflow backfill create` over a past week, run by a real
scheduler (api-server, scheduler, dag-processor, triggerer as separate processes) on the local stack.

Every run succeeds, each day gets its evidence exactly once (46 items a day for `evidence_collection`:
the population and 40 AWS collections saying `not_applicable` because they only see current state, and 5
audit-database items;
1 quality item a day), and backfilling the same week again adds nothing to the ledger: a plain second
`backfill create` creates no run, and `--reprocess-behavior completed` (one day, to keep the test short)
re-runs every task of that day with the same outcome.

Time: about 9-10 minutes on a busy 2-core machine (the first week is ~380 task instances at
parallelism 4, mostly task start-up); ATTESTLY_BACKFILL_TIMEOUT bounds each wait (default 900 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from attestly.connections import aws_client
from attestly.ledger import Ledger
from tests.conftest import recreate_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TODAY = datetime.now(UTC).date()
# Seven daily intervals [FIRST, FIRST + 1) .. [LAST, LAST + 1), all ended well over a day ago.
FIRST = TODAY - timedelta(days=9)
LAST = TODAY - timedelta(days=3)
WEEK = [FIRST + timedelta(days=n) for n in range(7)]
DAGS = ("evidence_collection", "audit_log_quality")
TERMINAL = {"success", "failed"}
RUNS_TIMEOUT = float(os.environ.get("ATTESTLY_BACKFILL_TIMEOUT", "900"))


# ------------------------------------------------------------------------------ Airflow services


def _airflow(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The `airflow` CLI with this process's environment (the stack's variables are applied)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    return subprocess.run(
        [airflow, *args], capture_output=True, text=True, check=False, timeout=timeout, env=dict(os.environ)
    )


def _service_names() -> list[str]:
    from attestly_dev.stack import airflow_services

    return [f"airflow-{s}" for s in airflow_services.SERVICES]


@contextmanager
def airflow_running(extra_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Start Airflow's four services on the test stack with ``extra_env`` added to their environment,
    yield ``{url, username, password, logs}``; stop exactly those processes afterwards (the stack's
    other processes belong to the session fixture)."""
    from attestly_dev.stack import airflow_services, core, procs

    table = procs.ProcTable(core.paths().procs)
    names = _service_names()
    already = [n for n, p in table.load().items() if n in names and p.alive()]
    if already:
        pytest.fail(
            f"Airflow services already running on the test stack ({already}); they would keep their env"
        )
    saved = {k: os.environ.get(k) for k in extra_env}
    os.environ.update(extra_env)
    try:
        yield airflow_services.start(quiet=True)
    finally:
        for name, proc in table.load().items():
            if name in names:
                procs.stop(proc)
                table.remove(name)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def api_token(info: dict[str, Any]) -> str:
    """A JWT from the simple auth manager (`POST /auth/token`)."""
    resp = httpx.post(
        f"{info['url']}/auth/token",
        json={"username": info["username"], "password": info["password"]},
        timeout=30,
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def log_tail(info: dict[str, Any], name: str, lines: int = 60) -> str:
    path = Path(info["logs"]) / f"{name}.log"
    if not path.exists():
        return f"({path} missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# ------------------------------------------------------------------------------------------ helpers


def _runs(client: httpx.Client, dag_id: str) -> list[dict[str, Any]]:
    resp = client.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "logical_date"})
    resp.raise_for_status()
    return list(resp.json()["dag_runs"])


def _snapshot(client: httpx.Client) -> dict[str, list[tuple[str, str, str | None]]]:
    return {d: sorted((r["dag_run_id"], r["state"], r["end_date"]) for r in _runs(client, d)) for d in DAGS}


def _backfill_runs(client: httpx.Client, dag_id: str) -> dict[date, dict[str, Any]]:
    return {
        datetime.fromisoformat(r["logical_date"]).date(): r
        for r in _runs(client, dag_id)
        if r["run_type"] == "backfill"
    }


def _wait_terminal(client: httpx.Client, info: dict[str, Any], *, expect: int) -> dict[str, list[dict]]:
    """Poll until every DAG has ``expect`` backfill runs and all its runs are terminal (bounded)."""
    deadline = time.monotonic() + RUNS_TIMEOUT
    while True:
        runs = {d: _runs(client, d) for d in DAGS}
        done = all(
            sum(1 for r in rs if r["run_type"] == "backfill") >= expect
            and all(r["state"] in TERMINAL for r in rs)
            for rs in runs.values()
        )
        if done:
            return runs
        if time.monotonic() > deadline:
            states = {d: sorted((r["dag_run_id"], r["state"]) for r in rs) for d, rs in runs.items()}
            pytest.fail(
                f"runs not terminal after {RUNS_TIMEOUT:.0f}s: {states}\n--- scheduler log tail ---\n"
                + log_tail(info, "airflow-scheduler")
            )
        time.sleep(3)


def _wait_backfills_completed(client: httpx.Client, info: dict[str, Any], timeout: float = 120) -> None:
    """Until the scheduler has marked every backfill of the DAGs completed: Airflow allows one running
    backfill per DAG, and marks it completed a scheduler loop after its last run ended."""
    deadline = time.monotonic() + timeout
    while True:
        open_ = []
        for dag_id in DAGS:
            resp = client.get("/api/v2/backfills", params={"dag_id": dag_id, "limit": 100})
            resp.raise_for_status()
            open_ += [(dag_id, b["id"]) for b in resp.json()["backfills"] if not b["completed_at"]]
        if not open_:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"backfills not completed: {open_}\n" + log_tail(info, "airflow-scheduler"))
        time.sleep(2)


def _wait_parsed(dag_ids: tuple[str, ...], timeout: float = 180) -> None:
    """`airflow dags unpause` until it succeeds: the dag-processor must have serialised the DAG first."""
    deadline = time.monotonic() + timeout
    pending = list(dag_ids)
    while pending:
        dag_id = pending[0]
        out = _airflow("dags", "unpause", dag_id)
        if out.returncode == 0:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            pytest.fail(
                f"`airflow dags unpause {dag_id}` kept failing:\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
            )
        time.sleep(3)


def _backfill(
    dag_id: str, *extra: str, first: date = FIRST, last: date = LAST
) -> subprocess.CompletedProcess[str]:
    """`airflow backfill create --dag-id D --from-date FIRST --to-date LAST` (logical dates, inclusive:
    the intervals that start on those days)."""
    out = _airflow(
        "backfill",
        "create",
        "--dag-id",
        dag_id,
        "--from-date",
        first.isoformat(),
        "--to-date",
        last.isoformat(),
        *extra,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _ledger_state() -> tuple[tuple[int, str], Counter[str]]:
    with Ledger.connect() as ledger:
        return ledger.head(), Counter(e.kind for e in ledger.entries())


def _evidence_by_day() -> dict[tuple[str, date], list[dict[str, Any]]]:
    out: dict[tuple[str, date], list[dict[str, Any]]] = {}
    with Ledger.connect() as ledger:
        for e in ledger.entries(kind="evidence"):
            b = e.body
            day = datetime.fromisoformat(b["period_start"].replace("Z", "+00:00")).date()
            out.setdefault((b["airflow"]["dag_id"], day), []).append(b)
    return out


# -------------------------------------------------------------------------------------------- test


@pytest.fixture(scope="module")
def week(stack: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Clean audit data around the week, the AWS estate, a fresh ledger and bucket; Airflow running."""
    from attestly_dev import audit_seed as seed
    from attestly_dev.aws_seed import seed_aws_estate

    recreate_database("attestly")
    recreate_database("audit")
    # From the day before the week (continuity is checked at its start) to yesterday: unpausing a DAG
    # also makes its latest scheduled run (yesterday's interval), which must find clean data too.
    seed.seed_audit(start=FIRST - timedelta(days=1), days=(TODAY - FIRST).days + 1, events_per_day=1200)
    seed_aws_estate()
    bucket = f"backfill-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    env = {"ATTESTLY_EVIDENCE_BUCKET": bucket, "ATTESTLY_RETRY_DELAY_SECONDS": "1"}
    with airflow_running(env) as info:
        yield {**info, "bucket": bucket}


def test_backfill_a_week_then_again_adds_nothing(week: dict[str, Any]) -> None:
    started = time.monotonic()
    _wait_parsed(DAGS)
    for dag_id in DAGS:
        _backfill(dag_id)
    with httpx.Client(
        base_url=week["url"], headers={"Authorization": f"Bearer {api_token(week)}"}, timeout=30
    ) as client:
        runs = _wait_terminal(client, week, expect=7)
        first_pass = time.monotonic() - started

        for dag_id in DAGS:
            backfill = _backfill_runs(client, dag_id)
            assert sorted(backfill) == WEEK, (dag_id, sorted(backfill))
            failed = {d: r["state"] for d, r in backfill.items() if r["state"] != "success"}
            assert not failed, (dag_id, failed, log_tail(week, "airflow-scheduler"))
            for day, r in backfill.items():
                assert datetime.fromisoformat(r["data_interval_start"]).date() == day
                assert datetime.fromisoformat(r["data_interval_end"]).date() == day + timedelta(days=1)
        # Unpausing also made each DAG's latest scheduled run (yesterday): it must succeed too.
        assert all(r["state"] == "success" for rs in runs.values() for r in rs), runs

        by_day = _evidence_by_day()
        for day in WEEK:
            items = by_day.get(("evidence_collection", day), [])
            aws = [i for i in items if i["collector"].split(".")[0] not in ("auditdb",)]
            db = [i for i in items if i["collector"].startswith("auditdb.")]
            assert len(items) == 46, (day, Counter(i["collector"] for i in items))
            assert len(aws) == 41 and {i["result"] for i in aws} == {"not_applicable"}
            assert all(i["retroactive"] is False for i in aws)
            assert len(db) == 5 and all(i["retroactive"] for i in db)
            assert (
                len({(i["collector"], tuple(sorted(i["scope"].items()))) for i in items}) == 46
            )  # once each
            assert {i["airflow"]["run_id"] for i in items} == {backfill_run_id(day)}
            quality = by_day.get(("audit_log_quality", day), [])
            assert [(q["collector"], q["result"]) for q in quality] == [("quality.audit_log", "pass")]
        with Ledger.connect() as ledger:
            run_records = [e.body for e in ledger.entries(kind="run")]
        for dag_id in DAGS:
            mine = [r for r in run_records if r["dag_id"] == dag_id and r["run_id"].startswith("backfill__")]
            assert sorted(r["data_interval"]["start"][:10] for r in mine) == [d.isoformat() for d in WEEK]
            assert {r["outcome"] for r in mine} == {"success"}
        state = _ledger_state()

        # The same week again, as a person who is not sure it ran would do it: Airflow creates nothing...
        _wait_backfills_completed(client, week)
        before = _snapshot(client)
        for dag_id in DAGS:
            _backfill(dag_id)
        _wait_backfills_completed(client, week)  # a scheduler loop saw them: nothing to run
        assert _snapshot(client) == before
        assert _ledger_state() == state
        # ...and re-running completed runs (--reprocess-behavior completed; one day, to keep the test
        # short: every task runs again, with new try numbers) adds nothing to the ledger either.
        ended = {d: _backfill_runs(client, d)[LAST]["end_date"] for d in DAGS}
        for dag_id in DAGS:
            _backfill(dag_id, "--reprocess-behavior", "completed", first=LAST, last=LAST)
        _wait_rerun(client, week, ended)
        assert _ledger_state() == state
    print(f"first backfill {first_pass:.0f}s, total {time.monotonic() - started:.0f}s")


def backfill_run_id(day: date) -> str:
    """Airflow 3 names a backfill run after the end of its data interval (its ``run_after``)."""
    end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return f"backfill__{end.isoformat()}"


def _wait_rerun(client: httpx.Client, info: dict[str, Any], ended: dict[str, str]) -> None:
    """Wait until the LAST day's backfill run of each DAG ran again (new end date), then check success."""
    deadline = time.monotonic() + RUNS_TIMEOUT
    while True:
        runs = {d: _backfill_runs(client, d)[LAST] for d in DAGS}
        if all(r["state"] in TERMINAL and r["end_date"] not in (None, ended[d]) for d, r in runs.items()):
            assert {d: r["state"] for d, r in runs.items()} == dict.fromkeys(DAGS, "success")
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"re-runs not done after {RUNS_TIMEOUT:.0f}s: {runs}\n--- scheduler log tail ---\n"
                + log_tail(info, "airflow-scheduler")
            )
        time.sleep(3)
