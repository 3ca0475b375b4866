"""`airflow dags test evidence_collection` on the real local stack: evidence stored, ledgered, sealed and
verifiable; re-runs and backfills add nothing; a failing collector fails the run after everything else
was recorded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestly.connections import aws_client
from attestly.ledger import Ledger
from tests.conftest import recreate_database
from tests.integration.aws_server import stub_aws

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()


def dags_test(
    dag_id: str, logical: date, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`airflow dags test` covers the data interval that ends at ``logical`` (Airflow 3 semantics)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    return subprocess.run(
        [airflow, "dags", "test", dag_id, logical.isoformat()],
        capture_output=True,
        text=True,
        env={**os.environ, "ATTESTLY_RETRY_DELAY_SECONDS": "1", **(env or {})},
        check=False,
        timeout=600,
    )


def _ledger_state() -> tuple[tuple[int, str], Counter[str]]:
    with Ledger.connect() as ledger:
        head = ledger.head()
        kinds = Counter(e.kind for e in ledger.entries())
    return head, kinds


def _evidence(period_start: date) -> list[dict[str, Any]]:
    with Ledger.connect() as ledger:
        return [
            e.body
            for e in ledger.entries(kind="evidence")
            if e.body["period_start"].startswith(period_start.isoformat())
        ]


@pytest.fixture(scope="module")
def estate(stack: dict[str, str]) -> Iterator[dict[str, Any]]:
    from attestly_dev import audit_seed as seed
    from attestly_dev.aws_seed import seed_aws_estate

    recreate_database("audit")
    seed.seed_audit(start=TODAY - timedelta(days=8), days=8, events_per_day=800)
    yield seed_aws_estate()


@pytest.fixture
def fresh_evidence(estate: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    recreate_database("attestly")
    bucket = f"evidence-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    monkeypatch.setenv("ATTESTLY_EVIDENCE_BUCKET", bucket)
    return bucket


def test_collects_current_interval_then_reruns_add_nothing(
    fresh_evidence: str, estate: dict[str, Any]
) -> None:
    run = dags_test("evidence_collection", TODAY)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "state=success" in run.stdout + run.stderr

    items = _evidence(TODAY - timedelta(days=1))
    by_collector = Counter(i["collector"] for i in items)
    # The population, 40 AWS collections (2 accounts, IAM/S3 global) and 5 audit-database collectors.
    assert len(items) == 46
    assert by_collector["auditdb.event_volume"] == 1 and by_collector["aws.population"] == 1
    (population,) = [i for i in items if i["collector"] == "aws.population"]
    assert population["result"] == "pass" and population["findings"] == {"pass": 2}
    aws_results = {
        (i["collector"], i["scope"]["account"], i["scope"]["region"]): i
        for i in items
        if "account" in i["scope"]
    }
    # Current-state collectors observed the seeded estate: planted failures are failures.
    assert aws_results[("iam.mfa_console_users", "111111111111", "global")]["result"] == "fail"
    assert aws_results[("iam.password_policy", "111111111111", "global")]["result"] == "pass"
    assert all(i["retroactive"] is False for i in aws_results.values())
    assert all(i["airflow"]["dag_id"] == "evidence_collection" for i in items)

    # Each item says when it was really observed (this run's wall clock, not the end of the period it is
    # filed under), what it enumerated, and the policy in force — stored and ledgered once.
    for i in items:
        assert i["observed_at"] > i["period_end"], i["collector"]  # read after the interval ended
        assert i["population"]["what"] and i["population"]["how"] and i["method"]["version"], i["collector"]
    (policy,) = {i["policy"] for i in items}
    head, kinds = _ledger_state()
    assert kinds == Counter({"evidence": 46, "run": 1, "policy": 1})
    with Ledger.connect() as ledger:
        assert ledger.find(f"policy:{policy}") is not None
        (record,) = [e.body for e in ledger.entries(kind="run")]
    assert record["triggered_by"] == "dag_test"  # `airflow dags test` names itself as the triggering user
    verify = subprocess.run(
        [sys.executable, "-m", "attestly.cli", "verify", "--ledger", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    for _ in range(2):
        again = dags_test("evidence_collection", TODAY)
        assert again.returncode == 0
    assert _ledger_state() == (head, kinds)


def test_backfilled_past_interval_is_not_applicable_for_current_state(fresh_evidence: str) -> None:
    past = TODAY - timedelta(days=5)
    for attempt in range(3):
        run = dags_test("evidence_collection", past)
        assert run.returncode == 0, run.stdout[-3000:]
        if attempt == 0:
            state = _ledger_state()
    assert _ledger_state() == state
    items = _evidence(past - timedelta(days=1))
    aws = [i for i in items if "account" in i["scope"] or i["collector"] == "aws.population"]
    db = [i for i in items if i["collector"].startswith("auditdb.")]
    assert len(aws) == 41 and {i["result"] for i in aws} == {"not_applicable"}
    assert len(db) == 5 and all(i["retroactive"] for i in db)
    assert {i["result"] for i in db} <= {"pass", "fail"}


def test_a_failing_collector_records_an_error_and_fails_the_run(
    fresh_evidence: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy"
    shutil.copytree(Path(__file__).parents[2] / "include" / "policy", policy)
    aws_yaml = policy / "aws.yaml"
    with stub_aws() as stub:
        # Account 222222222222 answers every call with AccessDenied; the other account still works.
        text = aws_yaml.read_text()
        head, _, tail = text.partition('  - id: "222222222222"')
        tail = tail.replace(
            'endpoint_url: "${ATTESTLY_AWS_ENDPOINT_URL:-}"', f'endpoint_url: "{stub.url}"', 1
        )
        aws_yaml.write_text(head + '  - id: "222222222222"' + tail)
        run = dags_test("evidence_collection", TODAY, env={"ATTESTLY_POLICY_DIR": str(policy)})
    assert run.returncode != 0
    items = _evidence(TODAY - timedelta(days=1))
    errors = [i for i in items if i["result"] == "error"]
    others = [i for i in items if i["result"] != "error"]
    assert errors and {i["scope"]["account"] for i in errors} == {"222222222222"}
    assert len({(i["collector"], i["scope"]["region"]) for i in errors}) == len(
        errors
    )  # once, despite retries
    assert len(others) == 46 - len(errors)
    with Ledger.connect() as ledger:
        runs = [e.body for e in ledger.entries(kind="run")]
    assert runs and runs[-1]["outcome"] == "failed"
    assert any(t.startswith("collect_aws[") for t in runs[-1]["failed_tasks"])
