"""`airflow dags test key_disposal` on the real stack: a due archive month and an approved erasure are
destroyed, proven and certified; a second run changes nothing; no key material reaches a task log or XCom."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attestly.connections import aws_client, pg_connect
from attestly.ledger import Ledger
from attestly.policy import add_months
from tests.integration import test_archive_support as support
from tests.integration.test_archive_dag import _forms
from tests.integration.test_archive_support import admin
from tests.integration.test_disposal_support import (
    PCI_DUE,
    PCI_KEY,
    archived_backlog,
    disposal_rows,
    live_subjects,
    phi_of,
    request_and_approve,
    status_counts,
    subject_key,
)
from tests.integration.test_evidence_dag import dags_test

pytestmark = pytest.mark.integration

archive_env = support.archive_env  # the fixture


def _material(key_ids: set[str]) -> list[bytes]:
    """The plaintext and wrapped forms of the keys about to be destroyed (what must never leak)."""
    kms = aws_client("kms")
    with pg_connect("attestly_db") as conn:
        rows = conn.execute(
            "SELECT wrapped_key, encryption_context FROM attestly.data_key_material WHERE key_id = ANY(%s)",
            (sorted(key_ids),),
        ).fetchall()
    assert len(rows) == len(key_ids)
    out = []
    for wrapped, context in rows:
        out.append(bytes(kms.decrypt(CiphertextBlob=bytes(wrapped), EncryptionContext=context)["Plaintext"]))
        out.append(bytes(wrapped))
    return out


def test_dags_test_destroys_proves_and_certifies_and_a_second_run_changes_nothing(archive_env: str) -> None:
    archived_backlog(hipaa=False, per_day=200)
    (x,) = live_subjects(1)
    key_x = subject_key(x)
    rid = request_and_approve(x)
    secrets = _material({PCI_KEY, key_x})

    # A run dated in the future (anyone who may trigger the DAG can create one) is refused: the run
    # fails without retrying, nothing is destroyed, and the refusal is in the ledger with the run record.
    future = add_months(PCI_DUE, 8)
    early = dags_test("key_disposal", future)
    assert early.returncode != 0
    assert "after the trusted current time" in early.stdout + early.stderr
    assert disposal_rows()["destroyed"] == {}
    with Ledger.connect() as ledger:
        (refusal,) = [e.body for e in ledger.entries(kind="refusal")]
        (failed_run,) = [e.body for e in ledger.entries(kind="run")]
    assert refusal["workflow"] == "key_disposal" and refusal["as_of"] == future.isoformat()
    assert refusal["run_id"].startswith("manual__") and failed_run["outcome"] != "success"

    first = dags_test("key_disposal", PCI_DUE)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    state = disposal_rows()
    assert set(state["destroyed"]) == {PCI_KEY, key_x}
    assert all(run.startswith("manual__") for _at, run, _has in state["destroyed"].values())
    assert len(state["certificates"]) == 1 and state["completions"] == {rid: state["certificates"][0][0]}
    assert set(status_counts(phi_of(x))["live"]) == {"erased"}
    with Ledger.connect() as ledger:
        runs = [e.body for e in ledger.entries(kind="run") if e.body["outcome"] == "success"]
        certs = [e.body for e in ledger.entries(kind="disposal") if e.body.get("event") == "certificate"]
        head = ledger.head()
    assert len(runs) == 1 and runs[0]["dag_id"] == "key_disposal" and runs[0]["outcome"] == "success"
    assert len(certs) == 1 and certs[0]["evidence"]["sha256"] in runs[0]["evidence"]
    body = state["certificates"][0][2]
    assert body["dag_id"] == "key_disposal" and body["issued_by_run"] == state["certificates"][0][1]

    second = dags_test("key_disposal", PCI_DUE)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert disposal_rows() == state
    with Ledger.connect() as ledger:
        new = [e for e in ledger.entries(after_seq=head[0]) if e.kind != "run"]
    assert new == [], [e.kind for e in new]

    # No key material — plaintext or wrapped, in any encoding — in a task log or an XCom value.
    logs = first.stdout + first.stderr + second.stdout + second.stderr
    log_dir = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    if log_dir.exists():
        for path in log_dir.rglob("*"):
            if path.is_file():
                logs += path.read_text(errors="replace")
    with admin("airflow") as conn:
        xcoms = [
            r[0]
            for r in conn.execute("SELECT value::text FROM xcom WHERE dag_id = 'key_disposal'").fetchall()
        ]
    assert xcoms, "the DAG pushed no XCom at all?"
    assert "key_disposal" in logs
    for material in secrets:
        for form in _forms(material):
            assert form not in logs
            assert all(form not in v for v in xcoms)
    # Nor the subject id (the XCom names request and key ids only).
    assert all(x not in v for v in xcoms)
