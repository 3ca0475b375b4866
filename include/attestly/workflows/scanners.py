"""Task bodies of ``evidence_collection`` for the ecosystem's scanners: Prowler per group of accounts,
AWS Security Hub from the delegated administrator's aggregation region. (Security Hub per account runs
inside the collection of each group: :mod:`attestly.collectors.aws.batch`.)

Every scan's raw output is stored write-once and ledgered (kind ``scan``, verified by ``attestly
verify``); its findings become evidence items through the one normaliser (:mod:`attestly.scanners`).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from attestly.workflows.common import airflow_context, interval, task_summary
from attestly.workflows.evidence import CollectorFailed, _load_population, _Recorder

SCAN_KIND = "scan"


def controls_for_source(finding: Any, policy: Any) -> tuple[str, ...]:
    """The policy's controls a source finding is evidence for: the source's own framework mappings
    (translated), and the controls of the native collector that tests the same property."""
    from attestly.scanners.mapping import NATIVE_EQUIVALENTS, source_controls

    ids = set(source_controls(finding))
    for native, twins in NATIVE_EQUIVALENTS.items():
        if finding.collector in twins:
            ids |= set(policy.controls_for_collector(native))
    return tuple(sorted(ids & set(policy.controls)))


def prowler_scope_controls(policy: Any) -> tuple[str, ...]:
    """The policy's controls any Prowler check in the configured scope serves (for the scan record)."""
    from attestly.scanners.mapping import NATIVE_EQUIVALENTS, prowler_check_controls, prowler_mappings

    cfg = policy.aws.sources.prowler
    checks = cfg.checks or [
        c for c in prowler_mappings()["all_checks"] if not cfg.services or c.split("_", 1)[0] in cfg.services
    ]
    ids: set[str] = set()
    for c in checks:
        ids |= prowler_check_controls(c)
    for native, twins in NATIVE_EQUIVALENTS.items():
        if any(t.removeprefix("prowler.") in checks for t in twins):
            ids |= set(policy.controls_for_collector(native))
    return tuple(sorted(ids & set(policy.controls)))


def store_raw(
    recorder: _Recorder, *, source: str, account: str, raw: bytes, period_end: datetime, meta: dict[str, Any]
) -> dict[str, Any]:
    """Store a scanner's raw output write-once (content-addressed) and ledger it (kind ``scan``)."""
    from attestly.ledger import Ledger

    sha = hashlib.sha256(raw).hexdigest()
    store = recorder.store
    stored = store.put_bytes(
        f"raw/{source}/sha256/{sha}.json",
        raw,
        retain_until=store.retain_until_for(period_end),
        content_type="application/json",
    )
    ref = {"key": stored.key, "version_id": stored.version_id, "sha256": stored.sha256, "size": stored.size}
    with Ledger.connect() as ledger:
        ledger.append(
            SCAN_KIND,
            {
                "source": source,
                "account": account,
                "raw": ref,
                "retain_until": stored.to_dict()["retain_until"],
                **meta,
            },
            dedupe_key=f"scan:{source}:{sha}",
        )
    return ref


def _scan_item(
    policy: Any,
    *,
    account: str,
    result: str,
    detail: str,
    data: dict[str, Any],
    start: datetime,
    end: datetime,
    context: Any,
    observed_at: datetime,
    method: Any,
    checks: int,
) -> Any:
    """The record of one account's scan (or of its failure), for the controls the scanned checks serve;
    None when they serve none of the policy's (the raw output is still stored and ledgered)."""
    from attestly.evidence import EvidenceItem, Finding, Population

    controls = prowler_scope_controls(policy)
    if not controls:
        return None
    return EvidenceItem(
        collector="prowler.scan",
        controls=controls,
        period_start=start,
        period_end=end,
        scope={"account": account, "region": "all"},
        retroactive=False,
        result=result,  # type: ignore[arg-type]
        findings=(Finding(resource=f"account:{account}", status=result, detail=detail[:500]),),  # type: ignore[arg-type]
        data=data,
        airflow=airflow_context(context),
        observed_at=observed_at,
        method=method,
        population=Population(
            what=f"Prowler checks run in account {account}",
            how="prowler aws (the checks of the policy's scope) through the account's audit role"
            if result != "error"
            else "not enumerated: the scan failed",
            size=checks,
        ),
    )


def scan_prowler(group: dict[str, Any], context: Any) -> dict[str, Any]:
    """Prowler for each account of one group (one after another: a scan is memory-heavy), each through
    the account's audit role; its raw output stored and ledgered, its findings recorded as evidence. An
    account that cannot be scanned records an ``error`` and fails this task after the others ran."""
    from attestly.collectors.aws._session import assume_role_session
    from attestly.evidence import Method
    from attestly.policy import load_policy
    from attestly.scanners.normalize import backfill_item, is_backfill, to_items
    from attestly.scanners.ocsf import parse_ocsf
    from attestly.scanners.prowler import ProwlerFailed, run_prowler, version

    policy = load_policy()
    cfg = policy.aws.sources.prowler
    if not cfg.enabled:
        return {**task_summary(context, []), "skipped": "prowler is not enabled in aws.yaml"}
    population = _load_population(group["population"])
    accounts = [
        a
        for a in population.accounts[int(group["from"]) : int(group["to"])]
        if a.id not in cfg.exclude_accounts
    ]
    start, end = interval(context)
    observed_at = datetime.now(UTC)
    recorder = _Recorder()
    recorded: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        prowler_version = None
        for acct in accounts:
            if is_backfill(observed_at=observed_at, period_end=end):
                if prowler_scope_controls(policy):
                    item = backfill_item("prowler.scan", controls=prowler_scope_controls(policy), account=acct.id,
                                         period_start=start, period_end=end, airflow=airflow_context(context),
                                         observed_at=observed_at)  # fmt: skip
                    recorded.append(recorder(item))
                continue
            try:
                if acct.access_error:
                    raise ProwlerFailed(f"account not reachable: {acct.access_error}")
                session = assume_role_session(
                    aws_conn_id="aws_default", role_arn=acct.role_arn, session_name="attestly-prowler",
                    region_name=acct.regions[0] if acct.regions else "us-east-1", endpoint_url=acct.endpoint_url,
                )  # fmt: skip
                scan = run_prowler(
                    credentials=session.get_credentials().get_frozen_credentials(),
                    account_id=acct.id,
                    regions=acct.regions,
                    services=cfg.services,
                    checks=cfg.checks,
                    excluded_checks=cfg.excluded_checks,
                    endpoint_url=acct.endpoint_url,
                    timeout_minutes=cfg.timeout_minutes,
                )
                prowler_version = prowler_version or version()
                findings = [
                    f
                    for f in parse_ocsf(scan.raw, name=f"prowler output for {acct.id}")
                    if f.account == acct.id
                ]
            except Exception as exc:  # recorded as an error item for exactly this account
                errors.append(f"{acct.id}: {exc}")
                item = _scan_item(policy, account=acct.id, result="error", detail=str(exc), data={"error": str(exc)[:1000]},
                                  start=start, end=end, context=context, observed_at=observed_at,
                                  method=Method("prowler.scan"), checks=0)  # fmt: skip
                if item is not None:
                    recorded.append(recorder(item))
                continue
            prowler_method = Method("prowler.scan", operations={" ".join(map(str, scan.command)): 1},
                                    tool=f"prowler {prowler_version}",
                                    parameters={"regions": list(acct.regions)})  # fmt: skip
            raw = store_raw(recorder, source="prowler", account=acct.id, raw=scan.raw, period_end=end,
                            meta={"prowler_version": prowler_version, "exit_code": scan.exit_code})  # fmt: skip
            items = to_items(
                findings,
                controls_of=lambda f: controls_for_source(f, policy),
                period_start=start,
                period_end=end,
                accepted=policy.aws.accepted_risks,
                today=observed_at.date(),
                airflow=airflow_context(context),
                extra_data={"scanner": f"prowler {prowler_version}"},
                observed_at=observed_at,
                method=prowler_method,
            )
            counts: dict[str, int] = {}
            for f in findings:
                counts[f.status] = counts.get(f.status, 0) + 1
            summary = _scan_item(
                policy,
                account=acct.id,
                result="pass",
                detail=f"Prowler {prowler_version}: {len(findings)} findings ({counts}), {len(items)} evidence items",
                data={"prowler_version": prowler_version, "command": scan.command, "exit_code": scan.exit_code,
                      "regions": list(acct.regions), "counts": dict(sorted(counts.items())), "raw": raw,
                      "checks": len({f.check for f in findings}), "items": len(items)},
                start=start, end=end, context=context, observed_at=observed_at, method=prowler_method,
                checks=len({f.check for f in findings}),
            )  # fmt: skip
            recorded += [recorder(i) for i in [*items, summary] if i is not None]
    finally:
        recorder.close()
    if errors:
        raise CollectorFailed(f"prowler failed for {len(errors)} account(s): {'; '.join(errors)[:1500]}")
    return task_summary(context, recorded)


def collect_security_hub(groups: list[dict[str, Any]], context: Any) -> dict[str, Any]:
    """Security Hub in aggregator mode: every active control finding of the population's accounts, read
    once from the delegated administrator's aggregation region."""
    from attestly.collectors.aws._session import assume_role_session
    from attestly.policy import load_policy
    from attestly.scanners.asff import get_findings, parse_asff
    from attestly.scanners.normalize import is_backfill, to_items

    policy = load_policy()
    cfg = policy.aws.sources.security_hub
    if not (cfg.enabled and cfg.mode == "aggregator") or not groups:
        return {**task_summary(context, []), "skipped": "security_hub aggregator mode is not enabled"}
    start, end = interval(context)
    observed_at = datetime.now(UTC)
    if is_backfill(observed_at=observed_at, period_end=end):
        return {**task_summary(context, []), "skipped": "backfill: Security Hub shows current state only"}
    population = _load_population(groups[0]["population"])
    session = assume_role_session(
        aws_conn_id="aws_default", role_arn=str(cfg.aggregator_role_arn), session_name="attestly-securityhub",
        region_name=str(cfg.aggregator_region), endpoint_url=cfg.endpoint_url or None,
    )  # fmt: skip
    from attestly.collectors.aws._calls import WatchedSession, recording_calls
    from attestly.evidence import Method
    from attestly.scanners.asff import FILTERS

    with recording_calls() as calls:
        raw = get_findings(
            WatchedSession(session),
            region=str(cfg.aggregator_region),
            accounts={a.id for a in population.accounts},
        )
    findings = parse_asff(raw)
    recorder = _Recorder()
    try:
        import json

        store_raw(recorder, source="securityhub", account="aggregator",
                  raw=json.dumps(raw, sort_keys=True, default=str).encode(), period_end=end,
                  meta={"region": cfg.aggregator_region})  # fmt: skip
        items = to_items(findings, controls_of=lambda f: controls_for_source(f, policy), period_start=start,
                         period_end=end, accepted=policy.aws.accepted_risks, today=observed_at.date(),
                         airflow=airflow_context(context), observed_at=observed_at,
                         method=Method("securityhub", operations=dict(calls), tool="AWS Security Hub (ASFF)",
                                       parameters={"Filters": FILTERS, "region": str(cfg.aggregator_region),
                                                   "accounts": len(population.accounts)}))  # fmt: skip
        recorded = [recorder(i) for i in items]
    finally:
        recorder.close()
    return task_summary(context, recorded)


def security_hub_scope_controls(policy: Any) -> tuple[str, ...]:
    """The policy's controls Security Hub's mapped controls serve (for an error record)."""
    from attestly.scanners.mapping import NATIVE_EQUIVALENTS, SECURITYHUB_TO_PROWLER, prowler_check_controls

    ids: set[str] = set()
    for twin in SECURITYHUB_TO_PROWLER.values():
        ids |= {c for c in prowler_check_controls(twin) if not c.startswith("pci:")}
    for native, twins in NATIVE_EQUIVALENTS.items():
        if any(t.startswith("securityhub.") for t in twins):
            ids |= set(policy.controls_for_collector(native))
    return tuple(sorted(ids & set(policy.controls)))


def security_hub_per_account(
    policy: Any, *, start: datetime, end: datetime, observed_at: datetime, context: Any
) -> Any:
    """The per-account Security Hub reader given to the collection of a group: for (account, region,
    session) the evidence items of its active control findings. Raises on AWS errors (the caller records
    an error item for exactly that scope)."""
    from attestly.scanners.asff import get_findings, parse_asff
    from attestly.scanners.normalize import to_items

    def read(account: Any, region: str, session: Any) -> list[Any]:
        from attestly.collectors.aws._calls import WatchedSession, recording_calls
        from attestly.evidence import Method
        from attestly.scanners.asff import FILTERS

        with recording_calls() as calls:
            raw = get_findings(WatchedSession(session), region=region, accounts={account.id})
        findings = [f for f in parse_asff(raw) if f.region == region]
        return to_items(findings, controls_of=lambda f: controls_for_source(f, policy), period_start=start,
                        period_end=end, accepted=policy.aws.accepted_risks, today=observed_at.date(),
                        airflow=airflow_context(context), observed_at=observed_at,
                        method=Method("securityhub", operations=dict(calls), tool="AWS Security Hub (ASFF)",
                                      parameters={"Filters": FILTERS, "region": region}))  # fmt: skip

    return read
