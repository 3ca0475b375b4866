"""Which rows are due for the archive, grouped into deterministic batches.

Retention scopes: every selector value (e.g. ``standard = 'hipaa'``) belongs to one or more classes of
``retention.yaml``; values with the same set of classes form one scope, named after its class (or
``a+b`` for rows in several classes) and governed by the combined retention (longest online period,
longest retention). A month ``M`` of a scope is due once ``online_until(M) <= as_of`` (``as_of`` is the
end of the run's data interval, in UTC), and ``as_of`` itself may never be after the trusted current
time (:mod:`attestly.clock`): a run dated in the future is refused, whatever date it carries. Its batch, per source table, is
``<schema>.<table>.<class>.<YYYY-MM>``; its object ``archive/<schema>.<table>/<class>/<YYYY-MM>/<batch
id>.parquet.aesgcm``; its Object Lock retain-until the end of the month plus the retention
(``dispose_after``), in UTC.

Rows whose selector is NULL or in no class are never archived (the policy check refuses enum values in
no class); :func:`plan` reports how many such rows are past the shortest online period.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

from attestly import failpoints
from attestly.archive.journal import Batch
from attestly.policy import EffectiveRetention, RetentionPolicy, add_months

if TYPE_CHECKING:
    from attestly.archive.context import ArchiveContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scope:
    """Selector values sharing one set of classes, and their combined retention."""

    class_name: str
    classes: tuple[str, ...]
    values: tuple[str, ...]
    retention: EffectiveRetention

    def first_online_month(self, as_of: date) -> date:
        """The first month still online at ``as_of``: every earlier month is due."""
        return add_months(month_floor(as_of), -self.retention.online_months)


def month_floor(d: date) -> date:
    return date(d.year, d.month, 1)


def scopes(retention: RetentionPolicy) -> list[Scope]:
    """The retention scopes of a policy, in a stable order (by class name)."""
    grouped: dict[tuple[str, ...], list[str]] = {}
    for cls in retention.classes:
        for value in cls.select.values:
            names = tuple(sorted(c.name for c in retention.classes_for_row(value)))
            if value not in grouped.setdefault(names, []):
                grouped[names].append(value)
    out = []
    for names, values in grouped.items():
        eff = retention.effective_for_classes(names)
        assert eff is not None
        out.append(
            Scope(class_name="+".join(names), classes=names, values=tuple(sorted(values)), retention=eff)
        )
    return sorted(out, key=lambda s: s.class_name)


def batch_id(*, source_table: str, class_name: str, month: date) -> str:
    return f"{source_table}.{class_name}.{month:%Y-%m}"


def object_key(*, source_table: str, class_name: str, month: date) -> str:
    bid = batch_id(source_table=source_table, class_name=class_name, month=month)
    return f"archive/{source_table}/{class_name}/{month:%Y-%m}/{bid}.parquet.aesgcm"


def retain_until(scope: Scope, month: date) -> datetime:
    """End of the month plus the retention, as a UTC instant (the first day disposal may act)."""
    return datetime.combine(scope.retention.dispose_after(month), time(), tzinfo=UTC)


@dataclass(frozen=True)
class PlanResult:
    as_of: date
    batches: tuple[Batch, ...]
    created: tuple[str, ...]
    past_retention: tuple[dict[str, Any], ...]
    unclassified_rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "batches": [b.batch_id for b in self.batches],
            "created": list(self.created),
            "past_retention": list(self.past_retention),
            "unclassified_rows": self.unclassified_rows,
        }


def plan(ctx: ArchiveContext, *, as_of: date) -> PlanResult:
    """Plan every batch due at ``as_of``: months with rows in the database past their online period,
    plus batches already in the journal that are due (so a re-run covers the same batches). Creates the
    archive data keys of new batches. Idempotent. Ends at the ``archive.after_plan`` failpoint.
    """
    from psycopg import sql

    from attestly.clock import require_due_date

    require_due_date(
        ctx.journal.conn, as_of=as_of, workflow="retention_archive", run_id=ctx.run_id, ledger=ctx.ledger
    )
    layout = ctx.layout
    conn = ctx.reader()
    ts = sql.Identifier(layout.timestamp_column)
    sel = sql.Identifier(layout.selector_column)
    all_scopes = scopes(ctx.policy.retention)
    cutoffs = {s.class_name: s.first_online_month(as_of) for s in all_scopes}
    oldest_cutoff = min(cutoffs.values(), default=month_floor(as_of))
    newest_cutoff = max(cutoffs.values(), default=month_floor(as_of))
    # One grouped scan instead of one per scope: rows before the latest cutoff, per selector value and
    # month. Cutoffs are month starts, so a row is before a scope's cutoff exactly when its month is.
    grouped = conn.execute(
        sql.SQL(
            "SELECT {sel}, date_trunc('month', {ts} AT TIME ZONE 'UTC')::date, count(*) FROM {t} "
            "WHERE {ts} < %s GROUP BY 1, 2"
        ).format(ts=ts, t=layout.ident(), sel=sel),
        (datetime.combine(newest_cutoff, time(), tzinfo=UTC),),
    ).fetchall()
    conn.commit()
    scope_of = {v: s for s in all_scopes for v in s.values}
    found: dict[tuple[str, date], Scope] = {}
    n_unclassified = 0
    for value, month, count in grouped:
        scope = scope_of.get(value) if value is not None else None
        if scope is None:
            if month < oldest_cutoff:
                n_unclassified += int(count)
        elif month < cutoffs[scope.class_name]:
            found[(scope.class_name, month)] = scope

    by_name = {s.class_name: s for s in all_scopes}
    batches: dict[str, Batch] = {}
    for b in ctx.journal.batches(source_table=layout.qualified):
        if b.online_until <= as_of:
            batches[b.batch_id] = b
    created: list[str] = []
    past: list[dict[str, Any]] = []
    for (class_name, month), scope in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        bid = batch_id(source_table=layout.qualified, class_name=class_name, month=month)
        if bid in batches:
            continue
        dispose = scope.retention.dispose_after(month)
        if dispose <= as_of:
            past.append(
                {"class": class_name, "month": f"{month:%Y-%m}", "dispose_after": dispose.isoformat()}
            )
            continue
        key = ctx.registry.ensure_archive_key(class_name=class_name, month=month)
        batch = Batch(
            batch_id=bid,
            source_table=layout.qualified,
            class_name=class_name,
            classes=by_name[class_name].classes,
            selector_column=ctx.policy.retention.selector_column,
            selector_values=scope.values,
            month=month,
            online_until=scope.retention.online_until(month),
            dispose_after=dispose,
            retain_until=retain_until(scope, month),
            key_id=key.key_id,
            bucket=ctx.store.bucket,
            object_key=object_key(source_table=layout.qualified, class_name=class_name, month=month),
        )
        if ctx.journal.plan(batch, run_id=ctx.run_id):
            created.append(bid)
        batches[bid] = ctx.journal.batch(bid)
    for p in past:
        log.warning(
            "rows of class %s, month %s are past their retention (dispose after %s) and were never archived; "
            "they are not archived now (disposal's business)",
            p["class"],
            p["month"],
            p["dispose_after"],
        )
    if n_unclassified:
        log.warning(
            "%d rows older than the shortest online period belong to no retention class (%s is NULL or "
            "not in retention.yaml); they are never archived",
            n_unclassified,
            ctx.policy.retention.selector_column,
        )
    failpoints.hit("archive.after_plan")
    ordered = tuple(sorted(batches.values(), key=lambda b: (b.month, b.source_table, b.class_name)))
    return PlanResult(
        as_of=as_of,
        batches=ordered,
        created=tuple(created),
        past_retention=tuple(past),
        unclassified_rows=n_unclassified,
    )
