"""Which data keys are due for destruction at a date, and which are blocked (and why).

Due:

- **archive keys** (one per retention class and month) whose retention has ended at ``as_of``: the later
  of the retention recorded on the key's batches when they were archived and the retention the policy
  gives today (a lengthened retention is honoured; a shortened one never destroys earlier than what
  was promised when the data was archived);
- **subject keys** of every subject with an approved, not yet completed erasure request.

Blocked (reported, never skipped silently):

- an active legal hold covering the scope: for an archive key, a hold on any of its batches; for a
  subject, a hold on the subject, or any hold (source, time range) that selects one of the subject's
  rows, live or archived;
- an archive key one of whose batches is not verified, or whose rows are still (partly) in the
  database: destroying the key would leave those rows readable, so the key waits for the purge;
- an archive key whose class is no longer in ``retention.yaml``: a policy decision is needed;
- rows still in the database past their whole retention, never archived (no key covers them): reported
  per (class, month) for a decision; Attestly does not delete unarchived rows on its own.

Pending: keys already destroyed in the registry but not yet covered by a certificate (a run that
stopped half-way); the next run finishes them first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

from attestly.disposal.erasure import ErasureRequest, list_requests, subject_sha256
from attestly.policy import add_months

if TYPE_CHECKING:
    from attestly.archive.journal import Batch
    from attestly.runcontext import RunContext


@dataclass(frozen=True)
class DueKey:
    key_id: str
    kind: str  # archive | subject
    reason: str  # retention | erasure
    class_name: str | None = None
    month: date | None = None
    dispose_after: date | None = None
    kms_window_days: int | None = None
    request_ids: tuple[str, ...] = ()
    subject_id: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Secret-free and without the subject id (fit for XCom and logs)."""
        return {
            "key_id": self.key_id,
            "kind": self.kind,
            "reason": self.reason,
            "class": self.class_name,
            "month": f"{self.month:%Y-%m}" if self.month else None,
            "dispose_after": self.dispose_after.isoformat() if self.dispose_after else None,
            "request_ids": list(self.request_ids),
        }


@dataclass(frozen=True)
class Blocked:
    """A scope that is due but may not be destroyed now. ``scope`` never holds a subject id."""

    scope: dict[str, Any]
    why: str  # legal_hold | not_purged | not_verified | unknown_class
    detail: str
    holds: tuple[str, ...] = ()
    key_ids: tuple[str, ...] = ()

    @property
    def ident(self) -> str:
        s = self.scope
        return str(s.get("key_id") or s.get("request_id") or f"rows:{s.get('class')}:{s.get('month')}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ident": self.ident,
            "scope": self.scope,
            "why": self.why,
            "detail": self.detail,
            "holds": list(self.holds),
            "key_ids": list(self.key_ids),
        }


@dataclass
class DisposalPlan:
    as_of: date
    due: list[DueKey]
    blocked: list[Blocked]
    pending: list[str]
    requests: list[ErasureRequest]  # approved, not completed, not blocked

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "due": [d.to_dict() for d in self.due],
            "blocked": [b.to_dict() for b in self.blocked],
            "pending": list(self.pending),
            "requests": [r.request_id for r in self.requests],
        }


def key_retention(ctx: RunContext, class_name: str) -> Any:
    """The effective retention of an archive key's class (``a+b`` for rows in several); KeyError if a
    class is no longer in the policy."""
    eff = ctx.policy.retention.effective_for_classes(class_name.split("+"))
    if eff is None:
        raise KeyError(class_name)
    return eff


def _batches_by_key(ctx: RunContext) -> dict[str, list[Batch]]:
    out: dict[str, list[Batch]] = {}
    for b in ctx.journal.batches():
        out.setdefault(b.key_id, []).append(b)
    return out


def active_hold_batches(ctx: RunContext) -> dict[str, set[str]]:
    """batch id -> active holds covering it (after bringing the coverage up to date)."""
    from attestly.holds import reconcile_holds

    with ctx.journal.hold_lock():
        covered = reconcile_holds(ctx)
    out: dict[str, set[str]] = {}
    for hold_id, batch_ids in covered.items():
        for bid in batch_ids:
            out.setdefault(bid, set()).add(hold_id)
    return out


def _archive_scope(key_id: str, class_name: str, month: date) -> dict[str, Any]:
    return {"key_id": key_id, "kind": "archive", "class": class_name, "month": f"{month:%Y-%m}"}


def plan_archive_keys(
    ctx: RunContext, as_of: date, held_batches: dict[str, set[str]]
) -> tuple[list[DueKey], list[Blocked]]:
    conn = ctx.db
    rows = conn.execute(
        "SELECT key_id, class_name, month FROM attestly.data_keys "
        "WHERE kind = 'archive' AND destroyed_at IS NULL ORDER BY key_id"
    ).fetchall()
    conn.commit()
    by_key = _batches_by_key(ctx)
    states = ctx.journal.states()
    due: list[DueKey] = []
    blocked: list[Blocked] = []
    for key_id, class_name, month in rows:
        batches = by_key.get(key_id, [])
        scope = _archive_scope(key_id, class_name, month)
        try:
            eff = key_retention(ctx, class_name)
        except KeyError:
            recorded = max((b.dispose_after for b in batches), default=None)
            if recorded is not None and recorded <= as_of:
                blocked.append(
                    Blocked(
                        scope,
                        "unknown_class",
                        f"class {class_name!r} is no longer in retention.yaml; "
                        "decide its retention before its key is destroyed",
                        key_ids=(key_id,),
                    )
                )
            continue
        dispose = max([eff.dispose_after(month), *(b.dispose_after for b in batches)])
        if dispose > as_of:
            continue
        holds = sorted({h for b in batches for h in held_batches.get(b.batch_id, set())})
        if holds:
            blocked.append(
                Blocked(
                    scope,
                    "legal_hold",
                    f"retention ended {dispose.isoformat()}, but legal hold(s) "
                    f"{', '.join(holds)} cover its archive",
                    holds=tuple(holds),
                    key_ids=(key_id,),
                )
            )
            continue
        problems = []
        for b in batches:
            st = states.get(b.batch_id)
            state = st.state if st else "none"
            if state not in ("verified", "purged"):
                problems.append(("not_verified", f"batch {b.batch_id} is {state}, not verified"))
            elif state == "verified":
                problems.append(
                    (
                        "not_purged",
                        f"batch {b.batch_id} is verified but its rows are still in "
                        "the database (retention_archive purges them)",
                    )
                )
            elif int(st.details.get("residual_rows", 0) or 0) > 0:  # type: ignore[union-attr]
                problems.append(
                    (
                        "not_purged",
                        f"{st.details['residual_rows']} rows of batch {b.batch_id} "  # type: ignore[union-attr]
                        "are still in the database (held online; purged once released)",
                    )
                )
        if problems:
            blocked.append(
                Blocked(scope, problems[0][0], "; ".join(p[1] for p in problems), key_ids=(key_id,))
            )
            continue
        due.append(
            DueKey(
                key_id=key_id,
                kind="archive",
                reason="retention",
                class_name=class_name,
                month=month,
                dispose_after=dispose,
                kms_window_days=eff.kms_key_deletion_window_days,
            )
        )
    return due, blocked


def subject_holds(ctx: RunContext, subject_id: str, held_batches: dict[str, set[str]]) -> list[str]:
    """Active holds that select any row of the subject, live or archived."""
    from psycopg import sql

    from attestly.holds import list_holds

    holds = [h for h in list_holds(ctx.db) if h.active]
    if not holds:
        return []
    found = {h.hold_id for h in holds if h.subject_id == subject_id}
    layout = ctx.layout
    conn = ctx.reader()
    if layout.subject_column is not None:
        for h in holds:
            if h.hold_id in found:
                continue
            if h.subject_id is not None and h.subject_id != subject_id:
                continue
            cond, params = h.sql_condition(layout)
            hit = conn.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {} = %s AND {})").format(
                    layout.ident(), sql.Identifier(layout.subject_column), cond
                ),
                [subject_id, *params],
            ).fetchone()
            if hit and hit[0]:
                found.add(h.hold_id)
        conn.commit()
    jconn = ctx.db
    archived = [
        r[0]
        for r in jconn.execute(
            "SELECT batch_id FROM attestly.archive_batch_subjects WHERE subject_id = %s", (subject_id,)
        ).fetchall()
    ]
    jconn.commit()
    for bid in archived:
        found |= held_batches.get(bid, set())
    return sorted(found)


def plan_subject_keys(
    ctx: RunContext, held_batches: dict[str, set[str]]
) -> tuple[list[DueKey], list[Blocked], list[ErasureRequest]]:
    conn = ctx.db
    approved = list_requests(conn, state="approved")
    by_subject: dict[str, list[ErasureRequest]] = {}
    for r in approved:
        by_subject.setdefault(r.subject_id, []).append(r)
    due: list[DueKey] = []
    blocked: list[Blocked] = []
    ready: list[ErasureRequest] = []
    for subject, requests in sorted(by_subject.items()):
        ids = tuple(r.request_id for r in requests)
        keys = [
            r[0]
            for r in conn.execute(
                "SELECT key_id FROM attestly.data_keys WHERE kind = 'subject' AND subject_id = %s "
                "AND destroyed_at IS NULL ORDER BY key_id",
                (subject,),
            ).fetchall()
        ]
        conn.commit()
        holds = subject_holds(ctx, subject, held_batches)
        if holds:
            for rid in ids:
                blocked.append(
                    Blocked(
                        {"request_id": rid, "kind": "subject", "subject_sha256": subject_sha256(subject)},
                        "legal_hold",
                        f"erasure request {rid}: legal hold(s) {', '.join(holds)} select rows of this subject",
                        holds=tuple(holds),
                        key_ids=tuple(keys),
                    )
                )
            continue
        ready.extend(requests)
        for key_id in keys:
            due.append(
                DueKey(key_id=key_id, kind="subject", reason="erasure", request_ids=ids, subject_id=subject)
            )
    return due, blocked, ready


def plan_unarchived_rows(ctx: RunContext, as_of: date) -> list[Blocked]:
    """Rows still in the database past their whole retention: they were never archived (retention_archive
    does not archive data whose retention has ended), so no key covers them. Attestly does not delete
    unarchived rows on its own; each (class, month) is reported for a decision."""
    from psycopg import sql

    from attestly.archive.planning import scopes

    layout = ctx.layout
    ts = sql.Identifier(layout.timestamp_column)
    conn = ctx.reader()
    out: list[Blocked] = []
    floor = date(as_of.year, as_of.month, 1)
    # Months with an archive batch are the archive's (rows held online wait for its purge: not_purged).
    archived = {(b.class_name, b.month) for b in ctx.journal.batches(source_table=layout.qualified)}
    for scope in scopes(ctx.policy.retention):
        cutoff = add_months(floor, -scope.retention.retention_months)
        rows = conn.execute(
            sql.SQL(
                "SELECT date_trunc('month', {ts} AT TIME ZONE 'UTC')::date, count(*) FROM {t} "
                "WHERE {ts} < %s AND {sel} = ANY(%s) GROUP BY 1 ORDER BY 1"
            ).format(ts=ts, t=layout.ident(), sel=sql.Identifier(layout.selector_column)),
            (datetime.combine(cutoff, time(), tzinfo=UTC), list(scope.values)),
        ).fetchall()
        for month, n in rows:
            if (scope.class_name, month) in archived:
                continue
            out.append(
                Blocked(
                    {"kind": "rows", "class": scope.class_name, "month": f"{month:%Y-%m}"},
                    "never_archived",
                    f"{n} rows of class {scope.class_name}, month {month:%Y-%m}, are past their retention "
                    f"(dispose after {scope.retention.dispose_after(month).isoformat()}) and still in the "
                    "database, never archived: no key covers them; they need a decision (delete or keep, "
                    "with the reason) — Attestly does not delete unarchived rows on its own",
                )
            )
    conn.commit()
    return out


def pending_keys(ctx: RunContext) -> list[str]:
    """Keys destroyed in the registry and not yet covered by a certificate."""
    conn = ctx.db
    rows = conn.execute(
        "SELECT k.key_id FROM attestly.data_keys k WHERE k.destroyed_at IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM attestly.disposal_certificate_keys c WHERE c.key_id = k.key_id) ORDER BY k.key_id"
    ).fetchall()
    conn.commit()
    return [r[0] for r in rows]


def plan(ctx: RunContext, *, as_of: date, projection: bool = False) -> DisposalPlan:
    """Everything due, blocked and pending at ``as_of`` (reads only; S3 legal holds are reconciled).

    Unless ``projection`` (a what-if for ``disposal status``, never acted on), ``as_of`` must not be after
    the trusted current time: a future-dated run is refused and the refusal ledgered
    (:func:`attestly.clock.require_due_date`)."""
    if not projection:
        from attestly.clock import require_due_date

        require_due_date(ctx.db, as_of=as_of, workflow="key_disposal", run_id=ctx.run_id, ledger=ctx.ledger)
    held = active_hold_batches(ctx)
    archive_due, archive_blocked = plan_archive_keys(ctx, as_of, held)
    subject_due, subject_blocked, ready = plan_subject_keys(ctx, held)
    return DisposalPlan(
        as_of=as_of,
        due=archive_due + subject_due,
        blocked=archive_blocked + subject_blocked + plan_unarchived_rows(ctx, as_of),
        pending=pending_keys(ctx),
        requests=ready,
    )
