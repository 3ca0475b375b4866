"""Run every AWS collector for a group of accounts, concurrently, recording each item as it is made.

One Airflow task per group of accounts (see :meth:`Population.batches`) keeps the DAG's mapped length
bounded whatever the organisation's size; inside the task the collections — account-scoped collectors
once per account, region-scoped ones per enabled region — run on a bounded thread pool. Each account's
audit role is assumed once; every collection gets its own boto3 session from those credentials (boto3
sessions are not shared across threads). An account whose role cannot be assumed, a region that refuses,
a collector that fails: each gives ``error`` items for exactly its own scope, and the rest is recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from attestly.collectors.aws import REGISTRY, run_collector
from attestly.collectors.aws._common import GLOBAL_REGION
from attestly.collectors.aws.population import ALL_ENABLED, PopulationAccount
from attestly.evidence import AirflowContext, EvidenceItem, Finding

if TYPE_CHECKING:
    from attestly.collectors.aws._session import EndpointSession

Recorder = Callable[[EvidenceItem], dict[str, Any]]


@dataclass(frozen=True)
class Unit:
    account: PopulationAccount
    collector: str
    region: str  # GLOBAL_REGION for account-scoped collectors

    @property
    def api_region(self) -> str:
        return self.account.regions[0] if self.region == GLOBAL_REGION else self.region

    def target(self) -> dict[str, Any]:
        spec = REGISTRY[self.collector]
        return {
            "collector": spec.id,
            "service": spec.service,
            "scope": spec.scope,
            "account_id": self.account.id,
            "account_name": self.account.name,
            "role_arn": self.account.role_arn,
            "region": self.region,
            "api_region": self.api_region,
            "endpoint_url": self.account.endpoint_url,
            "label": f"{spec.id} {self.account.name}/{self.region}",
        }


def units_of(account: PopulationAccount, collectors: Sequence[str]) -> list[Unit]:
    out: list[Unit] = []
    for cid in collectors:
        spec = REGISTRY[cid]
        if spec.scope == "account":
            out.append(Unit(account, cid, GLOBAL_REGION))
        else:
            out.extend(Unit(account, cid, r) for r in account.regions)
    return out


class _Credentials:
    """One assumed-role session per account, made once (thread-safe), handing out a fresh boto3 session
    per collection."""

    def __init__(self, account: PopulationAccount, *, aws_conn_id: str) -> None:
        self.account = account
        self.aws_conn_id = aws_conn_id
        self._lock = threading.Lock()
        self._creds: Any = None
        self._error: BaseException | None = None

    def session(self, region: str) -> EndpointSession:
        from attestly.collectors.aws._session import EndpointSession, assume_role_session

        with self._lock:
            if self._creds is None and self._error is None:
                try:
                    base = assume_role_session(
                        aws_conn_id=self.aws_conn_id,
                        role_arn=self.account.role_arn,
                        session_name="attestly-collect",
                        region_name=region,
                        endpoint_url=self.account.endpoint_url,
                    )
                    self._creds = (
                        base.get_credentials().get_frozen_credentials(),
                        base.attestly_endpoint_url,
                    )
                except BaseException as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
        creds, endpoint = self._creds
        return EndpointSession(
            endpoint_url=endpoint,
            aws_access_key_id=creds.access_key,
            aws_secret_access_key=creds.secret_key,
            aws_session_token=creds.token,
            region_name=region,
        )


def _unreachable_items(
    account: PopulationAccount,
    collectors: Sequence[str],
    *,
    controls_for: Callable[[str], Sequence[str]],
    period_start: datetime,
    period_end: datetime,
    airflow: AirflowContext | None,
) -> list[EvidenceItem]:
    """``error`` items for an account whose regions could not even be found (role not assumable)."""
    out = []
    for cid in collectors:
        spec = REGISTRY[cid]
        region = GLOBAL_REGION if spec.scope == "account" else ALL_ENABLED
        out.append(
            EvidenceItem(
                collector=cid,
                controls=tuple(controls_for(cid)),
                period_start=period_start,
                period_end=period_end,
                scope={"account": account.id, "region": region},
                retroactive=spec.retroactive,
                result="error",
                findings=(
                    Finding(
                        resource=f"{spec.service}:{account.id}:{region}",
                        status="error",
                        detail=f"account not reachable: {account.access_error}"[:500],
                    ),
                ),
                data={"error_code": str(account.access_error).split(":", 1)[0], "stage": "population"},
                airflow=airflow,
            )
        )
    return out


def collect_accounts(
    accounts: Sequence[PopulationAccount],
    *,
    collectors: Sequence[str],
    controls_for: Callable[[str], Sequence[str]],
    period_start: datetime,
    period_end: datetime,
    observed_at: datetime,
    params: Mapping[str, Any],
    record: Recorder,
    aws_conn_id: str = "aws_default",
    airflow: AirflowContext | None = None,
    max_parallel: int = 8,
) -> list[dict[str, Any]]:
    """Collect and record every (collector, region) of ``accounts``; returns what ``record`` returned,
    in a stable order (account, collector, region). ``record`` is called from worker threads."""
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    work: list[tuple[Unit, _Credentials]] = []
    for account in accounts:
        if account.access_error and not account.regions:
            for item in _unreachable_items(
                account, collectors, controls_for=controls_for, period_start=period_start,
                period_end=period_end, airflow=airflow,
            ):  # fmt: skip
                results[(account.id, item.collector, item.scope["region"])] = record(item)
            continue
        creds = _Credentials(account, aws_conn_id=aws_conn_id)
        work.extend((u, creds) for u in units_of(account, collectors))

    def run(unit: Unit, creds: _Credentials) -> dict[str, Any]:
        item = run_collector(
            unit.target(),
            controls=controls_for(unit.collector),
            period_start=period_start,
            period_end=period_end,
            observed_at=observed_at,
            params=params,
            aws_conn_id=aws_conn_id,
            airflow=airflow,
            session_factory=lambda: creds.session(unit.api_region),
        )
        return record(item)

    if work:
        with ThreadPoolExecutor(
            max_workers=max(1, min(max_parallel, len(work))), thread_name_prefix="collect"
        ) as pool:
            futures = {pool.submit(run, u, c): u for u, c in work}
            for future in as_completed(futures):
                u = futures[future]
                results[(u.account.id, u.collector, u.region)] = future.result()
    return [results[k] for k in sorted(results)]
