"""Exceptions lifecycle over the real stack: ``attestly exception respond | accept | close | list | show``
on evidence items stored and ledgered like collected ones; bad input refused with its reason and nothing
written; the responses in the control report (JSON, HTML) and as OSCAL risks (validated by
compliance-trestle's model); an overdue response e-mails its owner once; and ``attestly sample`` draws
the same sample twice, reproducible outside Python."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import recreate_database

pytestmark = pytest.mark.integration

CONTROL = "soc2:CC7.1"
COLLECTOR = "config.recorder"
ACCOUNT = "999900000019"  # this module's own account: nothing else in the session uses it
BAD_BUCKET = "arn:aws:s3:::w19b-unencrypted"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attestly.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
        timeout=300,
    )


def _item(day: date, result: str, findings: list[tuple[str, str]], *, region: str = "us-east-1") -> str:
    from attestly.evidence import EvidenceItem, Finding
    from attestly.ledger import Ledger
    from attestly.recording import record_evidence
    from attestly.store import EvidenceStore

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    item = EvidenceItem(
        collector=COLLECTOR,
        controls=(CONTROL,),
        period_start=start,
        period_end=start + timedelta(days=1),
        scope={"account": ACCOUNT, "region": region},
        retroactive=True,
        result=result,  # type: ignore[arg-type]
        findings=tuple(Finding(resource=r, status=s, detail=f"recorder {s}") for r, s in findings),  # type: ignore[arg-type]
    )
    with Ledger.connect() as ledger:
        return str(record_evidence(item, store=EvidenceStore.from_connection(), ledger=ledger)["sha256"])


def _count(kind: str) -> int:
    from attestly.ledger import Ledger

    with Ledger.connect() as ledger:
        return sum(1 for _ in ledger.entries(kind=kind))


@pytest.fixture(scope="module")
def items(stack: dict[str, str]) -> dict[str, str]:
    """February 2019 in the module's account: us-east-1 fails on the 3rd and 4th (the bucket is not
    encrypted), passes on the 2nd (before) and the 6th (after); eu-west-1 passes on the 5th. In a fresh
    ledger: what an earlier module on this stack left in it may name objects in that module's own bucket
    (the shipped policy's entry among them), which the reports rendered here could not read."""
    recreate_database("attestly")
    return {
        "pass_before": _item(date(2019, 2, 2), "pass", [(BAD_BUCKET, "pass")]),
        "fail_1": _item(date(2019, 2, 3), "fail", [(BAD_BUCKET, "fail"), ("arn:aws:s3:::w19b-ok", "pass")]),
        "fail_2": _item(date(2019, 2, 4), "fail", [(BAD_BUCKET, "fail")]),
        "other_region": _item(date(2019, 2, 5), "pass", [(BAD_BUCKET, "pass")], region="eu-west-1"),
        "pass_after": _item(date(2019, 2, 6), "pass", [(BAD_BUCKET, "pass")]),
    }


def _respond(*target: str, due: str, owner: str = "it-ops@example.com") -> subprocess.CompletedProcess[str]:
    return cli(
        "exception", "respond", *target, "--owner", owner, "--root-cause", "bucket created by hand outside IaC",
        "--ticket", "SEC-1419", "--due", due, "--json",
    )  # fmt: skip


def test_respond_refuses_bad_input_and_writes_nothing(items: dict[str, str]) -> None:
    today = datetime.now(UTC).date()
    due = (today + timedelta(days=30)).isoformat()
    before = _count("exception_response")
    cases = [
        (("--item", "0" * 64), "no evidence item with this SHA-256 is in the ledger"),
        (("--item", "xyz"), "is not a SHA-256"),
        (("--item", items["pass_before"]), "only a failing item"),
        (("--finding", "arn:aws:s3:::no-such-bucket", "--collector", COLLECTOR), "no ledgered evidence item"),
        (("--item", items["fail_1"], "--control", "soc2:CC1.1"), "is not evidence for soc2:CC1.1"),
    ]
    for target, reason in cases:
        out = _respond(*target, due=due)
        assert out.returncode == 2 and reason in out.stderr, (target, out.stderr)
    past = _respond("--item", items["fail_1"], due=(today - timedelta(days=1)).isoformat())
    assert past.returncode == 2 and "is in the past" in past.stderr and today.isoformat() in past.stderr
    bad_owner = _respond("--item", items["fail_1"], due=due, owner="not an address")
    assert bad_owner.returncode == 2 and "--owner" in bad_owner.stderr
    ctrl = cli(
        "exception", "respond", "--item", items["fail_1"], "--owner", "it-ops@example.com",
        "--root-cause", "bad\u202etext", "--ticket", "SEC-1", "--due", due,
    )  # fmt: skip
    assert ctrl.returncode == 2 and "U+202E" in ctrl.stderr
    assert _count("exception_response") == before


def test_item_lifecycle_respond_accept_close(items: dict[str, str]) -> None:
    due = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    first = _respond("--item", items["fail_1"], due=due)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    eid = out["exception_id"]
    assert out["created"] is True and out["state"] == "open" and out["controls"] == [CONTROL]
    assert out["target"]["type"] == "item" and out["target"]["item"] == items["fail_1"]
    assert out["responded_by"].startswith("cli:") and "@" in out["responded_by"]

    again = _respond("--item", items["fail_1"], due=due)
    assert again.returncode == 0 and json.loads(again.stdout)["created"] is False
    changed = _respond("--item", items["fail_1"], due=due, owner="someone-else@example.com")
    assert changed.returncode == 2 and eid in changed.stderr and "never edited" in changed.stderr

    # The CLI's OS user responded: the same OS user may not accept it.
    self_accept = cli("exception", "accept", eid)
    assert self_accept.returncode == 2 and "a different person must accept it" in self_accept.stderr

    # Re-tests that do not qualify, each with its reason.
    closes = [
        (items["fail_2"], "a re-test must pass"),
        (items["other_region"], "failed in"),
        (items["pass_before"], "not later than the last failure"),
        ("1" * 64, "no evidence item with this SHA-256"),
    ]
    for sha, reason in closes:
        bad = cli("exception", "close", eid, "--retested-by-item", sha)
        assert bad.returncode == 2 and reason in bad.stderr, (sha, bad.stderr)
    unknown = cli("exception", "close", "EXC-0000000000000000", "--retested-by-item", items["pass_after"])
    assert unknown.returncode == 2 and "no such exception" in unknown.stderr
    assert json.loads(cli("exception", "show", eid, "--json").stdout)["state"] == "open"

    closed = cli("exception", "close", eid, "--retested-by-item", items["pass_after"], "--json")
    assert closed.returncode == 0, closed.stderr
    c = json.loads(closed.stdout)
    assert c["state"] == "closed" and c["retest"]["item"] == items["pass_after"] and c["closed_late"] is False
    listed = json.loads(cli("exception", "list", "--control", CONTROL, "--json").stdout)
    assert {r["exception_id"]: r["state"] for r in listed}[eid] == "closed"


def test_finding_lifecycle_and_the_reports(items: dict[str, str], tmp_path: Path) -> None:
    from attestly.deviations import accept
    from attestly.ledger import Ledger

    due = (datetime.now(UTC).date() + timedelta(days=45)).isoformat()
    out = _respond("--finding", BAD_BUCKET, "--collector", COLLECTOR, due=due)
    assert out.returncode == 0, out.stderr
    resp = json.loads(out.stdout)
    eid = resp["exception_id"]
    assert resp["target"]["type"] == "finding" and resp["target"]["failing_items"] == 2
    assert resp["target"]["first_failed"].startswith("2019-02-03")
    # A second person (here: through the UI path's identity) accepts it.
    with Ledger.connect() as ledger:
        state, created = accept(ledger=ledger, eid=eid, accepted_by="ui:second-approver")
    assert created and state.acceptance is not None

    # The resource failed on the 4th: the 3rd's other item cannot re-test it, the 6th can.
    early = cli("exception", "close", eid, "--retested-by-item", items["pass_before"])
    assert early.returncode == 2 and "not later than the last failure" in early.stderr

    rendered = cli(
        "report", "render", "--framework", "soc2", "--control", CONTROL, "--from", "2019-02-01",
        "--to", "2019-02-28", "--formats", "json,html", "--out", str(tmp_path / "open"), "--json",
    )  # fmt: skip
    assert rendered.returncode in (0, 1) and rendered.stdout, rendered.stderr[-3000:]
    target = Path(json.loads(rendered.stdout)[0]["out"])
    report = json.loads((target / "controls" / "soc2_CC7.1.json").read_bytes())
    by_id = {x["exception_id"]: x for x in report["exception_responses"]}
    assert by_id[eid]["state"] == "open" and by_id[eid]["accepted_by"] == "ui:second-approver"
    groups = [g for g in report["exceptions"] if g["resource"] == BAD_BUCKET]
    assert groups and all(g["response"]["exception_id"] == eid for g in groups)
    html = (target / "controls" / "soc2_CC7.1.html").read_text()
    assert eid in html and "responses to exceptions" in html and "ui:second-approver" in html

    closed = cli("exception", "close", eid, "--retested-by-item", items["pass_after"], "--json")
    assert closed.returncode == 0, closed.stderr
    rendered = cli(
        "report", "render", "--framework", "soc2", "--control", CONTROL, "--from", "2019-02-01",
        "--to", "2019-02-28", "--formats", "json", "--out", str(tmp_path / "closed"), "--json",
    )  # fmt: skip
    target = Path(json.loads(rendered.stdout)[0]["out"])
    report = json.loads((target / "controls" / "soc2_CC7.1.json").read_bytes())
    x = {r["exception_id"]: r for r in report["exception_responses"]}[eid]
    assert x["state"] == "closed" and x["retest"]["item"] == items["pass_after"]

    # OSCAL: the response is a risk (closed, with its remediation and log), linked from the finding.
    doc = json.loads((target / "oscal" / "assessment-results.json").read_bytes())
    result = doc["assessment-results"]["results"][0]
    risks = {
        p["value"]: r for r in result["risks"] for p in r["props"] if p["name"] == "attestly-exception-id"
    }
    risk = risks[eid]
    assert risk["status"] == "closed" and risk["remediations"][0]["lifecycle"] == "completed"
    assert [e["title"] for e in risk["risk-log"]["entries"]] == [
        "Response recorded",
        "Response accepted",
        "Closed with a passing re-test",
    ]
    finding = next(f for f in result["findings"] if f["target"]["target-id"] == "soc2-cc7.1")
    assert {"risk-uuid": risk["uuid"]} in finding["related-risks"]
    from trestle.oscal.assessment_results import AssessmentResults

    AssessmentResults.model_validate(doc["assessment-results"])


def test_overdue_response_emails_the_owner_once(items: dict[str, str]) -> None:
    from attestly.deviations import send_overdue
    from attestly.ledger import Ledger
    from attestly_dev.stack import core

    due = datetime.now(UTC).date() + timedelta(days=10)
    out = _respond("--item", items["fail_2"], due=due.isoformat(), owner="w19b-owner@example.com")
    assert out.returncode == 0, out.stderr
    eid = json.loads(out.stdout)["exception_id"]
    mail = core.paths().mail
    seen = set(mail.glob("*.eml")) if mail.exists() else set()
    with Ledger.connect() as ledger:
        not_yet = send_overdue(ledger=ledger, today=due, live=True)
        assert eid not in not_yet["overdue"]
        first = send_overdue(ledger=ledger, today=due + timedelta(days=1), live=True)
        second = send_overdue(ledger=ledger, today=due + timedelta(days=2), live=True)
    assert eid in first["overdue"] and eid in second["overdue"]
    mine = [m for m in first["messages"] if m["exception_id"] == eid]
    assert mine and mine[0]["to"] == ["w19b-owner@example.com"]
    assert not [m for m in second["messages"] if m["exception_id"] == eid]
    new = sorted(set(mail.glob("*.eml")) - seen)
    text = "".join(p.read_text(errors="replace") for p in new)
    assert eid in text and "w19b-owner@example.com" in text and due.isoformat() in text
    listed = cli("exception", "list", "--state", "overdue", "--strict", "--json")
    assert listed.returncode == 0  # not overdue by the real clock yet


def test_sample_is_reproducible_and_ledgered(items: dict[str, str], tmp_path: Path) -> None:
    args = ["sample", "--control", CONTROL, "--from", "2019-02-01", "--to", "2019-02-28", "--size", "3",
            "--seed", "w19b-2019", "--json"]  # fmt: skip
    first = cli(*args, "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    a = json.loads(first.stdout)
    second = cli(*args, "--out", str(tmp_path / "b"))
    assert second.returncode == 0, second.stderr
    b = json.loads(second.stdout)
    assert a["created"] is True and b["created"] is False and a["ledger_seq"] == b["ledger_seq"]
    assert Path(a["json"]).read_bytes() == Path(b["json"]).read_bytes()
    doc = json.loads(Path(a["json"]).read_bytes())
    assert doc["seed"] == "w19b-2019" and doc["algorithm"]["id"] == "attestly.sample/v1"
    pops = doc["populations"]
    assert pops["days"]["size"] == 28 and len(pops["days"]["sample"]) == 3
    assert set(items.values()) <= set(pops["items"]["members"])
    resources = pops["resources"]["members"]
    assert f"{COLLECTOR}|account={ACCOUNT} region=us-east-1|{BAD_BUCKET}" in resources

    # Re-drawn outside Python: sha256sum over seed NUL population NUL key, sorted, first three.
    for name in ("days", "items", "resources"):
        scored = []
        for key in pops[name]["members"]:
            raw = b"w19b-2019\0" + name.encode() + b"\0" + key.encode()
            shown = subprocess.run(["sha256sum"], input=raw, capture_output=True, check=True).stdout
            scored.append((shown.split()[0].decode(), key))
        assert [k for _, k in sorted(scored)[:3]] == [r["key"] for r in pops[name]["sample"]]
        members = "".join(f"{k}\n" for k in pops[name]["members"]).encode()
        assert hashlib.sha256(members).hexdigest() == pops[name]["sha256"]
    with Path(a["csv"]).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["population"], r["key"]) for r in rows] == [
        (n, r["key"]) for n in ("days", "items", "resources") for r in pops[n]["sample"]
    ]
    from attestly.ledger import Ledger

    with Ledger.connect() as ledger:
        entry: Any = next(e for e in ledger.entries(kind="sample") if e.seq == a["ledger_seq"])
    assert entry.body["json_sha256"] == hashlib.sha256(Path(a["json"]).read_bytes()).hexdigest()
    assert entry.body["populations"]["days"]["sample"] == [r["key"] for r in pops["days"]["sample"]]

    for bad, reason in ((["--size", "0"], "--size 0"), (["--control", "soc2:NOPE"], "not a control")):
        argv = [*args, "--out", str(tmp_path / "c")]
        i = argv.index(bad[0])
        argv[i + 1] = bad[1]
        out = cli(*argv)
        assert out.returncode == 2 and reason in out.stderr, out.stderr
