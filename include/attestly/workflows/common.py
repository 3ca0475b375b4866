"""What every Attestly DAG shares: defaults, tags, the interval, and the closing ``attest`` + watcher.

Every DAG ends with ``attest`` (trigger rule ALL_DONE): it appends the run record — each task's state and
try number, the evidence hashes produced — to the ledger and seals it into a signed digest. A watcher
(ONE_FAILED) downstream of every task then fails the run if anything failed, so neither the attest task's
success nor cleanup ever hides a failure.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from attestly.evidence import AirflowContext, canonical_json_v1, iso

if TYPE_CHECKING:
    from attestly.policy import Policy

OWNER = "compliance-engineering"
DEFAULT_RETRIES = 2


def control_tags(collectors: Iterable[str], policy: Policy | None = None) -> list[str]:
    """``control:<framework>:<id>`` tags for the controls the given collectors serve (:meth:`Policy.control_tags`)."""
    from attestly.policy import load_policy

    return (policy or load_policy()).control_tags(collectors)


def owners_of(collectors: Iterable[str], policy: Policy | None = None) -> list[str]:
    """The owners of the controls the given collectors serve (:meth:`Policy.owners_for`)."""
    from attestly.policy import load_policy

    return (policy or load_policy()).owners_for(collectors)


def dag_defaults(
    *, collectors: Sequence[str], workflow: str, retries: int = DEFAULT_RETRIES
) -> dict[str, Any]:
    """``default_args`` and ``tags`` for a DAG serving ``collectors``; reads the policy (an invalid policy
    is an import error in the UI, by design)."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    from attestly.policy import load_policy

    policy = load_policy()  # once per DAG file at parse time
    owners = owners_of(collectors, policy)
    notifier = SmtpNotifier(
        to=owners,
        smtp_conn_id="smtp_default",
        subject="[Attestly] {{ ti.dag_id }} failed: {{ ti.task_id }} ({{ ti.run_id }})",
        html_content=(
            "<p>Task <b>{{ ti.task_id }}</b> of <b>{{ ti.dag_id }}</b> failed on try {{ ti.try_number }} "
            "for the interval {{ data_interval_start }} – {{ data_interval_end }}.</p>"
            "<p>The run record and any evidence already produced are in the ledger.</p>"
        ),
    )
    return {
        "default_args": {
            "owner": OWNER,
            "retries": retries,
            # ATTESTLY_RETRY_DELAY_SECONDS shortens the wait for tests and local runs.
            "retry_delay": timedelta(seconds=int(os.environ.get("ATTESTLY_RETRY_DELAY_SECONDS", "120"))),
            "retry_exponential_backoff": True,
            "on_failure_callback": notifier,
        },
        "tags": [f"workflow:{workflow}", *control_tags(collectors, policy)],
        "owner_links": {},
    }


@contextmanager
def never_early() -> Iterator[None]:
    """A refusal to act as of a future date (or on an untrusted clock) fails the task without retries:
    retrying cannot make the date due, and the refusal is already ledgered."""
    from attestly.clock import ClockUntrusted, FutureDatedRun

    try:
        yield
    except (FutureDatedRun, ClockUntrusted) as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc


def interval(context: Any) -> tuple[datetime, datetime]:
    """The run's data interval in UTC; every task reads and writes only this."""
    start = context["data_interval_start"]
    end = context["data_interval_end"]
    return (
        datetime.fromtimestamp(start.timestamp(), tz=UTC),
        datetime.fromtimestamp(end.timestamp(), tz=UTC),
    )


def airflow_context(context: Any) -> AirflowContext:
    ti = context["ti"]
    return AirflowContext(
        dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, try_number=int(ti.try_number)
    )


def task_summary(context: Any, recorded: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a producing task returns (XCom): its try and the evidence it recorded — hashes only."""
    ti = context["ti"]
    return {
        "task_id": ti.task_id,
        "map_index": int(getattr(ti, "map_index", -1) if getattr(ti, "map_index", -1) is not None else -1),
        "try_number": int(ti.try_number),
        "evidence": [
            {"sha256": r["sha256"], "collector": r["collector"], "result": r["result"]} for r in recorded
        ],
    }


def _flatten(values: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if values is None:
        return out
    if isinstance(values, dict):
        return [values] if "task_id" in values else out
    try:
        iterator = iter(values)
    except TypeError:
        return out
    for v in iterator:
        out.extend(_flatten(v))
    return out


#: Run types the scheduler starts by itself (no person triggered them).
SCHEDULER_RUN_TYPES = ("scheduled", "asset_triggered", "asset_materialization")


def triggered_by(dag_run: Any) -> str:
    """Who started the run: the Airflow user who triggered it (``DagRun.triggering_user_name``: the UI or
    REST user, the backfill's creator, ``dag_test`` for ``airflow dags test``), ``scheduler`` for a run the
    scheduler started on its own, else ``unknown (<run type>)``."""
    user = getattr(dag_run, "triggering_user_name", None)
    if isinstance(user, str) and user.strip():
        return user.strip()[:128]
    raw = getattr(dag_run, "run_type", "")
    run_type = str(getattr(raw, "value", raw) or "")
    return "scheduler" if run_type in SCHEDULER_RUN_TYPES else f"unknown ({run_type or 'no run type'})"


def run_record(context: Any, summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run record: deterministic for the same run outcome (no durations, no wall clock)."""
    ti = context["ti"]
    dag_run = context["dag_run"]
    start, end = interval(context)
    states_by_run = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id])
    states: dict[str, Any] = states_by_run.get(ti.run_id, {}) if isinstance(states_by_run, dict) else {}
    tries = {(s["task_id"], s["map_index"]): s["try_number"] for s in summaries}
    task_ids = set(context["dag"].task_ids)
    tasks: list[dict[str, Any]] = []
    for key, state in states.items():
        # Airflow names mapped instances "<task_id>_<map_index>".
        task_id, map_index = key, -1
        if key not in task_ids:
            base, _, idx = key.rpartition("_")
            if base in task_ids and idx.isdigit():
                task_id, map_index = base, int(idx)
        if task_id in (ti.task_id, "watcher"):
            continue
        tasks.append(
            {
                "task_id": task_id,
                "map_index": map_index,
                "state": str(state) if state is not None else "none",
                "try_number": tries.get((task_id, map_index)),
            }
        )
    tasks.sort(key=lambda t: (t["task_id"], t["map_index"]))
    evidence = sorted({e["sha256"] for s in summaries for e in s["evidence"]})
    results: dict[str, int] = {}
    for s in summaries:
        for e in s["evidence"]:
            results[e["result"]] = results.get(e["result"], 0) + 1
    failed = sorted(
        f"{t['task_id']}[{t['map_index']}]" if t["map_index"] >= 0 else t["task_id"]
        for t in tasks
        if t["state"] in ("failed", "upstream_failed")
    )
    return {
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "run_type": str(getattr(getattr(dag_run, "run_type", ""), "value", getattr(dag_run, "run_type", ""))),
        "triggered_by": triggered_by(dag_run),
        "data_interval": {"start": iso(start), "end": iso(end)},
        "tasks": tasks,
        "evidence": evidence,
        "evidence_results": dict(sorted(results.items())),
        "failed_tasks": failed,
        "outcome": "failed" if failed else "success",
    }


def attest_run(context: Any, outputs: Any) -> dict[str, Any]:
    """Ledger the run record (once per distinct outcome) and seal. Returns what was sealed."""
    from attestly.ledger import Ledger
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore

    summaries = _flatten(outputs)
    record = run_record(context, summaries)
    # A re-run (new run id, or new tries) that establishes the same outcome for the interval adds nothing:
    # Airflow keeps every run in its history; the ledger keeps each distinct outcome once.
    outcome = {k: v for k, v in record.items() if k not in ("run_id", "run_type", "triggered_by")}
    outcome["tasks"] = [{k: v for k, v in t.items() if k != "try_number"} for t in record["tasks"]]
    dedupe = "run:" + hashlib.sha256(canonical_json_v1(outcome)).hexdigest()
    with Ledger.connect() as ledger:
        entry, created = ledger.append("run", record, dedupe_key=dedupe)
        sealed = ledger.seal(store=EvidenceStore.from_connection(), signer=signer_from_connection())
    return {
        "run_entry": entry.seq,
        "run_entry_created": created,
        "outcome": record["outcome"],
        "evidence": len(record["evidence"]),
        "digest": sealed["key"] if sealed else None,
    }


def closing_tasks() -> tuple[Any, Any]:
    """The ``attest`` and ``watcher`` tasks every DAG ends with; call inside the DAG and wire them:
    ``attest(outputs)`` after the producing tasks, and every task upstream of ``watcher()``."""
    from airflow.sdk import TriggerRule, get_current_context, task

    @task(task_id="attest", trigger_rule=TriggerRule.ALL_DONE)
    def attest(outputs: list[Any]) -> dict[str, Any]:
        return attest_run(get_current_context(), outputs)

    # The failed task already notified the owners; the watcher only makes the run's state honest.
    @task(task_id="watcher", trigger_rule=TriggerRule.ONE_FAILED, retries=0, on_failure_callback=None)
    def watcher() -> None:
        raise RuntimeError("a task of this run failed; its state is in the run record in the ledger")

    return attest, watcher
