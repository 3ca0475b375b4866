"""Shared types and helpers for the AWS collectors (no boto3 import at module level).

A collector is a plain function registered as a :class:`CollectorSpec`::

    func(session, *, region, account_id, params) -> (findings, data)

``session`` is a boto3 Session already holding the assumed-role credentials of the account under
assessment; its ``client()`` is pre-configured with the account's endpoint URL and Attestly's retry
policy (see :mod:`attestly.collectors.aws._session`). ``region`` is the region to call (for
account-scoped collectors, the account's first region). ``params`` is the collector parameters from the
policy, plus the reserved key ``observed_at`` (the timezone-aware moment of observation, set by
``run_collector``) that age-based collectors measure against, so a re-run with the same inputs gives the
same decision. Collectors raise on AWS errors; the runner turns the exception into an ``error`` item.

Every collector reports one finding per resource it examined (``pass``/``fail``, or ``not_applicable``
for a resource outside the rule), so the evidence shows the population, not only the exceptions. The
``data`` summary is small, JSON-able and deterministic for unchanged state: counts and names, never
secrets, never wall-clock ages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from attestly.evidence import Finding, Result

Scope = Literal["account", "region"]
CollectorResult = tuple[list[Finding], dict[str, Any]]
CollectorFunc = Callable[..., CollectorResult]
"""``(session: boto3.Session, *, region: str, account_id: str, params: Mapping[str, Any])``."""

OBSERVED_AT_PARAM = "observed_at"
"""Reserved parameter: the moment of observation (aware datetime), injected by ``run_collector``."""

GLOBAL_REGION = "global"
"""The ``region`` of the evidence scope (and of the plan entry) for account-scoped collectors."""

DEFAULT_PARAMS: dict[str, Any] = {
    "access_key_max_age_days": 90,
    "inactive_user_days": 90,
    "password_policy": {
        "minimum_length": 14,
        "require_symbols": True,
        "require_numbers": True,
        "require_uppercase": True,
        "require_lowercase": True,
        "max_age_days": 90,
        "reuse_prevention": 24,
    },
    "object_lock_required_buckets": [],
    "admin_ports": [22, 3389],
    "database_ports": [1433, 1521, 3306, 5432, 6379, 9200, 27017],
    "rds_min_backup_retention_days": 7,
}
"""Every parameter a collector reads, with the default used when the policy does not set it."""

_ACCOUNT_RE = re.compile(r"^\d{12}$")


@dataclass(frozen=True)
class CollectorSpec:
    """A registered collector: its id (``<service>.<check>``), service, scope and function.

    ``scope`` ``"account"``: run once per account (IAM, S3 are global services), in the account's first
    region, recorded with region ``"global"``; ``"region"``: run per account x region.
    ``empty`` is the result when the collector examined nothing (no resources of that kind).
    ``population`` says what the collector enumerates (one finding per member) and ``enumerated_by``
    how: both go into the item's ``population`` (its size is the number of findings); the API operations
    actually called are recorded in the item's ``method``.
    """

    id: str
    service: str
    scope: Scope
    func: CollectorFunc
    empty: Result = "not_applicable"
    retroactive: bool = False
    population: str = ""
    enumerated_by: str = ""


@dataclass(frozen=True)
class AccountTarget:
    """An AWS account under assessment (one entry of ``aws.yaml``).

    ``role_arn`` is assumed with the ``aws_default`` base credentials; ``regions`` are assessed in order
    (the first one also hosts the account-scoped collectors); ``endpoint_url`` overrides the
    connection's endpoint for every client of this account (MinIO / moto / VPC endpoints), else None.
    """

    id: str
    name: str
    role_arn: str
    regions: tuple[str, ...]
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if not _ACCOUNT_RE.match(self.id):
            raise ValueError(f"account id {self.id!r} is not 12 digits")
        if isinstance(self.regions, str) or not self.regions:
            raise ValueError(f"account {self.id}: 'regions' must be a non-empty list of region names")
        object.__setattr__(self, "regions", tuple(self.regions))
        if not self.role_arn.startswith("arn:"):
            raise ValueError(f"account {self.id}: role_arn {self.role_arn!r} is not an ARN")

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any]) -> AccountTarget:
        """Build from a mapping with keys ``id``, ``name``, ``role_arn``, ``regions``, ``endpoint_url``."""
        return cls(
            id=str(value["id"]),
            name=str(value.get("name") or value["id"]),
            role_arn=str(value["role_arn"]),
            regions=tuple(value["regions"]),
            endpoint_url=value.get("endpoint_url") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role_arn": self.role_arn,
            "regions": list(self.regions),
            "endpoint_url": self.endpoint_url,
        }


# --- helpers used by the collector modules -------------------------------------------------------------


def param(params: Mapping[str, Any], key: str) -> Any:
    """``params[key]`` if set (not None), else the default from :data:`DEFAULT_PARAMS`."""
    value = params.get(key)
    return DEFAULT_PARAMS.get(key) if value is None else value


def observed_at(params: Mapping[str, Any]) -> datetime:
    """The moment of observation (``params['observed_at']``), or now (UTC) when called directly."""
    value = params.get(OBSERVED_AT_PARAM)
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"parameter {OBSERVED_AT_PARAM!r} must be a timezone-aware datetime, got {value!r}")
    return value


def older_than(ts: datetime | None, *, now: datetime, days: int) -> bool:
    """True when ``ts`` is more than ``days`` days before ``now`` (a decision, not an age)."""
    if ts is None:
        return False
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return now - ts > timedelta(days=days)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError``, else the exception's class name."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = (response.get("Error") or {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


def error_message(exc: BaseException, *, limit: int = 300) -> str:
    """The AWS error message (or ``str(exc)``), one line, at most ``limit`` characters."""
    response = getattr(exc, "response", None)
    message = ""
    if isinstance(response, Mapping):
        message = str((response.get("Error") or {}).get("Message") or "")
    if not message:
        message = str(exc)
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def is_error(exc: BaseException, *codes: str) -> bool:
    """True when ``exc`` is an AWS error whose code is one of ``codes``."""
    return getattr(exc, "response", None) is not None and error_code(exc) in codes


def paginate(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[Any]:
    """Yield every item of ``key`` across the pages of ``operation``."""
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key) or []


def ok(resource: str, detail: str) -> Finding:
    return Finding(resource=resource, status="pass", detail=detail)


def bad(resource: str, detail: str) -> Finding:
    return Finding(resource=resource, status="fail", detail=detail)


def skip(resource: str, detail: str) -> Finding:
    return Finding(resource=resource, status="not_applicable", detail=detail)


def counts(findings: Sequence[Finding]) -> dict[str, int]:
    """``{"pass": n, "fail": n, ...}`` for the statuses present (a deterministic summary)."""
    out: dict[str, int] = {}
    for f in findings:
        out[f.status] = out.get(f.status, 0) + 1
    return dict(sorted(out.items()))


def failing(findings: Sequence[Finding]) -> list[str]:
    """The resources of the failing findings, sorted."""
    return sorted(f.resource for f in findings if f.status == "fail")


def summary(findings: Sequence[Finding], **extra: Any) -> dict[str, Any]:
    """The usual ``data``: examined count, counts per status, failing resources, plus ``extra``."""
    return {"examined": len(findings), "counts": counts(findings), "failing": failing(findings), **extra}


__all__ = [
    "DEFAULT_PARAMS",
    "GLOBAL_REGION",
    "OBSERVED_AT_PARAM",
    "AccountTarget",
    "CollectorFunc",
    "CollectorResult",
    "CollectorSpec",
    "Scope",
]
