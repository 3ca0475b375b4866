"""The archive on the real local stack: objects locked and refused to deletion and overwrite, buckets
without Object Lock refused, verification failures stop the purge, legal holds keep rows, restore
reproduces rows exactly, and the `hold` / `archive` commands."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from attestly.archive import runner
from attestly.archive.cli import register
from attestly.archive.context import ArchiveContext
from attestly.archive.errors import ObjectConflict
from attestly.connections import aws_client, pg_connect
from attestly.ledger import Ledger
from attestly.store import ContentConflict, EvidenceStore, ObjectLockMissing
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
    run_archive,
    seed_backlog,
)

pytestmark = pytest.mark.integration

archive_env = support.archive_env  # the fixture

PCI = f"audit.events.pci-audit.{M_SEC:%Y-%m}"
SEC = f"audit.events.security-audit.{M_SEC:%Y-%m}"
HIPAA = f"audit.events.hipaa-audit.{M_HIPAA:%Y-%m}"


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="attestly")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def run_all() -> dict[str, Any]:
    with ArchiveContext.open(run_id="test") as ctx:
        return runner.run_all(ctx, as_of=TODAY)


def batch_object(batch_id: str) -> tuple[str, str, str]:
    with ArchiveContext.open() as ctx:
        batch = ctx.journal.batch(batch_id)
        version = ctx.journal.last_in_state(batch_id, "uploaded").details["version_id"]  # type: ignore[union-attr]
    return batch.bucket, batch.object_key, version


def test_archive_purges_exactly_the_due_rows_and_records_manifests(archive_env: str) -> None:
    seed_backlog()
    original = audit_rows()
    summary = run_all()
    assert set(summary["states"]) == {PCI, SEC, HIPAA}
    assert assert_nothing_lost(original, archive_env).keys() == {PCI, SEC, HIPAA}
    remaining = audit_rows()
    # What stays online: hipaa rows of M_SEC (12 months online) and everything recent.
    assert {original[i][0] for i in remaining} == {"hipaa", "pci", "soc2", "general"}
    with admin("audit") as conn:
        methods = dict(
            conn.execute("SELECT split_part(purge_id, '#', 1), method FROM audit.purge_log").fetchall()
        )
        months = {
            r[0] for r in conn.execute("SELECT date_trunc('month', occurred_at)::date FROM audit.events")
        }
    assert methods == {HIPAA: "partition", PCI: "rows", SEC: "rows"}
    assert M_HIPAA not in months

    # Object Lock COMPLIANCE until the end of the month plus the retention (from policy), read from head.
    s3 = aws_client("s3")
    bucket, key, version = batch_object(PCI)
    head = s3.head_object(Bucket=bucket, Key=key, VersionId=version)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    from attestly.policy import load_policy

    pci = load_policy().retention.class_named("pci-audit")
    assert head["ObjectLockRetainUntilDate"] == datetime.combine(
        pci.dispose_after(M_SEC), datetime.min.time(), UTC
    )
    assert key == f"archive/audit.events/pci-audit/{M_SEC:%Y-%m}/{PCI}.parquet.aesgcm"

    # The manifest is evidence (archive.manifest, its controls) and an `archive` ledger entry.
    with Ledger.connect() as ledger:
        entries = list(ledger.entries(kind="archive"))
        evidence = [e.body for e in ledger.entries(kind="evidence")]
    assert {e.body["manifest"]["batch"]["batch_id"] for e in entries} == {PCI, SEC, HIPAA}
    manifest = next(e.body["manifest"] for e in entries if e.body["manifest"]["batch"]["batch_id"] == PCI)
    assert (
        manifest["object"]["version_id"] == version
        and manifest["key"]["key_id"] == f"archive/pci-audit/{M_SEC:%Y-%m}"
    )
    assert manifest["rows"] == manifest["purged_rows"] == manifest["database_at_verification"]["rows"]
    # The audit database itself checked the rows (once, when the batch was authorised during verification).
    assert manifest["block_digest"]["value"] == manifest["database_at_verification"]["block_digest"]
    assert manifest["database_at_verification"]["checked_by"] == "audit.authorize_purge"
    assert {e["collector"] for e in evidence} == {"archive.manifest"}
    assert all(e["result"] == "pass" and e["controls"] for e in evidence)

    # Re-running adds nothing anywhere.
    versions, states = object_versions(archive_env), journal_states()
    with Ledger.connect() as ledger:
        head_before = ledger.head()
    again = run_all()
    assert again["purged"] == [] and object_versions(archive_env) == versions and journal_states() == states
    with Ledger.connect() as ledger:
        assert ledger.head() == head_before


def test_archived_versions_cannot_be_deleted_or_overwritten(archive_env: str) -> None:
    seed_backlog(hipaa=False, recent=False)
    run_all()
    s3 = aws_client("s3")
    bucket, key, version = batch_object(PCI)
    with pytest.raises(ClientError) as denied:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as exists:
        s3.put_object(Bucket=bucket, Key=key, Body=b"replacement", IfNoneMatch="*")
    assert exists.value.response["Error"]["Code"] == "PreconditionFailed"
    store = EvidenceStore(bucket=bucket, s3=s3, retention_days=1)
    with pytest.raises(ContentConflict):
        store.put_bytes(key, b"replacement", retain_until=datetime.now(UTC) + timedelta(days=1))
    # The archive's own create-only upload refuses to complete over an existing object.
    from attestly.archive.upload import MultipartSink

    sink = MultipartSink(
        s3=s3, bucket=bucket, key=key, retain_until=datetime.now(UTC) + timedelta(days=1), metadata={}
    )
    sink.write(b"x" * 10)
    with pytest.raises(ObjectConflict):
        sink.complete()
    assert [v[1] for v in object_versions(bucket) if v[0] == key] == [version]
    assert aws_client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_bucket_without_object_lock_is_refused_before_any_work(
    archive_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_backlog(hipaa=False, recent=False)
    plain = f"nolock-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=plain)
    monkeypatch.setenv("ATTESTLY_EVIDENCE_BUCKET", plain)
    before = audit_rows()
    with ArchiveContext.open() as ctx:
        planned = runner.plan(ctx, as_of=TODAY)
        for batch in planned.batches:
            with pytest.raises(ObjectLockMissing, match=plain):
                runner.archive_batch(ctx, batch)
    assert audit_rows() == before
    assert aws_client("s3").list_object_versions(Bucket=plain).get("Versions", []) == []
    assert set(journal_states().values()) == {"planned"}


def test_a_verification_mismatch_fails_loudly_and_purges_nothing(archive_env: str) -> None:
    seed_backlog(hipaa=False, recent=False)
    killed = run_archive(env={"ATTESTLY_FAILPOINTS": "archive.after_journal_uploaded"})
    assert killed.returncode == 137
    # A late row lands in the month after the export: the database no longer matches the archive.
    late = uuid.uuid4()
    with pg_connect("audit_writer") as conn:
        conn.execute(
            "INSERT INTO audit.events (id, occurred_at, source, seq, standard, row_hash) VALUES (%s, %s, %s, %s, %s, %s)",
            (
                late,
                datetime.combine(M_SEC, datetime.min.time(), UTC) + timedelta(days=10),
                "billing",
                10**9,
                "pci",
                b"\x00" * 32,
            ),
        )
        conn.commit()
    before = audit_rows()
    failed = run_archive()
    assert failed.returncode == 1
    assert "failed verification, NOT purged" in failed.stderr
    assert "rows: archive" in failed.stderr and "database" in failed.stderr
    states = journal_states()
    assert states[PCI] == "uploaded"  # killed there, and now refused: not verified, not purged
    assert states[SEC] == "purged"  # the other batch is not held back
    rows_after = audit_rows()
    assert {i for i, (std, _) in before.items() if std == "pci"} <= set(rows_after)
    assert str(late) in rows_after
    with Ledger.connect() as ledger:
        fails = [e.body for e in ledger.entries(kind="evidence") if e.body["result"] == "fail"]
    # Recorded once, by the orchestration function the DAG's archive task runs too.
    assert len(fails) == 1 and fails[0]["collector"] == "archive.manifest"


def test_a_batch_inside_the_database_floor_is_verified_read_only_and_purged_once_out_of_it(
    archive_env: str,
) -> None:
    """The audit database's own online floor is longer than the policy's: verification cannot authorise
    the purge yet, so it compares with a read-only recompute; the purge is refused and the rows stay. Once
    the floor is back, the purge authorises (the database recomputes then) and the month goes."""
    seed_backlog(hipaa=False, recent=False)
    original = audit_rows()
    with admin("audit") as conn:
        floor = conn.execute("SELECT online_months FROM audit.retention_floor").fetchone()[0]
        conn.execute("SET ROLE audit_owner")
        conn.execute("UPDATE audit.retention_floor SET online_months = 120")
    try:
        refused = run_archive()
        assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-3000:]
        assert "inside the online floor" in refused.stdout + refused.stderr
        assert set(journal_states().values()) == {"verified"} and audit_rows() == original
        with ArchiveContext.open() as ctx:
            verified = ctx.journal.last_in_state(PCI, "verified")
        assert verified is not None
        database = verified.details["database"]
        assert database["checked_by"] == "read-only recompute"
        assert database["block_digest"] == verified.details["archive"]["block_digest"]
        with pg_connect("audit_db") as conn:
            assert conn.execute("SELECT count(*) FROM audit.purge_authorizations").fetchone()[0] == 0
    finally:
        with admin("audit") as conn:
            conn.execute("SET ROLE audit_owner")
            conn.execute("UPDATE audit.retention_floor SET online_months = %s", (floor,))
    again = run_archive()
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert set(journal_states().values()) == {"purged"}
    assert_nothing_lost(original, archive_env)
    with pg_connect("audit_db") as conn:
        checked = conn.execute(
            "SELECT count(*) FROM audit.purge_authorizations WHERE db_checked_at IS NOT NULL"
        ).fetchone()[0]
    assert checked == 2  # authorised by the purge this time, the database recomputing then


def test_legal_hold_keeps_rows_online_and_locks_the_object_until_released(
    archive_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_backlog(recent=False)
    original = audit_rows()
    with admin("audit") as conn:
        subject = conn.execute(
            "SELECT subject_id FROM audit.events WHERE occurred_at < %s AND subject_id IS NOT NULL LIMIT 1",
            (datetime.combine(M_SEC, datetime.min.time(), UTC),),
        ).fetchone()[0]
        subject_rows = {
            r[0]
            for r in conn.execute(
                "SELECT id::text FROM audit.events WHERE subject_id = %s AND occurred_at < %s",
                (subject, datetime.combine(M_SEC, datetime.min.time(), UTC)),
            ).fetchall()
        }
    assert cli("hold", "add", "--reason", "litigation 2026-17", "--source", "billing", "--json") == 0
    billing_hold = json.loads(capsys.readouterr().out)["hold_id"]
    assert cli("hold", "add", "--reason", "subject access dispute", "--subject", subject, "--json") == 0
    subject_hold = json.loads(capsys.readouterr().out)["hold_id"]

    run_all()
    remaining = audit_rows()
    pci_rows = {i for i, (std, _) in original.items() if std == "pci"}
    assert pci_rows <= set(remaining)  # held: still online
    assert subject_rows <= set(remaining)  # held: still online (hipaa month, no partition drop)
    sec_rows = {i for i, (std, _) in original.items() if std in ("soc2", "general")}
    assert not sec_rows & set(remaining)  # not held: purged
    s3 = aws_client("s3")
    for batch_id, held in ((PCI, True), (SEC, False), (HIPAA, True)):
        bucket, key, version = batch_object(batch_id)
        status = s3.head_object(Bucket=bucket, Key=key, VersionId=version).get("ObjectLockLegalHoldStatus")
        assert (status == "ON") is held, batch_id
    with ArchiveContext.open() as ctx, pytest.raises(Exception, match="blocked by legal hold"):
        ctx.registry.destroy(f"archive/pci-audit/{M_SEC:%Y-%m}", run_id="test")
    assert cli("archive", "status", "--json") == 0
    status = {b["batch_id"]: b for b in json.loads(capsys.readouterr().out)["batches"]}
    assert status[PCI]["state"] == "purged" and status[PCI]["purged_rows"] == 0
    assert status[PCI]["held_online_rows"] == len(pci_rows)

    # Release: the next run purges the held rows, checked against the verified figures; legal hold lifted.
    # Whoever placed a hold cannot release it (the CLI records the OS user, cli:<user>@<host>).
    assert cli("hold", "release", billing_hold, "--reason", "case closed") == 2
    assert "a different person must" in capsys.readouterr().err
    monkeypatch.setattr("attestly.identity.os_user", lambda: "carol")  # another OS account
    assert cli("hold", "release", billing_hold, "--reason", "case closed") == 0
    assert cli("hold", "release", billing_hold) == 2  # already released
    capsys.readouterr()
    run_all()
    remaining = audit_rows()
    assert not pci_rows & set(remaining)
    assert subject_rows <= set(remaining)
    bucket, key, version = batch_object(PCI)
    assert s3.head_object(Bucket=bucket, Key=key, VersionId=version).get("ObjectLockLegalHoldStatus") != "ON"
    assert cli("hold", "release", subject_hold) == 0
    run_all()
    assert_nothing_lost(original, archive_env)
    with Ledger.connect() as ledger:
        kinds = [e.kind for e in ledger.entries()]
        holds = [e.body for e in ledger.entries(kind="hold")]
        releases = [e.body for e in ledger.entries(kind="hold_release")]
    assert kinds.count("hold") == 2 and kinds.count("hold_release") == 2
    assert all(h["created_by"].startswith("cli:") and "@" in h["created_by"] for h in holds)
    assert {r["released_by"].partition("@")[0] for r in releases} == {"cli:carol"}
    assert all(subject not in json.dumps(h) for h in holds)  # the ledger keeps a hash of the subject id
    capsys.readouterr()
    assert cli("hold", "list", "--all", "--json") == 0
    listed = json.loads(capsys.readouterr().out)["holds"]
    assert {h["hold_id"] for h in listed} == {billing_hold, subject_hold}
    assert all(not h["active"] for h in listed)


def test_restore_reproduces_the_archived_rows_exactly(
    archive_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_backlog(recent=False)
    with admin("audit") as conn:
        before = conn.execute("SELECT * FROM audit.events WHERE standard = 'pci' ORDER BY id").fetchall()
        columns = [d.name for d in conn.execute("SELECT * FROM audit.events LIMIT 0").description]
    run_all()
    assert cli("archive", "restore", PCI, "--into", "pci_check", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reconciled"] and result["rows"] == len(before)
    with admin("audit") as conn:
        restored = conn.execute("SELECT * FROM archive_restore.pci_check ORDER BY id").fetchall()
        restored_cols = [
            d.name for d in conn.execute("SELECT * FROM archive_restore.pci_check LIMIT 0").description
        ]
        types = dict(
            conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'archive_restore.pci_check'::regclass AND attnum > 0"
            ).fetchall()
        )
    assert restored_cols == columns
    assert restored == before
    assert (
        types["occurred_at"] == "timestamp with time zone"
        and types["metadata"] == "jsonb"
        and types["ip"] == "inet"
    )

    # HIPAA rows carry encrypted PHI: restored byte for byte (still decryptable with the subject's key).
    assert cli("archive", "restore", HIPAA, "--into", "archive_restore.hipaa_check") == 0
    with admin("audit") as conn:
        n, with_phi = conn.execute(
            "SELECT count(*), count(phi_ciphertext) FROM archive_restore.hipaa_check"
        ).fetchone()
    assert n > 0 and with_phi > 0

    assert cli("archive", "restore", PCI, "--into", "pci_check") == 2  # exists
    assert cli("archive", "restore", PCI, "--into", "bad name;") == 2
    assert cli("archive", "restore", "audit.events.nope.2020-01", "--into", "x1") == 2
    err = capsys.readouterr().err
    assert "pci_check already exists" in err and "'bad name;'" in err and "audit.events.nope.2020-01" in err


def test_hold_commands_reject_bad_input_naming_the_value(
    archive_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("hold", "add", "--reason", "x") == 2
    assert cli("hold", "add", "--reason", "x", "--source", "nope-service") == 2
    assert cli("hold", "add", "--reason", "x", "--from", "2026-05-02", "--to", "2026-05-01") == 2
    assert cli("hold", "add", "--reason", "  ", "--source", "billing") == 2
    assert cli("hold", "release", "hold-000000000000") == 2
    err = capsys.readouterr().err
    assert "'nope-service'" in err and "2026-05-02" in err and "hold-000000000000" in err
    # Text that would become permanent (ledger, both databases) is checked first.
    for argv, expected in (
        (["--reason", "case\u202eL-7", "--source", "billing"], "U+202E"),
        (["--reason", "a\nb", "--source", "billing"], "U+000A"),
        (["--reason", "x" * 5000, "--source", "billing"], "at most 500"),
        (["--reason", "x", "--subject", "p 1; DROP TABLE"], "is not a subject id"),
    ):
        assert cli("hold", "add", *argv) == 2
        assert expected in capsys.readouterr().err, argv[:2]
    assert cli("hold", "release", "hold-0000000000001") == 2
    assert "is not a hold id" in capsys.readouterr().err
    assert cli("hold", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"holds": []}
    assert cli("archive", "status", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"batches": [], "counts": {}}
