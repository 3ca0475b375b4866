"""
## retention_archive

Daily. Moves audit records whose online period has ended (`include/policy/retention.yaml`: per class,
`online_months` after the end of their month, the longest when a record is in several classes) out of
the audit database into immutable storage, losing nothing:

1. **plan** — one batch per (table, class, month) due at the end of the data interval; deterministic ids;
   an envelope data key per (class, month), wrapped by a KMS key dedicated to that scope;
2. **archive** — one mapped task per batch (independent batches run on different workers; the journal's
   lock keeps two workers off one batch): `COPY` → Parquet (zstd) → AES-256-GCM in authenticated chunks
   → S3 multipart upload under Object Lock (COMPLIANCE, retain-until = end of month + retention),
   create-only; then read back: lock, decryption, row count, content hash, id range — compared with the
   rows still in the database;
3. **purge** — one transaction deleting exactly the verified rows (whole partitions when a month is
   entirely archived), through the archiver role and the audit database's own guarded functions, which
   recompute the digest of what they delete and refuse rows inside the online floor; rows under legal
   hold stay online, and the objects holding them get an S3 legal hold;
4. **record** — the manifest of each purged batch becomes `archive.manifest` evidence and an `archive`
   ledger entry; `attest` ledgers the run and seals it; the watcher fails the run if anything failed.

Every step resumes from the journal after a crash at any point; a second run of the same interval
changes nothing. Controls: see the `control:` tags (those served by `archive.manifest`).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import CronDataIntervalTimetable, TriggerRule, dag, get_current_context, task

from attestly.workflows import common

DEFAULTS = common.dag_defaults(collectors=["archive.manifest"], workflow="retention")


@dag(
    dag_id="retention_archive",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULTS["default_args"],
    tags=DEFAULTS["tags"],
)
def retention_archive() -> None:
    from attestly.workflows import retention

    @task
    def plan() -> dict:
        return retention.plan(get_current_context())

    @task
    def batch_groups(plan_out: Any) -> list:
        return retention.batch_groups(plan_out)

    @task(map_index_template="{{ batch_label }}")
    def archive(batch_ids: list) -> dict:
        context = get_current_context()
        context["batch_label"] = ", ".join(batch_ids)[:100]  # type: ignore[typeddict-unknown-key]
        return retention.archive(batch_ids, context)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def purge(plan_out: Any) -> dict:
        return retention.purge(plan_out, get_current_context())

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def record(plan_out: Any) -> dict:
        return retention.record(plan_out, get_current_context())

    attest, watcher = common.closing_tasks()

    planned = plan()
    archived = archive.expand(batch_ids=batch_groups(planned))
    purged = purge(planned)
    recorded = record(planned)
    archived >> purged >> recorded
    sealed = attest([archived, purged, recorded])
    watch = watcher()
    [planned, archived, purged, recorded, sealed] >> watch


retention_archive()
