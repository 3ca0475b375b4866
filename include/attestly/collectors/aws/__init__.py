"""AWS evidence collectors: the registry, the plan for Airflow task mapping, and the runner.

Importing this package is cheap (no boto3): DAG files may import it at parse time.

Contract (others call exactly this)::

    from attestly.collectors.aws import REGISTRY, CollectorSpec, plan_collections, run_collector

* ``REGISTRY``: collector id -> :class:`CollectorSpec` (id, service, scope, func). Ids are stable; the
  policy maps them to controls.
* :func:`plan_collections` -> one JSON-able dict per (account, region, collector): account-scoped
  collectors (IAM, S3) once per account with region ``"global"`` (called in the account's first
  region), region-scoped ones per region.
* :func:`run_collector` -> one :class:`~attestly.evidence.EvidenceItem`; never raises for AWS errors.

Collectors see current state only (``retroactive: false``): for an interval that ended before the
observation (a backfill), the runner records ``not_applicable`` without calling AWS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from attestly.collectors.aws import cloudtrail, config, ec2, iam, kms, rds, s3
from attestly.collectors.aws._common import (
    DEFAULT_PARAMS,
    GLOBAL_REGION,
    OBSERVED_AT_PARAM,
    AccountTarget,
    CollectorFunc,
    CollectorResult,
    CollectorSpec,
    error_code,
    error_message,
)
from attestly.evidence import AirflowContext, EvidenceItem, Finding, Method, Population, derive_result

REGISTRY: dict[str, CollectorSpec] = {
    spec.id: spec for module in (iam, s3, kms, cloudtrail, ec2, rds, config) for spec in module.COLLECTORS
}
"""Every AWS collector by id, in a stable order (IAM, S3, KMS, CloudTrail, EC2, RDS, Config)."""

TARGET_KEYS = (
    "collector",
    "service",
    "scope",
    "account_id",
    "account_name",
    "role_arn",
    "region",
    "api_region",
    "endpoint_url",
    "label",
)
"""The keys of a plan entry (all values are str, except ``endpoint_url`` which may be None)."""


def plan_collections(
    accounts: Sequence[AccountTarget], *, collectors: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One JSON-able dict per (account, region, collector), for ``.expand(target=...)``.

    Keys: ``collector``, ``service``, ``scope`` (``account``/``region``), ``account_id``,
    ``account_name``, ``role_arn``, ``region`` (``"global"`` for account-scoped collectors),
    ``api_region`` (the region the API is called in), ``endpoint_url`` (or None) and ``label`` (a short
    human name, e.g. for ``map_index_template``). ``collectors`` restricts the plan to those ids (all
    by default); the order is accounts, then registry order, then regions. Holds no secrets.
    """
    wanted = list(REGISTRY) if collectors is None else list(collectors)
    unknown = [c for c in wanted if c not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown AWS collector id(s): {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    plan: list[dict[str, Any]] = []
    for account in accounts:
        for collector_id in wanted:
            spec = REGISTRY[collector_id]
            regions = [GLOBAL_REGION] if spec.scope == "account" else list(account.regions)
            for region in regions:
                api_region = account.regions[0] if region == GLOBAL_REGION else region
                plan.append(
                    {
                        "collector": spec.id,
                        "service": spec.service,
                        "scope": spec.scope,
                        "account_id": account.id,
                        "account_name": account.name,
                        "role_arn": account.role_arn,
                        "region": region,
                        "api_region": api_region,
                        "endpoint_url": account.endpoint_url,
                        "label": f"{spec.id} {account.name}/{region}",
                    }
                )
    return plan


def _day(ts: datetime) -> str:
    """The UTC calendar date of ``ts`` (YYYY-MM-DD)."""
    return ts.astimezone(UTC).date().isoformat()


def run_collector(
    target: Mapping[str, Any],
    *,
    controls: Sequence[str],
    period_start: datetime,
    period_end: datetime,
    observed_at: datetime,
    params: Mapping[str, Any],
    aws_conn_id: str = "aws_default",
    airflow: AirflowContext | None = None,
    current_state_grace: timedelta = timedelta(days=1),
    session_factory: Callable[[], Any] | None = None,
) -> EvidenceItem:
    """Run one planned collection and return its evidence item (``retroactive: false``).

    * ``observed_at > period_end + current_state_grace`` (a backfill of a past interval): result
      ``not_applicable``, no findings, ``data.reason`` says why; AWS is not called.
    * Otherwise assume ``target['role_arn']`` (session name ``attestly-<collector>``) with the base
      credentials of ``aws_conn_id``; STS and every client use ``target['endpoint_url']`` if set, else
      the connection's ``extra.endpoint_url``; clients retry in adaptive mode, 8 attempts.
    * Any exception while assuming the role or collecting (AccessDenied, throttling after retries, a
      connection failure, ...) gives result ``error`` with one finding
      ``{resource: "<service>:<account>:<region>", status: "error", detail: "<ErrorCode>: <message>"}``.
    * Else ``result = derive_result(findings, empty=spec.empty)``.

    ``session_factory`` (optional) returns the boto3 session to use instead of assuming the role here
    (:mod:`attestly.collectors.aws.batch` assumes each account's role once); its failure is recorded
    like a failed role assumption.

    ``params`` are the collector's policy parameters (see ``DEFAULT_PARAMS``); the runner adds
    ``observed_at`` to them. Scope is ``{"account": id, "region": region}`` (``"global"`` for IAM/S3).
    Raises ``ValueError`` only for a malformed target, an unknown collector or a naive datetime (a
    programming error).
    """
    missing = [k for k in ("collector", "account_id", "role_arn", "region") if not target.get(k)]
    if missing:
        raise ValueError(f"collection target is missing {', '.join(missing)}: {dict(target)!r}")
    collector_id = str(target["collector"])
    spec = REGISTRY.get(collector_id)
    if spec is None:
        raise ValueError(f"unknown AWS collector id {collector_id!r}")
    naive = [
        name
        for name, ts in (
            ("period_start", period_start),
            ("period_end", period_end),
            ("observed_at", observed_at),
        )
        if ts.tzinfo is None
    ]
    if naive:
        raise ValueError(f"{', '.join(naive)} must be timezone-aware (UTC)")
    account_id = str(target["account_id"])
    region = str(target["region"])
    api_region = str(target.get("api_region") or region)
    if api_region == GLOBAL_REGION:
        raise ValueError(f"collection target for {collector_id} has no api_region")

    calls: dict[str, int] = {}
    read: set[str] = set()
    run_params: dict[str, Any] = {**params, OBSERVED_AT_PARAM: observed_at}
    scope_text = f"account {account_id}" + ("" if region == GLOBAL_REGION else f", region {region}")

    def item(
        result: Any, findings: Sequence[Finding], data: dict[str, Any], *, enumerated: str | None = None
    ) -> EvidenceItem:
        from attestly.collectors.aws._common import param

        used = {k: param(run_params, k) for k in sorted(read) if k != OBSERVED_AT_PARAM}
        return EvidenceItem(
            observed_at=observed_at,
            method=Method(
                collector=spec.id,
                operations=dict(calls),
                parameters=used,
                tool=f"boto3 {_boto3_version()}",
            ),
            population=Population(
                what=f"{spec.population or spec.service + ' resources'} ({scope_text})",
                how=enumerated or spec.enumerated_by or "the service's list/describe API",
                size=len(findings) if enumerated is None else 0,
            ),
            collector=spec.id,
            controls=tuple(controls),
            period_start=period_start,
            period_end=period_end,
            scope={"account": account_id, "region": region},
            retroactive=spec.retroactive,
            result=result,
            findings=tuple(findings),
            data=data,
            airflow=airflow,
        )

    if observed_at > period_end + current_state_grace:
        # No observation date in the reason: a backfill re-run on another day must produce the same item.
        reason = (
            f"current-state collector: run after the interval ended {_day(period_end)} (more than "
            f"{current_state_grace} later); present state is not evidence of the past"
        )
        return item("not_applicable", (), {"reason": reason}, enumerated=f"not enumerated: {reason}")

    from attestly.collectors.aws._session import assume_role_session

    stage = "assume_role"
    try:
        if session_factory is not None:  # the account's role, assumed once for all its collections
            session = session_factory()
        else:
            session = assume_role_session(
                aws_conn_id=aws_conn_id,
                role_arn=str(target["role_arn"]),
                session_name=f"attestly-{spec.id}",
                region_name=api_region,
                endpoint_url=target.get("endpoint_url") or None,
            )
        stage = "collect"
        from attestly.collectors.aws._calls import ReadParams, WatchedSession, recording_calls

        tracked = ReadParams(run_params)
        try:
            with recording_calls() as made:
                findings, data = spec.func(
                    WatchedSession(session), region=api_region, account_id=account_id, params=tracked
                )
        finally:
            calls.update(made)
            read.update(tracked.read)
    except Exception as exc:  # every failure becomes an error item; the DAG fails the run at the end
        code = error_code(exc)
        finding = Finding(
            resource=f"{spec.service}:{account_id}:{region}",
            status="error",
            detail=f"{code}: {error_message(exc)}",
        )
        return item(
            "error",
            (finding,),
            {"error_code": code, "stage": stage},
            enumerated=f"not enumerated: {stage} failed ({code})",
        )
    return item(derive_result(findings, empty=spec.empty), findings, data)


def _boto3_version() -> str:
    try:
        import boto3

        return str(boto3.__version__)
    except ImportError:  # pragma: no cover - boto3 is a runtime requirement
        return "unknown"


__all__ = [
    "DEFAULT_PARAMS",
    "GLOBAL_REGION",
    "OBSERVED_AT_PARAM",
    "REGISTRY",
    "TARGET_KEYS",
    "AccountTarget",
    "CollectorFunc",
    "CollectorResult",
    "CollectorSpec",
    "plan_collections",
    "run_collector",
]
