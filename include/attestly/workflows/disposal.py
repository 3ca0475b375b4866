"""Task bodies of ``key_disposal``: plan -> destroy -> verify -> certify.

Every task re-derives its work from ``attestly_db`` (the key registry, the disposal journal, the
certificates), so any task can be retried and the whole run repeated after a crash: each key is
destroyed once and certified once. Keys are due at the end of the data interval, and a run whose interval
ends after the trusted current time is refused and the refusal ledgered (:mod:`attestly.clock`); the key
registry refuses an early destruction on its own clock too.
XCom carries key ids, request ids, hold ids and counts only — never key material or subject ids.

Each task opens the shared run context and calls one orchestration function of
:mod:`attestly.disposal.runner` — the same functions ``run_all`` (``attestly disposal run``, the crash
tests) calls in order.
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


def plan(context: Any) -> dict[str, Any]:
    """What is due, blocked (reported: ledger + e-mail on a new block) and pending."""
    from attestly.disposal.runner import plan_due

    with _open(context) as ctx, never_early():
        p, new_blocks = plan_due(ctx, as_of=_as_of(context))
    return {**p.to_dict(), "new_blocks": len(new_blocks)}


def destroy(context: Any) -> dict[str, Any]:
    """Destroy every due key (re-planned now: a hold placed since the plan is honoured)."""
    from attestly.disposal.runner import DisposalFailed, destroy_due

    with _open(context) as ctx, never_early():
        done, errors = destroy_due(ctx, as_of=_as_of(context))
    if errors:
        raise DisposalFailed(errors)
    return {**task_summary(context, []), "destroyed": [d["key_id"] for d in done]}


def verify(context: Any) -> dict[str, Any]:
    """Prove every destroyed key is gone; a failed proof is recorded as ``fail`` evidence and fails the task."""
    from attestly.disposal.runner import DisposalFailed
    from attestly.disposal.runner import verify as verify_keys

    with _open(context) as ctx:
        done, problems = verify_keys(ctx)
    if problems:
        raise DisposalFailed(problems)
    return {**task_summary(context, []), "verified": [d["key_id"] for d in done]}


def certify(context: Any) -> dict[str, Any]:
    """Issue one certificate over every verified key not yet certified; store and ledger it."""
    from attestly.disposal.runner import certify_due

    with _open(context) as ctx, never_early():
        recorded = certify_due(ctx, as_of=_as_of(context), period=interval(context))
    return {
        **task_summary(context, recorded),
        "certificates": [r["certificate_id"] for r in recorded],
    }
