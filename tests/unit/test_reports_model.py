"""Report logic without services: periods, status rules, day assignment, sanitizing, ids, settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from attestly.reports.chart import chart_svg
from attestly.reports.mail import ReportSettings, plan_attachments
from attestly.reports.model import (
    EvidenceIndex,
    EvidenceRecord,
    Period,
    ReportInputError,
    RunRecord,
    cell_status,
    control_slug,
    control_status,
    day_ranges,
    day_status,
)
from attestly.reports.oscal import oscal_control_id
from attestly.reports.sanitize import REDACTED, clean_text

pytestmark = pytest.mark.unit

Q1 = Period(date(2026, 1, 1), date(2026, 3, 31))


def _rec(seq: int, collector: str, day: date, result: str, **kw: Any) -> EvidenceRecord:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    body = {
        "sha256": f"{seq:064x}",
        "key": f"objects/sha256/{seq:064x}.json",
        "version_id": "v1",
        "collector": collector,
        "controls": ["soc2:CC6.1"],
        "period_start": kw.pop("period_start", start).isoformat(),
        "period_end": kw.pop("period_end", start + timedelta(days=1)).isoformat(),
        "result": result,
        "retroactive": True,
        "scope": {"account": "1", "region": kw.pop("region", "global")},
        "findings": {result: 1},
        "airflow": kw.pop("airflow", None),
    }
    return EvidenceRecord.from_body(
        seq=seq, recorded_at=kw.pop("recorded_at", start + timedelta(days=1)), body=body
    )


def test_period_parse_label_and_errors() -> None:
    assert Q1.label == "2026-Q1" and Q1.quarter == "2026-Q1" and len(Q1.days) == 90
    assert Period(date(2026, 10, 1), date(2026, 12, 31)).label == "2026-Q4"
    assert Period(date(2026, 1, 5), date(2026, 2, 10)).label == "2026-01-05_2026-02-10"
    assert Period.from_interval(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)) == Q1
    with pytest.raises(ReportInputError, match="'2026-13-01'"):
        Period.parse("2026-13-01", "2026-12-31")
    with pytest.raises(ReportInputError, match="2026-01-01 is before its start 2026-02-01"):
        Period.parse("2026-02-01", "2026-01-01")
    with pytest.raises(ReportInputError, match="not at UTC midnight"):
        Period.from_interval(datetime(2026, 1, 1, 6, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


def test_status_precedence() -> None:
    assert cell_status(["pass", "not_applicable"]) == "pass"
    assert cell_status(["not_applicable"]) == "not_assessed"
    assert cell_status(["pass", "fail"]) == "fail"
    assert cell_status(["fail", "error"]) == "error"
    assert cell_status([]) == "missing"
    assert control_status(["effective", "no_evidence", "exception"]) == "exceptions"
    assert control_status(["effective", "not_assessed"]) == "no_evidence"
    assert control_status(["effective", "no_evidence"]) == "no_evidence"
    assert control_status(["effective"]) == "effective"
    assert control_status([]) == "no_evidence"
    assert day_status(()) == "no_evidence"  # a manual control has no automated evidence


def test_index_assesses_days_and_event_collectors() -> None:
    d1, d2, d3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)
    run = {
        "dag_id": "key_disposal",
        "run_id": "scheduled__2026-01-02",
        "data_interval": {"start": "2026-01-02T00:00:00Z", "end": "2026-01-03T00:00:00Z"},
        "outcome": "success",
        "failed_tasks": [],
    }
    failed = {**run, "run_id": "scheduled__2026-01-03", "outcome": "failed", "failed_tasks": ["destroy"]}
    failed["data_interval"] = {"start": "2026-01-03T00:00:00Z", "end": "2026-01-04T00:00:00Z"}
    runs = [
        r for r in (RunRecord.from_body(seq=100, body=run), RunRecord.from_body(seq=101, body=failed)) if r
    ]
    evidence = [
        _rec(1, "iam.root_account", d1, "pass"),
        _rec(2, "iam.root_account", d1, "not_applicable", region="eu-west-1"),
        _rec(3, "iam.root_account", d2, "not_applicable"),
        _rec(4, "iam.root_account", d3, "fail"),
        _rec(5, "iam.root_account", d3, "pass"),  # a later pass never hides the failure
        # A certificate for an old month, produced by the run of Jan 1: counts on Jan 1.
        _rec(
            6,
            "disposal.certificate",
            d1,
            "pass",
            period_start=datetime(2019, 1, 1, tzinfo=UTC),
            period_end=datetime(2019, 2, 1, tzinfo=UTC),
            recorded_at=datetime(2026, 1, 1, 3, tzinfo=UTC),
        ),
    ]
    period = Period(d1, d3 + timedelta(days=1))
    index = EvidenceIndex(period=period, evidence=evidence, runs=runs)
    a = index.assess(control_id="x:1", collectors=["iam.root_account", "disposal.certificate"])
    cells = {(c.collector, d.day): c.status for d in a.days for c in d.cells}
    assert cells[("iam.root_account", d1)] == "pass"
    assert cells[("iam.root_account", d2)] == "not_assessed"
    assert cells[("iam.root_account", d3)] == "fail"
    assert cells[("disposal.certificate", d1)] == "pass"  # its item
    assert cells[("disposal.certificate", d2)] == "pass"  # a successful run, nothing to dispose of
    assert cells[("disposal.certificate", d3)] == "error"  # the run failed
    assert cells[("disposal.certificate", d3 + timedelta(days=1))] == "missing"  # no run at all
    assert [d.status for d in a.days] == ["effective", "not_assessed", "exception", "no_evidence"]
    assert a.status == "exceptions"
    assert a.counts == {"effective": 1, "exception": 1, "no_evidence": 1, "not_assessed": 1}
    d4 = d3 + timedelta(days=1)
    assert a.missing() == {"disposal.certificate": [d4], "iam.root_account": [d4]}


def test_overlapped_days_and_ranges() -> None:
    rec = _rec(
        1,
        "auditdb.event_volume",
        date(2025, 12, 30),
        "pass",
        period_end=datetime(2026, 1, 3, tzinfo=UTC),
    )
    assert rec.overlapped_days(Q1) == [date(2026, 1, 1), date(2026, 1, 2)]
    days = [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3), date(2026, 1, 7)]
    assert day_ranges(days) == "2026-01-01..2026-01-03, 2026-01-07"
    assert day_ranges([]) == ""


def test_clean_text_masks_what_must_never_be_shown() -> None:
    text = clean_text(
        "patient 123-45-6789 paid with 4111 1111 1111 1111, password=hunter2 "
        "key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY and order 1234567890123"
    )
    assert "123-45-6789" not in text and "4111" not in text and "hunter2" not in text
    assert "wJalrXUtnFEMI" not in text
    assert "1234567890123" in text  # not a valid card number (Luhn): kept
    assert text.count(REDACTED) == 4
    assert clean_text("a\x00b\x1bc") == "a b c"
    assert len(clean_text("x" * 1000)) == 300
    sha = "0" * 63 + "1"
    assert clean_text(sha) == sha  # hashes are not secrets


def test_ids_are_safe_tokens() -> None:
    assert control_slug("hipaa:164.312(a)(2)(iv)") == "hipaa_164.312-a-2-iv"
    assert control_slug("soc2:CC6.1") == "soc2_CC6.1"
    assert oscal_control_id("hipaa:164.312(a)(2)(iv)") == "hipaa-164.312.a.2.iv"
    assert oscal_control_id("pci:10.2.1") == "pci-10.2.1"


def test_settings_and_attachment_plan() -> None:
    s = ReportSettings.from_mapping({"recipients": ["b@example.com", "a@example.com"], "attach_limit_mb": 2})
    assert s.recipients == ("a@example.com", "b@example.com") and s.attach_limit_bytes == 2 * 1024 * 1024
    assert ReportSettings.from_mapping(None) == ReportSettings()
    with pytest.raises(ReportInputError, match="'not-an-address'"):
        ReportSettings.from_mapping({"recipients": ["not-an-address"]})
    with pytest.raises(ReportInputError, match="-1"):
        ReportSettings.from_mapping({"attach_limit_mb": -1})
    with pytest.raises(ReportInputError, match="'attach_limit'"):
        ReportSettings.from_mapping({"attach_limit": 3})
    assert plan_attachments([("index.pdf", 100), ("packet.zip", 950)], limit_bytes=1000) == [True, False]
    assert plan_attachments([("index.pdf", 100), ("packet.zip", 900)], limit_bytes=1000) == [True, True]


def test_chart_is_deterministic() -> None:
    index = EvidenceIndex(
        period=Period(date(2026, 1, 1), date(2026, 1, 10)),
        evidence=[_rec(1, "iam.root_account", date(2026, 1, 2), "fail")],
        runs=[],
    )
    a = index.assess(control_id="x:1", collectors=["iam.root_account"])
    first, second = chart_svg(a), chart_svg(a)
    assert first == second and first.startswith("<svg")
    # Run-length rectangles: control row pass/exception/pass (3), collector row the same (3), legend (5).
    assert first.count("<rect") == 3 + 3 + 5
    assert 'fill="#c62828"' in first and "iam.root_account" in first


def _context(**params: Any) -> dict[str, Any]:
    from types import SimpleNamespace

    return {
        "params": params,
        "data_interval_start": datetime(2026, 1, 1, tzinfo=UTC),
        "data_interval_end": datetime(2026, 4, 1, tzinfo=UTC),
        "dag_run": SimpleNamespace(run_type="manual"),
    }


def test_plan_turns_params_into_jobs_and_names_bad_values() -> None:
    from attestly.workflows import reports

    jobs = reports.plan(_context())
    assert [j["framework"] for j in jobs] == ["soc2", "hipaa", "pci"]
    assert (jobs[0]["period_start"], jobs[0]["period_end"], jobs[0]["on_demand"]) == (
        "2026-01-01",
        "2026-03-31",
        False,
    )
    chosen = reports.plan(
        _context(
            controls=["pci:8.4.2"],
            recipients="a@example.com",
            period_start="2026-02-01",
            period_end="2026-02-28",
        )
    )
    assert len(chosen) == 1 and chosen[0]["controls"] == ["pci:8.4.2"] and chosen[0]["on_demand"] is True
    assert chosen[0]["recipients"] == ["a@example.com"]
    for params, named in (
        ({"frameworks": ["iso27001"]}, "'iso27001'"),
        ({"controls": ["soc2:XX1"]}, "'soc2:XX1'"),
        ({"period_start": "2026-02-01"}, "period_end=None"),
        ({"period_start": "2026-02-31", "period_end": "2026-03-01"}, "'2026-02-31'"),
        ({"formats": ["docx"]}, "'docx'"),
        ({"recipients": ["nobody"]}, "'nobody'"),
    ):
        with pytest.raises(ReportInputError, match=named):
            reports.plan(_context(**params))


def test_manual_and_on_demand_runs_do_not_wait_for_evidence() -> None:
    from attestly.workflows import reports

    assert reports.await_evidence(_context()) is True  # manual run: no ledger access needed
    ctx = _context(period_start="2026-01-01", period_end="2026-01-31")
    ctx["dag_run"].run_type = "scheduled"
    assert reports.await_evidence(ctx) is True  # an on-demand period
