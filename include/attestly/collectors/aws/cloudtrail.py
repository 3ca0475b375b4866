"""CloudTrail collector (per account x region).

Resources: ``cloudtrail:<account>:<region>:trail/<name>`` for each trail visible in the region
(including multi-region trails homed elsewhere), ``cloudtrail:<account>:<region>`` when there is none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attestly.collectors.aws._common import (
    CollectorResult,
    CollectorSpec,
    bad,
    ok,
    skip,
)
from attestly.evidence import Finding

if TYPE_CHECKING:
    from boto3 import Session


def multi_region_trail(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """At least one trail covering the region is multi-region, logging (``get_trail_status``) and has
    log file validation. Qualifying trails pass; when one qualifies, the others are
    ``not_applicable``, otherwise each fails with its shortfalls; no trail at all fails."""
    ct = session.client("cloudtrail", region_name=region)
    trails = ct.describe_trails(includeShadowTrails=True).get("trailList") or []
    checked: list[tuple[str, list[str]]] = []
    for trail in trails:
        status = ct.get_trail_status(Name=trail.get("TrailARN") or trail["Name"])
        problems = []
        if not trail.get("IsMultiRegionTrail"):
            problems.append("not multi-region")
        if not status.get("IsLogging"):
            problems.append("not logging")
        if not trail.get("LogFileValidationEnabled"):
            problems.append("log file validation off")
        checked.append((f"cloudtrail:{account_id}:{region}:trail/{trail['Name']}", problems))
    covered = any(not problems for _, problems in checked)
    findings: list[Finding] = []
    for res, problems in checked:
        if not problems:
            findings.append(ok(res, "multi-region, logging, log file validation on"))
        elif covered:
            findings.append(skip(res, "; ".join(problems) + " (another trail meets the requirement)"))
        else:
            findings.append(bad(res, "; ".join(problems)))
    if not checked:
        findings.append(bad(f"cloudtrail:{account_id}:{region}", "no trail covers this region"))
    data = {
        "trails": len(checked),
        "qualifying": sorted(res.rsplit("/", 1)[1] for res, problems in checked if not problems),
    }
    return findings, data


COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec("cloudtrail.multi_region_trail", "cloudtrail", "region", multi_region_trail),
)
