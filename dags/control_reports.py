"""
## control_reports

Quarterly (first day of January, April, July and October, covering the quarter just ended) and on
demand with params. Renders, from the ledger alone, one report per control and period — HTML, PDF and
JSON: status (*effective* / *exceptions* / *no evidence*, precedence exceptions > no evidence >
effective), a chart of daily results, each exception with its days, resources and findings, days
without evidence, audit-log quality and archive/disposal activity, every evidence item with its hash
and Airflow run, and the signed digests covering it — plus an index per framework with a
cross-framework view, an auditor packet (zip with an evidence manifest, the digests, the public key,
OSCAL assessment results and VERIFY.md), all stored write-once under `reports/<framework>/<period>/`
and recorded in the ledger, then e-mailed over `smtp_default` to the control owners and the given
recipients.

Tasks: `await_evidence` (scheduled runs wait for the last day's `evidence_collection` run, at most
`wait_for_evidence_hours`) → `plan` → `render` → `store` → `email` (per framework; a failed send
retries only `email`) → `attest` → `watcher`.

Params (all optional): `frameworks`, `controls`, `period_start` + `period_end` (YYYY-MM-DD, inclusive;
default the data interval), `recipients`, `include_owners`, `formats` (html, pdf, json),
`send_email`, `attach_limit_mb`, `wait_for_evidence_hours`.

Controls: every control in `include/policy/controls.yaml` (see the `control:` tags).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task

from attestly.policy import FRAMEWORKS, KNOWN_COLLECTORS
from attestly.workflows import common

DEFAULTS = common.dag_defaults(collectors=sorted(KNOWN_COLLECTORS), workflow="reports")
_DATE_TYPE = ["null", "string"]
_DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


@dag(
    dag_id="control_reports",
    schedule=CronDataIntervalTimetable("0 0 1 1,4,7,10 *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULTS["default_args"],
    tags=DEFAULTS["tags"],
    params={
        "frameworks": Param(
            list(FRAMEWORKS), type="array", items={"type": "string", "enum": list(FRAMEWORKS)}
        ),
        "controls": Param([], type="array", items={"type": "string"}, description="empty: all"),
        "period_start": Param(
            None,
            type=_DATE_TYPE,
            pattern=_DATE_PATTERN,
            description="first day (UTC); default: the data interval",
        ),
        "period_end": Param(
            None, type=_DATE_TYPE, pattern=_DATE_PATTERN, description="last day (UTC, inclusive)"
        ),
        "recipients": Param([], type="array", items={"type": "string"}),
        "include_owners": Param(True, type="boolean", description="also mail the control owners"),
        "formats": Param(
            ["html", "pdf", "json"], type="array", items={"type": "string", "enum": ["html", "pdf", "json"]}
        ),
        "send_email": Param(True, type="boolean"),
        "attach_limit_mb": Param(10, type="number", minimum=0),
        "wait_for_evidence_hours": Param(6, type="number", minimum=0),
    },
)
def control_reports() -> None:
    from attestly.workflows import reports

    @task.sensor(poke_interval=600, timeout=12 * 3600, mode="reschedule")
    def await_evidence() -> bool:
        return reports.await_evidence(get_current_context())

    @task
    def plan() -> list[dict]:
        return reports.plan(get_current_context())

    @task(map_index_template="{{ framework }}")
    def render(job: dict) -> dict:
        context = get_current_context()
        context["framework"] = job["framework"]  # type: ignore[typeddict-unknown-key]
        return reports.render(job, context)

    @task(map_index_template="{{ framework }}")
    def store(rendered: dict) -> dict:
        context = get_current_context()
        context["framework"] = rendered["job"]["framework"]  # type: ignore[typeddict-unknown-key]
        return reports.store(rendered, context)

    @task(map_index_template="{{ framework }}", retries=3)
    def email(stored: dict) -> dict:
        context = get_current_context()
        context["framework"] = stored["job"]["framework"]  # type: ignore[typeddict-unknown-key]
        return reports.email(stored, context)

    attest, watcher = common.closing_tasks()

    waited = await_evidence()
    jobs = plan()
    waited >> jobs
    rendered = render.expand(job=jobs)
    stored = store.expand(rendered=rendered)
    mailed = email.expand(stored=stored)
    sealed = attest([rendered, stored, mailed])
    watch = watcher()
    [waited, jobs, rendered, stored, mailed, sealed] >> watch


control_reports()
