"""A seeded quarter for the report tests (no tests here): synthetic evidence for every collector and day
of 2026-Q1, stored and ledgered as ``record_evidence`` does (uploads in parallel), with planted failures, missing days,
not-applicable days and workflow runs, then sealed. ``PLANTED`` says what the reports must find."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from attestly.evidence import AirflowContext, EvidenceItem, Finding
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
    "archive_day": date(2026, 1, 20),
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
}


@dataclass
class Seeded:
    bucket: str
    period: Period
    items: int
    public_pem: bytes


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
    return EvidenceItem(
        collector=collector,
        controls=_controls_by_collector()[collector],
        period_start=kw.pop("period_start", start),
        period_end=kw.pop("period_end", start + timedelta(days=1)),
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
            runs.append(
                {
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


def seed_quarter() -> Seeded:
    """Fresh ledger database and bucket, the quarter recorded and sealed. Sets ATTESTLY_EVIDENCE_BUCKET."""
    import os

    from attestly.connections import aws_client
    from attestly.ledger import Ledger
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
        ledger.seal(store=store, signer=signer)
    return Seeded(bucket=bucket, period=QUARTER, items=len(items), public_pem=signer.public_key_pem())
