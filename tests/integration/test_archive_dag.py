"""`airflow dags test retention_archive` on the real stack: a seeded backlog is archived, verified and
purged; a second run changes nothing; no plaintext data key reaches a task log or XCom."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from attestly.connections import aws_client, pg_connect
from attestly.ledger import Ledger
from tests.integration import test_archive_support as support
from tests.integration.test_archive_support import (
    M_HIPAA,
    M_SEC,
    TODAY,
    admin,
    assert_nothing_lost,
    audit_rows,
    journal_states,
    object_versions,
    seed_backlog,
)
from tests.integration.test_evidence_dag import dags_test

pytestmark = pytest.mark.integration

archive_env = support.archive_env  # the fixture


def _plaintext_keys() -> list[bytes]:
    """Every data key in the registry, unwrapped through KMS (what must never leak)."""
    kms = aws_client("kms")
    with pg_connect("attestly_db") as conn:
        rows = conn.execute(
            "SELECT wrapped_key, encryption_context FROM attestly.data_key_material"
        ).fetchall()
    return [bytes(kms.decrypt(CiphertextBlob=bytes(w), EncryptionContext=c)["Plaintext"]) for w, c in rows]


def _forms(key: bytes) -> list[str]:
    return [
        key.hex(),
        key.hex().upper(),
        base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode(),
        repr(key),
    ]


def test_dags_test_archives_the_backlog_and_a_second_run_changes_nothing(archive_env: str) -> None:
    seed_backlog()
    original = audit_rows()
    first = dags_test("retention_archive", TODAY)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    archived = assert_nothing_lost(original, archive_env)
    assert set(archived) == {
        f"audit.events.hipaa-audit.{M_HIPAA:%Y-%m}",
        f"audit.events.pci-audit.{M_SEC:%Y-%m}",
        f"audit.events.security-audit.{M_SEC:%Y-%m}",
    }
    with Ledger.connect() as ledger:
        head = ledger.head()
        runs = [e.body for e in ledger.entries(kind="run")]
        manifests = list(ledger.entries(kind="archive"))
    assert len(runs) == 1 and runs[0]["dag_id"] == "retention_archive" and runs[0]["outcome"] == "success"
    assert len(runs[0]["evidence"]) == len(manifests) == 3
    state = (audit_rows(), object_versions(archive_env), journal_states(), head)

    second = dags_test("retention_archive", TODAY)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    with Ledger.connect() as ledger:
        assert (audit_rows(), object_versions(archive_env), journal_states(), ledger.head()) == state

    # The registry holds wrapped keys only, and no plaintext key is in a task log or an XCom value.
    keys = _plaintext_keys()
    assert len(keys) >= 3 + 1  # three archive scopes and the subjects' keys
    logs = first.stdout + first.stderr + second.stdout + second.stderr
    log_dir = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    if log_dir.exists():
        for path in log_dir.rglob("*"):
            if path.is_file():
                logs += path.read_text(errors="replace")
    with admin("airflow") as conn:
        xcoms = [
            r[0]
            for r in conn.execute(
                "SELECT value::text FROM xcom WHERE dag_id = 'retention_archive'"
            ).fetchall()
        ]
    assert xcoms, "the DAG pushed no XCom at all?"
    with admin("attestly") as conn:
        registry = " ".join(
            r[0] for r in conn.execute("SELECT k::text FROM attestly.data_keys k").fetchall()
        ) + " ".join(
            r[0]
            for r in conn.execute(
                "SELECT encryption_context::text FROM attestly.data_key_material"
            ).fetchall()
        )
        wrapped = [
            bytes(r[0]) for r in conn.execute("SELECT wrapped_key FROM attestly.data_key_material").fetchall()
        ]
    for key in keys:
        assert all(key not in w for w in wrapped)
        for form in _forms(key):
            assert form not in logs
            assert all(form not in x for x in xcoms)
            assert form not in registry


def test_quarterly_restore_test_records_evidence_and_leaves_nothing_behind(archive_env: str) -> None:
    """`archive_restore_test`: not applicable before anything is archived; after, one verified batch is
    restored, reconciled with its manifest and dropped, and `archive.restore_test` evidence passes for
    the backup/restore controls; a re-run records nothing new; a future-dated run is refused."""
    from datetime import date

    quarter_end = date(TODAY.year, ((TODAY.month - 1) // 3) * 3 + 1, 1)  # the last quarter that ended
    nothing = dags_test("archive_restore_test", quarter_end)
    assert nothing.returncode == 0, nothing.stdout[-3000:] + nothing.stderr[-3000:]

    seed_backlog(hipaa=False, recent=False)
    archived = dags_test("retention_archive", TODAY)
    assert archived.returncode == 0, archived.stdout[-3000:] + archived.stderr[-3000:]
    tested = dags_test("archive_restore_test", quarter_end)
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]

    def restore_items() -> list[dict[str, Any]]:
        with Ledger.connect() as ledger:
            return [
                e.body
                for e in ledger.entries(kind="evidence")
                if e.body["collector"] == "archive.restore_test"
            ]

    first, second = restore_items()
    assert first["result"] == "not_applicable"
    assert second["result"] == "pass", second
    assert set(second["controls"]) >= {"soc2:A1.3", "hipaa:164.308(a)(7)(ii)(D)", "pci:12.10.2"}
    item = aws_client("s3").get_object(Bucket=archive_env, Key=second["key"], VersionId=second["version_id"])
    data = json.loads(item["Body"].read())["data"]
    with Ledger.connect() as ledger:
        manifests = {
            e.body["manifest"]["batch"]["batch_id"]: e.body["manifest"]
            for e in ledger.entries(kind="archive")
        }
    batch = manifests[data["batch"]["batch_id"]]
    assert data["restored"]["rows"] == batch["rows"] > 0
    assert data["candidates"] == len(manifests) == 2
    with admin("audit") as conn:
        left = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'archive_restore'"
        ).fetchone()
    assert left == (0,)

    with Ledger.connect() as ledger:
        head = ledger.head()
    again = dags_test("archive_restore_test", quarter_end)
    assert again.returncode == 0
    assert len(restore_items()) == 2
    with Ledger.connect() as ledger:
        assert [e for e in ledger.entries(kind="evidence") if e.seq > head[0]] == []

    next_quarter = (
        date(TODAY.year + 1, 1, 1) if TODAY.month > 9 else date(TODAY.year, quarter_end.month + 3, 1)
    )
    future = dags_test("archive_restore_test", next_quarter)
    assert future.returncode != 0
    with Ledger.connect() as ledger:
        refusals = [e.body for e in ledger.entries(kind="refusal")]
    assert any(r.get("workflow") == "archive_restore_test" for r in refusals), refusals
    assert len(restore_items()) == 2
