"""
## evidence_collection

Daily. Collects evidence for the data interval and stores each item write-once (S3 Object Lock,
content-addressed) and in the hash-chained ledger:

- **AWS**, per account × region × collector (dynamic task mapping over `include/policy/aws.yaml`): IAM
  (MFA, root, key age, inactive users, password policy, admin policies), S3 (encryption, public access
  block, versioning, Object Lock, TLS-only), KMS rotation, CloudTrail, EC2 security groups, RDS, Config.
  These see current state only: in a backfilled past interval they record `not_applicable`.
- **Audit database**, exact for any interval: authorization outcomes, authentication failures and bursts,
  privileged changes, PHI access without an actor, event volume per source.

A collector that fails records an `error` item and fails its task without stopping the others; `attest`
then ledgers the run record and seals it, and the watcher fails the run.

Controls: see the `control:` tags (from `include/policy/controls.yaml`).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task

from attestly.collectors.auditdb import AUDITDB_COLLECTORS
from attestly.policy import AWS_COLLECTORS
from attestly.workflows import common

DEFAULTS = common.dag_defaults(collectors=[*AWS_COLLECTORS, *AUDITDB_COLLECTORS], workflow="evidence")


@dag(
    dag_id="evidence_collection",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULTS["default_args"],
    tags=DEFAULTS["tags"],
)
def evidence_collection() -> None:
    from attestly.workflows import evidence

    @task
    def plan_aws() -> list[dict]:
        return evidence.plan_aws()

    @task(map_index_template="{{ target_label }}")
    def collect_aws(target: dict) -> dict:
        context = get_current_context()
        context["target_label"] = target["label"]  # type: ignore[typeddict-unknown-key]
        return evidence.collect_aws(target, context)

    @task(map_index_template="{{ collector_id }}")
    def collect_auditdb(collector_id: str) -> dict:
        context = get_current_context()
        context["collector_id"] = collector_id  # type: ignore[typeddict-unknown-key]
        return evidence.collect_auditdb(collector_id, context)

    attest, watcher = common.closing_tasks()

    aws = collect_aws.expand(target=plan_aws())
    db = collect_auditdb.expand(collector_id=list(AUDITDB_COLLECTORS))
    sealed = attest([aws, db])
    watch = watcher()
    [aws, db, sealed] >> watch


evidence_collection()
