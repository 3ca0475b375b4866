"""Task bodies of ``retention_archive``: plan -> archive (upload + verify) -> purge -> record.

Each task opens the shared run context and calls one orchestration function of
:mod:`attestly.archive.runner` — the same functions ``run_all`` (the CLI, the crash tests) calls in order.

Every task works from the run's data interval: records are due when their online period ends on or before
the interval's end (``as_of``) — and a run whose interval ends after the trusted current time is refused
(:mod:`attestly.clock`), so triggering a run dated in the future archives nothing early. Each task re-derives its work from the journal, so
any task can be retried or the whole run repeated after a crash: what is done stays done, what is not is
finished. XCom carries batch ids, states, counts and evidence hashes only — never key material.
"""

from __future__ import annotations

from typing import Any

from attestly.workflows.common import airflow_context, interval, never_early, task_summary


def _as_of(context: Any) -> Any:
    _start, end = interval(context)
    return end.date()


def _open(context: Any) -> Any:
    from attestly.runcontext import RunContext

    return RunContext.open(run_id=str(context["ti"].run_id), airflow=airflow_context(context))


def _batches(ctx: Any, plan: dict[str, Any] | None) -> list[Any]:
    if not plan:
        return []
    return [ctx.journal.batch(bid) for bid in plan["batches"]]


def plan(context: Any) -> dict[str, Any]:
    """Plan the batches due at the end of the interval (creates their archive keys)."""
    from attestly.archive.runner import plan_due

    with _open(context) as ctx, never_early():
        result = plan_due(ctx, as_of=_as_of(context))
    return result.to_dict()


#: Mapped archive tasks at most (Airflow's max_map_length is 1,024): batches beyond that share tasks.
MAX_ARCHIVE_TASKS = 256


def batch_groups(plan_out: dict[str, Any] | None) -> list[list[str]]:
    """The planned batch ids, one group per mapped ``archive`` task (one batch each, unless there are more
    than :data:`MAX_ARCHIVE_TASKS`), so independent batches run on different workers."""
    ids = list((plan_out or {}).get("batches", []))
    if not ids:
        return []
    per = -(-len(ids) // MAX_ARCHIVE_TASKS)
    return [ids[i : i + per] for i in range(0, len(ids), per)]


def archive(batch_ids: list[str], context: Any) -> dict[str, Any]:
    """Upload and verify the batches of one mapped task. Two workers never process one batch at once: the
    journal's advisory lock on the batch id serialises them, and the second finds the work done. A batch
    that fails does not stop the others, and fails the task at the end (with a ``fail`` evidence item
    recorded for a verification mismatch)."""
    from attestly.archive.runner import archive_batches

    with _open(context) as ctx:
        outcome = archive_batches(ctx, [ctx.journal.batch(bid) for bid in batch_ids])
    outcome.raise_for_failures()
    return {**task_summary(context, outcome.recorded), "states": outcome.states}


def purge(plan_out: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Purge the verified batches (and rows whose legal holds were released), per table and month."""
    from attestly.archive.runner import purge_due

    with _open(context) as ctx:
        done = purge_due(ctx, _batches(ctx, plan_out))
    return {**task_summary(context, []), "purges": len(done)}


def record(plan_out: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Store and ledger the manifest of every purged batch due in this interval (idempotent: a re-run
    returns the same evidence hashes and records nothing new)."""
    from attestly.archive.runner import record_due

    with _open(context) as ctx:
        recorded = record_due(ctx, _batches(ctx, plan_out))
    return task_summary(context, recorded)


def restore_test(context: Any) -> dict[str, Any]:
    """``archive_restore_test``: restore one verified batch (random, seeded by the data interval), reconcile it
    with its manifest, drop the scratch table, record ``archive.restore_test`` evidence for the interval.
    A run dated in the future is refused (its evidence would vouch for days that have not happened)."""
    from attestly.archive.restore_test import run_restore_test
    from attestly.clock import require_due_date

    start, end = interval(context)
    run_id = str(context["ti"].run_id)
    with _open(context) as ctx, never_early():
        require_due_date(
            ctx.ledger.conn,
            as_of=end.date(),
            workflow="archive_restore_test",
            run_id=run_id,
            ledger=ctx.ledger,
        )
        # Seeded by the interval, not the run id: a retry or a re-run of the same quarter tests the same batch
        # and records nothing new; each quarter draws afresh.
        seed = f"archive_restore_test:{start.isoformat()}/{end.isoformat()}"
        result = run_restore_test(ctx, seed=seed, period_start=start, period_end=end)
    print(
        f"restore test: batch {result['batch_id']}, {result['rows']} rows in {result['seconds']} s, "
        f"result {result['result']}"
    )
    return {**task_summary(context, [result]), "batch_id": result["batch_id"], "rows": result["rows"]}
