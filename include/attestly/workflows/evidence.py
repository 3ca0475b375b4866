"""Task bodies of ``evidence_collection``: the AWS population (accounts of the policy and of the AWS
Organization, their regions) recorded as evidence, then every AWS collector per group of accounts
(dynamic task mapping over at most ``collection.max_tasks`` groups, collectors concurrent inside each),
and the audit-database collectors over the data interval; each item stored and ledgered."""

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


def _record(items: list[Any]) -> list[dict[str, Any]]:
    from attestly.ledger import Ledger
    from attestly.recording import record_evidence
    from attestly.store import EvidenceStore

    store = EvidenceStore.from_connection()
    with Ledger.connect() as ledger:
        return [record_evidence(item, store=store, ledger=ledger) for item in items]


def discover(context: Any) -> list[dict[str, Any]]:
    """Find the population (accounts, OUs, regions; what was excluded and why), record it as
    ``aws.population`` evidence, and return one small descriptor per group of accounts for the mapped
    collection tasks: the population object's key, version and SHA-256, and the group's index range.
    At most ``collection.max_tasks`` groups, whatever the organisation's size. Never raises for AWS
    errors: they are in the evidence, and :func:`check_population` fails the run on them."""
    from attestly.collectors.aws.population import discover as find_population
    from attestly.policy import load_policy

    policy = load_policy()
    start, end = interval(context)
    observed_at = datetime.now(UTC)
    population = find_population(policy.aws, concurrency=policy.aws.collection.max_parallel * 2)
    item = population_item(policy, population, start=start, end=end, observed_at=observed_at, context=context)
    (recorded,) = _record([item])
    ref = {k: recorded[k] for k in ("version_id", "sha256")}  # the key is objects/sha256/<sha256>.json
    groups = population.batches(
        max_tasks=policy.aws.collection.max_tasks, accounts_per_task=policy.aws.collection.accounts_per_task
    )
    out, first = [], 0
    for i, ids in enumerate(groups):
        names = [a.name for a in population.accounts[first : first + len(ids)]]
        label = (names[0] if len(names) == 1 else f"{names[0]}..{names[-1]} ({len(names)})")[-80:]
        out.append({"population": ref, "group": i, "from": first, "to": first + len(ids), "label": label})
        first += len(ids)
    return out


def population_item(
    policy: Any, population: Any, *, start: datetime, end: datetime, observed_at: datetime, context: Any
) -> Any:
    """The ``aws.population`` evidence item: one finding per account (``error`` when its role cannot be
    assumed) and per exclusion (``not_applicable`` with why); ``data`` is the whole population document,
    which the collection tasks read back."""
    from datetime import timedelta

    from attestly.collectors.aws.population import COLLECTOR
    from attestly.evidence import EvidenceItem, Finding, Method, Population, derive_result

    doc = population.to_dict()
    findings = [
        Finding(
            resource=f"account:{a.id}",
            status="error" if a.access_error else "pass",
            detail=(
                f"{a.name}: {a.source}{' ' + a.ou_path if a.ou_path else ''}; "
                + (
                    f"not reachable: {a.access_error}"
                    if a.access_error
                    else f"{len(a.regions)} region(s) from {a.regions_from}"
                )
            )[:500],
        )
        for a in population.accounts
    ]
    findings += [
        Finding(resource=f"account:{x['id']}", status="not_applicable", detail=f"excluded: {x['why']}")
        for x in population.excluded
    ]
    findings += [Finding(resource="organization", status="error", detail=e[:500]) for e in population.errors]
    result = derive_result(findings, empty="error")
    if observed_at > end + timedelta(days=1):
        # A backfill: today's population is not evidence of the past one (the collection uses it only to
        # record which accounts it could not look at back then).
        result, findings = "not_applicable", []
    return EvidenceItem(
        collector=COLLECTOR,
        controls=tuple(policy.controls_for_collector(COLLECTOR)),
        period_start=start,
        period_end=end,
        scope={"population": (population.organization or {}).get("id") or "accounts"},
        retroactive=False,
        result=result,
        findings=tuple(findings),
        data=doc,
        airflow=airflow_context(context),
        observed_at=observed_at,
        method=Method(
            collector=COLLECTOR,
            parameters={
                "accounts_listed": len(policy.aws.accounts),
                "organization": policy.aws.organization is not None,
            },
        ),
        population=Population(
            what="AWS accounts under assessment and their regions",
            how=population.how()[:600]
            if result != "not_applicable"
            else "not enumerated for a backfilled interval (today's population is not the past one)",
            size=len(population.accounts) if result != "not_applicable" else 0,
        ),
    )


def check_population(groups: list[dict[str, Any]], context: Any) -> dict[str, Any]:
    """Fail (after everything else was collected) when the population is incomplete: the organisation
    could not be read, or an account's role could not be assumed."""
    population = _load_population(groups[0]["population"]) if groups else None
    if population is None:
        raise CollectorFailed("no AWS account to assess: aws.yaml lists none and the organization gave none")
    problems = list(population.errors) + [
        f"{a.id} ({a.name}): {a.access_error}" for a in population.accounts if a.access_error
    ]
    if problems:
        raise CollectorFailed(f"the AWS population is incomplete: {'; '.join(problems)[:1000]}")
    return {"accounts": len(population.accounts), "groups": len(groups)}


def _load_population(ref: dict[str, Any]) -> Any:
    import hashlib
    import json

    from attestly.collectors.aws.population import Population
    from attestly.store import EvidenceStore

    key = f"objects/sha256/{ref['sha256']}.json"
    raw = EvidenceStore.from_connection().get_bytes(key, ref["version_id"])
    if hashlib.sha256(raw).hexdigest() != ref["sha256"]:
        raise CollectorFailed(f"population object {key} does not match its recorded SHA-256")
    return Population.from_dict(json.loads(raw)["data"])


class _Recorder:
    """Stores and ledgers items from worker threads: one ledger connection per thread, one store."""

    def __init__(self) -> None:
        import threading

        from attestly.store import EvidenceStore

        self.store = EvidenceStore.from_connection()
        self._local = threading.local()
        self._ledgers: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, item: Any) -> dict[str, Any]:
        from attestly.ledger import Ledger
        from attestly.recording import record_evidence

        ledger = getattr(self._local, "ledger", None)
        if ledger is None:
            ledger = self._local.ledger = Ledger.connect()
            with self._lock:
                self._ledgers.append(ledger)
        return {**record_evidence(item, store=self.store, ledger=ledger), "scope": item.scope}

    def close(self) -> None:
        for ledger in self._ledgers:
            ledger.close()


def collect_accounts(group: dict[str, Any], context: Any) -> dict[str, Any]:
    """Every AWS collector for one group of accounts (concurrently, bounded), each item recorded. Fails
    the task — only this one — when an item is an ``error``, after recording everything."""
    from attestly.collectors.aws.batch import collect_accounts as run
    from attestly.policy import AWS_COLLECTORS, load_policy
    from attestly.scanners.normalize import is_backfill
    from attestly.workflows.scanners import security_hub_per_account, security_hub_scope_controls

    policy = load_policy()
    population = _load_population(group["population"])
    accounts = population.accounts[int(group["from"]) : int(group["to"])]
    start, end = interval(context)
    # The one wall-clock read: whether present state can still speak for this interval.
    observed_at = datetime.now(UTC)
    hub = policy.aws.sources.security_hub
    per_account_hub = (
        hub.enabled and hub.mode == "per_account" and not is_backfill(observed_at=observed_at, period_end=end)
    )
    recorder = _Recorder()
    try:
        recorded = run(
            accounts,
            collectors=AWS_COLLECTORS,
            controls_for=policy.controls_for_collector,
            period_start=start,
            period_end=end,
            observed_at=observed_at,
            params=aws_params(),
            record=recorder,
            airflow=airflow_context(context),
            max_parallel=policy.aws.collection.max_parallel,
            extra=(
                security_hub_per_account(
                    policy, start=start, end=end, observed_at=observed_at, context=context
                )
                if per_account_hub
                else None
            ),
            extra_controls=security_hub_scope_controls(policy) if per_account_hub else (),
        )
    finally:
        recorder.close()
    errors = [
        f"{r['collector']} {r['scope'].get('account')}/{r['scope'].get('region')}"
        for r in recorded
        if r["result"] == "error"
    ]
    if errors:
        raise CollectorFailed(f"{len(errors)} error item(s) recorded: {', '.join(errors)[:1000]}")
    return task_summary(context, recorded)


def collect_auditdb(collector_id: str, context: Any) -> dict[str, Any]:
    from attestly.collectors.auditdb import collect_auditdb as run

    start, end = interval(context)
    item = run(collector_id, period_start=start, period_end=end, airflow=airflow_context(context))
    return task_summary(context, _record([item]))


def manual_evidence_due(context: Any) -> dict[str, Any]:
    """Complete any statement a crash left pending (its files are all stored), then chase manual
    evidence as of the interval's end: reminders to owners before the due date, to the compliance team
    once overdue (:mod:`attestly.reminders`); the owners of overdue exception responses
    (:func:`attestly.deviations.send_overdue`). Sends nothing for a backfilled interval; refuses one dated
    in the future."""
    from datetime import timedelta

    from attestly.clock import require_due_date
    from attestly.deviations import send_overdue
    from attestly.ledger import Ledger
    from attestly.manual import complete_pending
    from attestly.policy import load_policy
    from attestly.reminders import LIVE_DAYS, send_reminders
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore
    from attestly.workflows.common import never_early

    _start, end = interval(context)
    policy = load_policy()
    with Ledger.connect() as ledger, never_early():
        now = require_due_date(
            ledger.conn,
            as_of=end.date(),
            workflow="evidence_collection",
            run_id=str(context["ti"].run_id),
            ledger=ledger,
        )
        pending = complete_pending(
            ledger=ledger, store=EvidenceStore.from_connection(), signer=signer_from_connection()
        )
        live = now - end <= timedelta(days=LIVE_DAYS)
        result = send_reminders(policy=policy, ledger=ledger, today=end.date(), live=live)
        overdue = send_overdue(ledger=ledger, today=end.date(), live=live)
    return {
        "pending_completed": len(pending["completed"]),
        "pending_incomplete": len(pending["incomplete"]),
        "due": result["counts"],
        "reminders_sent": len(result["messages"]),
        "exceptions_overdue": len(overdue["overdue"]),
        "exception_reminders_sent": len(overdue["messages"]),
        "live": live,
    }
