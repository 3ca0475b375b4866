"""
## evidence_collection

Daily. Collects evidence for the data interval and stores each item write-once (S3 Object Lock,
content-addressed) and in the hash-chained ledger:

- **AWS**: first the population — the accounts of `include/policy/aws.yaml` and of the AWS
  Organization it names (ACTIVE accounts, optionally under given OUs), each with its enabled regions,
  and what was excluded and why — recorded as `aws.population` evidence; then every collector for every
  account and region, one mapped task per group of accounts (at most `collection.max_tasks`, so the
  mapped length stays bounded for any organisation) with the collections running concurrently inside:
  IAM (MFA, root, key age, inactive users, password policy, admin policies), S3 (encryption, public
  access block, versioning, Object Lock, TLS-only), KMS rotation, CloudTrail, EC2 security groups, RDS,
  Config. These see current state only: in a backfilled past interval they record `not_applicable`.
- **Scanners** (when enabled in `aws.yaml` `sources:`): Prowler per group of accounts, in its own
  virtual environment, through the same audit role; AWS Security Hub's control findings per account and
  region, or once from the delegated administrator's aggregation region. Their raw output is stored
  write-once and ledgered; each (check, account, region) becomes an evidence item, mapped to the controls
  by the sources' own framework mappings; accepted risks of the policy are recorded as such.
- **Audit database**, exact for any interval: authorization outcomes, authentication failures and bursts,
  privileged changes, PHI access without an actor, event volume per source.

- **Manual evidence** (documents and sign-offs, `attestly evidence add`): statements a crash left
  pending are completed; owners are e-mailed before a manual control's evidence is due and the compliance
  team once it is overdue (`manual_evidence_due`; nothing is sent for a backfilled interval).

A collector, region or account that fails records `error` items for exactly its scope and fails only its
group's task; an organisation that cannot be read or an account whose role cannot be assumed fails
`check_population`. `attest` then ledgers the run record and seals it, and the watcher fails the run.

Controls: see the `control:` tags (from `include/policy/controls.yaml`).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task

from attestly.collectors.auditdb import AUDITDB_COLLECTORS
from attestly.policy import AWS_COLLECTORS, AWS_POPULATION_COLLECTORS
from attestly.workflows import common

DEFAULTS = common.dag_defaults(
    collectors=[*AWS_POPULATION_COLLECTORS, *AWS_COLLECTORS, *AUDITDB_COLLECTORS], workflow="evidence"
)


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
    def discover_population() -> list[dict]:
        return evidence.discover(get_current_context())

    @task(map_index_template="{{ accounts_label }}")
    def collect_aws(group: dict) -> dict:
        context = get_current_context()
        context["accounts_label"] = group["label"]  # type: ignore[typeddict-unknown-key]
        return evidence.collect_accounts(group, context)

    @task
    def check_population(groups: list[dict]) -> dict:
        return evidence.check_population(groups, get_current_context())

    @task(map_index_template="{{ accounts_label }}")
    def scan_prowler(group: dict) -> dict:
        from attestly.workflows import scanners

        context = get_current_context()
        context["accounts_label"] = group["label"]  # type: ignore[typeddict-unknown-key]
        return scanners.scan_prowler(group, context)

    @task
    def collect_security_hub(groups: list[dict]) -> dict:
        from attestly.workflows import scanners

        return scanners.collect_security_hub(groups, get_current_context())

    @task(map_index_template="{{ collector_id }}")
    def collect_auditdb(collector_id: str) -> dict:
        context = get_current_context()
        context["collector_id"] = collector_id  # type: ignore[typeddict-unknown-key]
        return evidence.collect_auditdb(collector_id, context)

    @task
    def manual_evidence_due() -> dict:
        return evidence.manual_evidence_due(get_current_context())

    attest, watcher = common.closing_tasks()

    groups = discover_population()
    aws = collect_aws.expand(group=groups)
    prowler = scan_prowler.expand(group=groups)
    hub = collect_security_hub(groups)
    population = check_population(groups)
    db = collect_auditdb.expand(collector_id=list(AUDITDB_COLLECTORS))
    due = manual_evidence_due()
    sealed = attest([groups, aws, prowler, hub, db, due])
    watch = watcher()
    [groups, aws, prowler, hub, population, db, due, sealed] >> watch


evidence_collection()
