"""AWS Security Hub control findings (ASFF, ``GetFindings``) as :class:`SourceFinding`.

Only control findings count (``Compliance.SecurityControlId`` — consolidated control findings — or the
older per-standard ``ProductFields.ControlId``), only ``RecordState`` ACTIVE, and both PASSED and FAILED
become findings so the population shows. ``Compliance.Status`` PASSED → PASS, FAILED → FAIL, WARNING and
NOT_AVAILABLE stay as they are (not evidence either way); ``Workflow.Status`` SUPPRESSED is the source's
own suppression (with who and why from ``Note``). ``Compliance.RelatedRequirements`` carries the PCI DSS
requirements Security Hub maps the control to ("PCI DSS v4.0.1/10.2.1").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from attestly.scanners.model import SourceFinding, SourceFormatError

_STATUS = {"PASSED": "PASS", "FAILED": "FAIL", "WARNING": "WARNING", "NOT_AVAILABLE": "NOT_AVAILABLE"}
_PCI = re.compile(r"^PCI DSS v4\.0(?:\.\d+)?/(?P<req>\d+(?:\.\d+)+)$")

#: The GetFindings filter: active control findings of every compliance status.
FILTERS: dict[str, Any] = {
    "RecordState": [{"Value": "ACTIVE", "Comparison": "EQUALS"}],
    "ProductName": [{"Value": "Security Hub", "Comparison": "EQUALS"}],
    "ComplianceStatus": [{"Value": s, "Comparison": "EQUALS"} for s in _STATUS],
}


def _control_id(f: dict[str, Any]) -> str | None:
    comp = f.get("Compliance") or {}
    if isinstance(comp.get("SecurityControlId"), str):
        return str(comp["SecurityControlId"])
    pf = f.get("ProductFields") or {}
    return str(pf["ControlId"]) if isinstance(pf.get("ControlId"), str) else None


def parse_asff(findings: Iterable[Any], *, name: str = "Security Hub findings") -> list[SourceFinding]:
    """Active control findings as source findings (others are skipped); :class:`SourceFormatError` names
    a finding that lacks what every ASFF finding has."""
    out = []
    for i, f in enumerate(findings):
        where = f"{name}: finding {i}"
        if not isinstance(f, dict):
            raise SourceFormatError(f"{where}: not an object")
        if f.get("RecordState", "ACTIVE") != "ACTIVE":
            continue
        control = _control_id(f)
        status = (f.get("Compliance") or {}).get("Status")
        if control is None or status not in _STATUS:
            continue  # not a control finding (GuardDuty, Inspector, ...) or no compliance result
        resources = f.get("Resources")
        if not isinstance(resources, list) or not resources or not isinstance(resources[0], dict):
            raise SourceFormatError(f"{where} ({control}): no Resources")
        for key in ("AwsAccountId", "Region"):
            if not isinstance(f.get(key), str):
                raise SourceFormatError(f"{where} ({control}): no {key}")
        workflow = (f.get("Workflow") or {}).get("Status") or (f.get("WorkflowState") or "")
        note = f.get("Note") or {}
        suppressed = workflow == "SUPPRESSED"
        related = (f.get("Compliance") or {}).get("RelatedRequirements") or []
        pci = tuple(sorted({m["req"] for r in related if isinstance(r, str) and (m := _PCI.match(r))}))
        out.append(
            SourceFinding(
                source="securityhub",
                check=control,
                title=str(f.get("Title") or ""),
                account=str(f["AwsAccountId"]),
                region=str(f["Region"]),
                resource=str(resources[0].get("Id") or resources[0].get("Type") or "unknown"),
                status=_STATUS[status],  # type: ignore[arg-type]
                detail=str(f.get("Description") or f.get("Title") or "")[:500],
                muted=suppressed,
                muted_reason=(
                    f"suppressed in Security Hub by {note.get('UpdatedBy', 'unknown')}: {note.get('Text', '')}".strip(
                        ": "
                    )
                    if suppressed
                    else ""
                ),
                severity=str((f.get("Severity") or {}).get("Label") or ""),
                requirements={"pci": pci} if pci else {},
            )
        )
    return out


def get_findings(session: Any, *, region: str, accounts: set[str] | None = None) -> list[dict[str, Any]]:
    """Every active control finding Security Hub holds in ``region`` (paginated, 100 a page), optionally
    only for ``accounts``. The filter is sent and applied again here (a store that ignores it still
    gives the right population)."""
    client = session.client("securityhub", region_name=region)
    out: list[dict[str, Any]] = []
    for page in client.get_paginator("get_findings").paginate(
        Filters=FILTERS, PaginationConfig={"PageSize": 100}
    ):
        for f in page.get("Findings", []):
            if accounts is not None and f.get("AwsAccountId") not in accounts:
                continue
            out.append(f)
    return out
