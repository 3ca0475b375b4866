"""Fixed vocabularies the policy is validated against: collector ids, logical audit columns, frameworks.

This module is the single place these names are defined. A collector id that is not in
:data:`KNOWN_COLLECTORS` cannot appear in ``controls.yaml``; a logical column that is not in
:data:`LOGICAL_COLUMNS` cannot appear in ``sources.yaml`` or ``retention.yaml``. Adding a collector
means adding its id here *and* implementing it; the policy check then lets controls reference it.
"""

from __future__ import annotations

from typing import Literal

#: Collectors that read AWS APIs; the evidence DAG maps them over account x region (order is stable).
AWS_COLLECTORS: tuple[str, ...] = (
    "iam.mfa_console_users",
    "iam.root_account",
    "iam.access_key_age",
    "iam.inactive_users",
    "iam.password_policy",
    "iam.admin_policies",
    "s3.default_encryption",
    "s3.public_access_block",
    "s3.versioning",
    "s3.object_lock",
    "s3.tls_only",
    "kms.key_rotation",
    "cloudtrail.multi_region_trail",
    "ec2.open_security_groups",
    "rds.storage_encryption",
    "rds.backup_retention",
    "config.recorder",
)

#: The population under assessment (accounts, OUs, regions, exclusions), recorded every run.
AWS_POPULATION_COLLECTORS: tuple[str, ...] = ("aws.population",)

#: Collectors that query the audit database (``audit_db``).
AUDITDB_COLLECTORS: tuple[str, ...] = (
    "auditdb.authorization_outcomes",
    "auditdb.authentication_failures",
    "auditdb.privileged_changes",
    "auditdb.phi_access_without_actor",
    "auditdb.event_volume",
)

#: Evidence produced by Attestly's own workflows (quality run, archive, disposal).
ATTESTLY_COLLECTORS: tuple[str, ...] = (
    "quality.audit_log",
    "archive.manifest",
    "archive.restore_test",
    "disposal.certificate",
)

#: Every collector id a control may reference. Exactly the union of the groups above.
KNOWN_COLLECTORS: frozenset[str] = frozenset(
    AWS_COLLECTORS + AWS_POPULATION_COLLECTORS + AUDITDB_COLLECTORS + ATTESTLY_COLLECTORS
)

#: Logical column names of the audit table; ``sources.yaml`` maps each to the user's physical column.
LOGICAL_COLUMNS: tuple[str, ...] = (
    "id",
    "timestamp",
    "recorded_at",
    "source",
    "sequence",
    "event_type",
    "actor",
    "resource",
    "action",
    "result",
    "ip",
    "user_agent",
    "metadata",
    "severity",
    "standard",
    "subject",
    "phi_ciphertext",
    "subject_key_id",
    "prev_hash",
    "row_hash",
)

#: Logical columns that ``sources.yaml`` must always map (archive batches and quality checks need them).
MANDATORY_COLUMNS: tuple[str, ...] = ("id", "timestamp", "source", "sequence")

Framework = Literal["soc2", "hipaa", "pci"]
#: Framework keys, in the order reports list them.
FRAMEWORKS: tuple[str, ...] = ("soc2", "hipaa", "pci")
