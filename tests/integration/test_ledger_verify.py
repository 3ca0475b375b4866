"""The ledger, its signed digests, and `attestly verify` against every kind of tampering.

Each test gets its own Object Lock bucket on the real moto server and an empty ledger database. Tampering
is done the way an attacker with bucket write access or a database superuser would do it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from attestly.connections import aws_client
from attestly.evidence import EvidenceItem, Finding, canonical_json
from attestly.ledger import Ledger, LedgerTampered, digest_key
from attestly.recording import record_evidence
from attestly.signing import Ed25519Signer, signer_from_connection
from attestly.store import EvidenceStore, ObjectLockMissing
from attestly.verify import ledger_rows, verify_bucket
from tests.conftest import _admin, recreate_database

pytestmark = pytest.mark.integration
DAY = datetime(2026, 4, 1, tzinfo=UTC)


def _item(n: int, result: str = "pass") -> EvidenceItem:
    start = DAY + timedelta(days=n // 5)
    return EvidenceItem(
        collector="auditdb.event_volume",
        controls=("soc2:CC7.2",),
        period_start=start,
        period_end=start + timedelta(days=1),
        scope={"database": "audit", "source": f"s{n}"},
        retroactive=True,
        result=result,  # type: ignore[arg-type]
        findings=(Finding(f"source:s{n}", result, f"{n} events"),),  # type: ignore[arg-type]
        data={"n": n},
    )


@dataclass
class World:
    bucket: str
    store: EvidenceStore
    s3: Any
    public_pem: bytes
    shas: list[str]

    def verify(self, **kw: Any) -> Any:
        return verify_bucket(s3=self.s3, bucket=self.bucket, public_key_pem=self.public_pem, **kw)


@pytest.fixture
def world(stack: dict[str, str]) -> Iterator[World]:
    recreate_database("attestly")
    s3 = aws_client("s3")
    bucket = f"verify-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = EvidenceStore(bucket=bucket, s3=s3, retention_days=3650)
    signer = signer_from_connection()
    shas = []
    with Ledger.connect() as ledger:
        for n in range(6):
            shas.append(record_evidence(_item(n), store=store, ledger=ledger)["sha256"])
        assert ledger.seal(store=store, signer=signer) is not None
        for n in range(6, 10):
            shas.append(
                record_evidence(_item(n, "fail" if n == 7 else "pass"), store=store, ledger=ledger)["sha256"]
            )
        ledger.append("note", {"what": "a run record stand-in"}, dedupe_key="note:1")
        assert ledger.seal(store=store, signer=signer) is not None
    yield World(bucket, store, s3, signer.public_key_pem(), shas)


def _kinds(report: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in report.problems:
        out.setdefault(p.kind, []).append(p.key)
    return out


def test_untouched_store_verifies(world: World) -> None:
    report = world.verify(ledger_entries=ledger_rows())
    assert report.ok, [str(p) for p in report.problems]
    assert report.digests_found == report.digests_valid == 2
    # Ten items and the policy bundle they name (ledgered once, at entry 1, before the first item).
    assert report.objects_requested == report.objects_verified == 11
    assert report.by_kind["policy"] == {"requested": 1, "verified": 1}
    assert report.entries == 12


def test_a_backlog_is_sealed_as_bounded_chained_digests(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog over the bounds becomes several chained digests (each recorded before the next is built),
    which verify as one chain; an object recorded by entries in two digests is read once."""
    import attestly.ledger as ledger_mod

    monkeypatch.setattr(ledger_mod, "MAX_DIGEST_ENTRIES", 3)
    signer = signer_from_connection()
    with Ledger.connect() as ledger:
        for n in range(10, 17):
            record_evidence(_item(n), store=world.store, ledger=ledger)
        # A later entry recording an object an earlier digest holds (as an archive entry names its
        # manifest's evidence item): checked once.
        first = next(ledger.entries(kind="evidence"))
        ledger.append(
            "disposal", {"event": "certified", "evidence": dict(first.body)}, dedupe_key="disposal:test"
        )
        sealed = ledger.seal(store=world.store, signer=signer)
        assert sealed is not None and sealed["digests"] == 3  # 8 entries: 3 + 3 + 2
        digests = ledger.digests()
        assert [(d["first_seq"], d["last_seq"]) for d in digests[-3:]] == [(13, 15), (16, 18), (19, 20)]
        assert ledger.seal(store=world.store, signer=signer) is None
    monkeypatch.setattr(ledger_mod, "MAX_DIGEST_CANONICAL_BYTES", 1)  # one entry per digest, at least one
    with Ledger.connect() as ledger:
        ledger.append("note", {"what": "a"}, dedupe_key="note:a")
        ledger.append("note", {"what": "b"}, dedupe_key="note:b")
        assert ledger.seal(store=world.store, signer=signer)["digests"] == 2  # type: ignore[index]
    report = world.verify(ledger_entries=ledger_rows())
    assert report.ok, [str(p) for p in report.problems]
    assert report.digests_found == report.digests_valid == 7
    assert report.entries == 22
    assert report.objects_requested == report.objects_verified == 11 + 7


def test_recording_and_sealing_are_idempotent(world: World) -> None:
    signer = signer_from_connection()
    with Ledger.connect() as ledger:
        before = ledger.head()
        for n in range(10):
            result = record_evidence(_item(n, "fail" if n == 7 else "pass"), store=world.store, ledger=ledger)
            assert result["created"] is False
        assert ledger.seal(store=world.store, signer=signer) is None
        assert ledger.head() == before
    versions = world.s3.list_object_versions(Bucket=world.bucket, Prefix="objects/")["Versions"]
    assert len(versions) == 10  # identical content stored once


def test_record_evidence_many_writes_exactly_what_record_evidence_writes(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch path (one transaction) and the one-at-a-time path, on the same ledger and the same clock,
    leave byte-identical rows (seq, recorded_at, body, dedupe_key, prev_hash, entry_hash, format) and
    return the same entries, including an observation already ledgered and one repeated in the batch."""
    import attestly.ledger as ledger_module
    from attestly.recording import evidence_summary
    from attestly.store import StoredObject

    class Clock(datetime):
        ticks = 0

        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            cls.ticks += 1
            return datetime(2026, 5, 1, tzinfo=UTC) + timedelta(microseconds=1001 * cls.ticks)

    monkeypatch.setattr(ledger_module, "datetime", Clock)
    items = [_item(n) for n in range(6)]
    records = [
        (
            item.sha256,
            StoredObject(item.object_key, f"v{n}", item.sha256, 100 + n, DAY, "COMPLIANCE", True),
            evidence_summary(item),
            item.observation_sha256,
        )
        for n, item in enumerate(items)
    ]
    batch = [*records[1:], records[2], records[0]]  # one repeated in the batch, one ledgered before

    def ledger_after(batched: bool) -> tuple[list[Any], list[tuple[Any, ...]]]:
        recreate_database("attestly")
        Clock.ticks = 0
        with Ledger.connect() as ledger:
            ledger.append("note", {"what": "before"}, dedupe_key="note:1")
            sha, stored, summary, observation = records[0]
            ledger.record_evidence(sha, stored, summary, observation=observation)
            if batched:
                out = ledger.record_evidence_many(batch)
            else:
                out = [ledger.record_evidence(s, o, m, observation=ob) for s, o, m, ob in batch]
            assert ledger.check_chain() == []
        with psycopg.connect(_admin("attestly")) as conn:
            rows = conn.execute(
                "SELECT seq, kind, recorded_at, body::text, dedupe_key, prev_hash, entry_hash, format "
                "FROM attestly.ledger ORDER BY seq"
            ).fetchall()
        return out, rows

    one_by_one, rows_one = ledger_after(batched=False)
    many, rows_many = ledger_after(batched=True)
    assert rows_many == rows_one
    assert len(rows_one) == 2 + 5
    assert many == one_by_one
    assert [created for _, created in many] == [True] * 5 + [False, False]


def test_a_new_version_over_an_evidence_key_is_reported(world: World) -> None:
    key = f"objects/sha256/{world.shas[3]}.json"
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=b'{"forged": true}')
    report = world.verify()
    assert _kinds(report) == {"replaced": [key]}


def test_a_delete_marker_on_evidence_is_reported_missing(world: World) -> None:
    key = f"objects/sha256/{world.shas[8]}.json"
    world.s3.delete_object(Bucket=world.bucket, Key=key)
    report = world.verify()
    assert _kinds(report) == {"missing": [key]}
    assert "delete marker" in report.problems[0].detail


def test_a_locked_version_cannot_be_deleted_or_overwritten_in_place(world: World) -> None:
    key = f"objects/sha256/{world.shas[0]}.json"
    version = world.s3.head_object(Bucket=world.bucket, Key=key)["VersionId"]
    with pytest.raises(world.s3.exceptions.ClientError) as err:
        world.s3.delete_object(Bucket=world.bucket, Key=key, VersionId=version)
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    assert world.verify().ok


def test_a_deleted_digest_is_reported(world: World) -> None:
    world.s3.delete_object(Bucket=world.bucket, Key=digest_key(1, 7))
    report = world.verify()
    assert _kinds(report) == {"digest_missing": [digest_key(1, 7)]}


def test_a_rewritten_digest_is_reported(world: World) -> None:
    key = digest_key(8, 12)
    original = json.loads(world.s3.get_object(Bucket=world.bucket, Key=key)["Body"].read())
    original["digest"]["entries"][0]["body"]["result"] = "pass"
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=canonical_json(original))
    report = world.verify()
    assert _kinds(report) == {"digest_altered": [key]}
    assert "rewritten: 2 versions" in report.problems[0].detail


def test_a_ledger_row_edited_by_a_superuser_is_reported(world: World) -> None:
    with psycopg.connect(_admin("attestly"), autocommit=True) as conn:
        conn.execute("ALTER TABLE attestly.ledger DISABLE TRIGGER ledger_append_only")
        conn.execute(
            "UPDATE attestly.ledger SET body = jsonb_set(body, '{result}', '\"pass\"') WHERE seq = 9"
        )
        conn.execute("ALTER TABLE attestly.ledger ENABLE TRIGGER ledger_append_only")
    report = world.verify(ledger_entries=ledger_rows())
    assert _kinds(report) == {"ledger_altered": ["ledger entry 9"]}
    # And nothing new can be sealed on top of a tampered ledger.
    with Ledger.connect() as ledger:
        ledger.append("note", {"what": "after tampering"})
        with psycopg.connect(_admin("attestly"), autocommit=True) as conn:
            conn.execute("ALTER TABLE attestly.ledger DISABLE TRIGGER ledger_append_only")
            conn.execute('UPDATE attestly.ledger SET body = \'{"what": "rewritten"}\' WHERE seq = 13')
            conn.execute("ALTER TABLE attestly.ledger ENABLE TRIGGER ledger_append_only")
        with pytest.raises(LedgerTampered, match="entry 13 altered"):
            ledger.seal(store=world.store, signer=signer_from_connection())


def test_the_wrong_public_key_is_reported(world: World) -> None:
    other = Ed25519Signer.from_base64(base64.b64encode(b"\x07" * 32).decode()).public_key_pem()
    report = verify_bucket(s3=world.s3, bucket=world.bucket, public_key_pem=other)
    assert set(_kinds(report)) == {"bad_signature"}
    assert len(report.problems) == 2
    assert "signed by key" in report.problems[0].detail


def test_a_gap_in_the_chain_is_reported(world: World) -> None:
    """A digest signed with the real key (a stolen key, or a bug) that skips ledger entries."""
    signer = signer_from_connection()
    last = json.loads(world.s3.get_object(Bucket=world.bucket, Key=digest_key(8, 12))["Body"].read())
    forged = dict(last["digest"])
    forged.update(first_seq=15, last_seq=15, entries=[], entry_count=0)
    forged["previous"] = {
        "key": digest_key(8, 12),
        "sha256": __import__("hashlib").sha256(canonical_json(last)).hexdigest(),
        "signature": last["signature"],
    }
    forged["entries"] = [dict(last["digest"]["entries"][-1], seq=15)]
    from attestly.ledger import entry_canonical, entry_hash
    from attestly.merkle import merkle_root
    from attestly.verify import entry_content

    e = forged["entries"][0]
    content = entry_content(e)
    e["entry_hash"] = entry_hash(content)
    forged["merkle_root"] = merkle_root([entry_canonical(content)]).hex()
    sig = base64.b64encode(signer.sign(canonical_json(forged))).decode()
    world.s3.put_object(
        Bucket=world.bucket,
        Key=digest_key(15, 15),
        Body=canonical_json({"digest": forged, "signature": sig}),
    )
    report = world.verify()
    assert _kinds(report) == {"chain_broken": [digest_key(15, 15)]}
    assert "gap: starts at ledger entry 15, expected 13" in report.problems[0].detail


def test_period_filter_checks_only_requested_evidence(world: World) -> None:
    report = world.verify(start=DAY + timedelta(days=1), end=DAY + timedelta(days=2))
    assert report.ok
    assert report.objects_requested == 6  # items 5..9 cover day 1 only, and the policy whatever the range


def test_store_refuses_a_bucket_without_object_lock(stack: dict[str, str]) -> None:
    s3 = aws_client("s3")
    bucket = f"nolock-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    store = EvidenceStore(bucket=bucket, s3=s3, retention_days=30)
    with pytest.raises(ObjectLockMissing, match="Object Lock is not enabled"):
        store.put_evidence(_item(1))
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_ledger_refuses_update_and_delete(world: World) -> None:
    with Ledger.connect() as ledger:
        for statement in ("UPDATE attestly.ledger SET kind = 'note'", "DELETE FROM attestly.ledger"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                ledger.conn.execute(statement)
            ledger.conn.rollback()
    with (
        psycopg.connect(_admin("attestly"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        conn.execute("DELETE FROM attestly.ledger WHERE seq = 1")


def test_cli_exit_codes(world: World, tmp_path: Path) -> None:
    pem = tmp_path / "public.pem"
    pem.write_bytes(world.public_pem)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "attestly.cli", "verify", "--bucket", world.bucket, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    ok = run("--public-key", str(pem), "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["found"]["evidence_objects_verified"] == 10
    world.s3.delete_object(Bucket=world.bucket, Key=f"objects/sha256/{world.shas[2]}.json")
    bad = run("--public-key", str(pem))
    assert bad.returncode == 1
    assert "MISSING" in bad.stdout and world.shas[2] in bad.stdout
    not_a_key = tmp_path / "x.pem"
    not_a_key.write_text("hello")
    usage = run("--public-key", str(not_a_key))
    assert usage.returncode == 2
    assert "not a PEM public key" in usage.stderr


def test_kms_asymmetric_signing_verifies_with_the_exported_public_key(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The KMS alternative to Ed25519: an ECC_NIST_P256 SIGN_VERIFY key signs digests; the auditor checks
    them with the PEM public key exported from KMS."""
    recreate_database("attestly")
    kms = aws_client("kms")
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY", Description="attestly digests")[
        "KeyMetadata"
    ]["KeyId"]
    monkeypatch.setenv(
        "AIRFLOW_CONN_ATTESTLY_SIGNING",
        json.dumps({"conn_type": "generic", "extra": {"algorithm": "kms", "key_id": key_id}}),
    )
    s3 = aws_client("s3")
    bucket = f"kms-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = EvidenceStore(bucket=bucket, s3=s3, retention_days=3650)
    signer = signer_from_connection()
    assert signer.algorithm == "ecdsa-p256-sha256"
    with Ledger.connect() as ledger:
        for n in range(3):
            record_evidence(_item(n), store=store, ledger=ledger)
        ledger.seal(store=store, signer=signer)
    public = signer.public_key_pem()
    assert verify_bucket(s3=s3, bucket=bucket, public_key_pem=public).ok
    other = Ed25519Signer.from_base64(base64.b64encode(b"\x09" * 32).decode()).public_key_pem()
    assert {p.kind for p in verify_bucket(s3=s3, bucket=bucket, public_key_pem=other).problems} == {
        "bad_signature"
    }


def test_evidence_list_and_show(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTESTLY_EVIDENCE_BUCKET", world.bucket)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "attestly.cli", *args], capture_output=True, text=True, check=False
        )

    listed = cli("evidence", "list", "--from", "2026-04-02", "--to", "2026-04-02", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(r["sha256"] for r in rows) == sorted(world.shas[5:10])
    assert cli("evidence", "list", "--control", "pci:10.5.1", "--json").stdout.strip() == "[]"
    shown = cli("evidence", "show", world.shas[7])
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["result"] == "fail"
    assert cli("evidence", "show", "nothex").returncode == 2
    assert cli("evidence", "show", "0" * 64).returncode == 1


def test_a_retry_adopts_what_a_killed_try_stored_instead_of_a_second_copy(world: World) -> None:
    """A worker killed between storing an item and ledgering it: the next try of the same task ledgers
    that object (one object per observation in the bucket), not a copy of its own."""
    from dataclasses import replace

    from attestly.evidence import AirflowContext
    from attestly.recording import _note_try, with_policy

    observed = datetime.now(UTC)
    first = replace(
        _item(50),
        airflow=AirflowContext("evidence_collection", "manual__x", "collect_aws", 1),
        observed_at=observed,
    )
    with Ledger.connect() as ledger:
        # What record_evidence does before the upload: name the policy, note when this try observed.
        first = with_policy(first, store=world.store, ledger=ledger)
        _note_try(first, ledger)
    world.store.put_evidence(first)  # ...and the worker dies here
    # The next try observes the same state a minute later.
    retry = replace(
        first,
        airflow=replace(first.airflow, try_number=2),  # type: ignore[arg-type]
        observed_at=observed + timedelta(minutes=1),
        policy=None,
    )
    assert retry.observation_sha256 == first.observation_sha256 and retry.sha256 != first.sha256
    with Ledger.connect() as ledger:
        recorded = record_evidence(retry, store=world.store, ledger=ledger)
    assert recorded["key"] == first.object_key and recorded["sha256"] == first.sha256
    assert "Versions" not in world.s3.list_object_versions(Bucket=world.bucket, Prefix=retry.object_key)
    objects = world.s3.list_object_versions(Bucket=world.bucket, Prefix="objects/")["Versions"]
    assert len(objects) == 11  # the ten items of the world and the killed try's one: no second copy
