"""The data of the Evidence view, from the ledger and the bucket: read-only, no Airflow import.

- **Controls**: every policy control assessed over the current quarter to date with the reports' own
  rules (:func:`attestly.reports.build.assess_all`), shown as ``pass`` (effective), ``fail``
  (exceptions) or ``no_evidence``; per control the day counts, the latest item of each collector, and
  the failing items, each linked to the DAG run that produced it.
- **Seals**: the latest digests (key, ledger sequence range, sealing time) and the runs sealed in them.
- **Reports**: report renditions under ``reports/`` in the bucket (grouped by
  ``reports/<framework>/<period>/<rendition>/``), joined with their ``report`` ledger entry for the run.

Run links are ``<base_url>/dags/<dag_id>/runs/<run_id>`` (path-quoted); with no base URL they are
root-relative (``/dags/...``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from attestly.evidence import iso
from attestly.reports.build import assess_all
from attestly.reports.model import MANUAL_COLLECTOR, Period, manual_cell
from attestly.reports.sanitize import scope_label
from attestly.reports.source import load_snapshot

if TYPE_CHECKING:
    from botocore.client import BaseClient

    from attestly.ledger import Ledger
    from attestly.policy import Policy
    from attestly.reports.model import Assessment, EvidenceRecord, RunRecord

UiStatus = Literal["pass", "fail", "no_evidence"]
#: Report status (attestly.reports.model.ControlStatus) -> what the page says.
UI_STATUS: Mapping[str, UiStatus] = {"effective": "pass", "exceptions": "fail", "no_evidence": "no_evidence"}
REPORTS_PREFIX = "reports/"
MAX_SEALS = 10
MAX_EXCEPTIONS = 20
MAX_REPORT_KEYS = 5000


def quarter_to_date(today: date) -> Period:
    """The calendar quarter of ``today`` up to yesterday (today's daily interval is not collected yet);
    on a quarter's first day, just that day."""
    start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    return Period(start, max(start, today - timedelta(days=1)))


def run_url(base_url: str | None, dag_id: str | None, run_id: str | None) -> str | None:
    """``<base_url>/dags/<dag_id>/runs/<run_id>`` (quoted); root-relative without a base; None without a run."""
    if not dag_id or not run_id:
        return None
    return f"{(base_url or '').rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


@dataclass(frozen=True)
class RunLink:
    dag_id: str
    run_id: str
    url: str | None
    outcome: str | None = None


@dataclass(frozen=True)
class ItemRow:
    """One evidence item as the page shows it."""

    seq: int
    collector: str
    result: str
    period_start: str
    period_end: str
    scope: str
    sha256: str
    run: RunLink | None
    # A manual statement: title, who attested it and when (never the files themselves).
    manual: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ControlRow:
    control_id: str
    framework: str
    title: str
    owner: str
    status: UiStatus
    report_status: str
    days: Mapping[str, int]
    latest: tuple[ItemRow, ...]
    exceptions: tuple[ItemRow, ...]
    exceptions_total: int
    runs: tuple[RunLink, ...]
    manual: bool = False  # evidenced (also) by documents and sign-offs: the page offers the upload form


@dataclass(frozen=True)
class SealRow:
    key: str
    first_seq: int
    last_seq: int
    sealed_at: str | None
    sha256: str
    runs: tuple[RunLink, ...]


@dataclass(frozen=True)
class ReportFile:
    name: str
    key: str
    size: int


@dataclass(frozen=True)
class ReportRow:
    prefix: str
    framework: str
    period: str
    rendition: str
    files: tuple[ReportFile, ...]
    run: RunLink | None
    recorded_at: str | None

    @property
    def main_files(self) -> list[ReportFile]:
        """The files a person opens first: the index (HTML/PDF) and the auditor packet."""
        return [f for f in self.files if f.name in ("index.html", "index.pdf") or f.name.endswith(".zip")]


@dataclass
class Overview:
    """Everything the page shows; ``to_dict()`` is the JSON of ``GET /attestly/api/overview``."""

    generated_at: str
    period: Period
    bucket: str
    controls: list[ControlRow]
    seals: list[SealRow]
    seals_total: int
    reports: list[ReportRow]
    reports_truncated: bool
    verify: dict[str, Any] | None
    status_counts: dict[str, int] = field(default_factory=dict)
    #: Active legal holds (subjects as SHA-256, like the ledger), each releasable by another person.
    holds: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "period": self.period.to_dict(),
            "bucket": self.bucket,
            "status_counts": dict(self.status_counts),
            "controls": [asdict(c) for c in self.controls],
            "seals": [asdict(s) for s in self.seals],
            "seals_total": self.seals_total,
            "reports": [asdict(r) for r in self.reports],
            "reports_truncated": self.reports_truncated,
            "verify": self.verify,
            "holds": list(self.holds),
        }


# --------------------------------------------------------------------------------------------- build


def _item_row(rec: EvidenceRecord, base_url: str | None) -> ItemRow:
    airflow = rec.airflow or {}
    dag_id, run_id = airflow.get("dag_id"), airflow.get("run_id")
    run = (
        RunLink(str(dag_id), str(run_id), run_url(base_url, str(dag_id), str(run_id)))
        if dag_id and run_id
        else None
    )
    return ItemRow(
        seq=rec.seq,
        collector=rec.collector,
        result=rec.result,
        period_start=iso(rec.period_start),
        period_end=iso(rec.period_end),
        scope=scope_label(rec.scope),
        sha256=rec.sha256,
        run=run,
        manual=dict(rec.manual) if rec.manual else None,
    )


def _run_link(run: RunRecord, base_url: str | None) -> RunLink:
    return RunLink(run.dag_id, run.run_id, run_url(base_url, run.dag_id, run.run_id), run.outcome)


def _control_row(
    a: Assessment,
    *,
    policy: Policy,
    by_seq: Mapping[int, EvidenceRecord],
    runs_by_seq: Mapping[int, RunRecord],
    base_url: str | None,
) -> ControlRow:
    control = policy.controls[a.control_id]
    items = [by_seq[s] for s in a.evidence_seqs() if s in by_seq]
    latest: dict[str, EvidenceRecord] = {}
    for rec in items:  # ascending seq: the last one per collector (manual: per control) wins
        latest[manual_cell(a.control_id) if rec.collector == MANUAL_COLLECTOR else rec.collector] = rec
    failing = [r for r in reversed(items) if r.result in ("fail", "error")]
    runs = [runs_by_seq[s] for s in a.run_seqs() if s in runs_by_seq]
    return ControlRow(
        control_id=a.control_id,
        framework=str(control.framework),
        title=str(control.title),
        owner=str(control.owner),
        status=UI_STATUS.get(a.status, "no_evidence"),
        report_status=a.status,
        days=dict(a.counts),
        latest=tuple(_item_row(latest[c], base_url) for c in a.collectors if c in latest),
        exceptions=tuple(_item_row(r, base_url) for r in failing[:MAX_EXCEPTIONS]),
        exceptions_total=len(failing),
        runs=tuple(_run_link(r, base_url) for r in runs[-MAX_EXCEPTIONS:]),
        manual=bool(control.manual),
    )


def _seal_rows(
    digests: Sequence[Mapping[str, Any]], runs: Iterable[RunRecord], base_url: str | None
) -> list[SealRow]:
    ordered = sorted(runs, key=lambda r: r.seq)
    rows: list[SealRow] = []
    for d in sorted(digests, key=lambda d: int(d["first_seq"]), reverse=True)[:MAX_SEALS]:
        first, last = int(d["first_seq"]), int(d["last_seq"])
        sealed_at = d.get("sealed_at")
        rows.append(
            SealRow(
                key=str(d["key"]),
                first_seq=first,
                last_seq=last,
                sealed_at=iso(sealed_at) if isinstance(sealed_at, datetime) else None,
                sha256=str(d["sha256"]),
                runs=tuple(_run_link(r, base_url) for r in ordered if first <= r.seq <= last),
            )
        )
    return rows


def list_report_objects(
    s3: BaseClient, bucket: str, *, limit: int = MAX_REPORT_KEYS
) -> tuple[list[dict[str, Any]], bool]:
    """Current objects under ``reports/`` (key, size), at most ``limit``; and whether there were more."""
    out: list[dict[str, Any]] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=REPORTS_PREFIX):
        for obj in page.get("Contents", []):
            if len(out) >= limit:
                return out, True
            out.append({"key": str(obj["Key"]), "size": int(obj.get("Size", 0))})
    return out, False


def group_reports(
    objects: Iterable[Mapping[str, Any]],
    ledger_reports: Mapping[str, Mapping[str, Any]],
    base_url: str | None,
) -> list[ReportRow]:
    """Group report objects by rendition prefix ``reports/<framework>/<period>/<rendition>/`` (newest
    period first); ``ledger_reports`` maps a prefix to its ``report`` ledger entry (body + recorded_at)."""
    groups: dict[str, list[ReportFile]] = {}
    for obj in objects:
        key = str(obj["key"])
        parts = key.split("/")
        if len(parts) < 5 or parts[0] != "reports" or not parts[-1]:
            continue
        prefix = "/".join(parts[:4]) + "/"
        groups.setdefault(prefix, []).append(ReportFile(key[len(prefix) :], key, int(obj.get("size", 0))))
    rows: list[ReportRow] = []
    for prefix, files in groups.items():
        _, framework, period, rendition, _ = prefix.split("/")
        entry = ledger_reports.get(prefix) or {}
        airflow = entry.get("airflow") or {}
        dag_id, run_id = airflow.get("dag_id"), airflow.get("run_id")
        run = (
            RunLink(str(dag_id), str(run_id), run_url(base_url, str(dag_id), str(run_id)))
            if dag_id and run_id
            else None
        )
        rows.append(
            ReportRow(
                prefix=prefix,
                framework=framework,
                period=period,
                rendition=rendition,
                files=tuple(sorted(files, key=lambda f: f.name)),
                run=run,
                recorded_at=entry.get("recorded_at"),
            )
        )
    rows.sort(key=lambda r: (r.period, r.recorded_at or "", r.framework), reverse=True)
    return rows


def _ledger_reports(ledger: Ledger) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for e in ledger.entries(kind="report"):
        prefix = e.body.get("prefix")
        if isinstance(prefix, str):
            out[prefix] = {**e.body, "recorded_at": iso(e.recorded_at)}
    return out


def build_overview(
    *,
    ledger: Ledger,
    policy: Policy,
    s3: BaseClient | None,
    bucket: str,
    today: date | None = None,
    base_url: str | None = None,
    verify: dict[str, Any] | None = None,
) -> Overview:
    """Assemble the page's data. Reads the ledger (evidence, runs, digests, reports) and lists
    ``reports/`` in ``bucket`` (skipped when ``s3`` is None). ``today`` defaults to the UTC date."""
    now = datetime.now(UTC)
    period = quarter_to_date(today or now.date())
    snapshot = load_snapshot(ledger=ledger, period=period, cadences=policy.cadences())
    assessments = assess_all(policy, snapshot)
    runs_by_seq = {r.seq: r for r in snapshot.index.runs}
    controls = [
        _control_row(
            assessments[cid],
            policy=policy,
            by_seq=snapshot.index.by_seq,
            runs_by_seq=runs_by_seq,
            base_url=base_url,
        )
        for cid in sorted(assessments, key=lambda c: (str(policy.controls[c].framework), c))
        if assessments[cid].status != "not_in_scope"
    ]
    digests = ledger.digests()
    reports: list[ReportRow] = []
    truncated = False
    if s3 is not None:
        objects, truncated = list_report_objects(s3, bucket)
        reports = group_reports(objects, _ledger_reports(ledger), base_url)
    counts = {s: sum(1 for c in controls if c.status == s) for s in ("pass", "fail", "no_evidence")}
    return Overview(
        generated_at=iso(now),
        period=period,
        bucket=bucket,
        controls=controls,
        seals=_seal_rows(digests, snapshot.index.runs, base_url),
        seals_total=len(digests),
        reports=reports,
        reports_truncated=truncated,
        verify=verify,
        status_counts=counts,
        holds=_active_holds(ledger),
    )


def _active_holds(ledger: Ledger) -> list[dict[str, Any]]:
    from attestly.holds import list_holds

    return [
        {
            "hold_id": h.hold_id,
            "reason": h.reason,
            "criteria": h.criteria(hash_subject=True),
            "created_at": iso(h.created_at),
            "created_by": h.created_by,
        }
        for h in list_holds(ledger.conn, include_released=False)
    ]
