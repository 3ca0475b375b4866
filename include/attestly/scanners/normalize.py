"""Source findings → evidence items: one per (source check, account, region), a finding per resource.

Status comes from the source's pass/fail, never from severity:

* PASS → ``pass``; FAIL → ``fail`` — or ``accepted`` while an unexpired accepted risk of the policy covers
  it (the detail says who accepted it, until when and why; an expired acceptance says so and stays a
  failure);
* MANUAL (Prowler), WARNING / NOT_AVAILABLE (Security Hub) and the source's own suppression (Prowler's
  mutelist, Security Hub SUPPRESSED) → ``not_applicable`` with the reason.

Scanners see current state only: for an interval that ended more than a day before the observation (a
backfill), nothing is claimed about the past — :func:`backfill_item` records that instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from attestly.evidence import AirflowContext, EvidenceItem, Finding, Method, Population, derive_result
from attestly.scanners.model import SourceFinding

CURRENT_STATE_GRACE = timedelta(days=1)


def _finding(f: SourceFinding, accepted: Sequence[Any], today: date) -> tuple[Finding, dict[str, Any] | None]:
    if f.muted:
        return Finding(f.resource, "not_applicable", f.muted_reason or "muted by the source"), None
    if f.status == "PASS":
        return Finding(f.resource, "pass", f.detail[:500]), None
    if f.status == "MANUAL":
        return Finding(f.resource, "not_applicable", f"manual check, not evaluated: {f.detail}"[:500]), None
    if f.status in ("WARNING", "NOT_AVAILABLE"):
        return Finding(f.resource, "not_applicable", f"{f.status.lower()}: {f.detail}"[:500]), None
    risks = [r for r in accepted if r.covers(collector=f.collector, resource=f.resource, account=f.account)]
    live = [r for r in risks if r.expires >= today]
    if live:
        r = max(live, key=lambda r: r.expires)
        detail = (
            f"accepted risk, approved by {r.approver} until {r.expires.isoformat()}: {r.reason} — {f.detail}"
        )
        return Finding(f.resource, "accepted", detail[:500]), {
            "resource": f.resource,
            "approver": r.approver,
            "expires": r.expires.isoformat(),
            "reason": r.reason,
        }
    if risks:
        r = max(risks, key=lambda r: r.expires)
        detail = f"{f.detail} (the risk acceptance by {r.approver} expired {r.expires.isoformat()})"
        return Finding(f.resource, "fail", detail[:500]), None
    return Finding(f.resource, "fail", f.detail[:500]), None


def to_items(
    findings: Iterable[SourceFinding],
    *,
    controls_of: Callable[[SourceFinding], Sequence[str]],
    period_start: datetime,
    period_end: datetime,
    accepted: Sequence[Any] = (),
    today: date,
    airflow: AirflowContext | None = None,
    extra_data: dict[str, Any] | None = None,
    observed_at: datetime | None = None,
    method: Method | None = None,
) -> list[EvidenceItem]:
    """The evidence items of ``findings``; checks that map to no control of the policy give none (they
    stay in the stored raw output). ``today`` is the trusted date acceptances expire against.
    ``observed_at`` and ``method`` (how the source was read) go into every item; each item's population
    is the source's findings of its check in its account and region."""
    groups: dict[tuple[str, str, str], list[SourceFinding]] = {}
    for f in findings:
        groups.setdefault((f.collector, f.account, f.region), []).append(f)
    items = []
    for (collector, account, region), group in sorted(groups.items()):
        controls = tuple(sorted(set(controls_of(group[0]))))
        if not controls:
            continue
        made = [_finding(sf, accepted, today) for sf in group]
        out = tuple(f for f, _ in made)
        accepted_here = [a for _, a in made if a]
        counts: dict[str, int] = {}
        for item_finding in out:
            counts[item_finding.status] = counts.get(item_finding.status, 0) + 1
        items.append(
            EvidenceItem(
                collector=collector,
                controls=controls,
                period_start=period_start,
                period_end=period_end,
                scope={"account": account, "region": region},
                retroactive=False,
                result=derive_result(out, empty="not_applicable"),
                findings=out,
                data={
                    "source": group[0].source,
                    "check": group[0].check,
                    "title": group[0].title,
                    "counts": dict(sorted(counts.items())),
                    "accepted": sorted(accepted_here, key=lambda a: a["resource"]),
                    **(extra_data or {}),
                },
                airflow=airflow,
                observed_at=observed_at,
                method=replace(method, collector=collector) if method is not None else Method(collector),
                population=Population(
                    what=f"{group[0].source} findings of check {group[0].check} (account {account}, "
                    f"region {region})",
                    how=f"the {group[0].source} output of the scan, grouped by check, account and region",
                    size=len(group),
                ),
            )
        )
    return items


def is_backfill(*, observed_at: datetime, period_end: datetime) -> bool:
    return observed_at > period_end + CURRENT_STATE_GRACE


def backfill_item(
    collector: str,
    *,
    controls: Sequence[str],
    account: str,
    period_start: datetime,
    period_end: datetime,
    airflow: AirflowContext | None,
    observed_at: datetime | None = None,
) -> EvidenceItem:
    """What a scanner records for a past interval: ``not_applicable`` — present state is not evidence of
    the past, and the scanner is not run."""
    return EvidenceItem(
        collector=collector,
        controls=tuple(controls),
        period_start=period_start,
        period_end=period_end,
        scope={"account": account, "region": "all"},
        retroactive=False,
        result="not_applicable",
        data={
            "reason": (
                f"current-state scanner: run after the interval ended {period_end.date().isoformat()} (more than "
                f"{CURRENT_STATE_GRACE} later); present state is not evidence of the past"
            )
        },
        airflow=airflow,
        observed_at=observed_at,
        method=Method(collector),
        population=Population(
            what=f"{collector} findings (account {account})",
            how="not enumerated: a backfilled interval; the scanner is not run",
            size=0,
        ),
    )
