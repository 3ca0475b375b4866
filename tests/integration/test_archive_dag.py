"""`airflow dags test retention_archive` on the real stack: a seeded backlog is archived, verified and
purged; a second run changes nothing; no plaintext data key reaches a task log or XCom."""

from __future__ import annotations

import base64
import os
from pathlib import Path

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
