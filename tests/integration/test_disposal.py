"""Key disposal on the real stack: erasure of a subject, an archive month past its retention, legal holds
that block (and are reported), four eyes on erasure requests, and the certificate of destruction."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from attestly.connections import aws_client
from attestly.disposal.erasure import ErasureError
from attestly.identity import cli_identity, os_user
from attestly.policy import add_months
from tests.integration import test_archive_support as support
from tests.integration.test_archive_support import ARCHIVED_AT, M_DUE, TODAY, admin
from tests.integration.test_disposal_support import (
    APPROVER,
    PCI_DUE,
    PCI_KEY,
    approve_as,
    archived_backlog,
    cli,
    disposal_rows,
    ledger_bodies,
    live_subjects,
    phi_of,
    release_as,
    request_and_approve,
    run_disposal,
    status_counts,
    subject_key,
    subjects_live_and_archived,
)

pytestmark = pytest.mark.integration

archive_env = support.archive_env  # the fixture


def add_days(d: date, n: int) -> date:
    return d + timedelta(days=n)


def support_mail_dir() -> Path:
    from attestly_dev.stack import core

    return Path(core.paths().mail)


#: A past day on which no archive key is due yet (the erasure tests look at subject keys only).
BEFORE_DUE = PCI_DUE - timedelta(days=1)


def _evidence(cert: dict) -> dict:
    from attestly.store import EvidenceStore

    store = EvidenceStore.from_connection()
    ev = cert["evidence"]
    return json.loads(store.get_bytes(ev["key"], ev["version_id"]))


def test_erased_subject_phi_fails_everywhere_and_other_subjects_still_decrypt(archive_env: str) -> None:
    archived_backlog()
    x, y = subjects_live_and_archived(2)
    before_x, before_y = phi_of(x), phi_of(y)
    assert status_counts(before_y)["live"]["decrypted"] > 0
    assert status_counts(before_x)["live"]["decrypted"] > 0
    assert status_counts(before_x)["archived"]["decrypted"] > 0
    key_x = subject_key(x)

    # Four eyes: the requester cannot approve their own request. The CLI records the OS user for both
    # (never a name typed on it), so the same person is refused whichever path they approve from.
    req = cli("erase", "request", "--subject", x, "--reason", "GDPR Art. 17", "--json")
    assert req.returncode == 0, req.stderr
    rid = json.loads(req.stdout)["request_id"]
    requester = json.loads(req.stdout)["requested_by"]
    assert requester == cli_identity()
    same = cli("erase", "approve", rid)
    assert same.returncode == 2 and "a different person must" in same.stderr, same.stderr
    named = cli("erase", "approve", rid, "--approved-by", "bob")
    assert named.returncode == 2 and "--approved-by is no longer accepted" in named.stderr
    assert "Airflow UI" in named.stderr
    with pytest.raises(ErasureError, match="a different person must"):  # the same person, from the UI
        approve_as(rid, f"ui:{os_user().upper()}")
    again = cli("erase", "request", "--subject", x, "--reason", "dup")
    assert again.returncode == 2 and rid in again.stderr
    # Not approved yet: nothing happens.
    idle = run_disposal(BEFORE_DUE, run_id="run-0")
    assert idle.returncode == 0, idle.stderr[-3000:]
    assert disposal_rows()["destroyed"] == {}
    assert approve_as(rid).approved_by == APPROVER  # a second person, in the Evidence view

    done = run_disposal(BEFORE_DUE, run_id="run-1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    after_x, after_y = phi_of(x), phi_of(y)
    cx, cy = status_counts(after_x), status_counts(after_y)
    # X: every row is still there (who, when, what) and none of its PHI decrypts, live or archived.
    assert len(after_x.subject_rows) == len(before_x.subject_rows)
    assert set(cx["live"]) == {"erased"} and set(cx["archived"]) == {"erased"}, cx
    assert all(r.action and r.occurred_at and r.actor for r in after_x.subject_rows)
    assert all(r.plaintext is None for r in after_x.subject_rows)
    # Y: untouched.
    assert set(cy["live"]) == {"decrypted"} and set(cy["archived"]) == {"decrypted"}, cy
    assert all(json.loads(r.plaintext)["subject"] == y for r in after_y.subject_rows)  # type: ignore[arg-type]

    state = disposal_rows()
    assert set(state["destroyed"]) == {key_x}
    destroyed_at, by_run, has_material = state["destroyed"][key_x]
    assert by_run == "run-1" and destroyed_at is not None and has_material is False
    assert [c[0] for c in state["certificates"]] == [state["certified"][key_x]]
    assert state["completions"] == {rid: state["certified"][key_x]}

    # The certificate: evidence, ledgered once, verified, no subject id in clear.
    certs = [b for b in ledger_bodies("disposal") if b.get("event") == "certificate"]
    assert len(certs) == 1 and certs[0]["verification"] == "passed"
    item = _evidence(certs[0])
    assert item["collector"] == "disposal.certificate" and item["result"] == "pass"
    body = item["data"]
    assert body["method"]["name"] == "cryptographic erase" and "800-88" in body["method"]["standard"]
    (entry,) = body["keys"]
    assert entry["key_id"] == key_x and entry["destroyed_by_run"] == "run-1"
    proof = entry["verification"]
    assert proof["ok"] and proof["registry"]["open"].startswith("KeyDestroyed")
    assert (
        proof["live"]["rows"] == sum(cx["live"].values())
        and proof["live"]["erased"] == proof["live"]["sampled"] > 0
    )
    assert proof["archived"]["erased"] == proof["archived"]["sampled"] > 0
    assert proof["control"]["read"] == "decrypted"
    assert entry["legal_basis"]["requests"][0]["approved_by"] == APPROVER
    assert x not in json.dumps(item) and y not in json.dumps(item)
    assert {b["event"] for b in ledger_bodies("erasure")} == {"requested", "approved", "completed"}

    status = cli("erase", "status", "--json")
    assert status.returncode == 0
    (req_state,) = json.loads(status.stdout)["requests"]
    assert req_state["state"] == "completed" and req_state["certificate_id"] == certs[0]["certificate_id"]

    # A second run changes nothing.
    head = len(ledger_bodies("disposal"))
    assert run_disposal(BEFORE_DUE, run_id="run-2").returncode == 0
    assert disposal_rows() == state and len(ledger_bodies("disposal")) == head


def test_archive_month_past_retention_is_unreadable_and_stays_locked(archive_env: str) -> None:
    from attestly.archive.context import ArchiveContext
    from attestly.disposal.readpath import open_batch
    from attestly.keys import KeyDestroyed

    archived_backlog(hipaa=False)
    not_yet = run_disposal(add_days(PCI_DUE, -1), run_id="early")
    assert not_yet.returncode == 0 and disposal_rows()["destroyed"] == {}

    done = run_disposal(PCI_DUE, run_id="due-run")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    state = disposal_rows()
    assert set(state["destroyed"]) == {PCI_KEY}  # security-audit (13 months) is not due yet

    s3 = aws_client("s3")
    with ArchiveContext.open(run_id="test") as ctx:
        pci = ctx.journal.batch(f"audit.events.pci-audit.{M_DUE:%Y-%m}")
        sec = ctx.journal.batch(f"audit.events.security-audit.{M_DUE:%Y-%m}")
        with pytest.raises(KeyDestroyed):
            open_batch(ctx, pci)
        pf, _ = open_batch(ctx, sec)  # another key still decrypts
        assert pf.read().num_rows > 0
        version = ctx.journal.last_in_state(pci.batch_id, "uploaded").details["version_id"]  # type: ignore[union-attr]
        kms_arn = ctx.registry.record(PCI_KEY).kms_key_id
    # The object itself is still in the bucket: it was locked (COMPLIANCE) for exactly its retention,
    # which has now ended — the ciphertext remains, and no longer decrypts.
    head = s3.head_object(Bucket=pci.bucket, Key=pci.object_key, VersionId=version)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == datetime.combine(PCI_DUE, datetime.min.time(), UTC)
    assert aws_client("kms").describe_key(KeyId=kms_arn)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    restore = cli("archive", "restore", pci.batch_id, "--into", "after_disposal")
    assert restore.returncode == 1 and "destroyed" in restore.stderr

    (cert,) = [b for b in ledger_bodies("disposal") if b.get("event") == "certificate"]
    body = _evidence(cert)["data"]
    (entry,) = body["keys"]
    assert entry["scope"] == {"class": "pci-audit", "month": f"{M_DUE:%Y-%m}"}
    assert entry["kms"]["state"] == "PendingDeletion" and entry["kms"]["window_days"] == 7
    assert entry["legal_basis"]["citations"][0]["citation"] == "PCI DSS v4.0.1 10.5.1"
    (obj,) = entry["affected"]["objects"]
    assert obj["key"] == pci.object_key and obj["version_id"] == version and obj["rows"] > 0
    assert entry["verification"]["objects"][0]["read"].startswith("KeyDestroyed")
    assert entry["verification"]["objects"][0]["lock_mode"] == "COMPLIANCE"
    assert entry["verification"]["control"]["read"] == "decrypted"
    assert body["issued_by_run"] == "due-run" and body["totals"]["archived_rows"] == obj["rows"]


def test_legal_holds_block_disposal_and_the_block_is_reported(archive_env: str) -> None:
    archived_backlog(hipaa=False)
    (x,) = live_subjects(1)
    key_x = subject_key(x)
    rid = request_and_approve(x)
    subject_hold = json.loads(
        cli("hold", "add", "--subject", x, "--reason", "litigation L-7", "--json").stdout
    )
    month_hold = json.loads(
        cli(
            "hold",
            "add",
            "--source",
            "billing",
            "--from",
            M_DUE.isoformat(),
            "--to",
            add_days(M_DUE, 27).isoformat(),
            "--reason",
            "regulator inquiry R-2",
            "--json",
        ).stdout
    )
    mail_dir = support_mail_dir()
    mails_before = set(mail_dir.glob("*.eml"))

    blocked = run_disposal(PCI_DUE, run_id="blocked-run")
    assert blocked.returncode == 0, blocked.stderr[-3000:]
    summary = json.loads(blocked.stdout)
    why = {(b["scope"].get("key_id") or b["scope"].get("request_id")): b for b in summary["plan"]["blocked"]}
    assert why[PCI_KEY]["why"] == "legal_hold" and why[PCI_KEY]["holds"] == [month_hold["hold_id"]]
    assert why[rid]["why"] == "legal_hold" and subject_hold["hold_id"] in why[rid]["holds"]
    assert x not in blocked.stdout
    state = disposal_rows()
    assert state["destroyed"] == {} and state["certificates"] == []
    # Reported: ledgered once per distinct block, mailed to the owners, and visible in erase status.
    blocks = [b for b in ledger_bodies("disposal") if b["event"] == "blocked"]
    assert {b["scope"].get("key_id") or b["scope"].get("request_id") for b in blocks} == {PCI_KEY, rid}
    new_mail = set(mail_dir.glob("*.eml")) - mails_before
    assert len(new_mail) == 1
    text = next(iter(new_mail)).read_text()
    assert "blocked" in text and PCI_KEY in text and x not in text
    status = cli("erase", "status", "--json")
    assert status.returncode == 1
    assert json.loads(status.stdout)["requests"][0]["state"] == "blocked"
    again = run_disposal(PCI_DUE, run_id="blocked-again")
    assert (
        again.returncode == 0 and len([b for b in ledger_bodies("disposal") if b["event"] == "blocked"]) == 2
    )
    assert set(mail_dir.glob("*.eml")) - mails_before == new_mail  # not mailed twice

    # Released: the next run disposes of both.
    for hold in (subject_hold, month_hold):
        own = cli("hold", "release", hold["hold_id"], "--reason", "case closed")  # placed by this OS user
        assert own.returncode == 2 and "a different person must" in own.stderr, own.stderr
        assert release_as(hold["hold_id"], "case closed").released_by == "ui:carol"
    done = run_disposal(PCI_DUE, run_id="released-run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(disposal_rows()["destroyed"]) == {PCI_KEY, key_x}


def test_destroy_is_refused_to_the_app_role_outside_the_function(archive_env: str) -> None:
    """The registry row survives as the record of the key; only destroy_data_key may shred it."""
    import psycopg

    from attestly.connections import pg_connect

    archived_backlog(hipaa=False, per_day=100)
    with pg_connect("attestly_db") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM attestly.data_key_material WHERE key_id = %s", (PCI_KEY,))
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM attestly.disposal_certificates")
    with admin("attestly") as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM attestly.data_key_material WHERE key_id = %s", (PCI_KEY,)
            ).fetchone()[0]
            == 1
        )


def test_rows_held_online_keep_their_month_key_until_they_are_purged(archive_env: str) -> None:
    """Destroying a month's key while some of its rows are still in the database would leave them readable:
    the key waits (reported as not_purged) until retention_archive purges them after the hold ends."""
    from tests.integration.test_archive_support import run_archive, seed_backlog

    seed_backlog(hipaa=False, per_day=200, due=True)
    hold = json.loads(cli("hold", "add", "--source", "billing", "--reason", "audit A-1", "--json").stdout)
    assert run_archive(ARCHIVED_AT).returncode == 0
    release_as(hold["hold_id"], "audit closed")

    waiting = run_disposal(PCI_DUE, run_id="waiting")
    assert waiting.returncode == 0, waiting.stderr[-3000:]
    blocked = {b["scope"].get("key_id"): b for b in json.loads(waiting.stdout)["plan"]["blocked"]}
    assert blocked[PCI_KEY]["why"] == "not_purged" and "still in the database" in blocked[PCI_KEY]["detail"]
    assert PCI_KEY not in disposal_rows()["destroyed"]

    assert run_archive().returncode == 0  # the released rows are purged now
    with admin("audit") as conn:
        left = conn.execute(
            "SELECT count(*) FROM audit.events WHERE standard = 'pci' AND occurred_at < %s",
            (add_months(M_DUE, 1),),
        ).fetchone()
    assert left is not None and left[0] == 0
    done = run_disposal(PCI_DUE, run_id="after-purge")
    assert done.returncode == 0, done.stderr[-3000:]
    assert PCI_KEY in disposal_rows()["destroyed"]


def test_a_run_dated_in_the_future_destroys_nothing_and_the_refusal_is_recorded(archive_env: str) -> None:
    """Anyone who may trigger a run can give it any date: a date after the trusted current time is refused
    by every path (runner, CLI, archive) before anything is planned, and the refusal is ledgered."""
    from tests.integration.test_archive_support import audit_rows, run_archive

    archived_backlog(hipaa=False, per_day=100)
    rows_before = audit_rows()
    future = add_months(PCI_DUE, 8)  # the date the adversarial review used: months ahead of the clock
    refused = run_disposal(future, run_id="future-run")
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "after the trusted current time" in refused.stderr and future.isoformat() in refused.stderr
    by_cli = cli("disposal", "run", "--as-of", add_days(TODAY, 1).isoformat(), "--json")
    assert by_cli.returncode == 2 and "after the trusted current time" in by_cli.stderr
    archive = run_archive(future)
    assert archive.returncode == 2 and "after the trusted current time" in archive.stderr
    assert disposal_rows()["destroyed"] == {}
    assert audit_rows() == rows_before
    refusals = {(b["workflow"], b["as_of"], b["run_id"]) for b in ledger_bodies("refusal")}
    assert ("key_disposal", future.isoformat(), "future-run") in refusals
    assert ("retention_archive", future.isoformat(), "manual") in refusals
    # A what-if for planning is still possible: status projects, it never acts.
    projected = cli("disposal", "status", "--as-of", future.isoformat(), "--json")
    assert projected.returncode == 0 and PCI_KEY in [d["key_id"] for d in json.loads(projected.stdout)["due"]]
    # Today the month really is due, and goes.
    assert run_disposal(TODAY, run_id="today").returncode == 0
    assert PCI_KEY in disposal_rows()["destroyed"]


def test_erase_cli_names_bad_input(archive_env: str) -> None:
    unknown = cli("erase", "approve", "erase-000000000000")
    assert unknown.returncode == 2 and "no erasure request 'erase-000000000000'" in unknown.stderr
    blank = cli("erase", "request", "--subject", "p-000001", "--reason", "  ")
    assert blank.returncode == 2 and "--reason" in blank.stderr
    named = cli("erase", "request", "--subject", "p-000001", "--reason", "r", "--requested-by", "eve")
    assert named.returncode == 2 and "--requested-by is no longer accepted" in named.stderr
    nobody = cli("erase", "request", "--subject", " ", "--reason", "r")
    assert nobody.returncode == 2 and "--subject" in nobody.stderr
    # What would reach the permanent ledger is checked first: control and bidi characters, size, format.
    for argv, expected in (
        (["--subject", "p-000001", "--reason", "line one\nline two"], "U+000A"),
        (["--subject", "p-000001", "--reason", "refund \u202eexe.txt"], "U+202E"),
        (["--subject", "p-000001", "--reason", "x" * 120_000], "120,000 characters; at most 500"),
        (["--subject", "p 000001; DROP", "--reason", "r"], "is not a subject id"),
        (["--subject", "p-000001\u200b", "--reason", "r"], "U+200B"),
    ):
        bad = cli("erase", "request", *argv)
        assert bad.returncode == 2 and expected in bad.stderr, (argv[:4], bad.stderr[-500:])
    assert cli("erase", "approve", "erase-000000000000\n").returncode == 2
    assert ledger_bodies("erasure") == []
    assert cli("erase", "status").stdout.strip() == "no erasure requests"
    status = cli("disposal", "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["due"] == []


def test_rows_past_retention_that_were_never_archived_are_reported(archive_env: str) -> None:
    """No key covers rows that outlived their retention online; they are reported, never silently kept."""
    from attestly_dev import audit_seed as seed
    from tests.integration.test_archive_support import M_HIPAA, run_archive

    seed.seed_audit(start=add_days(M_HIPAA, 2), days=1, events_per_day=120, sources=["billing"])
    assert run_archive().returncode == 0  # past its retention already: not archived
    done = run_disposal(TODAY, run_id="report-run")
    assert done.returncode == 0, done.stderr[-3000:]
    (block,) = json.loads(done.stdout)["plan"]["blocked"]
    assert block["why"] == "never_archived" and block["ident"] == f"rows:pci-audit:{M_HIPAA:%Y-%m}"
    assert "still in the database" in block["detail"]
    assert [b["ident"] for b in ledger_bodies("disposal") if b["event"] == "blocked"] == [block["ident"]]
