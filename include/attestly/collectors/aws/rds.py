"""RDS collectors (per account x region). Resource: ``rds:<account>:<region>:db/<identifier>``.

DB instances only (Aurora cluster members are instances too and are reported; cluster-level settings
are not examined).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attestly.collectors.aws._common import (
    CollectorResult,
    CollectorSpec,
    bad,
    ok,
    paginate,
    param,
    summary,
)
from attestly.evidence import Finding

if TYPE_CHECKING:
    from boto3 import Session


def _instances(session: Session, region: str) -> list[dict[str, Any]]:
    rds = session.client("rds", region_name=region)
    return list(paginate(rds, "describe_db_instances", "DBInstances"))


def storage_encryption(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Every DB instance has storage encryption at rest on."""
    findings: list[Finding] = []
    for db in _instances(session, region):
        res = f"rds:{account_id}:{region}:db/{db['DBInstanceIdentifier']}"
        if db.get("StorageEncrypted"):
            findings.append(ok(res, "storage encrypted"))
        else:
            findings.append(bad(res, "storage not encrypted"))
    return findings, summary(findings)


def backup_retention(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Every DB instance keeps automated backups at least ``rds_min_backup_retention_days`` days
    (default 7); 0 means automated backups are off."""
    minimum = int(param(params, "rds_min_backup_retention_days"))
    findings: list[Finding] = []
    for db in _instances(session, region):
        res = f"rds:{account_id}:{region}:db/{db['DBInstanceIdentifier']}"
        days = int(db.get("BackupRetentionPeriod") or 0)
        if days >= minimum:
            findings.append(ok(res, f"backup retention {days} days >= {minimum}"))
        elif days == 0:
            findings.append(bad(res, "automated backups disabled"))
        else:
            findings.append(bad(res, f"backup retention {days} days < {minimum}"))
    return findings, summary(findings, minimum_days=minimum)


COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "rds.storage_encryption",
        "rds",
        "region",
        storage_encryption,
        population="RDS DB instances in the region",
        enumerated_by="rds:DescribeDBInstances (every page)",
    ),
    CollectorSpec(
        "rds.backup_retention",
        "rds",
        "region",
        backup_retention,
        population="RDS DB instances in the region",
        enumerated_by="rds:DescribeDBInstances (every page)",
    ),
)
