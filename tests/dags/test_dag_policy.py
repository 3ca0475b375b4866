"""Every DAG held to the house rules: imports cleanly, owner, retries >= 2, doc_md, control tags, an
explicit data-interval timetable in UTC, a final attest task (ALL_DONE) and a watcher."""

from __future__ import annotations

from typing import Any

import pytest

from attestly import config

pytestmark = pytest.mark.unit

# DAG ids are a contract (DESIGN.md); each workflow is added here as it lands.
EXPECTED_DAG_IDS = {
    "evidence_collection",
    "audit_log_quality",
    "retention_archive",
    "key_disposal",
    "control_reports",
    "archive_restore_test",
}


@pytest.fixture(scope="module")
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(config.dags_dir()), safe_mode=False)


def test_no_import_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}


def test_expected_dags_exist(dagbag: Any) -> None:
    assert set(dagbag.dag_ids) >= EXPECTED_DAG_IDS


def test_every_dag_follows_the_policy(dagbag: Any) -> None:
    from attestly.policy import load_policy

    controls = set(load_policy().controls)
    assert dagbag.dags, "no DAGs found"
    for dag_id, dag in dagbag.dags.items():
        where = f"DAG {dag_id}"
        assert dag.doc_md and dag_id in dag.doc_md, f"{where}: doc_md must describe it"
        assert dag.default_args.get("owner") not in (None, "", "airflow"), f"{where}: owner"
        assert dag.default_args.get("retries", 0) >= 2, f"{where}: retries >= 2"
        assert dag.default_args.get("on_failure_callback") is not None, f"{where}: failure notification"
        workflow_tags = [t for t in dag.tags if t.startswith("workflow:")]
        control_tags = [t.removeprefix("control:") for t in dag.tags if t.startswith("control:")]
        assert len(workflow_tags) == 1, f"{where}: one workflow tag"
        assert control_tags and set(control_tags) <= controls, (
            f"{where}: control tags must name policy controls"
        )
        timetable = dag.timetable
        assert type(timetable).__name__ == "CronDataIntervalTimetable", (
            f"{where}: explicit data-interval timetable"
        )
        assert str(getattr(timetable, "_timezone", "UTC")) in ("UTC", "Timezone('UTC')"), f"{where}: UTC"
        assert dag.max_active_runs == 1, f"{where}: runs must not overlap"
        tasks = {t.task_id: t for t in dag.tasks}
        assert "attest" in tasks and tasks["attest"].trigger_rule == "all_done", f"{where}: attest ALL_DONE"
        assert "watcher" in tasks and tasks["watcher"].trigger_rule == "one_failed", f"{where}: watcher"
        upstream_of_watcher = tasks["watcher"].upstream_task_ids
        leaves = {t.task_id for t in dag.tasks if not t.downstream_task_ids} - {"watcher"}
        assert not leaves, f"{where}: tasks {leaves} are not watched"
        assert "attest" in upstream_of_watcher
        for task in dag.tasks:
            if task.task_id != "watcher":
                assert task.retries >= 2, f"{where}: task {task.task_id} retries"


def test_dag_files_do_not_import_heavy_libraries_at_parse_time() -> None:
    import ast

    heavy = {"pandas", "great_expectations", "boto3", "pyarrow", "psycopg"}
    for path in config.dags_dir().glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            assert not heavy & set(names), f"{path.name}: imports {heavy & set(names)} at module level"


def test_evidence_collection_stays_bounded_for_a_1000_account_organisation() -> None:
    """1,000 accounts x 17 regions: the mapped collection stays within Airflow's max_map_length (with
    room), every account is in exactly one group, and what crosses XCom per group is a few hundred bytes."""
    import json
    from collections import Counter

    from airflow.configuration import conf

    from attestly.collectors.aws.batch import units_of
    from attestly.collectors.aws.population import Population, PopulationAccount
    from attestly.policy import AWS_COLLECTORS, load_policy

    regions = tuple(
        f"{area}-{n}"
        for area in ("us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast")
        for n in (1, 2, 3)
    )[:17]
    population = Population(
        accounts=[
            PopulationAccount(
                id=f"{i:012d}",
                name=f"acct-{i}",
                role_arn=f"arn:aws:iam::{i:012d}:role/AttestlyAudit",
                regions=regions,
                source="organization",
                regions_from="ec2:DescribeRegions",
            )
            for i in range(1, 1001)
        ]
    )
    collection = load_policy().aws.collection
    groups = population.batches(
        max_tasks=collection.max_tasks, accounts_per_task=collection.accounts_per_task
    )
    limit = conf.getint("core", "max_map_length")
    assert len(groups) <= collection.max_tasks <= limit == 1024
    assert sorted(a for g in groups for a in g) == [a.id for a in population.accounts]
    assert max(len(g) for g in groups) - min(len(g) for g in groups) <= 3
    from attestly.collectors.aws import REGISTRY

    scopes = Counter(REGISTRY[c].scope for c in AWS_COLLECTORS)
    per_account = len(units_of(population.accounts[0], AWS_COLLECTORS))
    assert per_account == scopes["account"] + scopes["region"] * 17  # IAM/S3 once, the rest per region
    descriptor = {
        "population": {
            "version_id": "x" * 32,
            "sha256": "0" * 64,
        },
        "group": 255,
        "from": 996,
        "to": 1000,
        "label": "x" * 80,  # the longest label discover() makes
    }
    assert len(json.dumps(descriptor)) < 300
