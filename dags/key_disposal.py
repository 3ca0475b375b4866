"""
## key_disposal

Daily. Crypto-shreds (NIST SP 800-88 cryptographic erase) the data keys of data whose retention has
ended, and of data subjects whose erasure was requested and approved, and proves it:

1. **plan** — archive keys whose (class, month) retention ended at the end of the data interval
   (`include/policy/retention.yaml`), and subject keys of approved erasure requests
   (`attestly erase request` / `approve`); a legal hold covering the scope, or rows of the month still
   in the database, **blocks** the key: the block is ledgered and e-mailed to the owners, never skipped
   silently;
2. **destroy** — the wrapped key is deleted from the registry (its row records that it existed, when
   and by which run it was destroyed) and a KMS key dedicated to the scope gets `ScheduleKeyDeletion`
   with the class's window;
3. **verify** — sampled archive objects and rows no longer decrypt through the normal read path, the
   objects are still in the bucket under Object Lock, `DescribeKey` shows the KMS key pending deletion,
   and data under other keys still decrypts;
4. **certify** — one certificate of destruction (method, keys and scopes, affected objects and rows,
   legal basis, the run, time, verification outcome) stored as `disposal.certificate` evidence and
   ledgered; `attest` ledgers the run and seals it; the watcher fails the run if anything failed.

Every step resumes from `attestly_db` after a crash: a key is destroyed once and certified once.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import CronDataIntervalTimetable, TriggerRule, dag, get_current_context, task

from attestly.workflows import common

DEFAULTS = common.dag_defaults(collectors=["disposal.certificate"], workflow="disposal")


@dag(
    dag_id="key_disposal",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULTS["default_args"],
    tags=DEFAULTS["tags"],
)
def key_disposal() -> None:
    from attestly.workflows import disposal

    @task
    def plan() -> dict:
        return disposal.plan(get_current_context())

    @task
    def destroy(plan_out: Any) -> dict:
        return disposal.destroy(get_current_context())

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def verify() -> dict:
        return disposal.verify(get_current_context())

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def certify() -> dict:
        return disposal.certify(get_current_context())

    attest, watcher = common.closing_tasks()

    planned = plan()
    destroyed = destroy(planned)
    verified = verify()
    certified = certify()
    destroyed >> verified >> certified
    sealed = attest([destroyed, verified, certified])
    watch = watcher()
    [planned, destroyed, verified, certified, sealed] >> watch


key_disposal()
