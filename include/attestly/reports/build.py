"""Turn a :class:`~attestly.reports.source.Snapshot` into report documents (JSON-able dicts).

``build_control_report`` gives the per-control document (schema ``attestly.control-report/v1``) that the
HTML and PDF render and that is stored as JSON; ``build_index`` the framework index with the
cross-framework view (``attestly.framework-index/v1``). Both are deterministic functions of the ledger
records, the evidence objects, the policy and the Airflow base URL: no clock, no randomness.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from attestly.evidence import iso
from attestly.policy import FRAMEWORKS
from attestly.reports.model import (
    ACTIVITY_COLLECTORS,
    CONTROL_STATUSES,
    DAY_STATUSES,
    EVENT_COLLECTORS,
    STATUS_RULE,
    Assessment,
    EvidenceRecord,
    control_slug,
    day_ranges,
    manual_cell,
)
from attestly.reports.sanitize import clean_scope, clean_text, scope_label

if TYPE_CHECKING:
    from attestly.policy import Policy
    from attestly.reports.source import ObjectReader, Snapshot

CONTROL_SCHEMA = "attestly.control-report/v1"
INDEX_SCHEMA = "attestly.framework-index/v1"

STATUS_LABELS: Mapping[str, str] = {
    "effective": "Effective",
    "exceptions": "Exceptions",
    "no_evidence": "No evidence",
    "exception": "Exception",
    "not_assessed": "Not assessed",
    "not_in_scope": "Not in scope",
}


def run_url(base_url: str | None, dag_id: str | None, run_id: str | None) -> str | None:
    """``{base}/dags/<dag_id>/runs/<run_id>`` (path-quoted), or None without a base URL or a run."""
    if not base_url or not dag_id or not run_id:
        return None
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


@dataclass(frozen=True)
class BuildContext:
    policy: Policy
    snapshot: Snapshot
    reader: ObjectReader
    airflow_base_url: str | None
    public_key_fingerprint: str


def required_cells(control: Any) -> list[str]:
    """A control's required cells: its collectors, and its manual evidence when it is manual."""
    return [*control.collectors, *([manual_cell(control.id)] if control.manual else [])]


def assess_all(policy: Policy, snapshot: Snapshot) -> dict[str, Assessment]:
    """Every policy control assessed over the snapshot's period (mapped controls need their status too).
    A SOC 2 criterion whose category is not in scope is ``not_in_scope``, with no days."""
    index = snapshot.index
    out: dict[str, Assessment] = {}
    for cid, c in policy.controls.items():
        if not policy.in_scope(c):
            out[cid] = Assessment(
                control_id=cid,
                collectors=(),
                period=snapshot.period,
                days=(),
                status="not_in_scope",
                counts=dict.fromkeys(DAY_STATUSES, 0),
            )
            continue
        out[cid] = index.assess(
            control_id=cid,
            collectors=required_cells(c),
            optional=index.source_collectors(cid, exclude=c.collectors),
        )
    return out


def _item_days(ctx: BuildContext, rec: EvidenceRecord) -> list[date]:
    return ctx.snapshot.index.days_of(rec)


def _evidence_row(ctx: BuildContext, rec: EvidenceRecord) -> dict[str, Any]:
    days = _item_days(ctx, rec)
    airflow = rec.airflow or {}
    dag_id = str(airflow["dag_id"]) if airflow.get("dag_id") else None
    run_id = str(airflow["run_id"]) if airflow.get("run_id") else None
    return {
        "seq": rec.seq,
        "sha256": rec.sha256,
        "key": rec.key,
        "version_id": rec.version_id,
        "collector": rec.collector,
        "date": day_ranges(days),
        "first_day": days[0].isoformat() if days else "",
        "result": rec.result,
        "retroactive": rec.retroactive,
        "scope": clean_scope(rec.scope),
        "scope_label": scope_label(rec.scope),
        "findings": dict(rec.finding_counts),
        "controls": list(rec.controls),
        "dag_id": clean_text(dag_id, limit=200) if dag_id else None,
        "run_id": clean_text(run_id, limit=250) if run_id else None,
        "run_url": run_url(ctx.airflow_base_url, dag_id, run_id),
        "observed_at": clean_text(rec.observed_at, limit=40) if rec.observed_at else None,
        "population": _clean_population(rec.population),
        "method": _clean_method(rec.method),
        "policy": rec.policy if rec.policy and re.fullmatch(r"[0-9a-f]{64}", rec.policy) else None,
    }


def _clean_population(p: Any) -> dict[str, Any] | None:
    if not isinstance(p, dict):
        return None
    size = p.get("size")
    return {
        "what": clean_text(p.get("what"), limit=300),
        "how": clean_text(p.get("how"), limit=600),
        "size": int(size) if isinstance(size, int) else None,
    }


def _clean_method(m: Any) -> dict[str, Any] | None:
    if not isinstance(m, dict):
        return None
    params = m.get("parameters") if isinstance(m.get("parameters"), dict) else {}
    return {
        "collector": clean_text(m.get("collector"), limit=100),
        "version": clean_text(m.get("version"), limit=60),
        "tool": clean_text(m.get("tool"), limit=100) if m.get("tool") else None,
        "parameters": clean_text(json.dumps(params, sort_keys=True, default=str), limit=600),
    }


def provenance(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per collector, how its items in the report were produced: when they were observed (first, last),
    what was enumerated and how, the population sizes, the collector versions and thresholds, and the
    policy bundles in force (the item-level values are in each evidence row)."""
    out: dict[str, dict[str, Any]] = {}
    for e in evidence:
        g = out.setdefault(
            e["collector"],
            {"collector": e["collector"], "items": 0, "observed": [], "populations": {}, "sizes": [],
             "methods": set(), "policies": set()},
        )  # fmt: skip
        g["items"] += 1
        if e.get("observed_at"):
            g["observed"].append(e["observed_at"])
        p = e.get("population")
        if p:
            g["populations"].setdefault((p["what"].split(" (", 1)[0], p["how"]), 0)
            g["populations"][(p["what"].split(" (", 1)[0], p["how"])] += 1
            if p.get("size") is not None:
                g["sizes"].append(p["size"])
        m = e.get("method")
        if m:
            g["methods"].add((m["version"], m.get("tool") or "", m["parameters"]))
        if e.get("policy"):
            g["policies"].add(e["policy"])
    rows = []
    for c in sorted(out):
        g = out[c]
        rows.append(
            {
                "collector": c,
                "items": g["items"],
                "observed_first": min(g["observed"]) if g["observed"] else None,
                "observed_last": max(g["observed"]) if g["observed"] else None,
                "without_provenance": g["items"] - len(g["observed"]),
                "populations": [
                    {"what": w, "how": h, "items": n} for (w, h), n in sorted(g["populations"].items())
                ],
                "population_total": sum(g["sizes"]),
                "population_min": min(g["sizes"]) if g["sizes"] else None,
                "population_max": max(g["sizes"]) if g["sizes"] else None,
                "methods": [
                    {"version": v, "tool": t or None, "parameters": p} for v, t, p in sorted(g["methods"])
                ],
                "policies": sorted(g["policies"]),
            }
        )
    return rows


def _exceptions(ctx: BuildContext, a: Assessment) -> list[dict[str, Any]]:
    index = ctx.snapshot.index
    failing: list[EvidenceRecord] = []
    for d in a.days:
        if d.status != "exception":
            continue
        for cell in d.cells:
            if cell.status in ("fail", "error"):
                failing.extend(
                    index.by_seq[s] for s in cell.items if index.by_seq[s].result in ("fail", "error")
                )
    findings = ctx.reader.findings(sorted({r.seq: r for r in failing}.values(), key=lambda r: r.seq))
    groups: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}

    def add(key: tuple[str, str, str, str, str], day: date, sha: str | None, run: str | None) -> None:
        g = groups.setdefault(key, {"days": set(), "evidence": set(), "runs": set()})
        g["days"].add(day)
        if sha:
            g["evidence"].add(sha)
        if run:
            g["runs"].add(run)

    run_by_seq = {r.seq: r for r in index.runs}
    for d in a.days:
        if d.status != "exception":
            continue
        for cell in d.cells:
            if cell.status not in ("fail", "error"):
                continue
            for s in cell.items:
                rec = index.by_seq[s]
                if rec.result not in ("fail", "error"):
                    continue
                rows = [f for f in findings[s] if f.status in ("fail", "error")]
                scope = scope_label(rec.scope)
                if not rows:
                    add(
                        (
                            rec.collector,
                            scope,
                            "(whole item)",
                            rec.result,
                            f"item result {rec.result}, no failing finding recorded",
                        ),
                        d.day,
                        rec.sha256,
                        None,
                    )
                for f in rows:
                    add((rec.collector, scope, f.resource, f.status, f.detail), d.day, rec.sha256, None)
            for s in cell.runs:
                run = run_by_seq[s]
                if run.outcome == "success":
                    continue
                tasks = ", ".join(run.failed_tasks) or "unknown"
                add(
                    (
                        cell.collector,
                        f"dag_id={clean_text(run.dag_id, limit=100)}",
                        f"run {clean_text(run.run_id, limit=200)}",
                        "error",
                        clean_text(
                            f"workflow run {run.outcome or 'did not succeed'} (failed tasks: {tasks})"
                        ),
                    ),
                    d.day,
                    None,
                    run_url(ctx.airflow_base_url, run.dag_id, run.run_id),
                )
    out: list[dict[str, Any]] = []
    for (collector, scope, resource, status, detail), g in groups.items():
        days = sorted(g["days"])
        out.append(
            {
                "collector": collector,
                "scope": scope,
                "resource": resource,
                "status": status,
                "detail": detail,
                "days": [x.isoformat() for x in days],
                "day_ranges": day_ranges(days),
                "day_count": len(days),
                "evidence": sorted(g["evidence"]),
                "run_urls": sorted(g["runs"]),
            }
        )
    out.sort(key=lambda e: (-e["day_count"], e["collector"], e["resource"], e["status"], e["detail"]))
    return out


def _accepted(ctx: BuildContext, a: Assessment) -> list[dict[str, Any]]:
    """Failures the policy accepts (unexpired accepted risks): each with who accepted it, until when and
    why (in the finding's detail), and the days it was seen — listed, never dropped."""
    index = ctx.snapshot.index
    recs = [index.by_seq[s] for s in a.evidence_seqs() if index.by_seq[s].finding_counts.get("accepted")]
    if not recs:
        return []
    findings = ctx.reader.findings(recs)
    groups: dict[tuple[str, str, str, str], set[date]] = {}
    for rec in recs:
        for f in findings.get(rec.seq, []):
            if f.status == "accepted":
                key = (rec.collector, scope_label(rec.scope), f.resource, f.detail)
                groups.setdefault(key, set()).update(_item_days(ctx, rec))
    return [
        {
            "collector": c,
            "scope": sc,
            "resource": res,
            "detail": det,
            "day_ranges": day_ranges(ds),
            "day_count": len(ds),
        }
        for (c, sc, res, det), ds in sorted(groups.items())
    ]


def _disagreements(ctx: BuildContext, a: Assessment) -> list[dict[str, Any]]:
    """Days where a native collector and a source check testing the same property (see
    ``scanners.mapping.NATIVE_EQUIVALENTS``) report on the same account and disagree — one passes, the
    other fails."""
    from attestly.scanners.mapping import NATIVE_EQUIVALENTS

    index = ctx.snapshot.index

    def by_account(collector: str, day: date) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for rec in index.items(collector, day):
            account = str(rec.scope.get("account", ""))
            if account and rec.result in ("pass", "fail"):
                out.setdefault(account, set()).add(rec.result)
        return out

    def verdict(results: set[str]) -> str:
        return "fail" if "fail" in results else "pass"

    groups: dict[tuple[str, str, str, str, str], list[date]] = {}
    for native in a.collectors:
        for twin in NATIVE_EQUIVALENTS.get(native, ()):
            for d in a.days:
                mine, theirs = by_account(native, d.day), by_account(twin, d.day)
                for account in sorted(set(mine) & set(theirs)):
                    ours, other = verdict(mine[account]), verdict(theirs[account])
                    if ours != other:
                        groups.setdefault((account, native, ours, twin, other), []).append(d.day)
    return [
        {"account": acc, "native": n, "native_result": nr, "source": t, "source_result": tr,
         "day_ranges": day_ranges(ds), "day_count": len(ds)}
        for (acc, n, nr, t, tr), ds in sorted(groups.items())
    ]  # fmt: skip


def _activity(ctx: BuildContext, a: Assessment, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    index = ctx.snapshot.index
    out: dict[str, Any] = {}
    for collector in ACTIVITY_COLLECTORS:
        if collector not in a.collectors:
            continue
        recs = [index.by_seq[r["seq"]] for r in rows if r["collector"] == collector]
        # Quality items list their failing checks only; passing ones need no object read.
        found = ctx.reader.findings(
            [r for r in recs if collector != "quality.audit_log" or r.result != "pass"]
        )
        items = []
        for rec, row in zip(recs, [r for r in rows if r["collector"] == collector], strict=True):
            items.append(
                {
                    "date": row["date"],
                    "result": rec.result,
                    "sha256": rec.sha256,
                    "findings": dict(rec.finding_counts),
                    "details": [
                        {"resource": f.resource, "status": f.status, "detail": f.detail}
                        for f in found.get(rec.seq, [])
                        if collector != "quality.audit_log" or f.status != "pass"
                    ],
                    "run_url": row["run_url"],
                }
            )
        quiet: list[date] = []
        if collector in EVENT_COLLECTORS:
            i = a.collectors.index(collector)
            quiet = [d.day for d in a.days if d.cells[i].runs and d.cells[i].status == "pass"]
        out[collector] = {
            "items": items,
            "quiet_days": day_ranges(quiet),
            "quiet_day_count": len(quiet),
            "workflow": EVENT_COLLECTORS.get(collector, ""),
        }
    return out


def _runs(ctx: BuildContext, a: Assessment, seqs: Sequence[int]) -> list[dict[str, Any]]:
    """The workflow runs behind this control's evidence and days (their run records), each with who
    started it (``triggered_by``: the Airflow user, ``scheduler``, or ``not recorded`` for older runs)."""
    index = ctx.snapshot.index
    found = {index.run_by_seq[s] for s in a.run_seqs() if s in index.run_by_seq}
    for s in seqs:
        airflow = index.by_seq[s].airflow or {}
        run = index.run_of(airflow.get("dag_id"), airflow.get("run_id"))
        if run is not None:
            found.add(run)
    return [
        {
            "seq": r.seq,
            "dag_id": clean_text(r.dag_id, limit=200),
            "run_id": clean_text(r.run_id, limit=250),
            "run_url": run_url(ctx.airflow_base_url, r.dag_id, r.run_id),
            "interval": {"start": iso(r.start), "end": iso(r.end)},
            "outcome": r.outcome,
            "triggered_by": clean_text(r.triggered_by, limit=128) if r.triggered_by else None,
        }
        for r in sorted(found, key=lambda r: (r.start, r.dag_id, r.seq))
    ]


def _runs_by_trigger(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """How many runs of each DAG each person (or the scheduler) started: the PDF's summary of long lists."""
    counts: dict[tuple[str, str], int] = {}
    for r in runs:
        key = (str(r["dag_id"]), str(r["triggered_by"] or ""))
        counts[key] = counts.get(key, 0) + 1
    return [
        {"dag_id": dag, "triggered_by": who or None, "runs": n} for (dag, who), n in sorted(counts.items())
    ]


def _day_collectors(a: Assessment, cells: Sequence[Any]) -> dict[str, str]:
    """The policy's collectors one by one, and the source checks as one row (worst status first)."""
    out = {
        ("manual evidence" if c.collector.startswith("manual:") else c.collector): c.status
        for c in cells
        if c.collector not in a.optional
    }
    extra = [c.status for c in cells if c.collector in a.optional]
    if extra:
        for status in ("error", "fail", "pass", "not_assessed", "missing"):
            if status in extra:
                out[f"scanner checks ({len(extra)})"] = status
                break
    return out


def _manual_section(ctx: BuildContext, control: Any, a: Assessment) -> dict[str, Any] | None:
    """For a manual control: what is requested, how often, the statements that count in the period
    (who attested what, when, which files), and the days its evidence was overdue."""
    if not control.manual:
        return None
    from attestly.reports.model import CADENCE_DAYS

    index = ctx.snapshot.index
    cell = manual_cell(control.id)
    statements = []
    for rec in index.manual_records(control.id):
        m = rec.manual or {}
        statements.append(
            {
                "seq": rec.seq,
                "sha256": rec.sha256,
                "title": clean_text(m.get("title"), limit=200),
                "attested_by": clean_text(m.get("attested_by"), limit=128),
                "attested_at": clean_text(m.get("attested_at"), limit=40),
                "recorded_by": clean_text(m.get("recorded_by"), limit=128),
                "covers": f"{rec.period_start.date().isoformat()}..{rec.last_day().isoformat()}",
                "current_until": (
                    rec.last_day() + timedelta(days=CADENCE_DAYS[str(control.cadence)])
                ).isoformat(),
                "result": rec.result,
                "files": [
                    {
                        "name": clean_text(f.get("name"), limit=128),
                        "sha256": f.get("sha256"),
                        "size": f.get("size"),
                        "media_type": clean_text(str(f.get("media_type", "")).split(";")[0], limit=100),
                    }
                    for f in m.get("attachments", [])
                ],
            }
        )
    overdue = [d.day for d in a.days for c in d.cells if c.collector == cell and c.status == "missing"]
    return {
        "cadence": control.cadence,
        "requested": control.requested,
        "statements": statements,
        "overdue_days": day_ranges(overdue),
        "overdue_day_count": len(overdue),
    }


def responses_as_of(ctx: BuildContext) -> date:
    """The day exception responses are judged on (open or overdue): the period's last day, or the day the
    latest evidence in the snapshot was recorded when that is earlier (a period still running) — a function
    of the ledger, so re-rendering gives the same report."""
    latest = max((r.recorded_at.date() for r in ctx.snapshot.index.by_seq.values()), default=None)
    end = ctx.snapshot.period.end
    return min(end, latest) if latest else end


def _responses(ctx: BuildContext, control_id: str, exceptions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exception responses for the control (open, overdue, closed with re-test) and, on each exception
    group they cover, the response's id and state."""
    from attestly.deviations import for_report, match_group

    period = ctx.snapshot.period
    responses = for_report(
        ctx.snapshot.exception_states.values(),
        control_id=control_id,
        start=period.start,
        end=period.end,
        as_of=responses_as_of(ctx),
    )
    for r in responses:
        r["target"] = {
            k: clean_text(v, limit=200)
            if isinstance(v, str)
            else clean_scope(v)
            if isinstance(v, dict)
            else v
            for k, v in r["target"].items()
        }
        for k in ("owner", "root_cause", "ticket", "responded_by", "accepted_by", "closed_by"):
            if isinstance(r.get(k), str):
                r[k] = clean_text(r[k], limit=500)
    for g in exceptions:
        hit = match_group(responses, g)
        g["response"] = {"exception_id": hit["exception_id"], "state": hit["state"]} if hit else None
    return responses


def build_control_report(
    ctx: BuildContext, control_id: str, assessments: Mapping[str, Assessment]
) -> dict[str, Any]:
    """The per-control document. ``assessments`` holds every policy control (for the mappings)."""
    policy = ctx.policy
    control = policy.control(control_id)
    a = assessments[control_id]
    index = ctx.snapshot.index
    seqs = a.evidence_seqs()
    rows = [_evidence_row(ctx, index.by_seq[s]) for s in seqs]
    rows.sort(key=lambda r: (r["first_day"], r["collector"], r["scope_label"], r["seq"]))
    covering = ctx.snapshot.digests_covering([*seqs, *a.run_seqs()])
    fw = policy.frameworks[control.framework]  # type: ignore[index]
    missing = a.missing()
    exceptions = _exceptions(ctx, a)
    runs = _runs(ctx, a, seqs)
    return {
        "schema": CONTROL_SCHEMA,
        "control": {
            "id": control.id,
            "slug": control_slug(control.id),
            "framework": control.framework,
            "framework_name": fw.name,
            "framework_version": fw.version,
            "title": control.title,
            "summary": control.summary,
            "owner": str(control.owner),
            "manual": control.manual,
            "evidenced_by": control.evidenced_by,
            "specification": control.specification,
            "category": control.category,
            "in_scope": policy.in_scope(control),
            "collectors": list(control.collectors),
            "maps_to": [
                {
                    "id": m,
                    "slug": control_slug(m),
                    "framework": policy.control(m).framework,
                    "title": policy.control(m).title,
                    "status": assessments[m].status,
                }
                for m in control.maps_to
            ],
        },
        "period": a.period.to_dict(),
        "policy_fingerprint": policy.fingerprint,
        "status": a.status,
        "status_rule": STATUS_RULE,
        "day_counts": dict(a.counts),
        "days": [
            {
                "date": d.day.isoformat(),
                "status": d.status,
                "collectors": _day_collectors(a, d.cells),
            }
            for d in a.days
        ],
        "source_checks": list(a.optional),
        "manual_evidence": _manual_section(ctx, control, a),
        "exceptions": exceptions,
        "exception_responses": _responses(ctx, control_id, exceptions),
        "accepted": _accepted(ctx, a),
        "disagreements": _disagreements(ctx, a),
        "no_evidence_days": day_ranges(a.days_with("no_evidence")),
        "not_assessed_days": day_ranges(a.days_with("not_assessed")),
        "missing": [
            {
                "collector": "manual evidence (overdue or never given)" if c.startswith("manual:") else c,
                "days": day_ranges(ds),
                "day_count": len(ds),
            }
            for c, ds in sorted(missing.items())
        ],
        "activity": _activity(ctx, a, rows),
        "runs": runs,
        "runs_by_trigger": _runs_by_trigger(runs),
        "evidence": rows,
        "provenance": provenance(rows),
        "policies": sorted({e["policy"] for e in rows if e.get("policy")}),
        "digests": [ctx.reader.digest_info(d) for d in covering],
        "unsealed_entries": ctx.snapshot.unsealed([*seqs, *a.run_seqs()]),
        "as_of_ledger_seq": max([*seqs, *a.run_seqs()], default=0),
        "public_key_fingerprint": ctx.public_key_fingerprint,
    }


def build_index(
    ctx: BuildContext,
    *,
    framework: str,
    reports: Sequence[dict[str, Any]],
    assessments: Mapping[str, Assessment],
) -> dict[str, Any]:
    """The framework index: every reported control's status, and the cross-framework view."""
    policy = ctx.policy
    fw = policy.frameworks[framework]  # type: ignore[index]
    counts = {s: sum(1 for r in reports if r["status"] == s) for s in CONTROL_STATUSES}
    evidenced_by = {
        k: sum(1 for r in reports if r["control"]["evidenced_by"] == k)
        for k in ("automated", "manual", "both")
    }
    order = {s: i for i, s in enumerate(CONTROL_STATUSES)}
    ranked = sorted(enumerate(reports), key=lambda ir: (order[ir[1]["status"]], ir[0]))
    crosswalk = []
    for r in reports:
        control = policy.control(r["control"]["id"])
        columns = []
        for other in FRAMEWORKS:
            if other == framework or other not in policy.frameworks:
                continue
            mapped = [m for m in control.maps_to if policy.control(m).framework == other]
            columns.append(
                {
                    "framework": other,
                    "framework_name": policy.frameworks[other].name,  # type: ignore[index]
                    "controls": [
                        {"id": m, "title": policy.control(m).title, "status": assessments[m].status}
                        for m in mapped
                    ],
                }
            )
        crosswalk.append({"id": control.id, "title": control.title, "status": r["status"], "mapped": columns})
    digests: dict[str, dict[str, Any]] = {}
    unsealed: set[int] = set()
    evidence: set[str] = set()
    for r in reports:
        for d in r["digests"]:
            digests[d["key"]] = d
        unsealed.update(r["unsealed_entries"])
        evidence.update(e["sha256"] for e in r["evidence"])
    return {
        "schema": INDEX_SCHEMA,
        "framework": {"key": framework, "name": fw.name, "version": fw.version},
        "period": reports[0]["period"] if reports else None,
        "policy_fingerprint": policy.fingerprint,
        "public_key_fingerprint": ctx.public_key_fingerprint,
        "status_rule": STATUS_RULE,
        "status_counts": counts,
        "evidenced_by_counts": evidenced_by,
        "controls": [
            {
                "id": r["control"]["id"],
                "slug": r["control"]["slug"],
                "title": r["control"]["title"],
                "owner": r["control"]["owner"],
                "evidenced_by": r["control"]["evidenced_by"],
                "specification": r["control"]["specification"],
                "status": r["status"],
                "day_counts": r["day_counts"],
                "exception_count": len(r["exceptions"]),
                "responses": {
                    st: sum(1 for x in r.get("exception_responses", []) if x["state"] == st)
                    for st in ("open", "overdue", "closed")
                },
                "top_exceptions": r["exceptions"][:3],
                "manual_overdue_days": (r["manual_evidence"] or {}).get("overdue_day_count", 0),
                "manual_statements": len((r["manual_evidence"] or {}).get("statements", [])),
            }
            for _i, r in ranked
        ],
        "crosswalk": crosswalk,
        "evidence_count": len(evidence),
        "digests": [digests[k] for k in sorted(digests)],
        "unsealed_entries": sorted(unsealed),
    }
