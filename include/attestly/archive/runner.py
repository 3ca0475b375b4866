"""The archive workflow, step by step; each step is idempotent and resumes from the journal.

``plan_due`` -> ``archive_batches`` (upload, verify, per batch) -> ``purge_due`` per (table, month) ->
``record_due`` (manifest evidence + ledger). These are the only orchestration functions: the DAG's tasks
(:mod:`attestly.workflows.retention`) call them one per task, :func:`run_all` (the CLI, the benches and
the crash tests) calls them in order, so the kill-at-every-failpoint suite covers the code the DAG runs.

Killing the process anywhere and running again ends in the same state as one uninterrupted run: every row either still in the database or in exactly one verified object (held rows:
both, by design), one object version per batch, one manifest per purge.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from attestly import failpoints
from attestly.archive.context import release_memory
from attestly.archive.errors import ArchiveError, PurgeRefused, VerificationMismatch
from attestly.archive.manifest import record_failure, record_manifest
from attestly.archive.planning import PlanResult, plan
from attestly.holds import reconcile_holds

if TYPE_CHECKING:
    from attestly.archive.context import ArchiveContext
    from attestly.archive.journal import Batch
    from attestly.keys import DataKey


class ArchiveRunFailed(ArchiveError):
    """Some batches failed; the others were archived. The message lists each failure."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        super().__init__(
            f"{len(failures)} archive batch(es) failed: "
            + "; ".join(f"{k}: {v}" for k, v in sorted(failures.items()))
        )


def _store_for(ctx: ArchiveContext, bucket: str) -> Any:
    from attestly.store import EvidenceStore

    if bucket == ctx.store.bucket:
        return ctx.store
    return EvidenceStore(bucket=bucket, s3=ctx.s3, retention_days=ctx.store.retention_days)


def _ensure_uploaded(ctx: ArchiveContext, batch: Batch, key: DataKey) -> dict[str, Any]:
    """Upload the batch, or adopt the object an interrupted earlier attempt completed (never a second
    version: the first version of the key is the batch's object, and verification checks it)."""
    from attestly.archive.export import export_and_upload

    store = _store_for(ctx, batch.bucket)
    store.ensure_object_lock()  # refuse, before any work, a bucket without Object Lock
    existing = store.first_version(batch.object_key)
    if existing is not None:
        return {"version_id": existing, "created": False, "adopted": True}
    return export_and_upload(ctx, batch, key)


def archive_batch(ctx: ArchiveContext, batch: Batch) -> dict[str, Any]:
    """Upload and verify one batch, from wherever its journal says it is. Returns ``{batch_id, state}``.

    Raises :class:`VerificationMismatch` when the read-back differs from the database, after recording a
    ``fail`` evidence item (once per distinct failure), which the exception carries as ``recorded``.
    """
    from attestly.archive.verify import verify_batch

    with ctx.journal.lock(batch.batch_id):
        last = ctx.journal.latest(batch.batch_id)
        if last is None:
            raise ArchiveError(f"archive batch {batch.batch_id} is not planned")
        if last.state == "planned":
            with ctx.registry.open(batch.key_id) as key:
                details = _ensure_uploaded(ctx, batch, key)
            release_memory()
            failpoints.hit("archive.after_upload_before_journal")
            last = ctx.journal.advance(batch.batch_id, state="uploaded", run_id=ctx.run_id, details=details)
            failpoints.hit("archive.after_journal_uploaded")
        if last.state == "uploaded":
            with ctx.registry.open(batch.key_id) as key:
                try:
                    details, figures = verify_batch(ctx, batch, uploaded=last.details, data_key=key)
                except VerificationMismatch as exc:
                    exc.recorded = record_failure(ctx, batch, exc.problems)
                    raise
            release_memory()
            ctx.journal.add_subjects(batch.batch_id, figures.subjects)
            last = ctx.journal.advance(batch.batch_id, state="verified", run_id=ctx.run_id, details=details)
            with ctx.journal.hold_lock():
                reconcile_holds(ctx)
            failpoints.hit("archive.after_verify")
        return {"batch_id": batch.batch_id, "state": last.state}


def plan_due(ctx: ArchiveContext, *, as_of: date) -> PlanResult:
    """Plan the batches due at ``as_of`` (refused, and the refusal ledgered, if ``as_of`` is in the future
    by the trusted clock); creates their archive keys."""
    return plan(ctx, as_of=as_of)


@dataclass
class BatchesOutcome:
    """What :func:`archive_batches` did: each batch's state, the failures (batch id -> message) and the
    evidence recorded (``fail`` items of batches that did not verify)."""

    states: dict[str, str]
    failures: dict[str, str] = field(default_factory=dict)
    recorded: list[dict[str, Any]] = field(default_factory=list)

    def raise_for_failures(self) -> None:
        if self.failures:
            raise ArchiveRunFailed(self.failures)


def archive_batches(ctx: ArchiveContext, batches: list[Batch], *, workers: int = 1) -> BatchesOutcome:
    """Upload and verify each batch (:func:`archive_batch`). A batch that fails does not stop the others;
    the outcome lists the failures and the ``fail`` evidence recorded for verification mismatches.

    ``workers`` > 1 archives that many batches at a time, each worker thread on a context of its own
    (:meth:`RunContext.sibling`): one batch's verification (read-back, and the database's recompute)
    overlaps the next batch's export, as the DAG's mapped ``archive`` tasks do on several worker slots.
    The journal's per-batch lock keeps each batch to one worker; memory is ``workers`` batches' worth."""
    failures: dict[str, str] = {}
    recorded: list[dict[str, Any]] = []

    def one(on: ArchiveContext, batch: Batch) -> None:
        try:
            archive_batch(on, batch)
        except VerificationMismatch as exc:
            failures[batch.batch_id] = str(exc)
            if exc.recorded is not None:
                recorded.append(exc.recorded)
        except ArchiveError as exc:
            failures[batch.batch_id] = str(exc)

    if workers <= 1 or len(batches) <= 1:
        for batch in batches:
            one(ctx, batch)
    else:
        _in_parallel(ctx, batches, min(workers, len(batches)), one)
    return BatchesOutcome(states=states(ctx, batches), failures=failures, recorded=recorded)


def _in_parallel(
    ctx: ArchiveContext, batches: list[Batch], workers: int, one: Callable[[ArchiveContext, Batch], None]
) -> None:
    """Run ``one`` over ``batches`` on ``workers`` threads, each with its own context, batches taken in
    order; an unexpected error stops the workers taking new batches and is raised once all have stopped."""
    import queue
    import threading

    todo: queue.SimpleQueue[Batch] = queue.SimpleQueue()
    for batch in batches:
        todo.put(batch)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with ctx.sibling() as own:
                while not errors:
                    try:
                        batch = todo.get_nowait()
                    except queue.Empty:
                        return
                    one(own, batch)
        except BaseException as exc:  # raised in the caller's thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, name=f"archive-batch-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def purge_due(ctx: ArchiveContext, batches: list[Batch]) -> list[dict[str, Any]]:
    """Purge every verified batch among ``batches`` (and rows whose holds were released), per (table,
    month). Raises :class:`PurgeRefused` after doing all the others if some batch was refused."""
    from attestly.archive.purge import purge_month

    with ctx.journal.hold_lock():
        reconcile_holds(ctx)
    groups: dict[tuple[str, date], list[Batch]] = defaultdict(list)
    for b in batches:
        groups[(b.source_table, b.month)].append(b)
    done: list[dict[str, Any]] = []
    refused: list[str] = []
    for (table, month), group in sorted(groups.items()):
        with ctx.journal.lock(f"purge:{table}:{month:%Y-%m}"):
            try:
                done += purge_month(ctx, month=month, batches=group)
            except PurgeRefused as exc:
                refused.append(str(exc))
    failpoints.hit("archive.after_purge_before_evidence")
    if refused:
        raise PurgeRefused("; ".join(refused))
    return done


def record_due(ctx: ArchiveContext, batches: list[Batch]) -> list[dict[str, Any]]:
    """Record the manifest evidence of every purged batch among ``batches`` (idempotent)."""
    out = []
    for b in batches:
        recorded = record_manifest(ctx, b)
        if recorded is not None:
            out.append(recorded)
    return out


def states(ctx: ArchiveContext, batches: list[Batch]) -> dict[str, str]:
    current = ctx.journal.states()
    return {b.batch_id: current[b.batch_id].state if b.batch_id in current else "none" for b in batches}


def run_all(ctx: ArchiveContext, *, as_of: date, workers: int = 1) -> dict[str, Any]:
    """Plan, archive (``workers`` batches at a time), purge and record everything due at ``as_of``.
    Raises :class:`ArchiveRunFailed` at the end if any batch failed (the others are done)."""
    planned = plan_due(ctx, as_of=as_of)
    batches = list(planned.batches)
    archived = archive_batches(ctx, batches, workers=workers)
    failures = dict(archived.failures)
    purged: list[dict[str, Any]] = []
    try:
        purged = purge_due(ctx, batches)
    except PurgeRefused as exc:
        failures["purge"] = str(exc)
    recorded = record_due(ctx, batches)
    summary = {
        "plan": planned.to_dict(),
        "states": states(ctx, batches),
        "purged": purged,
        "evidence": [
            {k: r[k] for k in ("batch_id", "sha256", "collector", "result")}
            for r in [*archived.recorded, *recorded]
        ],
        "failures": failures,
    }
    if failures:
        raise ArchiveRunFailed(failures)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m attestly.archive.runner --as-of DATE``: every step, outside Airflow (tests, benches,
    operators' manual runs). Exit 0 when everything due is archived, 1 when a batch failed."""
    import argparse
    import json
    import sys

    from attestly.archive.context import ArchiveContext

    parser = argparse.ArgumentParser(prog="python -m attestly.archive.runner", description=main.__doc__)
    parser.add_argument(
        "--as-of", type=date.fromisoformat, required=True, help="archive what is due at this date"
    )
    parser.add_argument("--run-id", default="manual")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="batches archived at a time, each on its own connections (default 1)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    from attestly.clock import ClockUntrusted, FutureDatedRun

    with ArchiveContext.open(run_id=args.run_id) as ctx:
        try:
            summary = run_all(ctx, as_of=args.as_of, workers=args.workers)
        except (FutureDatedRun, ClockUntrusted) as exc:
            print(f"archive refused: {exc}", file=sys.stderr)
            return 2
        except ArchiveRunFailed as exc:
            print(json.dumps({"failures": exc.failures}, indent=2, sort_keys=True))
            print(f"archive run failed: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
