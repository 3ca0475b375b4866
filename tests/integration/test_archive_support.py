"""Shared helpers of the archive tests (no tests here): a seeded backlog, a fresh bucket and databases,
running the archive in a subprocess, and reading back what the archive objects hold.

Months are chosen relative to today so the data stay due and inside their retention: Object Lock only
refuses deletes while retain-until is in the future.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from attestly.connections import aws_client
from attestly.policy import add_months
from tests.conftest import recreate_database

TODAY = datetime.now(UTC).date()
M0 = date(TODAY.year, TODAY.month, 1)
M_SEC = add_months(M0, -5)  # pci-audit and security-audit due; hipaa rows of that month stay online
M_HIPAA = add_months(M0, -14)  # hipaa-audit due (only ehr-api is seeded there)
#: A month whose pci-audit retention (12 months after its end) has really ended: M_DUE + 13 months = M0.
#: Its rows were archived by a run back then (ARCHIVED_AT), when its online period (3 months) had ended.
M_DUE = add_months(M0, -13)
ARCHIVED_AT = add_months(M_DUE, 5)
RECENT = TODAY - timedelta(days=3)  # nothing due


def admin(dbname: str) -> Any:
    import psycopg

    from attestly_dev.stack import core

    return psycopg.connect(core.server().admin_conninfo(dbname), autocommit=True)


def seed_backlog(
    *, per_day: int = 600, sec_days: int = 2, hipaa: bool = True, recent: bool = True, due: bool = False
) -> None:
    """Seed (oldest first, seeding appends): ehr-api in M_HIPAA, every source in M_DUE (``due``), in
    M_SEC and recently."""
    from attestly_dev import audit_seed as seed

    if hipaa:
        seed.seed_audit(
            start=M_HIPAA + timedelta(days=2), days=1, events_per_day=per_day // 2, sources=["ehr-api"]
        )
    if due:
        seed.seed_audit(start=M_DUE + timedelta(days=3), days=sec_days, events_per_day=per_day)
    seed.seed_audit(start=M_SEC + timedelta(days=3), days=sec_days, events_per_day=per_day)
    if recent:
        seed.seed_audit(start=RECENT, days=1, events_per_day=200)


@pytest.fixture
def archive_env(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Fresh audit and attestly databases and a fresh Object Lock bucket (set as the evidence bucket)."""
    recreate_database("audit")
    recreate_database("attestly")
    bucket = f"arch-{uuid.uuid4().hex[:12]}"
    aws_client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    monkeypatch.setenv("ATTESTLY_EVIDENCE_BUCKET", bucket)
    return bucket


def run_archive(
    as_of: date = TODAY, env: dict[str, str] | None = None, workers: int = 1
) -> subprocess.CompletedProcess[str]:
    """``python -m attestly.archive.runner --as-of`` in a fresh process (a kill there kills only it)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "attestly.archive.runner",
            "--as-of",
            as_of.isoformat(),
            "--workers",
            str(workers),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=600,
    )


def audit_rows() -> dict[str, tuple[str, str]]:
    """Every row in the audit table: id -> (standard, row_hash hex)."""
    with admin("audit") as conn:
        rows = conn.execute("SELECT id::text, standard, encode(row_hash, 'hex') FROM audit.events").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def object_versions(bucket: str, prefix: str = "archive/") -> list[tuple[str, str, bool]]:
    """(key, version id, is delete marker) of every version under ``prefix``."""
    s3 = aws_client("s3")
    out: list[tuple[str, str, bool]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        out += [(v["Key"], v["VersionId"], False) for v in page.get("Versions", [])]
        out += [(v["Key"], v["VersionId"], True) for v in page.get("DeleteMarkers", [])]
    return out


def archived_rows() -> dict[str, dict[str, str]]:
    """batch id -> {id: row_hash hex} read back from each batch's (first) object version."""
    from attestly.archive.context import ArchiveContext
    from attestly.archive.upload import read_lock
    from attestly.archive.verify import open_archive

    out: dict[str, dict[str, str]] = {}
    with ArchiveContext.open(run_id="test-readback") as ctx:
        layout = ctx.layout
        for batch in ctx.journal.batches():
            uploaded = ctx.journal.last_in_state(batch.batch_id, "uploaded")
            if uploaded is None:
                continue
            version = uploaded.details["version_id"]
            lock = read_lock(ctx.s3, bucket=batch.bucket, key=batch.object_key, version_id=version)
            with ctx.registry.open(batch.key_id) as key:
                pf, _ = open_archive(ctx, batch, version_id=version, data_key=key, size=lock.size)
                table = pf.read(columns=[layout.id_column, layout.row_hash_column])
            out[batch.batch_id] = dict(
                zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True)
            )
    return out


def journal_states() -> dict[str, str]:
    from attestly.archive.journal import Journal

    with Journal.connect() as j:
        return {k: v.state for k, v in j.states().items()}


def assert_nothing_lost(original: dict[str, tuple[str, str]], bucket: str) -> dict[str, dict[str, str]]:
    """Every original row is in the database or in exactly one verified, purged batch — never both,
    never neither; unchanged; and each batch has exactly one object version and no upload left over."""
    now = audit_rows()
    archived = archived_rows()
    states = journal_states()
    where: Counter[str] = Counter()
    for batch_id, rows in archived.items():
        assert states[batch_id] == "purged", (batch_id, states[batch_id])
        for rid, rhash in rows.items():
            where[rid] += 1
            assert original[rid][1] == rhash, f"{rid}: archived row hash differs"
    for rid, (_standard, rhash) in original.items():
        in_db = rid in now
        copies = where[rid]
        assert copies <= 1, f"{rid} is in {copies} archive objects"
        assert in_db != (copies == 1), f"{rid}: in database={in_db}, archived copies={copies}"
        if in_db:
            assert now[rid][1] == rhash
    assert set(now) <= set(original), "rows appeared"
    versions = object_versions(bucket)
    assert not [v for v in versions if v[2]], "delete markers under archive/"
    keys = Counter(k for k, _, _ in versions)
    assert all(n == 1 for n in keys.values()), f"more than one version: {keys}"
    assert len(keys) == len(archived)
    uploads = aws_client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == [], f"incomplete uploads left: {uploads}"
    return archived
