"""CloudTrail collector (per account x region).

Resources: ``cloudtrail:<account>:<region>:trail/<name>`` for each trail visible in the region
(including multi-region trails homed elsewhere: its log file validation), and
``cloudtrail:<account>:<region>`` (the region's coverage by a multi-region logging trail).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attestly.collectors.aws._common import (
    CollectorResult,
    CollectorSpec,
    bad,
    ok,
)
from attestly.evidence import Finding

if TYPE_CHECKING:
    from boto3 import Session


def multi_region_trail(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Two requirements, each judged on its own:

    * every trail visible in the region has log file validation on (CIS AWS 3.2): a trail without it
      fails, whatever other trails do;
    * the region is covered by at least one multi-region trail that is logging (``get_trail_status``):
      the resource ``cloudtrail:<account>:<region>`` passes naming that trail, or fails.
    """
    ct = session.client("cloudtrail", region_name=region)
    trails = ct.describe_trails(includeShadowTrails=True).get("trailList") or []
    findings: list[Finding] = []
    covering: list[str] = []
    for trail in trails:
        name = trail["Name"]
        status = ct.get_trail_status(Name=trail.get("TrailARN") or name)
        res = f"cloudtrail:{account_id}:{region}:trail/{name}"
        scope = "multi-region" if trail.get("IsMultiRegionTrail") else "single-region"
        logging = "logging" if status.get("IsLogging") else "not logging"
        if trail.get("IsMultiRegionTrail") and status.get("IsLogging"):
            covering.append(name)
        if trail.get("LogFileValidationEnabled"):
            findings.append(ok(res, f"log file validation on ({scope}, {logging})"))
        else:
            findings.append(bad(res, f"log file validation off ({scope}, {logging}; CIS AWS 3.2)"))
    region_res = f"cloudtrail:{account_id}:{region}"
    if covering:
        findings.append(
            ok(region_res, f"covered by multi-region logging trail(s): {', '.join(sorted(covering))}")
        )
    else:
        findings.append(
            bad(
                region_res,
                "no multi-region trail that is logging covers this region"
                if trails
                else "no trail covers this region",
            )
        )
    data = {"trails": len(trails), "covering": sorted(covering)}
    return findings, data


COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "cloudtrail.multi_region_trail",
        "cloudtrail",
        "region",
        multi_region_trail,
        population="CloudTrail trails visible in the region (shadow trails included)",
        enumerated_by="cloudtrail:DescribeTrails(includeShadowTrails=true)",
    ),
)
