"""Manual evidence over the real stack: ``attestly evidence add`` stores the files and a signed statement
(content-addressed, Object Lock, ledgered), ``evidence list`` and ``verify`` treat it like collected
evidence, bad input is refused with its reason and nothing written, and a kill at every step is finished
by the re-run (or, once the files are stored, by the daily task) — never an object without its ledger
entry, never the reverse."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestly.failpoints import EXIT_CODE, MANUAL_FAILPOINTS

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"
CONTROL = "soc2:CC1.4"  # manual: annual security awareness training records


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attestly.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=300,
    )


def add(files: list[Path], *, control: str = CONTROL, title: str = "2026 training completion", extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None, period: tuple[str, str] = ("2026-01-01", "2026-06-30")) -> subprocess.CompletedProcess[str]:  # fmt: skip
    args = ["evidence", "add", "--control", control, "--period-from", period[0], "--period-to", period[1]]
    for f in files:
        args += ["--file", str(f)]
    return cli(*args, "--title", title, "--attested-by", "Dana Reyes, CISO", "--json", *extra, env=env)


def state() -> dict[str, Any]:
    """What is written: manual ledger entries, journal rows, attachment and item objects in the bucket."""
    from attestly import config
    from attestly.connections import aws_client
    from attestly.ledger import Ledger

    with Ledger.connect() as ledger:
        entries = [e for e in ledger.entries(kind="evidence") if e.body.get("collector") == "manual"]
        rows = ledger.conn.execute(
            "SELECT item_sha256, ledger_seq FROM attestly.manual_statements ORDER BY created_at"
        ).fetchall()
        ledger.conn.commit()
    s3 = aws_client("s3")
    keys = []
    for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=config.evidence_bucket(), Prefix="attachments/"
    ):
        keys += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
    return {"entries": entries, "journal": rows, "attachments": keys}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    (tmp_path / "training.pdf").write_bytes(PDF + b"% " + os.urandom(8).hex().encode() + b"\n%%EOF\n")
    out["pdf"] = tmp_path / "training.pdf"
    (tmp_path / "roster.csv").write_text("employee,completed\ne-1001,2026-03-02\ne-1002,2026-03-09\n")
    out["csv"] = tmp_path / "roster.csv"
    return out


def test_add_list_verify_and_again(stack: dict[str, str], files: dict[str, Path]) -> None:
    before = state()
    first = add([files["pdf"], files["csv"]])
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["created"] is True and out["controls"] == [CONTROL] and out["result"] == "pass"
    assert out["period"] == {"from": "2026-01-01", "to": "2026-06-30"}
    assert {a["name"]: a["media_type"].split(";")[0] for a in out["attachments"]} == {
        "training.pdf": "application/pdf",
        "roster.csv": "text/plain",
    }
    after = state()
    assert len(after["entries"]) == len(before["entries"]) + 1
    body = after["entries"][-1].body
    assert body["manual"]["attested_by"] == "Dana Reyes, CISO" and body["signature"]["algorithm"] == "ed25519"

    # Stored under Object Lock (COMPLIANCE), content-addressed; the item names every file by hash.
    from attestly import config
    from attestly.connections import aws_client

    s3 = aws_client("s3")
    for a in body["attachments"]:
        head = s3.head_object(Bucket=config.evidence_bucket(), Key=a["key"], VersionId=a["version_id"])
        assert head["ObjectLockMode"] == "COMPLIANCE" and a["key"] == f"attachments/sha256/{a['sha256']}"
    shown = cli("evidence", "show", out["sha256"])
    assert shown.returncode == 0, shown.stderr
    item = json.loads(shown.stdout)
    assert item["collector"] == "manual"
    assert sorted(x["sha256"] for x in item["data"]["statement"]["attachments"]) == sorted(
        a["sha256"] for a in out["attachments"]
    )

    listed = cli("evidence", "list", "--control", CONTROL, "--json")
    assert out["sha256"] in {r["sha256"] for r in json.loads(listed.stdout)}

    # The same statement again: nothing new is written.
    again = add([files["pdf"], files["csv"]])
    assert again.returncode == 0, again.stderr
    assert (
        json.loads(again.stdout)["created"] is False and json.loads(again.stdout)["sha256"] == out["sha256"]
    )
    assert len(state()["entries"]) == len(after["entries"])

    # verify re-hashes the attachments and checks the statement's own signature (other tests of the
    # session tamper with their own objects: only ours must be clean).
    _seal()
    verified = cli("verify", "--ledger", "--json", "--from", "2026-01-01", "--to", "2026-06-30")
    report = json.loads(verified.stdout)
    ours = {body["key"], *(a["key"] for a in body["attachments"])}
    assert not [p for p in report["problems"] if p["key"] in ours], report["problems"]
    assert report["found"]["objects_by_kind"]["attachment"]["verified"] >= 2

    due = cli("evidence", "due", "--control", CONTROL, "--json")
    (row,) = json.loads(due.stdout)
    assert row["last_covers_to"] == "2026-06-30" and row["due"] == "2027-07-01"


def _seal() -> None:
    from attestly.ledger import Ledger
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore

    with Ledger.connect() as ledger:
        ledger.seal(store=EvidenceStore.from_connection(), signer=signer_from_connection())


def _docx(*, macro: bool) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
        if macro:
            zf.writestr("word/vbaProject.bin", b"\x00macro")
    return buf.getvalue()


BAD_FILES = {
    "page.html": (b"<!DOCTYPE html><html><script>alert(1)</script></html>", "HTML, SVG or XML is not accepted"),
    "tool.pdf": (b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "is an ELF executable"),
    "review.docx": (_docx(macro=True), "contains macros"),
    "scan.pdf": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "the name says .pdf but the content is image/png"),
    "active.pdf": (PDF.replace(b"<</Type /Catalog>>", b"<</Type /Catalog /OpenAction <</S /JavaScript /JS (app.alert(1))>> >>"), "active content"),
    "empty.txt": (b"", "is empty"),
    "blob.txt": (b"abc\x00\x01def", "binary content"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_refused_files_write_nothing(
    stack: dict[str, str], tmp_path: Path, files: dict[str, Path], name: str
) -> None:
    data, reason = BAD_FILES[name]
    bad = tmp_path / name
    bad.write_bytes(data)
    before = state()
    result = add([files["pdf"], bad])
    assert result.returncode == 2, result.stdout + result.stderr
    assert name in result.stderr and reason in result.stderr
    after = state()
    assert (len(after["entries"]), after["journal"], after["attachments"]) == (
        len(before["entries"]), before["journal"], before["attachments"],
    )  # fmt: skip


def test_bad_arguments_are_named(stack: dict[str, str], files: dict[str, Path], tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    cases = [
        (add([tmp_path / "nope.pdf"]), "--file", "no such file"),
        (add([files["pdf"]], control="soc2:CC99.1"), "soc2:CC99.1", "unknown control"),
        (add([files["pdf"]], control="soc2:CC6.1"), "soc2:CC6.1", "collectors only"),
        (add([files["pdf"]], control="soc2:P1.1"), "soc2:P1.1", "not in scope"),
        (add([files["pdf"]], period=("2026-03-01", "2026-02-01")), "--period-to 2026-02-01", "before --period-from"),
        (add([files["pdf"]], period=("2026-01-01", (today + timedelta(days=3)).isoformat())), "--period-to", "after today"),
        (add([files["pdf"]], title="line\u202ebreak"), "--title", "U+202E"),
    ]  # fmt: skip
    before = state()
    for result, what, why in cases:
        assert result.returncode == 2, result.stdout + result.stderr
        assert what in result.stderr and why in result.stderr, result.stderr
    assert state()["journal"] == before["journal"]


def test_an_oversized_file_is_refused(stack: dict[str, str], tmp_path: Path, files: dict[str, Path]) -> None:
    import shutil

    from attestly.policy import policy_dir

    policy = tmp_path / "policy"
    shutil.copytree(policy_dir(), policy)
    text = (policy / "controls.yaml").read_text().replace("max_file_mib: 25", "max_file_mib: 1")
    (policy / "controls.yaml").write_text(text)
    big = tmp_path / "export.csv"
    big.write_text("x,y\n" * 300_000)  # 1.2 MiB
    result = add([big], env={"ATTESTLY_POLICY_DIR": str(policy)})
    assert result.returncode == 2
    assert "export.csv" in result.stderr and "at most 1 MiB" in result.stderr


@pytest.mark.parametrize("failpoint", MANUAL_FAILPOINTS)
def test_killed_at_each_step_then_rerun_records_once(
    stack: dict[str, str], tmp_path: Path, failpoint: str
) -> None:
    pdf = tmp_path / "dr-test.pdf"
    pdf.write_bytes(PDF + b"% " + failpoint.encode() + os.urandom(4).hex().encode() + b"\n%%EOF\n")
    before = state()
    killed = add([pdf], title=f"DR test {failpoint}", env={"ATTESTLY_FAILPOINTS": failpoint})
    assert killed.returncode == EXIT_CODE, killed.stderr
    mid = state()
    pending = [r for r in mid["journal"] if r[1] is None]
    ledgered = len(mid["entries"]) - len(before["entries"])
    # Journal first: a kill anywhere leaves the statement frozen (pending unless the mark was the only
    # step left); a ledger entry exists only once every object is stored.
    assert len(mid["journal"]) == len(before["journal"]) + 1
    assert ledgered == (1 if failpoint == "manual.after_ledger" else 0)
    assert len(pending) == len([r for r in before["journal"] if r[1] is None]) + 1

    again = add([pdf], title=f"DR test {failpoint}")
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    after = state()
    assert len(after["entries"]) == len(before["entries"]) + 1
    assert all(r[1] is not None for r in after["journal"] if r[0] == out["sha256"])
    (entry,) = [e for e in after["entries"] if e.body["sha256"] == out["sha256"]]
    from attestly import config
    from attestly.connections import aws_client

    s3 = aws_client("s3")
    for a in entry.body["attachments"]:
        assert s3.head_object(Bucket=config.evidence_bucket(), Key=a["key"], VersionId=a["version_id"])


def test_a_pending_statement_is_completed_without_its_files(stack: dict[str, str], tmp_path: Path) -> None:
    """Killed after its files were stored, and never re-run: the daily task finishes it from the bucket."""
    from attestly.ledger import Ledger
    from attestly.manual import complete_pending
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore

    stored = tmp_path / "policy.pdf"
    stored.write_bytes(PDF + b"% stored " + os.urandom(4).hex().encode() + b"\n%%EOF\n")
    lost = tmp_path / "lost.pdf"
    lost.write_bytes(PDF + b"% lost " + os.urandom(4).hex().encode() + b"\n%%EOF\n")
    assert (
        add([stored], title="stored", env={"ATTESTLY_FAILPOINTS": "manual.after_attachments"}).returncode
        == EXIT_CODE
    )
    assert (
        add([lost], title="lost", env={"ATTESTLY_FAILPOINTS": "manual.after_journal"}).returncode == EXIT_CODE
    )
    before = len(state()["entries"])
    with Ledger.connect() as ledger:
        done = complete_pending(
            ledger=ledger, store=EvidenceStore.from_connection(), signer=signer_from_connection()
        )
    assert len(done["completed"]) >= 1
    assert any("lost.pdf" in i["reason"] and "never stored" in i["reason"] for i in done["incomplete"])
    assert len(state()["entries"]) == before + len(done["completed"])


def test_reminders_go_once_to_owners_and_the_compliance_team(stack: dict[str, str]) -> None:
    from attestly.ledger import Ledger
    from attestly.policy import load_policy
    from attestly.reminders import send_reminders
    from attestly_dev.stack import core

    roster = Path(os.environ["ATTESTLY_HOME"]) / "roster-fixed.csv"
    roster.write_text("employee,completed\ne-2001,2026-02-02\n")
    assert add([roster], title="training roster").returncode == 0
    mail = core.paths().mail
    seen = set(mail.glob("*.eml")) if mail.exists() else set()
    policy = load_policy()
    today = date(
        2026, 6, 20
    )  # CC1.4's statement above covers to 2026-06-30: not due; most others never given
    with Ledger.connect() as ledger:
        first = send_reminders(policy=policy, ledger=ledger, today=today, live=True)
        second = send_reminders(policy=policy, ledger=ledger, today=today, live=True)
    assert first["messages"] and not second["messages"]
    overdue = [m for m in first["messages"] if m["kind"] == "overdue"]
    assert overdue and all("compliance@example.com" in m["to"] for m in overdue)
    assert CONTROL not in first["overdue"]
    new = sorted(set(mail.glob("*.eml")) - seen)
    assert len(new) == len(first["messages"])
    text = "".join(p.read_text(errors="replace") for p in new)
    assert "overdue" in text and "soc2:CC1.1" in text
