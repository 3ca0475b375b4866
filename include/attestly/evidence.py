"""The evidence item (contract ``attestly.evidence/v1``).

An evidence item is canonical JSON: keys sorted, UTF-8, no insignificant whitespace. Its SHA-256 over
those bytes is its identity: it is stored content-addressed at ``objects/sha256/<hex>.json`` and the
ledger records that hash. Two runs that observe the same thing produce the same bytes, so re-running an
interval stores nothing new. For that reason ``collected_at`` is the end of the data interval being
evidenced (the moment the evidence speaks about), never the wall clock of the worker.

This module imports nothing from Airflow: auditors verify with it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

SCHEMA = "attestly.evidence/v1"

Result = Literal["pass", "fail", "error", "not_applicable"]
RESULTS: tuple[str, ...] = ("pass", "fail", "error", "not_applicable")
#: A finding may also be ``accepted``: a failure covered by an unexpired accepted risk of the policy
#: (who accepted it and until when is in its detail). It counts as a pass for the item's result and is
#: listed as an accepted exception in the reports — never dropped.
FINDING_STATUSES: tuple[str, ...] = (*RESULTS, "accepted")
FindingStatus = Literal["pass", "fail", "error", "not_applicable", "accepted"]


class EvidenceError(ValueError):
    """An evidence item that does not satisfy the contract; the message names the field and value."""


def iso(ts: datetime) -> str:
    """UTC ISO-8601 with a trailing Z; naive datetimes are refused (they are ambiguous evidence)."""
    if ts.tzinfo is None:
        raise EvidenceError(f"timestamp {ts!r} has no time zone; evidence timestamps must be UTC")
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, compact separators, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Finding:
    """One resource's outcome inside an evidence item. ``detail`` never carries PHI or secrets."""

    resource: str
    status: FindingStatus
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"resource": self.resource, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class AirflowContext:
    dag_id: str
    run_id: str
    task_id: str
    try_number: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "try_number": self.try_number,
        }


@dataclass(frozen=True)
class EvidenceItem:
    """One piece of evidence for one or more controls over one period.

    ``result`` is derived by the producer; :func:`derive_result` gives the usual rule. ``airflow`` is
    ``None`` when the item was produced outside Airflow (the CLI), and then serialises as null.
    """

    collector: str
    controls: tuple[str, ...]
    period_start: datetime
    period_end: datetime
    scope: dict[str, str]
    retroactive: bool
    result: Result
    findings: tuple[Finding, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    airflow: AirflowContext | None = None
    collected_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.collector:
            raise EvidenceError("evidence item: 'collector' is empty")
        if not self.controls:
            raise EvidenceError(f"evidence item {self.collector!r}: 'controls' is empty")
        if self.result not in RESULTS:
            raise EvidenceError(
                f"evidence item {self.collector!r}: result {self.result!r} is not one of {RESULTS}"
            )
        if self.period_end < self.period_start:
            raise EvidenceError(
                f"evidence item {self.collector!r}: period end {self.period_end} is before start "
                f"{self.period_start}"
            )
        for f in self.findings:
            if f.status not in FINDING_STATUSES:
                raise EvidenceError(
                    f"evidence item {self.collector!r}: finding {f.resource!r} has status {f.status!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "collector": self.collector,
            "controls": sorted(set(self.controls)),
            "period": {"start": iso(self.period_start), "end": iso(self.period_end)},
            "collected_at": iso(self.collected_at or self.period_end),
            "scope": dict(sorted(self.scope.items())),
            "retroactive": self.retroactive,
            "result": self.result,
            "findings": [
                f.to_dict() for f in sorted(self.findings, key=lambda f: (f.resource, f.status, f.detail))
            ],
            "data": self.data,
            "airflow": self.airflow.to_dict() if self.airflow else None,
        }

    def canonical(self) -> bytes:
        return canonical_json(self.to_dict())

    @property
    def sha256(self) -> str:
        return sha256_hex(self.canonical())

    @property
    def object_key(self) -> str:
        return object_key(self.sha256)

    @property
    def observation_sha256(self) -> str:
        """Hash of what was observed, without its provenance (``airflow``): two runs or tries that observe
        the same thing share it, so a re-run does not ledger a second item for an unchanged observation."""
        body = self.to_dict()
        body.pop("airflow")
        return sha256_hex(canonical_json(body))


def object_key(sha256: str) -> str:
    return f"objects/sha256/{sha256}.json"


def derive_result(findings: tuple[Finding, ...] | list[Finding], *, empty: Result = "pass") -> Result:
    """error beats fail beats pass (an ``accepted`` failure counts as a pass); no findings gives ``empty``
    (nothing in scope)."""
    statuses = {"pass" if f.status == "accepted" else f.status for f in findings}
    if "error" in statuses:
        return "error"
    if "fail" in statuses:
        return "fail"
    if not statuses or statuses == {"not_applicable"}:
        return empty
    return "pass"


def parse_item(raw: bytes) -> dict[str, Any]:
    """Parse stored bytes back and check they are canonical (re-serialising gives the same bytes)."""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvidenceError(f"evidence object is not valid JSON: {exc}") from exc
    if not isinstance(value, dict) or value.get("schema") != SCHEMA:
        raise EvidenceError(f"evidence object is not {SCHEMA}")
    if canonical_json(value) != raw:
        raise EvidenceError("evidence object is not in canonical form")
    return value
