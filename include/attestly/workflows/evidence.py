"""Task bodies of ``evidence_collection``: AWS collectors per account × region × collector (dynamic
task mapping) and audit-database collectors over the data interval; each item stored and ledgered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from attestly.workflows.common import airflow_context, interval, task_summary


class CollectorFailed(RuntimeError):
    """Raised after an ``error`` item was recorded, so the task (and the run) ends failed."""


def aws_params() -> dict[str, Any]:
    from attestly.policy import load_policy

    aws = load_policy().aws
    return {
        "object_lock_required_buckets": list(aws.object_lock_required_buckets),
        "admin_ports": list(aws.admin_ports),
        "database_ports": list(aws.database_ports),
        "access_key_max_age_days": aws.access_key_max_age_days,
        "inactive_user_days": aws.inactive_user_days,
        "password_policy": aws.password_policy.model_dump(),
        "rds_min_backup_retention_days": aws.rds_min_backup_retention_days,
    }


def plan_aws() -> list[dict[str, Any]]:
    """One JSON-able target per (account, region, collector) from aws.yaml."""
    from attestly.collectors.aws import AccountTarget, plan_collections
    from attestly.policy import load_policy

    accounts = [
        AccountTarget(
            id=a.id,
            name=a.name,
            role_arn=a.role_arn,
            regions=tuple(a.regions),
            endpoint_url=a.endpoint or None,
        )
        for a in load_policy().aws.accounts
    ]
    return plan_collections(accounts)


def _record(items: list[Any]) -> list[dict[str, Any]]:
    from attestly.ledger import Ledger
    from attestly.recording import record_evidence
    from attestly.store import EvidenceStore

    store = EvidenceStore.from_connection()
    with Ledger.connect() as ledger:
        return [record_evidence(item, store=store, ledger=ledger) for item in items]


def collect_aws(target: dict[str, Any], context: Any) -> dict[str, Any]:
    from attestly.collectors.aws import run_collector
    from attestly.policy import load_policy

    start, end = interval(context)
    item = run_collector(
        target,
        controls=load_policy().controls_for_collector(target["collector"]),
        period_start=start,
        period_end=end,
        # The one wall-clock read: whether present state can still speak for this interval.
        observed_at=datetime.now(UTC),
        params=aws_params(),
        airflow=airflow_context(context),
    )
    recorded = _record([item])
    if item.result == "error":
        detail = "; ".join(f.detail for f in item.findings)[:300]
        raise CollectorFailed(f"{target['label']}: recorded an error item ({detail})")
    return task_summary(context, recorded)


def collect_auditdb(collector_id: str, context: Any) -> dict[str, Any]:
    from attestly.collectors.auditdb import collect_auditdb as run

    start, end = interval(context)
    item = run(collector_id, period_start=start, period_end=end, airflow=airflow_context(context))
    return task_summary(context, _record([item]))
