"""What a report says, computed from ledger records alone: periods, daily cells, statuses. Pure, no I/O.

Status rules (a contract of the reports; they are also printed in every report):

- A *collector-day* (one collector of the control, one UTC day of the period) is

  - ``fail`` / ``error`` when any evidence item of that collector for that day failed or erred (every
    item counts: a later passing re-run never hides an earlier failure; all items are listed);
  - ``pass`` when at least one item passed and none failed or erred;
  - ``not_assessed`` when the only items are ``not_applicable`` (nothing in scope, or a current-state
    collector in a backfilled day): never effective;
  - ``missing`` when there is no item at all.

  *Event* collectors (``archive.manifest``, ``disposal.certificate``) only produce items when there is
  something to archive or dispose of. Their items count on the day of the activity (the data interval
  of the run that produced them, else the day they were ledgered). A day without an item is covered by
  the producing workflow's run record (``retention_archive`` / ``key_disposal``): a successful run is
  ``pass`` (it ran and nothing failed), a failed run is ``error``, no run is ``missing``.

- A *control-day* is ``exception`` if any collector-day is ``fail``/``error``, else ``no_evidence`` if
  any is ``missing`` (or the control has no collectors), else ``not_assessed`` if any is
  ``not_assessed``, else ``effective``.

- The control's status over the period, by precedence **exceptions > no evidence > effective**:
  ``exceptions`` if any day is an exception; else ``no_evidence`` if any day is ``no_evidence`` or
  ``not_assessed``; else ``effective`` (evidence for every collector on every day, all passing).

An item counts for every day of the report period that its own period overlaps — except:

- *manual evidence* (collector ``manual``: documents and sign-offs, see :mod:`attestly.manual`) counts
  for a manual control from the first day it covers until its cadence has run out (``to`` + 31/92/183/366
  days for monthly/quarterly/semiannual/annual); each manual control has one required cell
  ``manual:<control id>``, so a day after the evidence ran out (overdue) is a ``no evidence`` day;
- *periodic collectors* (:data:`PERIODIC_COLLECTORS`, e.g. the quarterly archive restore test) count
  the same way for their cadence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

#: Event collectors and the daily workflow whose run record vouches for a quiet day.
EVENT_COLLECTORS: Mapping[str, str] = {
    "archive.manifest": "retention_archive",
    "disposal.certificate": "key_disposal",
}
#: Collectors that run on a cadence rather than daily: an item keeps its controls current for that long.
PERIODIC_COLLECTORS: Mapping[str, str] = {"archive.restore_test": "quarterly"}
#: Cadence days (as ``attestly.policy.models.CADENCE_DAYS``; repeated here: this module imports no policy).
CADENCE_DAYS: Mapping[str, int] = {"monthly": 31, "quarterly": 92, "semiannual": 183, "annual": 366}
MAX_CADENCE_DAYS = max(CADENCE_DAYS.values())
MANUAL_COLLECTOR = "manual"


def manual_cell(control_id: str) -> str:
    """The required cell of a manual control: its manual evidence."""
    return f"{MANUAL_COLLECTOR}:{control_id}"


#: Collectors whose results get their own section in a report ("where the control is about them").
ACTIVITY_COLLECTORS: tuple[str, ...] = ("quality.audit_log", "archive.manifest", "disposal.certificate")

CellStatus = Literal["pass", "fail", "error", "not_assessed", "missing"]
DayStatus = Literal["effective", "exception", "no_evidence", "not_assessed"]
ControlStatus = Literal["effective", "exceptions", "no_evidence", "not_in_scope"]

DAY_STATUSES: tuple[DayStatus, ...] = ("effective", "exception", "no_evidence", "not_assessed")
CONTROL_STATUSES: tuple[ControlStatus, ...] = ("exceptions", "no_evidence", "effective", "not_in_scope")

STATUS_RULE = (
    "Status precedence: exceptions > no evidence > effective. A control is effective only when evidence "
    "exists for each of its collectors on every day of the period and all of it passes. Any failing or "
    "erroring item makes its day an exception. A day with no evidence for some collector is 'no evidence'; "
    "a day whose only items are not applicable is 'not assessed' and counts as no evidence, never as "
    "effective."
)

MAX_PERIOD_DAYS = 400


class ReportInputError(ValueError):
    """Bad report input (period, framework, control, recipient, format); the message names the value."""


def _utc_midnight(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=UTC)


def parse_day(value: object, *, what: str) -> date:
    """``YYYY-MM-DD`` (or a date) -> date; :class:`ReportInputError` naming ``what`` and the value."""
    if isinstance(value, datetime):
        raise ReportInputError(f"{what} {value!r} must be a date (YYYY-MM-DD), not a timestamp")
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ReportInputError(f"{what} {value!r} is not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ReportInputError(f"{what} {value!r} is not a date (YYYY-MM-DD)") from None


@dataclass(frozen=True)
class Period:
    """A report period: whole UTC days from ``start`` to ``end``, both inclusive."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ReportInputError(
                f"period end {self.end.isoformat()} is before its start {self.start.isoformat()}"
            )
        if (self.end - self.start).days + 1 > MAX_PERIOD_DAYS:
            raise ReportInputError(
                f"period {self.start.isoformat()} .. {self.end.isoformat()} is longer than "
                f"{MAX_PERIOD_DAYS} days"
            )

    @classmethod
    def parse(cls, start: object, end: object) -> Period:
        return cls(parse_day(start, what="period start"), parse_day(end, what="period end"))

    @classmethod
    def from_interval(cls, start: datetime, end: datetime) -> Period:
        """A data interval ``[start, end)`` that begins and ends at UTC midnight (the DAG's quarter)."""
        s, e = start.astimezone(UTC), end.astimezone(UTC)
        for name, ts in (("start", s), ("end", e)):
            if ts.time() != time(0):
                raise ReportInputError(f"data interval {name} {ts.isoformat()} is not at UTC midnight")
        return cls(s.date(), e.date() - timedelta(days=1))

    @property
    def start_dt(self) -> datetime:
        return _utc_midnight(self.start)

    @property
    def end_dt(self) -> datetime:
        """Exclusive end: midnight after the last day."""
        return _utc_midnight(self.end + timedelta(days=1))

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    @property
    def quarter(self) -> str | None:
        """``2026-Q1`` when the period is exactly a calendar quarter, else None."""
        s = self.start
        if s.day != 1 or s.month not in (1, 4, 7, 10):
            return None
        nxt = date(s.year + (s.month == 10), (s.month + 2) % 12 + 1, 1)
        if self.end != nxt - timedelta(days=1):
            return None
        return f"{s.year}-Q{(s.month - 1) // 3 + 1}"

    @property
    def label(self) -> str:
        """Path-safe label: ``2026-Q1`` for a quarter, else ``2026-01-05_2026-02-10``."""
        return self.quarter or f"{self.start.isoformat()}_{self.end.isoformat()}"

    def contains(self, d: date) -> bool:
        return self.start <= d <= self.end

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "days": len(self.days),
            "label": self.label,
        }


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class EvidenceRecord:
    """What the ledger says about one evidence item (``kind == "evidence"``)."""

    seq: int
    recorded_at: datetime
    sha256: str
    key: str
    version_id: str
    collector: str
    controls: tuple[str, ...]
    period_start: datetime
    period_end: datetime
    result: str
    retroactive: bool
    scope: Mapping[str, str]
    finding_counts: Mapping[str, int]
    airflow: Mapping[str, Any] | None
    #: Manual statements: title, attested_by, attested_at, recorded_by, attachments [{name, sha256, ...}].
    manual: Mapping[str, Any] | None = None
    #: v2 provenance from the ledger summary (None for items recorded without it): when the source was
    #: observed, what was enumerated ({what, how, size}), how ({collector, version, parameters, tool}),
    #: and the SHA-256 of the policy bundle in force.
    observed_at: str | None = None
    population: Mapping[str, Any] | None = None
    method: Mapping[str, Any] | None = None
    policy: str | None = None

    @classmethod
    def from_body(cls, *, seq: int, recorded_at: datetime, body: Mapping[str, Any]) -> EvidenceRecord:
        airflow = body.get("airflow")
        return cls(
            seq=seq,
            recorded_at=recorded_at.astimezone(UTC),
            sha256=str(body["sha256"]),
            key=str(body["key"]),
            version_id=str(body.get("version_id") or ""),
            collector=str(body["collector"]),
            controls=tuple(str(c) for c in body.get("controls", ())),
            period_start=parse_ts(str(body["period_start"])),
            period_end=parse_ts(str(body["period_end"])),
            result=str(body["result"]),
            retroactive=bool(body.get("retroactive", False)),
            scope={str(k): str(v) for k, v in sorted((body.get("scope") or {}).items())},
            finding_counts={str(k): int(v) for k, v in sorted((body.get("findings") or {}).items())},
            airflow=dict(airflow) if isinstance(airflow, Mapping) else None,
            manual=_manual_of(body),
            observed_at=str(body["observed_at"]) if body.get("observed_at") else None,
            population=dict(body["population"]) if isinstance(body.get("population"), Mapping) else None,
            method=dict(body["method"]) if isinstance(body.get("method"), Mapping) else None,
            policy=str(body["policy"]) if body.get("policy") else None,
        )

    def last_day(self) -> date:
        return (
            self.period_start.date()
            if self.period_end <= self.period_start
            else (self.period_end - timedelta(microseconds=1)).date()
        )

    def current_days(self, period: Period, cadence: str) -> list[date]:
        """Days of ``period`` from this item's first day until its cadence runs out."""
        lo = max(self.period_start.date(), period.start)
        hi = min(self.last_day() + timedelta(days=CADENCE_DAYS[cadence]), period.end)
        return [lo + timedelta(days=n) for n in range((hi - lo).days + 1)] if lo <= hi else []

    def overlapped_days(self, period: Period) -> list[date]:
        """Days of ``period`` that this item's own period ``[start, end)`` overlaps (an instant counts
        for its day)."""
        first = self.period_start.date()
        last = (
            first
            if self.period_end <= self.period_start
            else (self.period_end - timedelta(microseconds=1)).date()
        )
        lo, hi = max(first, period.start), min(last, period.end)
        return [lo + timedelta(days=n) for n in range((hi - lo).days + 1)] if lo <= hi else []


def _manual_of(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    manual = body.get("manual")
    if body.get("collector") != MANUAL_COLLECTOR or not isinstance(manual, Mapping):
        return None
    raw = body.get("attachments")
    files: list[Any] = raw if isinstance(raw, list) else []
    return {
        "title": str(manual.get("title", "")),
        "attested_by": str(manual.get("attested_by", "")),
        "attested_at": str(manual.get("attested_at", "")),
        "recorded_by": str(manual.get("recorded_by", "")),
        "attachments": [
            {"name": str(a.get("name", "")), "sha256": str(a.get("sha256", "")), "size": int(a.get("size", 0)),
             "media_type": str(a.get("media_type", "")), "key": str(a.get("key", "")),
             "version_id": str(a.get("version_id", ""))}
            for a in files if isinstance(a, Mapping)
        ],
    }  # fmt: skip


@dataclass(frozen=True)
class RunRecord:
    """A workflow run record (``kind == "run"``): which DAG ran which interval, and the outcome."""

    seq: int
    dag_id: str
    run_id: str
    start: datetime
    end: datetime
    outcome: str
    failed_tasks: tuple[str, ...]
    #: Who started the run: the triggering Airflow user, ``scheduler``, or None in records made before
    #: runs recorded it.
    triggered_by: str | None = None

    @classmethod
    def from_body(cls, *, seq: int, body: Mapping[str, Any]) -> RunRecord | None:
        interval = body.get("data_interval") or {}
        try:
            return cls(
                seq=seq,
                dag_id=str(body["dag_id"]),
                run_id=str(body["run_id"]),
                start=parse_ts(str(interval["start"])),
                end=parse_ts(str(interval["end"])),
                outcome=str(body.get("outcome", "")),
                failed_tasks=tuple(str(t) for t in body.get("failed_tasks", ())),
                triggered_by=str(body["triggered_by"]) if body.get("triggered_by") else None,
            )
        except (KeyError, ValueError):
            return None

    def covers(self, day: date) -> bool:
        return self.start < _utc_midnight(day + timedelta(days=1)) and self.end > _utc_midnight(day)


@dataclass(frozen=True)
class Cell:
    """One collector on one day: its status and the evidence (ledger seqs) or run record behind it."""

    collector: str
    day: date
    status: CellStatus
    items: tuple[int, ...] = ()
    runs: tuple[int, ...] = ()


@dataclass(frozen=True)
class Day:
    day: date
    status: DayStatus
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Assessment:
    """A control over a period: one :class:`Day` per day, the overall status, and the counts."""

    control_id: str
    collectors: tuple[str, ...]
    period: Period
    days: tuple[Day, ...]
    status: ControlStatus
    counts: Mapping[str, int] = field(default_factory=dict)
    #: Source checks (scanners) with evidence mapped to the control: their failures are exceptions, but a
    #: day without a scan is not "no evidence" (``collectors`` are the policy's, and they are required).
    optional: tuple[str, ...] = ()

    def days_with(self, status: DayStatus) -> list[date]:
        return [d.day for d in self.days if d.status == status]

    def missing(self) -> dict[str, list[date]]:
        """Per required collector, the days it had no evidence."""
        out: dict[str, list[date]] = {}
        for d in self.days:
            for c in d.cells:
                if c.status == "missing" and c.collector not in self.optional:
                    out.setdefault(c.collector, []).append(d.day)
        return out

    def evidence_seqs(self) -> list[int]:
        return sorted({s for d in self.days for c in d.cells for s in c.items})

    def run_seqs(self) -> list[int]:
        return sorted({s for d in self.days for c in d.cells for s in c.runs})


def cell_status(results: Iterable[str]) -> CellStatus:
    """Collector-day status from its items' results (see the module docstring)."""
    found = set(results)
    if "error" in found:
        return "error"
    if "fail" in found:
        return "fail"
    if "pass" in found:
        return "pass"
    if "not_applicable" in found:
        return "not_assessed"
    return "missing"


def day_status(cells: Sequence[Cell], optional: Iterable[str] = ()) -> DayStatus:
    """Exception if any cell failed; else no evidence if a required cell has none; else not assessed if a
    required cell is only not-applicable; else effective. Optional cells (source checks) count only when
    they fail."""
    skip = set(optional)
    statuses = {c.status for c in cells if c.collector not in skip or c.status in ("fail", "error")}
    if statuses & {"fail", "error"}:
        return "exception"
    if not cells or "missing" in statuses:
        return "no_evidence"
    if "not_assessed" in statuses:
        return "not_assessed"
    return "effective"


def control_status(days: Iterable[DayStatus]) -> ControlStatus:
    found = set(days)
    if "exception" in found:
        return "exceptions"
    if found & {"no_evidence", "not_assessed"} or not found:
        return "no_evidence"
    return "effective"


class EvidenceIndex:
    """Evidence and run records of one period, indexed by (collector, day)."""

    def __init__(
        self,
        *,
        period: Period,
        evidence: Iterable[EvidenceRecord],
        runs: Iterable[RunRecord],
        cadences: Mapping[str, str] | None = None,
    ) -> None:
        """``cadences``: each manual control's cadence (manual items count only for those controls)."""
        self.period = period
        self.cadences: Mapping[str, str] = dict(cadences or {})
        self.runs: list[RunRecord] = sorted(runs, key=lambda r: r.seq)
        self._run_by_id = {(r.dag_id, r.run_id): r for r in self.runs}
        self.run_by_seq: dict[int, RunRecord] = {r.seq: r for r in self.runs}
        self.by_seq: dict[int, EvidenceRecord] = {}
        self._cells: dict[tuple[str, date], list[EvidenceRecord]] = {}
        for rec in sorted(evidence, key=lambda r: r.seq):
            if rec.collector == MANUAL_COLLECTOR:
                cells = {manual_cell(c): rec.current_days(period, self.cadences[c])
                         for c in rec.controls if c in self.cadences}  # fmt: skip
            else:
                cells = {rec.collector: self.days_of(rec)}
            if not any(cells.values()):
                continue
            self.by_seq[rec.seq] = rec
            for cell, days in cells.items():
                for d in days:
                    self._cells.setdefault((cell, d), []).append(rec)

    def run_of(self, dag_id: str | None, run_id: str | None) -> RunRecord | None:
        """The run record of an Airflow run, if the ledger has one."""
        return self._run_by_id.get((str(dag_id), str(run_id))) if dag_id and run_id else None

    def days_of(self, rec: EvidenceRecord) -> list[date]:
        """Days of the period an item counts for (event items: the day of the activity; manual and
        periodic items: until their cadence runs out)."""
        if rec.collector == MANUAL_COLLECTOR:
            days = {
                d
                for c in rec.controls
                if c in self.cadences
                for d in rec.current_days(self.period, self.cadences[c])
            }
            return sorted(days)
        if rec.collector in PERIODIC_COLLECTORS:
            return rec.current_days(self.period, PERIODIC_COLLECTORS[rec.collector])
        if rec.collector in EVENT_COLLECTORS:
            day = rec.recorded_at.date()
            if rec.airflow:
                run = self._run_by_id.get((str(rec.airflow.get("dag_id")), str(rec.airflow.get("run_id"))))
                if run is not None:
                    day = run.start.date()
            return [day] if self.period.contains(day) else []
        return rec.overlapped_days(self.period)

    def items(self, collector: str, day: date) -> list[EvidenceRecord]:
        return list(self._cells.get((collector, day), ()))

    def cell(self, collector: str, day: date) -> Cell:
        items = self.items(collector, day)
        status = cell_status(r.result for r in items)
        if collector in EVENT_COLLECTORS and status == "missing":
            runs = [r for r in self.runs if r.dag_id == EVENT_COLLECTORS[collector] and r.covers(day)]
            if runs:
                failed = any(r.outcome != "success" for r in runs)
                return Cell(collector, day, "error" if failed else "pass", runs=tuple(r.seq for r in runs))
        return Cell(collector, day, status, items=tuple(r.seq for r in items))

    def source_collectors(self, control_id: str, exclude: Iterable[str] = ()) -> list[str]:
        """Collectors (other than ``exclude``) whose evidence in the period names ``control_id`` — the
        scanners' checks, mapped to controls by the sources' own mappings."""
        skip = {*exclude, MANUAL_COLLECTOR}
        return sorted(
            {
                r.collector
                for r in self.by_seq.values()
                if control_id in r.controls and r.collector not in skip
            }
        )

    def manual_records(self, control_id: str) -> list[EvidenceRecord]:
        """The manual statements that count for ``control_id`` in the period, in ledger order."""
        cell = manual_cell(control_id)
        seqs = sorted({r.seq for (c, _d), recs in self._cells.items() if c == cell for r in recs})
        return [self.by_seq[s] for s in seqs]

    def assess(
        self, *, control_id: str, collectors: Sequence[str], optional: Sequence[str] = ()
    ) -> Assessment:
        days: list[Day] = []
        every = [*collectors, *optional]
        for d in self.period.days:
            cells = tuple(self.cell(c, d) for c in every)
            days.append(Day(d, day_status(cells, optional), cells))
        counts: dict[str, int] = {s: sum(1 for d in days if d.status == s) for s in DAY_STATUSES}
        return Assessment(
            control_id=control_id,
            collectors=tuple(every),
            period=self.period,
            days=tuple(days),
            status=control_status(d.status for d in days),
            counts=counts,
            optional=tuple(optional),
        )


def day_ranges(days: Iterable[date]) -> str:
    """``2026-01-01..2026-01-03, 2026-01-07`` for a set of days (empty string for none)."""
    ordered = sorted(set(days))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] - ordered[j] == timedelta(days=1):
            j += 1
        first, last = ordered[i], ordered[j]
        parts.append(first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}")
        i = j + 1
    return ", ".join(parts)


_SLUG_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def control_slug(control_id: str) -> str:
    """File-name-safe, unique form of a control id: ``hipaa:164.312(a)(1)`` -> ``hipaa_164.312-a-1``."""
    framework, _, ref = control_id.partition(":")
    ref = ref.replace("(", "-").replace(")", "")
    return f"{framework}_{_SLUG_BAD.sub('-', ref)}".strip("-")
