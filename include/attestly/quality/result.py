"""Results of the audit-log quality suite and their evidence form (no GX, no database here).

Contracts:

- :class:`CheckResult` carries counts, at most five sample row ids and a short non-PHI ``detail``
  (source names, hours, sequence numbers). It never carries a value read from a row's content.
- :meth:`QualityResult.to_evidence` is deterministic for the same data: no timings, no wall clock;
  ``collected_at`` is the interval end (see :mod:`attestly.evidence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from attestly.evidence import (
    AirflowContext,
    EvidenceItem,
    Finding,
    Method,
    Population,
    Result,
    derive_result,
    iso,
)

COLLECTOR = "quality.audit_log"


@dataclass(frozen=True)
class CheckResult:
    """One check of the suite.

    ``name`` is a stable id (``required_not_null:actor``, ``hourly_volume``...); ``expectation`` is the
    GX expectation type that ran it; ``unexpected_count`` follows the per-check counting rules in
    :mod:`attestly.quality.checks`; ``error`` is set (and ``success`` false) when GX could not evaluate
    the check — its text names the exception type only, the full message goes to the task log.
    """

    name: str
    success: bool
    unexpected_count: int
    sample_ids: tuple[str, ...] = ()
    detail: str = ""
    expectation: str = ""
    error: str | None = None

    @property
    def status(self) -> Result:
        if self.error is not None:
            return "error"
        return "pass" if self.success else "fail"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "success": self.success,
            "status": self.status,
            "unexpected_count": self.unexpected_count,
            "sample_ids": list(self.sample_ids),
            "detail": self.detail,
            "expectation": self.expectation,
            "error": self.error,
        }

    def finding_detail(self) -> str:
        """``unexpected N[; sample ids a, b][; detail]`` — ids and counts only."""
        parts = [f"unexpected {self.unexpected_count}"]
        if self.sample_ids:
            parts.append("sample ids " + ", ".join(self.sample_ids))
        if self.error:
            parts.append(self.error)
        elif self.detail:
            parts.append(self.detail)
        return "; ".join(parts)


@dataclass(frozen=True)
class QualityResult:
    """The outcome of one validation of the interval ``[start, end)`` (UTC).

    ``success`` is true only when every check passed. ``controls`` are the policy's controls for
    the ``quality.audit_log`` collector at run time; ``seconds`` is informative and never part of the
    evidence.
    """

    start: datetime
    end: datetime
    checks: list[CheckResult]
    rows: int = 0
    database: str = ""
    table: str = ""
    sources: tuple[str, ...] = ()
    controls: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    gx_version: str = ""
    seconds: float = 0.0
    #: What GX ran, one text per check (the SQL, or the expectation and its row condition): the method.
    queries: tuple[str, ...] = ()

    @property
    def success(self) -> bool:
        return all(c.success and c.error is None for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success or c.error is not None]

    def check(self, name: str) -> CheckResult:
        """The check called ``name``; ``KeyError`` naming the known ones otherwise."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r} in this result (checks: {', '.join(c.name for c in self.checks)})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "success": self.success,
            "rows": self.rows,
            "database": self.database,
            "table": self.table,
            "sources": list(self.sources),
            "checks": [c.to_dict() for c in self.checks],
            "skipped": dict(sorted(self.skipped.items())),
            "gx_version": self.gx_version,
            "seconds": round(self.seconds, 3),
        }

    def to_evidence(
        self,
        *,
        controls: Sequence[str] | None = None,
        airflow: AirflowContext | None = None,
        observed_at: datetime | None = None,
    ) -> EvidenceItem:
        """The evidence item (collector ``quality.audit_log``) for this interval.

        ``controls`` default to the policy's controls for the collector at run time. The item is
        retroactive (the suite reads the interval's rows as they are, whenever it runs), carries one
        finding per check and, in ``data``, every check's counts and sample ids and the GX version.
        """
        chosen = tuple(controls) if controls is not None else self.controls
        findings = tuple(
            Finding(resource=c.name, status=c.status, detail=c.finding_detail()) for c in self.checks
        )
        return EvidenceItem(
            collector=COLLECTOR,
            controls=chosen,
            period_start=self.start,
            period_end=self.end,
            scope={"database": self.database, "table": self.table, "sources": ",".join(self.sources)},
            retroactive=True,
            result=derive_result(findings, empty="error"),
            findings=findings,
            data={
                "checks": [c.to_dict() for c in self.checks],
                "gx_version": self.gx_version,
                "rows": self.rows,
                "skipped": dict(sorted(self.skipped.items())),
            },
            airflow=airflow,
            observed_at=observed_at,
            method=Method(
                collector=COLLECTOR,
                queries=self.queries,
                parameters={
                    "checks": [c.name for c in self.checks],
                    "skipped": dict(sorted(self.skipped.items())),
                },
                tool=f"great_expectations {self.gx_version}" if self.gx_version else None,
            ),
            population=Population(
                what=f"audit events of {self.table} with timestamp in [{iso(self.start)}, {iso(self.end)})",
                how="one GX batch over the table with the interval as row condition (SQL push-down)",
                size=self.rows,
            ),
        )


def format_result(result: QualityResult) -> str:
    """Human-readable lines: ``PASS|FAIL|ERROR <check> unexpected=N [detail]`` then a summary."""
    lines = []
    width = max((len(c.name) for c in result.checks), default=0)
    for c in result.checks:
        label = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}.get(c.status, c.status.upper())
        line = f"{label:<5} {c.name:<{width}} unexpected={c.unexpected_count}"
        extra = c.error or c.detail
        if not c.success or c.error:
            if c.sample_ids:
                line += f"  ids={','.join(c.sample_ids)}"
            if extra:
                line += f"  ({extra})"
        lines.append(line)
    for name, reason in sorted(result.skipped.items()):
        lines.append(f"SKIP  {name:<{width}} ({reason})")
    failed = len(result.failed)
    verdict = "all checks passed" if result.success else f"{failed} of {len(result.checks)} checks failed"
    lines.append(
        f"audit log {result.table} [{iso(result.start)}, {iso(result.end)}): {result.rows} rows, {verdict}"
    )
    return "\n".join(lines)
