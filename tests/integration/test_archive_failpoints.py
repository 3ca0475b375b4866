"""Kill the archive at every step boundary (``os._exit(137)``, like ``kill -9``), run it again, and check
that nothing was lost or duplicated: every row in the database or in exactly one verified object."""

from __future__ import annotations

from collections import Counter

import pytest

from attestly.failpoints import ARCHIVE_FAILPOINTS, EXIT_CODE
from attestly.ledger import Ledger
from tests.integration import test_archive_support as support
from tests.integration.test_archive_support import (
    M_SEC,
    assert_nothing_lost,
    audit_rows,
    journal_states,
    object_versions,
    run_archive,
    seed_backlog,
)

pytestmark = pytest.mark.integration

archive_env = support.archive_env  # the fixture

#: (failpoint, dataset): "mixed" has a whole-partition month (dropped first) and a month purged by rows;
#: the purge failpoints also run on "rows" alone, so both purge methods are killed mid-way.
CASES = [(fp, "mixed") for fp in ARCHIVE_FAILPOINTS] + [
    ("archive.mid_purge_before_commit", "rows"),
    ("archive.after_purge_before_journal", "rows"),
]


def _state_after_kill(failpoint: str, bucket: str, original: dict[str, tuple[str, str]]) -> None:
    """The kill really happened where it says: the state left behind is the one of that step boundary."""
    from attestly.connections import aws_client

    states = Counter(journal_states().values())
    versions = object_versions(bucket)
    uploads = aws_client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    rows_now = len(audit_rows())
    _head, kinds = _ledger_kinds()
    if failpoint == "archive.after_plan":
        assert set(states) == {"planned"} and not versions
    elif failpoint == "archive.mid_upload":
        assert uploads and not versions
    elif failpoint == "archive.after_upload_before_journal":
        assert len(versions) == 1 and set(states) == {"planned"}
    elif failpoint == "archive.after_journal_uploaded":
        assert states["uploaded"] == 1 and len(versions) == 1
    elif failpoint == "archive.after_authorize_before_verified":
        # The audit database checked and authorised the batch, which is still only uploaded.
        assert states["uploaded"] == 1 and not states["verified"] and rows_now == len(original)
        assert _authorizations() == 1
    elif failpoint == "archive.after_verify":
        assert states["verified"] == 1 and rows_now == len(original)
    elif failpoint == "archive.mid_purge_before_commit":
        assert states["verified"] >= 1 and not states["purged"] and rows_now == len(original)
    elif failpoint == "archive.after_purge_before_journal":
        assert not states["purged"] and rows_now < len(original)
    elif failpoint == "archive.after_purge_before_evidence":
        assert states["purged"] >= 1 and kinds["archive"] == 0 and rows_now < len(original)


def _authorizations() -> int:
    from attestly.connections import pg_connect

    with pg_connect("audit_db") as conn:
        return int(conn.execute("SELECT count(*) FROM audit.purge_authorizations").fetchone()[0])


def _ledger_kinds() -> tuple[tuple[int, str], Counter[str]]:
    with Ledger.connect() as ledger:
        return ledger.head(), Counter(e.kind for e in ledger.entries())


@pytest.mark.parametrize(("failpoint", "dataset"), CASES, ids=[f"{fp}-{ds}" for fp, ds in CASES])
def test_killed_at_failpoint_then_rerun_loses_and_duplicates_nothing(
    archive_env: str,
    failpoint: str,
    dataset: str,
) -> None:
    seed_backlog(hipaa=dataset == "mixed")
    original = audit_rows()

    killed = run_archive(env={"ATTESTLY_FAILPOINTS": failpoint})
    assert killed.returncode == EXIT_CODE, killed.stdout[-2000:] + killed.stderr[-3000:]
    assert f"failpoint {failpoint}" in killed.stderr
    _state_after_kill(failpoint, archive_env, original)

    again = run_archive()
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    archived = assert_nothing_lost(original, archive_env)
    states = journal_states()
    expected_batches = {f"audit.events.pci-audit.{M_SEC:%Y-%m}", f"audit.events.security-audit.{M_SEC:%Y-%m}"}
    assert expected_batches <= set(archived)
    assert set(states.values()) == {"purged"}
    assert len(archived) == (3 if dataset == "mixed" else 2)
    head, kinds = _ledger_kinds()
    assert kinds["archive"] == len(archived)  # one manifest per batch, never two
    assert kinds["evidence"] == len(archived)

    # A third run changes nothing: no object version, journal entry or ledger entry is added.
    versions = object_versions(archive_env)
    third = run_archive()
    assert third.returncode == 0, third.stderr[-3000:]
    assert object_versions(archive_env) == versions
    assert _ledger_kinds() == (head, kinds)
    assert journal_states() == states


#: Killed while two batches are archived at a time (``--workers 2``): mid-upload of one while the other
#: verifies, between the database's check and the journal, and after a verification.
PARALLEL_CASES = ["archive.mid_upload", "archive.after_authorize_before_verified", "archive.after_verify"]


@pytest.mark.parametrize("failpoint", PARALLEL_CASES)
def test_two_batches_at_a_time_killed_then_rerun_loses_and_duplicates_nothing(
    archive_env: str, failpoint: str
) -> None:
    seed_backlog(hipaa=True)
    original = audit_rows()
    killed = run_archive(env={"ATTESTLY_FAILPOINTS": failpoint}, workers=2)
    assert killed.returncode == EXIT_CODE, killed.stdout[-2000:] + killed.stderr[-3000:]
    assert len(audit_rows()) == len(original)  # killed before any purge

    again = run_archive(workers=2)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    archived = assert_nothing_lost(original, archive_env)
    assert len(archived) == 3 and set(journal_states().values()) == {"purged"}
    _head, kinds = _ledger_kinds()
    assert kinds["archive"] == kinds["evidence"] == 3
    assert _authorizations() == 3
