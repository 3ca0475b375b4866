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
from attestly.collectors.aws._common import GLOBAL_REGION, error_code, error_message
from attestly.collectors.aws.population import ALL_ENABLED, PopulationAccount
from attestly.evidence import AirflowContext, EvidenceItem, Finding, Method, Population

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


class _SharedClients:
    """What a collector sees as its session: ``client()`` hands out the account's clients, made once per
    (service, region, endpoint) and shared by the threads (botocore clients are thread-safe; sessions
    are not, and making a client costs far more than a call)."""

    def __init__(self, owner: _Credentials, region: str) -> None:
        self._owner = owner
        self.region_name = region

    def client(self, service_name: str, region_name: str | None = None, **kwargs: Any) -> Any:
        return self._owner.client(service_name, region_name or self.region_name, **kwargs)


class _Credentials:
    """One account: its audit role assumed once (thread-safe), its clients made once and shared."""

    def __init__(self, account: PopulationAccount, *, aws_conn_id: str) -> None:
        self.account = account
        self.aws_conn_id = aws_conn_id
        self._lock = threading.Lock()
        self._session: EndpointSession | None = None
        self._error: BaseException | None = None
        self._clients: dict[tuple[str, str, str], Any] = {}

    def session(self, region: str) -> _SharedClients:
        from attestly.collectors.aws._session import assume_role_session

        with self._lock:
            if self._session is None and self._error is None:
                try:
                    self._session = assume_role_session(
                        aws_conn_id=self.aws_conn_id,
                        role_arn=self.account.role_arn,
                        session_name="attestly-collect",
                        region_name=region,
                        endpoint_url=self.account.endpoint_url,
                    )
                except BaseException as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
        return _SharedClients(self, region)

    def client(self, service_name: str, region: str, **kwargs: Any) -> Any:
        key = (service_name, region, repr(sorted(kwargs.items())))
        with self._lock:
            made = self._clients.get(key)
            if made is None:
                assert self._session is not None
                made = self._clients[key] = self._session.client(service_name, region_name=region, **kwargs)
            return made


def _unreachable_items(
    account: PopulationAccount,
    collectors: Sequence[str],
    *,
    controls_for: Callable[[str], Sequence[str]],
    period_start: datetime,
    period_end: datetime,
    observed_at: datetime,
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
                observed_at=observed_at,
                method=Method(collector=cid),
                population=Population(
                    what=f"{spec.population or spec.service + ' resources'} (account {account.id})",
                    how="not enumerated: the account's audit role could not be assumed",
                    size=0,
                ),
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
    extra: Callable[[PopulationAccount, str, Any], list[EvidenceItem]] | None = None,
    extra_name: str = "securityhub.findings",
    extra_controls: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Collect and record every (collector, region) of ``accounts``; returns what ``record`` returned,
    in a stable order (account, collector, region). ``record`` is called from worker threads.

    ``extra`` (optional) reads another source per account and region with the account's shared clients
    — Security Hub's findings — and returns its evidence items; when it raises, an ``error`` item
    ``extra_name`` for ``extra_controls`` records exactly that scope."""
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    work: list[tuple[Unit, _Credentials]] = []
    for account in accounts:
        if account.access_error and not account.regions:
            for item in _unreachable_items(
                account, collectors, controls_for=controls_for, period_start=period_start,
                period_end=period_end, observed_at=observed_at, airflow=airflow,
            ):  # fmt: skip
                results[(account.id, item.collector, item.scope["region"])] = record(item)
            continue
        creds = _Credentials(account, aws_conn_id=aws_conn_id)
        work.extend((u, creds) for u in units_of(account, collectors))
        if extra is not None:
            work.extend((Unit(account, extra_name, r), creds) for r in account.regions)

    def run_extra(unit: Unit, creds: _Credentials) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
        assert extra is not None
        try:
            items = extra(unit.account, unit.region, creds.session(unit.region))
        except Exception as exc:  # exactly this account and region
            if not extra_controls:
                raise
            items = [
                EvidenceItem(
                    collector=extra_name,
                    controls=tuple(extra_controls),
                    period_start=period_start,
                    period_end=period_end,
                    scope={"account": unit.account.id, "region": unit.region},
                    retroactive=False,
                    result="error",
                    findings=(
                        Finding(
                            resource=f"{extra_name}:{unit.account.id}:{unit.region}",
                            status="error",
                            detail=f"{error_code(exc)}: {error_message(exc)}",
                        ),
                    ),
                    data={"error_code": error_code(exc)},
                    airflow=airflow,
                    observed_at=observed_at,
                    method=Method(collector=extra_name),
                    population=Population(
                        what=f"{extra_name} findings (account {unit.account.id}, region {unit.region})",
                        how=f"not enumerated: {error_code(exc)}",
                        size=0,
                    ),
                )
            ]
        return [((unit.account.id, i.collector, unit.region), record(i)) for i in items]

    def run(unit: Unit, creds: _Credentials) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
        if unit.collector == extra_name:
            return run_extra(unit, creds)
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
        return [((unit.account.id, unit.collector, unit.region), record(item))]

    if work:
        with ThreadPoolExecutor(
            max_workers=max(1, min(max_parallel, len(work))), thread_name_prefix="collect"
        ) as pool:
            futures = [pool.submit(run, u, c) for u, c in work]
            for future in as_completed(futures):
                for key, value in future.result():
                    results[key] = value
    return [results[k] for k in sorted(results)]
