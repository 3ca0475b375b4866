"""Shared helpers of the key-disposal tests (no tests here): an archived backlog with subjects, erasure
requests, running disposal in a subprocess, and reading PHI back through the normal read path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import date
from typing import Any

from attestly.policy import add_months
from tests.integration.test_archive_support import ARCHIVED_AT, M_DUE, admin, run_archive, seed_backlog

#: The first day the pci-audit archive of M_DUE may be disposed of (12 months after the month's end): the
#: first of this month, so disposal runs dated today (never later) find it due. security-audit (13
#: months) and hipaa-audit (72 months) are not due yet.
PCI_DUE = add_months(M_DUE, 13)
PCI_KEY = f"archive/pci-audit/{M_DUE:%Y-%m}"
SEC_KEY = f"archive/security-audit/{M_DUE:%Y-%m}"


def archived_backlog(*, hipaa: bool = True, per_day: int = 400) -> None:
    """The backlog with M_DUE archived by a run dated back then, and the rest by a run dated today."""
    seed_backlog(hipaa=hipaa, per_day=per_day, due=True)
    for as_of in (ARCHIVED_AT, None):
        done = run_archive() if as_of is None else run_archive(as_of)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def run_disposal(
    as_of: date, *, run_id: str = "manual", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m attestly.disposal.runner --as-of`` in a fresh process (a kill there kills only it)."""
    return subprocess.run(
        [sys.executable, "-m", "attestly.disposal.runner", "--as-of", as_of.isoformat(), "--run-id", run_id],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=600,
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attestly.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
        timeout=300,
    )


def subjects_live_and_archived(n: int = 2) -> list[str]:
    """Subjects with PHI rows both in the database and in an archived batch."""
    with admin("attestly") as conn:
        archived = {
            r[0] for r in conn.execute("SELECT subject_id FROM attestly.archive_batch_subjects").fetchall()
        }
    with admin("audit") as conn:
        live = [
            r[0]
            for r in conn.execute(
                "SELECT subject_id FROM audit.events WHERE phi_ciphertext IS NOT NULL "
                "GROUP BY subject_id ORDER BY count(*) DESC, subject_id"
            ).fetchall()
        ]
    both = [s for s in live if s in archived]
    assert len(both) >= n, f"only {len(both)} subjects are both live and archived"
    return both[:n]


def live_subjects(n: int = 2) -> list[str]:
    with admin("audit") as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT subject_id FROM audit.events WHERE phi_ciphertext IS NOT NULL "
                "GROUP BY subject_id ORDER BY count(*) DESC, subject_id LIMIT %s",
                (n,),
            ).fetchall()
        ]


#: The second person of the tests: an Airflow user approving in the Evidence view (``ui:<user>``).
APPROVER = "ui:bob"


def approve_as(request_id: str, approver: str = APPROVER) -> Any:
    """Approve as ``approver`` through the application's path (the one the Evidence view's route takes):
    the CLI approves only as the OS user, who requested it."""
    from attestly.disposal.erasure import approve_erasure
    from attestly.ledger import Ledger

    with Ledger.connect() as ledger:
        return approve_erasure(ledger.conn, ledger, request_id, approved_by=approver)


def release_as(hold_id: str, reason: str, releaser: str = "ui:carol") -> Any:
    """Release a hold as ``releaser`` (another person than the OS user who placed it from the CLI) through
    the application's path, the one the Evidence view's route takes."""
    from attestly.archive.context import ArchiveContext
    from attestly.holds import release_hold

    with ArchiveContext.open(run_id="test-release") as ctx:
        return release_hold(ctx, hold_id, reason=reason, released_by=releaser)


def request_and_approve(subject: str, reason: str = "GDPR Art. 17 request, ticket T-1") -> str:
    import json

    req = cli("erase", "request", "--subject", subject, "--reason", reason, "--json")
    assert req.returncode == 0, req.stderr
    rid = json.loads(req.stdout)["request_id"]
    approve_as(rid)
    return str(rid)


def phi_of(subject: str) -> Any:
    """Every row of ``subject`` through the normal read path (fresh context, fresh vault)."""
    from attestly.archive.context import ArchiveContext
    from attestly.disposal.readpath import subject_phi

    with ArchiveContext.open(run_id="test-read") as ctx:
        return subject_phi(ctx, subject)


def status_counts(found: Any) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {"live": Counter(), "archived": Counter()}
    for r in found.subject_rows:
        out["live" if r.location == "live" else "archived"][r.status] += 1
    return out


def disposal_rows() -> dict[str, Any]:
    """The disposal state in attestly_db: steps, certificates, certified keys, completions, keys."""
    with admin("attestly") as conn:
        return {
            "steps": conn.execute(
                "SELECT key_id, state, run_id FROM attestly.disposal_steps ORDER BY key_id, state"
            ).fetchall(),
            "certificates": conn.execute(
                "SELECT certificate_id, run_id, body FROM attestly.disposal_certificates ORDER BY issued_at"
            ).fetchall(),
            "certified": dict(
                conn.execute(
                    "SELECT key_id, certificate_id FROM attestly.disposal_certificate_keys"
                ).fetchall()
            ),
            "completions": dict(
                conn.execute("SELECT request_id, certificate_id FROM attestly.erasure_completions").fetchall()
            ),
            "destroyed": {
                r[0]: (r[1], r[2], r[3])
                for r in conn.execute(
                    "SELECT k.key_id, k.destroyed_at, k.destroyed_by_run, "
                    "EXISTS (SELECT 1 FROM attestly.data_key_material m WHERE m.key_id = k.key_id) "
                    "FROM attestly.data_keys k WHERE k.destroyed_at IS NOT NULL"
                ).fetchall()
            },
        }


def subject_key(subject: str) -> str:
    with admin("attestly") as conn:
        row = conn.execute(
            "SELECT key_id FROM attestly.data_keys WHERE kind = 'subject' AND subject_id = %s ORDER BY created_at LIMIT 1",
            (subject,),
        ).fetchone()
    assert row is not None, "subject has no key"
    return str(row[0])


def ledger_bodies(kind: str) -> list[dict[str, Any]]:
    from attestly.ledger import Ledger

    with Ledger.connect() as ledger:
        return [e.body for e in ledger.entries(kind=kind)]
