"""The key registry and PHI vault on the real stack: wrapped keys only, dedicated tagged KMS keys per
archive scope, destruction that removes the material and keeps the record, holds that block it, KMS key
state checked by us (the emulator keeps decrypting with keys pending deletion), and seeded PHI."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
import pytest

from attestly.audit import chain
from attestly.connections import aws_client, pg_connect
from attestly.identity import person
from attestly.keys import (
    DataKey,
    KeyDestroyed,
    KeyRegistry,
    KeyRegistryError,
    KeyUnavailable,
    PhiDecryptError,
    PhiVault,
    encryption_context,
)
from attestly.policy import load_policy
from attestly_dev import audit_seed as seed
from tests.conftest import recreate_database
from tests.integration.test_archive_support import admin

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_keys(stack: dict[str, str]) -> None:
    recreate_database("attestly")


def _unique_class() -> str:
    # Aliases live in the session's KMS: a class name per test keeps scopes apart.
    return f"test-{uuid.uuid4().hex[:8]}"


def _archived_under(rec: Any, *, dispose_after: date) -> None:
    """An archive batch encrypted under ``rec`` whose retention ends ``dispose_after`` (as the archive
    records it when it plans the batch)."""
    with pg_connect("attestly_db") as conn:
        conn.execute(
            "INSERT INTO attestly.archive_batches (batch_id, source_table, class_name, classes, selector_column, "
            "selector_values, month, online_until, dispose_after, retain_until, key_id, bucket, object_key, "
            "planned_by) VALUES (%s, 'audit.events', %s, %s, 'standard', '{pci}', %s, %s, %s, %s, %s, 'b', %s, 't')",
            (
                f"audit.events.{rec.class_name}.{rec.month:%Y-%m}",
                rec.class_name,
                [rec.class_name],
                rec.month,
                rec.month,
                dispose_after,
                datetime.combine(dispose_after, time(), tzinfo=UTC),
                rec.key_id,
                f"archive/{rec.key_id}",
            ),
        )
        conn.commit()


def _approved_erasure(subject: str) -> None:
    with pg_connect("attestly_db") as conn:
        rid = f"erase-{uuid.uuid4().hex[:12]}"
        conn.execute(
            "INSERT INTO attestly.erasure_requests (request_id, subject_id, reason, requested_by) "
            "VALUES (%s, %s, 'GDPR Art. 17', 'alice')",
            (rid, subject),
        )
        conn.execute(
            "INSERT INTO attestly.erasure_approvals (request_id, approved_by) VALUES (%s, 'bob')", (rid,)
        )
        conn.commit()


def _plaintext_of(key_id: str) -> bytes:
    with pg_connect("attestly_db") as conn:
        wrapped, context = conn.execute(
            "SELECT wrapped_key, encryption_context FROM attestly.data_key_material WHERE key_id = %s",
            (key_id,),
        ).fetchone()
    return bytes(
        aws_client("kms").decrypt(CiphertextBlob=bytes(wrapped), EncryptionContext=context)["Plaintext"]
    )


def test_archive_key_has_a_dedicated_tagged_kms_key_and_only_the_wrapped_key_is_stored(
    fresh_keys: None,
) -> None:
    cls = _unique_class()
    with KeyRegistry.connect(created_by="test-run") as reg:
        rec = reg.ensure_archive_key(class_name=cls, month=date(2026, 3, 1))
        assert reg.ensure_archive_key(class_name=cls, month=date(2026, 3, 1)) == rec
        other = reg.ensure_archive_key(class_name=cls, month=date(2026, 4, 1))
    assert rec.key_id == f"archive/{cls}/2026-03" and rec.kind == "archive" and rec.dedicated_kms_key
    assert other.kms_key_id != rec.kms_key_id  # one KMS key per (class, month)
    kms = aws_client("kms")
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=rec.kms_key_id)["Tags"]}
    assert tags == {
        "attestly:scope": "archive",
        "attestly:class": cls,
        "attestly:month": "2026-03",
        "attestly:key_id": rec.key_id,
    }
    assert (
        kms.describe_key(KeyId=f"alias/attestly/archive/{cls}/2026-03")["KeyMetadata"]["Arn"]
        == rec.kms_key_id
    )

    plaintext = _plaintext_of(rec.key_id)
    assert len(plaintext) == 32
    with pg_connect("attestly_db") as conn:
        rows = conn.execute(
            "SELECT k::text, m.wrapped_key FROM attestly.data_keys k JOIN attestly.data_key_material m USING (key_id)"
        ).fetchall()
    for text, wrapped in rows:
        assert plaintext not in bytes(wrapped) and plaintext.hex() not in text
    # The wrapped key only opens with its own encryption context.
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(
            CiphertextBlob=bytes(rows[0][1]),
            EncryptionContext=encryption_context(key_id="archive/other/2026-03", kind="archive"),
        )


def test_the_application_role_cannot_change_or_delete_registry_rows(fresh_keys: None) -> None:
    with KeyRegistry.connect() as reg:
        rec = reg.ensure_archive_key(class_name=_unique_class(), month=date(2026, 3, 1))
    for statement in (
        "UPDATE attestly.data_keys SET destroyed_at = now(), destroyed_by_run = 'x' WHERE key_id = %s",
        "DELETE FROM attestly.data_key_material WHERE key_id = %s",
        "UPDATE attestly.data_key_material SET wrapped_key = '\\x00' WHERE key_id = %s",
        "DELETE FROM attestly.data_keys WHERE key_id = %s",
    ):
        with pg_connect("attestly_db") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement, (rec.key_id,))


def test_the_registry_refuses_early_destruction_on_its_own_clock(fresh_keys: None) -> None:
    """Whatever the caller believes the date is, the database destroys an archive key only once every
    batch under it is past its dispose-after date (by the server's clock), and a subject key only with an
    approved erasure request."""
    today = datetime.now(UTC).date()
    with KeyRegistry.connect() as reg:
        unused = reg.ensure_archive_key(class_name=_unique_class(), month=date(2025, 1, 1))
        with pytest.raises(KeyRegistryError, match="no archive batch is encrypted under this key"):
            reg.destroy(unused.key_id, run_id="run")
        early = reg.ensure_archive_key(class_name=_unique_class(), month=date(2025, 2, 1))
        _archived_under(early, dispose_after=today + timedelta(days=1))
        with pytest.raises(KeyRegistryError, match=f"refused before {today + timedelta(days=1)}"):
            reg.destroy(early.key_id, run_id="run")
        assert reg.record(early.key_id).has_material
    with PhiVault.connect() as vault:
        _, subject_key = vault.encrypt(subject_id="p-no-request", plaintext=b"x")
    with KeyRegistry.connect() as reg:
        with pytest.raises(KeyRegistryError, match="no approved erasure request"):
            reg.destroy(subject_key, run_id="run")
        assert reg.record(subject_key).has_material


def test_destroy_removes_the_material_keeps_the_record_and_is_idempotent(fresh_keys: None) -> None:
    with KeyRegistry.connect() as reg:
        rec = reg.ensure_archive_key(class_name=_unique_class(), month=date(2026, 3, 1))
        _archived_under(rec, dispose_after=datetime.now(UTC).date())
        with reg.open(rec.key_id) as key:
            assert "hidden" in repr(key) and len(key.material()) == 32
        with pytest.raises(KeyRegistryError, match="destroy it in the registry"):
            reg.schedule_kms_deletion(rec.key_id, window_days=7)
        at = reg.destroy(rec.key_id, run_id="disposal-run-1")
        assert reg.destroy(rec.key_id, run_id="disposal-run-2") == at
        after = reg.record(rec.key_id)
        assert (after.destroyed_at, after.destroyed_by_run, after.has_material) == (
            at,
            "disposal-run-1",
            False,
        )
        with pytest.raises(KeyDestroyed, match=rec.key_id):
            reg.open(rec.key_id)
        assert reg.schedule_kms_deletion(rec.key_id, window_days=7) is not None
        assert reg.kms_key_state(rec.kms_key_id) == "PendingDeletion"
        assert reg.schedule_kms_deletion(rec.key_id, window_days=7) is None
        with pytest.raises(KeyDestroyed):
            reg.ensure_archive_key(class_name=rec.class_name or "", month=date(2026, 3, 1))
    with pg_connect("attestly_db") as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM attestly.data_key_material WHERE key_id = %s", (rec.key_id,)
            ).fetchone()[0]
            == 0
        )


def test_a_kms_key_pending_deletion_is_refused_even_if_kms_would_decrypt(fresh_keys: None) -> None:
    with KeyRegistry.connect() as reg:
        rec = reg.ensure_archive_key(class_name=_unique_class(), month=date(2026, 3, 1))
        aws_client("kms").schedule_key_deletion(
            KeyId=rec.kms_key_id.rsplit("/", 1)[-1], PendingWindowInDays=7
        )
        assert len(_plaintext_of(rec.key_id)) == 32  # the emulator still decrypts...
        with pytest.raises(KeyUnavailable, match="PendingDeletion"):
            reg.open(rec.key_id)  # ...we do not


def test_phi_vault_binds_ciphertext_to_the_subject_and_shreds_with_the_key(fresh_keys: None) -> None:
    subjects = [f"p-test-{i}" for i in range(20)]
    with PhiVault.connect() as vault:
        vault.prefetch(subjects)
        sealed = {s: vault.encrypt(subject_id=s, plaintext=f"diagnosis of {s}".encode()) for s in subjects}
        ct, key_id = sealed["p-test-1"]
        assert vault.encrypt(subject_id="p-test-1", plaintext=b"x")[1] == key_id  # one key per subject
        assert vault.decrypt(subject_id="p-test-1", key_id=key_id, ciphertext=ct) == b"diagnosis of p-test-1"
        with pytest.raises(PhiDecryptError, match="p-test-2"):
            vault.decrypt(subject_id="p-test-2", key_id=key_id, ciphertext=ct)
        tampered = ct[:-1] + bytes([ct[-1] ^ 1])
        with pytest.raises(PhiDecryptError):
            vault.decrypt(subject_id="p-test-1", key_id=key_id, ciphertext=tampered)
    with PhiVault.connect() as vault:  # a fresh vault unwraps the same keys
        ct3, kid3 = sealed["p-test-3"]
        assert vault.decrypt(subject_id="p-test-3", key_id=kid3, ciphertext=ct3) == b"diagnosis of p-test-3"
        assert vault.registry.record(kid3).kms_key_id == vault.registry.phi_kms_key()
    _approved_erasure("p-test-1")
    with KeyRegistry.connect() as reg:
        reg.destroy(key_id, run_id="erasure-run")
        with pytest.raises(KeyRegistryError, match="shared"):
            reg.schedule_kms_deletion(key_id, window_days=7)
    with PhiVault.connect() as vault:
        with pytest.raises(KeyDestroyed):
            vault.decrypt(subject_id="p-test-1", key_id=key_id, ciphertext=ct)
        # New PHI of an erased subject gets a new key; the old data stays unreadable.
        assert vault.encrypt(subject_id="p-test-1", plaintext=b"new")[1] != key_id


def test_a_subject_hold_blocks_destroying_the_subject_key(fresh_keys: None) -> None:
    with PhiVault.connect() as vault:
        _, key_id = vault.encrypt(subject_id="p-held", plaintext=b"x")
    _approved_erasure("p-held")
    with pg_connect("attestly_db") as conn:
        conn.execute(
            "INSERT INTO attestly.legal_holds (hold_id, reason, subject_id, created_by) VALUES ('hold-00000000abcd', 'case', 'p-held', 'test')"
        )
        conn.commit()
    with KeyRegistry.connect() as reg, pytest.raises(KeyRegistryError, match="hold-00000000abcd"):
        reg.destroy(key_id, run_id="erasure-run")


def test_the_database_refuses_the_same_person_on_both_sides_on_its_own(fresh_keys: None) -> None:
    """Bypassing the application (direct INSERTs as the duty role attestly_app): an erasure approval or a
    hold release by the person who requested or placed it is refused, whichever path (cli:, ui:,
    attestly-cli:, airflow:) and host or case each identity has; a second person is accepted; nothing
    can be changed afterwards."""
    with pg_connect("attestly_db") as conn:
        conn.execute(
            "INSERT INTO attestly.erasure_requests (request_id, subject_id, reason, requested_by) "
            "VALUES ('erase-0000000000e1', 'p-4eyes', 'GDPR Art. 17', 'cli:alice@laptop')"
        )
        conn.execute(
            "INSERT INTO attestly.legal_holds (hold_id, reason, subject_id, created_by) "
            "VALUES ('hold-0000000000e1', 'case', 'p-4eyes', 'attestly-cli:Carol')"
        )
        conn.commit()
        for same in ("ui:alice", "ui:Alice ", "airflow:ALICE@corp.example", "alice", "cli:alice@other-host"):
            with pytest.raises(psycopg.errors.CheckViolation, match="a second person must approve"):
                conn.execute(
                    "INSERT INTO attestly.erasure_approvals (request_id, approved_by) VALUES (%s, %s)",
                    ("erase-0000000000e1", same),
                )
            conn.rollback()
        for same in ("ui:carol", "cli:carol@build-host", "CAROL"):
            with pytest.raises(psycopg.errors.CheckViolation, match="a second person must release it"):
                conn.execute(
                    "INSERT INTO attestly.legal_hold_releases (hold_id, reason, released_by) VALUES (%s, 'done', %s)",
                    ("hold-0000000000e1", same),
                )
            conn.rollback()
        # The database's person is the application's person.
        for identity in (
            "cli:alice@laptop",
            "ui:Alice",
            "attestly-cli:carol",
            " airflow:Bob@x ",
            "mallory@corp",
        ):
            (db_person,) = conn.execute("SELECT attestly.identity_person(%s)", (identity,)).fetchone()
            assert db_person == person(identity), identity
        conn.execute(
            "INSERT INTO attestly.erasure_approvals (request_id, approved_by) VALUES ('erase-0000000000e1', 'ui:bob')"
        )
        conn.execute(
            "INSERT INTO attestly.legal_hold_releases (hold_id, reason, released_by) "
            "VALUES ('hold-0000000000e1', 'done', 'cli:dave@host')"
        )
        conn.commit()
        for table, column in (("erasure_approvals", "approved_by"), ("legal_hold_releases", "released_by")):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"UPDATE attestly.{table} SET {column} = 'cli:alice@laptop'")
            conn.rollback()
    # A request approved by its own requester under another prefix, written before the triggers (here with
    # triggers off, as the superuser): destroy_data_key does not count it as approved.
    with PhiVault.connect() as vault:
        _, key_id = vault.encrypt(subject_id="p-legacy", plaintext=b"x")
    with admin("attestly") as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "INSERT INTO attestly.erasure_requests (request_id, subject_id, reason, requested_by) "
            "VALUES ('erase-0000000000e2', 'p-legacy', 'GDPR Art. 17', 'cli:erin@laptop')"
        )
        conn.execute(
            "INSERT INTO attestly.erasure_approvals (request_id, approved_by) VALUES ('erase-0000000000e2', 'ui:Erin')"
        )
    with KeyRegistry.connect() as reg, pytest.raises(KeyRegistryError, match="no approved erasure request"):
        reg.destroy(key_id, run_id="erasure-run")


def test_data_keys_never_serialise() -> None:
    key = DataKey("archive/x/2026-01", b"k" * 32)
    import pickle

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)
    assert "k" * 8 not in repr(key) and "k" * 8 not in str(key)
    key.close()
    with pytest.raises(KeyRegistryError, match="closed"):
        key.material()


def test_seeded_events_carry_phi_encrypted_per_subject_under_a_valid_chain(
    fresh_audit: dict[str, str], fresh_keys: None, admin_audit: psycopg.Connection
) -> None:
    seed.seed_audit(start=date(2026, 5, 1), days=1, events_per_day=1200)
    seed.seed_audit(start=date(2026, 5, 2), days=1, events_per_day=1200)
    total, with_subject, with_phi, keyed = admin_audit.execute(
        "SELECT count(*), count(subject_id), count(phi_ciphertext), count(subject_key_id) FROM audit.events"
    ).fetchone()
    assert with_subject > 0 and with_phi == with_subject == keyed
    assert (
        admin_audit.execute(
            "SELECT count(*) FROM (SELECT subject_id FROM audit.events WHERE subject_id IS NOT NULL "
            "GROUP BY subject_id HAVING count(DISTINCT subject_key_id) > 1) x"
        ).fetchone()[0]
        == 0
    )  # one key per subject across seeding calls
    recompute = chain.sql_row_hash(dict(load_policy().sources.audit_table.columns))
    assert (
        admin_audit.execute(
            f"SELECT count(*) FROM audit.events e WHERE e.row_hash <> {recompute}"
        ).fetchone()[0]
        == 0
    )
    subject, key_id, ct = admin_audit.execute(
        "SELECT subject_id, subject_key_id, phi_ciphertext FROM audit.events WHERE subject_id IS NOT NULL LIMIT 1"
    ).fetchone()
    with PhiVault.connect() as vault:
        assert subject.encode() in vault.decrypt(subject_id=subject, key_id=key_id, ciphertext=bytes(ct))
    assert total > with_subject
