"""Policy as code: ``include/policy/*.yaml`` loaded into validated, immutable models.

Public API::

    policy_dir() -> Path                       # $ATTESTLY_POLICY_DIR or <repo>/include/policy
    load_policy(directory=None) -> Policy      # raises PolicyErrors (a ValueError) with every problem
    check_policy_cli(directory, as_json) -> int  # `attestly policy check`: 0 valid, 2 invalid
    KNOWN_COLLECTORS                           # the only collector ids controls may reference
    add_months(d, n)                           # calendar-month arithmetic used by retention windows

Nothing here imports Airflow, boto3 or a database driver: DAG files call ``load_policy()`` at parse time,
so an invalid policy shows up as a DAG import error naming file, line, key and value.
"""

from __future__ import annotations

from attestly.policy.catalog import (
    ATTESTLY_COLLECTORS,
    AUDITDB_COLLECTORS,
    AWS_COLLECTORS,
    AWS_POPULATION_COLLECTORS,
    FRAMEWORKS,
    KNOWN_COLLECTORS,
    LOGICAL_COLUMNS,
    MANDATORY_COLUMNS,
)
from attestly.policy.dates import add_months, dispose_after, online_until
from attestly.policy.errors import PolicyError, PolicyErrors
from attestly.policy.loader import POLICY_FILES, check_policy_cli, load_policy, policy_dir
from attestly.policy.models import (
    AuditTable,
    AwsAccount,
    AwsPolicy,
    Control,
    EffectiveRetention,
    FrameworkInfo,
    PasswordPolicy,
    Policy,
    RetentionClass,
    RetentionPolicy,
    Source,
    SourcesPolicy,
)

__all__ = [
    "ATTESTLY_COLLECTORS",
    "AUDITDB_COLLECTORS",
    "AWS_COLLECTORS",
    "AWS_POPULATION_COLLECTORS",
    "FRAMEWORKS",
    "KNOWN_COLLECTORS",
    "LOGICAL_COLUMNS",
    "MANDATORY_COLUMNS",
    "POLICY_FILES",
    "AuditTable",
    "AwsAccount",
    "AwsPolicy",
    "Control",
    "EffectiveRetention",
    "FrameworkInfo",
    "PasswordPolicy",
    "Policy",
    "PolicyError",
    "PolicyErrors",
    "RetentionClass",
    "RetentionPolicy",
    "Source",
    "SourcesPolicy",
    "add_months",
    "check_policy_cli",
    "dispose_after",
    "load_policy",
    "online_until",
    "policy_dir",
]
