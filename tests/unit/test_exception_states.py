"""Exceptions lifecycle without services: states from ledger entries, what a control report shows, the
OSCAL risks (validated by compliance-trestle's model), identities compared across CLI and UI, and the
sample algorithm re-computed outside Python."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, date, datetime
from typing import Any

import pytest

from attestly.deviations import CLOSE, RESPONSE, exception_id, for_report, states_from_entries
from attestly.identity import person, same_person
from attestly.ledger import LedgerEntry
from attestly.reports.oscal import assessment_results
from attestly.sampling import draw, fingerprint, score

pytestmark = pytest.mark.unit

EID = exception_id({"collector": "config.recorder", "resource": "arn:aws:s3:::b"})


def _entry(seq: int, kind: str, body: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry(seq, kind, datetime(2026, 12, 1, tzinfo=UTC), body, "0" * 64, "f" * 64)


def _response(due: str = "2026-12-20") -> dict[str, Any]:
    return {
        "exception_id": EID,
        "controls": ["soc2:CC7.1"],
        "target": {"type": "finding", "collector": "config.recorder", "resource": "arn:aws:s3:::b",
                   "first_item": "a" * 64, "first_failed": "2026-11-03T00:00:00Z",
                   "last_failed": "2026-11-05T00:00:00Z", "failing_items": 2},
        "owner": "it-ops@example.com", "root_cause": "created by hand", "ticket": "SEC-1", "due": due,
        "responded_by": "cli:alice@host-1", "responded_at": "2026-12-01T10:00:00Z",
    }  # fmt: skip


def _closure(at: str = "2026-12-22T09:00:00Z") -> dict[str, Any]:
    return {
        "exception_id": EID,
        "closed_by": "ui:bob",
        "closed_at": at,
        "retest": {"item": "b" * 64, "item_seq": 9, "collector": "config.recorder", "scope": {},
                   "period_start": "2026-12-21T00:00:00Z", "period_end": "2026-12-22T00:00:00Z",
                   "result": "pass"},
    }  # fmt: skip


def test_exception_ids_are_stable_and_tell_targets_apart() -> None:
    assert exception_id({"resource": "arn:aws:s3:::b", "collector": "config.recorder"}) == EID
    assert EID.startswith("EXC-") and len(EID) == 20
    assert exception_id({"item": "a" * 64}) != exception_id({"item": "b" * 64}) != EID


def test_open_overdue_closed_from_the_entries() -> None:
    states = states_from_entries([_entry(7, RESPONSE, _response()), _entry(3, "evidence", {"x": 1})])
    s = states[EID]
    assert s.state(date(2026, 12, 20)) == "open" and s.state(date(2026, 12, 21)) == "overdue"
    # A second response to the same exception is ignored (the first one stands); the closure closes it.
    states = states_from_entries(
        [
            _entry(7, RESPONSE, _response()),
            _entry(8, RESPONSE, _response(due="2027-06-30")),
            _entry(9, CLOSE, _closure()),
        ]
    )
    s = states[EID]
    d = s.to_dict(date(2027, 1, 5))
    assert d["state"] == "closed" and d["due"] == "2026-12-20" and d["closed_late"] is True
    assert d["retest"]["item"] == "b" * 64 and d["close_seq"] == 9


def test_a_report_shows_responses_for_its_control_and_period() -> None:
    states = states_from_entries([_entry(7, RESPONSE, _response()), _entry(9, CLOSE, _closure())]).values()
    q4 = for_report(states, control_id="soc2:CC7.1", start=date(2026, 10, 1), end=date(2026, 12, 31), as_of=date(2026, 12, 31))  # fmt: skip
    assert [x["exception_id"] for x in q4] == [EID] and q4[0]["state"] == "closed"
    assert for_report(states, control_id="soc2:CC6.1", start=date(2026, 10, 1), end=date(2026, 12, 31), as_of=date(2026, 12, 31)) == []  # fmt: skip
    # Failed after the period: not shown; closed before the period began: not shown.
    assert for_report(states, control_id="soc2:CC7.1", start=date(2026, 7, 1), end=date(2026, 9, 30), as_of=date(2026, 9, 30)) == []  # fmt: skip
    assert for_report(states, control_id="soc2:CC7.1", start=date(2027, 1, 1), end=date(2027, 3, 31), as_of=date(2027, 3, 31)) == []  # fmt: skip
    open_only = states_from_entries([_entry(7, RESPONSE, _response())]).values()
    late = for_report(open_only, control_id="soc2:CC7.1", start=date(2026, 10, 1), end=date(2026, 12, 31), as_of=date(2026, 12, 31))  # fmt: skip
    assert late[0]["state"] == "overdue"


def test_oscal_risks_validate_with_trestle() -> None:
    from trestle.oscal.assessment_results import AssessmentResults

    states = states_from_entries([_entry(7, RESPONSE, _response()), _entry(9, CLOSE, _closure())])
    responses = [states[EID].to_dict(date(2026, 12, 31))]
    report = {
        "control": {"id": "soc2:CC7.1", "slug": "soc2-cc7.1", "title": "Detection", "collectors": ["config.recorder"], "manual": False},
        "status": "exceptions", "status_rule": "rule", "day_counts": {"effective": 90, "exception": 2},
        "days": [{"date": "2026-12-31"}], "evidence": [], "exceptions": [], "exception_responses": responses,
    }  # fmt: skip
    index = {
        "framework": {"key": "soc2", "name": "SOC 2", "version": "2017"}, "status_rule": "rule",
        "period": {"label": "2026-Q4", "start": "2026-10-01", "end": "2026-12-31"},
        "policy_fingerprint": "f" * 64, "evidence_count": 0, "status_counts": {"exceptions": 1},
    }  # fmt: skip
    doc = assessment_results(index=index, reports=[report], bucket="evidence")
    result = doc["assessment-results"]["results"][0]
    (risk,) = result["risks"]
    assert risk["status"] == "closed" and risk["deadline"] == "2026-12-20T23:59:59+00:00"
    assert risk["remediations"][0]["lifecycle"] == "completed"
    assert result["findings"][0]["related-risks"] == [{"risk-uuid": risk["uuid"]}]
    assert risk["related-observations"] == [{"observation-uuid": result["observations"][0]["uuid"]}]
    AssessmentResults.model_validate(doc["assessment-results"])
    # Deterministic: the same input gives the same bytes.
    assert assessment_results(index=index, reports=[report], bucket="evidence") == doc


def test_identities_compare_people_across_cli_and_ui() -> None:
    assert person("cli:Alice@build-7") == "alice" and person("ui:alice") == "alice"
    assert same_person("cli:alice@host-1", "ui:Alice") and same_person("attestly-cli:bob", "cli:bob@x")
    assert not same_person("cli:alice@host-1", "ui:bob") and not same_person("", "")


def test_sample_algorithm_reproduces_outside_python() -> None:
    keys = [f"2026-11-{d:02d}" for d in range(1, 31)]
    picked = draw("audit-2026", "days", list(reversed(keys)), 4)
    assert picked == draw("audit-2026", "days", keys, 4) and len(picked) == 4
    assert picked != draw("audit-2027", "days", keys, 4)
    # Each key's score is sha256sum of seed NUL population NUL key.
    for key, s in picked:
        raw = b"audit-2026\0days\0" + key.encode()
        out = subprocess.run(["sha256sum"], input=raw, capture_output=True, check=True).stdout
        assert out.split()[0].decode() == s == score("audit-2026", "days", key)
    # A member's score does not depend on the others: removing an unpicked member keeps the sample.
    unpicked = next(k for k in keys if k not in {k for k, _ in picked})
    assert draw("audit-2026", "days", [k for k in keys if k != unpicked], 4) == picked
    assert draw("s", "days", keys, 100) and len(draw("s", "days", keys, 100)) == 30
    assert fingerprint(keys) == hashlib.sha256("".join(k + "\n" for k in keys).encode()).hexdigest()
