"""
## archive_restore_test

Quarterly (and on demand from the UI). Proves that archived audit records can be brought back — the
evidence backup/restore controls ask for (SOC 2 A1.3, HIPAA 164.308(a)(7)(ii)(B) and (D), PCI DSS
12.10.2; see `include/policy/controls.yaml`, collector `archive.restore_test`):

1. **restore_test** — picks one verified archive batch whose key still exists (at random, seeded by the
   quarter so a retry or re-run tests the same batch), restores it into a scratch table of `archive_restore` like
   `attestly archive restore`, reconciles row count, content hash and id range with the manifest
   recorded at verification, drops the scratch table and records `archive.restore_test` evidence for
   the quarter (pass, fail with the differences, or not applicable when nothing is archived yet);
2. **attest** ledgers the run and seals it; the watcher fails the run if anything failed.

A run dated in the future is refused and the refusal ledgered.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task

from attestly.workflows import common

DEFAULTS = common.dag_defaults(collectors=["archive.restore_test"], workflow="restore-test")


@dag(
    dag_id="archive_restore_test",
    schedule=CronDataIntervalTimetable("0 0 1 1,4,7,10 *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULTS["default_args"],
    tags=DEFAULTS["tags"],
)
def archive_restore_test() -> None:
    from attestly.workflows import retention

    @task
    def restore_test() -> dict:
        return retention.restore_test(get_current_context())

    attest, watcher = common.closing_tasks()
    tested = restore_test()
    sealed = attest([tested])
    [tested, sealed] >> watcher()


archive_restore_test()
