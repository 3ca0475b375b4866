"""`airflow dags test audit_log_quality`: clean data passes; faulty data stores the evidence, e-mails the
control owners (the local SMTP server receives it) and fails the run."""

from __future__ import annotations

import email
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from attestly.connections import aws_client
from attestly.ledger import Ledger
from tests.conftest import recreate_database
from tests.integration.test_evidence_dag import dags_test

pytestmark = pytest.mark.integration

DAY = datetime.now(UTC).date() - timedelta(days=1)  # the interval [DAY, DAY + 1)


@pytest.fixture
def fresh(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    recreate_database("audit")
    recreate_database("attestly")
    bucket = f"quality-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    monkeypatch.setenv("ATTESTLY_EVIDENCE_BUCKET", bucket)
    return Path(stack["ATTESTLY_HOME"]) / "mail"


def _quality_items() -> list[dict]:
    with Ledger.connect() as ledger:
        return [e.body for e in ledger.entries(kind="evidence") if e.body["collector"] == "quality.audit_log"]


def _mail_since(mail: Path, before: set[Path]) -> list[email.message.Message]:
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(set(mail.glob("*.eml")) - before)]


def test_clean_interval_passes_without_mail(fresh: Path) -> None:
    from attestly_dev import audit_seed as seed

    seed.seed_audit(start=DAY - timedelta(days=1), days=2, events_per_day=1200)
    before = set(fresh.glob("*.eml"))
    run = dags_test("audit_log_quality", DAY + timedelta(days=1))
    assert run.returncode == 0, run.stdout[-3000:]
    items = _quality_items()
    assert len(items) == 1 and items[0]["result"] == "pass"
    assert items[0]["period_start"].startswith(DAY.isoformat())
    assert _mail_since(fresh, before) == []


def test_faulty_interval_stores_evidence_mails_owners_and_fails(fresh: Path) -> None:
    from attestly_dev import audit_seed as seed

    seed.seed_audit(start=DAY - timedelta(days=1), days=1, events_per_day=1200)
    seed.seed_audit(
        start=DAY,
        days=1,
        events_per_day=1200,
        injections=[
            seed.parse_injection("seq-hole:source=billing,count=3"),
            seed.parse_injection("phi-leak:count=2"),
        ],
    )
    before = set(fresh.glob("*.eml"))
    run = dags_test("audit_log_quality", DAY + timedelta(days=1))
    assert run.returncode != 0
    items = _quality_items()
    assert len(items) == 1 and items[0]["result"] == "fail"
    assert items[0]["findings"]["fail"] == 2
    mails = _mail_since(fresh, before)
    assert len(mails) == 1
    message = mails[0]
    assert "audit log quality FAILED" in message["Subject"]
    assert "privacy@example.com" in message["To"] or "security@example.com" in message["To"]
    html = (
        next(p for p in message.walk() if p.get_content_type() == "text/html")
        .get_payload(decode=True)
        .decode()
    )
    assert "sequence_contiguous" in html and "no_clear_text_phi" in html
    assert "@example.com" not in html.replace(message["To"], "")  # no leaked e-mail values in the body
    with Ledger.connect() as ledger:
        runs = [e.body for e in ledger.entries(kind="run")]
    assert runs[-1]["outcome"] == "failed" and "enforce" in runs[-1]["failed_tasks"]
