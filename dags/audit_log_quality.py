"""
## audit_log_quality

Daily. Proves that the application's audit log for the data interval is complete and intact, or says
exactly where it is not, with a Great Expectations suite built from `include/policy/sources.yaml` and run
as SQL on PostgreSQL (nothing pulled into pandas):

- required columns not null, enumerations in their sets, `id` and (source, seq) unique;
- per-source sequence contiguous in the interval and continuous with the previous interval;
- hourly volume per source (quiet-allowed sources and heartbeats exempt);
- timestamps inside the interval and not after they were recorded;
- the per-source hash chain recomputes and links;
- no US SSN, card number or e-mail address in clear text columns (row ids only, never values).

The result is evidence (`quality.audit_log`), stored and ledgered first; then a failing suite e-mails the
owners of its controls and fails the run (red in the UI). Controls: see the `control:` tags.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task

from attestly.workflows import common

DEFAULTS = common.dag_defaults(collectors=["quality.audit_log"], workflow="quality")


@dag(
    dag_id="audit_log_quality",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULTS["default_args"],
    tags=DEFAULTS["tags"],
)
def audit_log_quality() -> None:
    from attestly.workflows import quality

    @task
    def validate() -> dict:
        return quality.validate(get_current_context())

    @task
    def alert(summary: dict) -> str | None:
        return quality.alert(summary, get_current_context())

    # The detailed alert above already told the owners; no second, generic failure mail.
    @task(on_failure_callback=None)
    def enforce(summary: dict) -> None:
        quality.enforce(summary)

    attest, watcher = common.closing_tasks()

    result = validate()
    alerted = alert(result)
    enforced = enforce(result)
    alerted >> enforced
    sealed = attest([result])
    enforced >> sealed
    [result, alerted, enforced, sealed] >> watcher()


audit_log_quality()
