"""Two archive workers on the same batches at once (as two Celery workers given the same mapped tasks, or a
retry overlapping a slow first try): the journal's lock lets one work on a batch at a time, and the other
finds the work done — one object version per batch, one manifest, every row archived once. Also with one
of them killed in the middle of an upload while the other waits for the batch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from attestly.failpoints import EXIT_CODE
from attestly.ledger import Ledger
from tests.integration import test_archive_support as support
from tests.integration.test_archive_support import (
    TODAY,
    admin,
    assert_nothing_lost,
    audit_rows,
    journal_states,
    object_versions,
    seed_backlog,
)

pytestmark = pytest.mark.integration

archive_env = support.archive_env  # the fixture


def _runner(run_id: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "attestly.archive.runner", "--as-of", TODAY.isoformat(), "--run-id", run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _steps() -> Counter[tuple[str, str]]:
    with admin("attestly") as conn:
        rows = conn.execute("SELECT batch_id, state FROM attestly.archive_journal").fetchall()
    return Counter((r[0], r[1]) for r in rows)


def _batch_lock_holders() -> int:
    with admin("attestly") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
        ).fetchone()
    return int(row[0]) if row else 0


def _check(original: dict[str, tuple[str, str]], bucket: str) -> None:
    archived = assert_nothing_lost(original, bucket)
    assert set(journal_states().values()) == {"purged"}
    steps = _steps()
    for batch in archived:
        assert [steps[(batch, s)] for s in ("planned", "uploaded", "verified", "purged")] == [1, 1, 1, 1], (
            batch
        )
    versions = object_versions(bucket)
    assert len(versions) == len(archived) and set(Counter(k for k, *_ in versions).values()) == {1}
    with Ledger.connect() as ledger:
        kinds = Counter(e.kind for e in ledger.entries())
    assert kinds["archive"] == len(archived)


def test_two_workers_racing_on_the_same_batches_archive_each_once(archive_env: str) -> None:
    seed_backlog(per_day=500)
    original = audit_rows()
    first, second = _runner("worker-1"), _runner("worker-2")
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [o[1][-2000:] for o in outs]
    _check(original, archive_env)


def test_a_worker_killed_mid_upload_while_another_waits_loses_and_duplicates_nothing(
    archive_env: str,
) -> None:
    seed_backlog(per_day=500)
    original = audit_rows()
    doomed = _runner("doomed", env={"ATTESTLY_FAILPOINTS": "archive.mid_upload"})
    deadline = time.monotonic() + 120
    while _batch_lock_holders() == 0 and doomed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    survivor = _runner("survivor")  # starts while the doomed one holds a batch (or has just died in it)
    _, err = doomed.communicate(timeout=600)
    assert doomed.returncode == EXIT_CODE and "failpoint archive.mid_upload" in err, err[-2000:]
    out, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, out[-2000:] + err[-3000:]
    _check(original, archive_env)
