"""AWS Config collector (per account x region).

Resources: ``config:<account>:<region>:recorder/<name>``, or ``config:<account>:<region>`` when the
region has no configuration recorder.
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


def recorder(session: Session, *, region: str, account_id: str, params: Mapping[str, Any]) -> CollectorResult:
    """A configuration recorder exists in the region and its status is recording."""
    cfg = session.client("config", region_name=region)
    recorders = cfg.describe_configuration_recorders().get("ConfigurationRecorders") or []
    statuses = {
        s["name"]: s
        for s in cfg.describe_configuration_recorder_status().get("ConfigurationRecordersStatus") or []
    }
    findings: list[Finding] = []
    for rec in recorders:
        name = rec["name"]
        res = f"config:{account_id}:{region}:recorder/{name}"
        status = statuses.get(name) or {}
        if status.get("recording"):
            findings.append(ok(res, "recording"))
        else:
            findings.append(bad(res, "recorder exists but is not recording"))
    if not recorders:
        findings.append(bad(f"config:{account_id}:{region}", "no configuration recorder"))
    data = {
        "recorders": len(recorders),
        "recording": sorted(r["name"] for r in recorders if (statuses.get(r["name"]) or {}).get("recording")),
    }
    return findings, data


COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "config.recorder",
        "config",
        "region",
        recorder,
        population="AWS Config configuration recorders in the region",
        enumerated_by="config:DescribeConfigurationRecorders, config:DescribeConfigurationRecorderStatus",
    ),
)
