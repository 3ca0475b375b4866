"""A seeded quarter for the report tests (no tests here): synthetic evidence for every collector and day
of 2026-Q1, stored and ledgered as ``record_evidence`` does (uploads in parallel), with planted failures, missing days,
not-applicable days and workflow runs, then sealed. ``PLANTED`` says what the reports must find."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from attestly.evidence import AirflowContext, EvidenceItem, Finding, Method, Population
from attestly.policy_evidence import current_bundle, record_policy
from attestly.reports.model import EVENT_COLLECTORS, Period

QUARTER = Period(date(2026, 1, 1), date(2026, 3, 31))
SSN = "123-45-6789"
PAN = "4111 1111 1111 1111"
DATA_SECRET = "PLANTED-FREE-TEXT-IN-DATA"

#: What the seed plants (dates inclusive).
PLANTED: dict[str, Any] = {
    "mfa_fail_days": [date(2026, 1, 10), date(2026, 1, 11), date(2026, 1, 12)],
    "tls_missing_days": [date(2026, 2, 9), date(2026, 2, 10)],
    "kms_not_applicable_days": [date(2026, 1, d) for d in range(1, 6)],
    "phi_fail_day": date(2026, 2, 19),
    "quality_fail_day": date(2026, 3, 11),
    "disposal_failed_run_day": date(2026, 3, 1),
    "disposal_rerun_by": "ops-oncall",  # the Airflow user who triggered that run
    "archive_day": date(2026, 1, 20),
    # Manual evidence: one pack of sign-offs covers every other manual control for the quarter; CC1.1's
    # annual evidence covered 2025-01-01..2025-02-14, so it runs out mid-quarter (overdue after
    # 2026-02-15); CC1.4's training records show an exception.
    "manual_overdue": "soc2:CC1.1",
    "manual_overdue_covers": (date(2025, 1, 1), date(2025, 2, 14)),
    "manual_exception": "soc2:CC1.4",
    "restore_test_day": date(2026, 3, 15),
}

#: Expected control statuses for 2026-Q1.
EXPECTED: dict[str, str] = {
    "pci:8.4.2": "exceptions",  # iam.mfa_console_users fails Jan 10-12
    "soc2:CC6.1": "exceptions",
    "hipaa:164.312(d)": "exceptions",
    "hipaa:164.312(e)(1)": "no_evidence",  # s3.tls_only missing Feb 9-10
    "soc2:CC6.6": "no_evidence",
    "hipaa:164.312(a)(2)(iv)": "no_evidence",  # kms.key_rotation not applicable Jan 1-5
    "pci:3.5.1": "no_evidence",
    "soc2:CC6.7": "no_evidence",
    "hipaa:164.312(a)(2)(i)": "exceptions",  # PHI access without actor Feb 19
    "soc2:CC7.3": "exceptions",
    "soc2:CC7.2": "exceptions",  # quality fails Mar 11
    "pci:10.2.1": "exceptions",
    "hipaa:164.312(c)(1)": "exceptions",
    "hipaa:164.310(d)(2)(i)": "exceptions",  # key_disposal run failed Mar 1
    "soc2:C1.2": "exceptions",
    "pci:3.2.1": "exceptions",
    "soc2:A1.2": "effective",
    "pci:10.5.1": "effective",
    "pci:10.3.3": "effective",
    "soc2:CC8.1": "effective",
    "hipaa:164.316(b)(2)": "effective",
    "soc2:CC6.2": "effective",
    "soc2:CC6.3": "effective",
    "soc2:CC1.1": "no_evidence",  # manual evidence overdue from 2026-02-16
    "soc2:CC1.4": "exceptions",  # manual statement with an exception
    "soc2:CC1.2": "effective",  # manual only, covered by the quarter's pack
    "soc2:A1.3": "effective",  # archive.restore_test (quarterly) and the pack
}


@dataclass
class Seeded:
    bucket: str
    period: Period
    items: int
    public_pem: bytes
    manual_in_quarter: int = 0  # manual statements whose period overlaps the quarter


def _scope(collector: str, region: str = "global") -> dict[str, str]:
    if collector.startswith(("auditdb.", "quality.")):
        return {"database": "audit"}
    return {"account": "111111111111", "region": region}


def _run_id(dag_id: str, day: date) -> str:
    return f"scheduled__{day.isoformat()}T00:00:00+00:00"


@lru_cache(maxsize=1)
def _controls_by_collector() -> dict[str, tuple[str, ...]]:
    from attestly.policy import KNOWN_COLLECTORS, load_policy

    policy = load_policy()
    return {c: tuple(policy.controls_for_collector(c)) for c in KNOWN_COLLECTORS}


def _item(collector: str, day: date, result: str, findings: tuple[Finding, ...], **kw: Any) -> EvidenceItem:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    dag = "audit_log_quality" if collector.startswith("quality.") else "evidence_collection"
    period_start = kw.pop("period_start", start)
    period_end = kw.pop("period_end", start + timedelta(days=1))
    return EvidenceItem(
        collector=collector,
        controls=_controls_by_collector()[collector],
        period_start=period_start,
        period_end=period_end,
        # Observed the afternoon after the interval it is filed under, as a daily run does; an item
        # about an older period (an archive run's manifest) says when its run observed it.
        observed_at=kw.pop("observed_at", period_end + timedelta(hours=14, minutes=58)),
        method=Method(collector, version="0.1.0", parameters={"seeded": True}),
        population=Population(f"{collector} seeded resources", "the seeded estate", len(findings)),
        scope=kw.pop("scope", _scope(collector)),
        retroactive=collector.split(".", maxsplit=1)[0]
        not in ("iam", "s3", "kms", "ec2", "rds", "config", "cloudtrail"),
        result=result,  # type: ignore[arg-type]
        findings=findings,
        data=kw.pop("data", {"n": 1}),
        airflow=kw.pop(
            "airflow",
            AirflowContext(
                dag_id=dag, run_id=_run_id(dag, day), task_id=f"collect.{collector}", try_number=1
            ),
        ),
    )


def quarter_items() -> tuple[list[EvidenceItem], list[dict[str, Any]]]:
    """The evidence items and run records of the seeded quarter."""
    from attestly.policy import KNOWN_COLLECTORS

    items: list[EvidenceItem] = []
    runs: list[dict[str, Any]] = []
    daily = sorted(c for c in KNOWN_COLLECTORS if c not in EVENT_COLLECTORS)
    for day in QUARTER.days:
        for c in daily:
            if c == "s3.tls_only" and day in PLANTED["tls_missing_days"]:
                continue
            if c == "kms.key_rotation" and day in PLANTED["kms_not_applicable_days"]:
                items.append(_item(c, day, "not_applicable", (), data={"reason": "backfill"}))
                continue
            if c == "kms.key_rotation":
                # A second region with nothing in scope: pass + not_applicable is still a passing day.
                items.append(_item(c, day, "not_applicable", (), scope=_scope(c, "eu-west-1")))
            if c == "iam.mfa_console_users" and day in PLANTED["mfa_fail_days"]:
                items.append(
                    _item(
                        c,
                        day,
                        "fail",
                        (
                            Finding("iam:111111111111:user/alice", "fail", "console password without MFA"),
                            Finding("iam:111111111111:user/bob", "pass", "MFA device enabled"),
                        ),
                    )
                )
                continue
            if c == "auditdb.phi_access_without_actor" and day == PLANTED["phi_fail_day"]:
                items.append(
                    _item(
                        c,
                        day,
                        "fail",
                        (
                            Finding(
                                "source:ehr",
                                "fail",
                                f"2 PHI reads without an actor; note: patient {SSN} card {PAN} <script>x</script>",
                            ),
                        ),
                        data={"free_text": DATA_SECRET, "ssn": SSN},
                    )
                )
                continue
            if c == "quality.audit_log" and day == PLANTED["quality_fail_day"]:
                items.append(
                    _item(
                        c,
                        day,
                        "fail",
                        (
                            Finding("sequence_gaps", "fail", "3 gaps in per-source sequence numbers"),
                            Finding("row_count", "pass", "41000 rows"),
                        ),
                    )
                )
                continue
            items.append(_item(c, day, "pass", (Finding(f"{c}:resource", "pass", "ok"),)))
        for dag_id in ("retention_archive", "key_disposal", "evidence_collection"):
            failed = dag_id == "key_disposal" and day == PLANTED["disposal_failed_run_day"]
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            # Who started each run: the scheduler, but a person re-ran the failed disposal; the archive's
            # records are of the older format that did not record it.
            who = {"triggered_by": PLANTED["disposal_rerun_by"] if failed else "scheduler"}
            runs.append(
                {
                    **({} if dag_id == "retention_archive" else who),
                    "dag_id": dag_id,
                    "run_id": _run_id(dag_id, day),
                    "run_type": "scheduled",
                    "data_interval": {
                        "start": start.isoformat().replace("+00:00", "Z"),
                        "end": (start + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
                    },
                    "tasks": [],
                    "evidence": [],
                    "evidence_results": {},
                    "failed_tasks": ["destroy_keys"] if failed else [],
                    "outcome": "failed" if failed else "success",
                }
            )
    restore_day = PLANTED["restore_test_day"]
    items.append(
        _item(
            "archive.restore_test",
            restore_day,
            "pass",
            (
                Finding(
                    "archive/audit/2024-11.parquet.enc", "pass", "restored 41000 rows; count and hash match"
                ),
            ),
            period_start=datetime(2026, 1, 1, tzinfo=UTC),
            period_end=datetime(2026, 4, 1, tzinfo=UTC),
            scope={"archive_batch": "audit.events.standard.2024-11"},
            airflow=AirflowContext(
                dag_id="archive_restore_test",
                run_id=_run_id("archive_restore_test", restore_day),
                task_id="restore_test",
                try_number=1,
            ),
        )
    )
    archive_day = PLANTED["archive_day"]
    items.append(
        _item(
            "archive.manifest",
            archive_day,
            "pass",
            (
                Finding(
                    "archive/audit/2024-11.parquet.enc", "pass", "41000 rows archived, verified, 41000 purged"
                ),
            ),
            period_start=datetime(2024, 11, 1, tzinfo=UTC),
            period_end=datetime(2024, 12, 1, tzinfo=UTC),
            observed_at=datetime(archive_day.year, archive_day.month, archive_day.day, 14, 58, tzinfo=UTC),
            scope={"database": "audit", "data_class": "standard"},
            airflow=AirflowContext(
                dag_id="retention_archive",
                run_id=_run_id("retention_archive", archive_day),
                task_id="archive",
                try_number=1,
            ),
        )
    )
    return items, runs


MANUAL_PDF = b"%PDF-1.4\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"


def manual_statements() -> list[Any]:
    """The quarter's manual evidence (see PLANTED): the sign-off pack, the overdue control's old
    evidence, and the training records with an exception."""
    from attestly.manual import build_statement
    from attestly.policy import load_policy

    policy = load_policy()
    planted = {PLANTED["manual_overdue"], PLANTED["manual_exception"]}
    pack = sorted(c.id for c in policy.manual_controls() if c.id not in planted)
    now = datetime.now(UTC)

    def statement(controls: list[str], covers: tuple[date, date], title: str, files: list[tuple[str, bytes]],
                  exception: str | None = None) -> Any:  # fmt: skip
        return build_statement(
            policy=policy, controls=controls, files=files, period_from=covers[0], period_to=covers[1],
            title=title, attested_by="Dana Reyes, CISO", attested_at=now, recorded_by="cli:seed@test",
            exception=exception,
        )  # fmt: skip

    return [
        statement(pack, (date(2026, 1, 1), date(2026, 3, 31)), "Q1 2026 policies, reviews and sign-offs",
                  [("q1-signoffs.pdf", MANUAL_PDF), ("reviewers.csv", b"reviewer,role\ndana,ciso\n")]),
        statement([PLANTED["manual_overdue"]], PLANTED["manual_overdue_covers"], "2025 board oversight minutes",
                  [("board-2025.pdf", MANUAL_PDF + b"% board\n")]),
        statement([PLANTED["manual_exception"]], (date(2026, 1, 1), date(2026, 3, 31)), "Q1 2026 training records",
                  [("training.csv", b"employee,completed\ne-1001,2026-03-02\n")],
                  exception="3 of 41 employees had not completed security awareness training by 2026-03-31"),
    ]  # fmt: skip


def seed_quarter() -> Seeded:
    """Fresh ledger database and bucket, the quarter recorded and sealed. Sets ATTESTLY_EVIDENCE_BUCKET."""
    import os

    from attestly.connections import aws_client
    from attestly.ledger import Ledger
    from attestly.manual import record_statement
    from attestly.recording import evidence_summary
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore
    from tests.conftest import recreate_database

    recreate_database("attestly")
    bucket = f"reports-{uuid.uuid4().hex[:10]}"
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    os.environ["ATTESTLY_EVIDENCE_BUCKET"] = bucket
    store = EvidenceStore(bucket=bucket, s3=s3, retention_days=3650)
    signer = signer_from_connection()
    items, runs = quarter_items()
    # The policy in force, stored and ledgered before the first item naming it (as record_evidence does).
    bundle = current_bundle()
    with Ledger.connect() as ledger:
        record_policy(bundle, store=store, ledger=ledger, retain_until=store.retain_until_for(QUARTER.end_dt))
    items = [replace(i, policy=bundle.sha256) for i in items]
    # What record_evidence does, with the uploads in parallel (the moto server is the slow part).
    with ThreadPoolExecutor(max_workers=6) as pool:
        stored = list(pool.map(store.put_evidence, items))
    with Ledger.connect() as ledger:
        for n, (item, obj) in enumerate(zip(items, stored, strict=True)):
            ledger.record_evidence(
                item.sha256, obj, evidence_summary(item), observation=item.observation_sha256
            )
            if n % 500 == 499:
                ledger.seal(store=store, signer=signer)
        for run in runs:
            ledger.append("run", run, dedupe_key=f"run:{run['dag_id']}:{run['run_id']}")
        statements = manual_statements()
        for statement in statements:
            record_statement(statement, ledger=ledger, store=store, signer=signer)
        ledger.seal(store=store, signer=signer)
    in_quarter = sum(1 for st in statements if st.item.period_end > QUARTER.start_dt)
    return Seeded(
        bucket=bucket,
        period=QUARTER,
        items=len(items),
        public_pem=signer.public_key_pem(),
        manual_in_quarter=in_quarter,
    )
