"""Legal holds, shared by the archive (held rows are never purged) and key disposal (a hold blocks the
destruction of a key): ``attestly hold add | list | release``.

A hold selects audit rows by any combination of ``source``, ``subject`` and a time range ``[from, to)``
(all given criteria must match). While it is active:

- **held rows are never purged**: the archive still archives the whole month (so the archive object is
  complete and verifiable as one unit), but the purge deletes only the rows no active hold selects; held
  rows stay online and are purged by a later run once no hold selects them any more — checked against
  the figures recorded when the archive was verified, without uploading anything again;
- **archive objects holding selected rows get an S3 legal hold** (``PutObjectLegalHold``), so the
  archived copy cannot be deleted either, whatever its retention; it is lifted when the last hold
  covering the object is released;
- **disposal is blocked**: ``attestly.destroy_data_key`` refuses a key while a hold covers it.

Holds and releases are ledgered (kinds ``hold`` and ``hold_release``); the ledger records a SHA-256 of
the subject id, never the id itself. Adding or releasing takes the hold lock, which a purge holds from
reading the holds until its transaction commits, so a hold can never miss a purge in flight.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from attestly.evidence import iso

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from attestly.archive.journal import Batch
    from attestly.archive.schema import TableLayout
    from attestly.runcontext import RunContext


class HoldError(ValueError):
    """A legal-hold request that cannot be done as asked (bad criteria, unknown or released hold)."""


@dataclass(frozen=True)
class Hold:
    hold_id: str
    reason: str
    source: str | None
    subject_id: str | None
    from_ts: datetime | None
    to_ts: datetime | None
    created_at: datetime
    created_by: str
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def criteria(self, *, hash_subject: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.source is not None:
            out["source"] = self.source
        if self.subject_id is not None:
            if hash_subject:
                out["subject_sha256"] = hashlib.sha256(self.subject_id.encode()).hexdigest()
            else:
                out["subject"] = self.subject_id
        if self.from_ts is not None:
            out["from"] = iso(self.from_ts)
        if self.to_ts is not None:
            out["to"] = iso(self.to_ts)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "hold_id": self.hold_id,
            "reason": self.reason,
            "criteria": self.criteria(),
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "active": self.active,
            "released_at": iso(self.released_at) if self.released_at else None,
            "released_by": self.released_by,
            "release_reason": self.release_reason,
        }

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether the hold's time range meets ``[start, end)``."""
        if self.from_ts is not None and self.from_ts >= end:
            return False
        return not (self.to_ts is not None and self.to_ts <= start)

    def sql_condition(self, layout: TableLayout) -> tuple[sql.Composable, list[Any]]:
        """A SQL condition (never NULL) true for the rows this hold selects."""
        from psycopg import sql

        parts: list[sql.Composable] = []
        params: list[Any] = []
        if self.source is not None:
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(layout.source_column)))
            params.append(self.source)
        if self.subject_id is not None:
            if layout.subject_column is None:
                raise HoldError(
                    f"hold {self.hold_id} selects a subject, but sources.yaml maps no 'subject' column"
                )
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(layout.subject_column)))
            params.append(self.subject_id)
        if self.from_ts is not None:
            parts.append(sql.SQL("{} >= %s").format(sql.Identifier(layout.timestamp_column)))
            params.append(self.from_ts)
        if self.to_ts is not None:
            parts.append(sql.SQL("{} < %s").format(sql.Identifier(layout.timestamp_column)))
            params.append(self.to_ts)
        return sql.SQL("coalesce(({}), false)").format(sql.SQL(" AND ").join(parts)), params


def held_condition(holds: list[Hold], layout: TableLayout) -> tuple[sql.Composable, list[Any]]:
    """A SQL condition true for rows any of ``holds`` selects (``false`` when there are none)."""
    from psycopg import sql

    if not holds:
        return sql.SQL("false"), []
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for h in holds:
        cond, p = h.sql_condition(layout)
        parts.append(cond)
        params += p
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts)), params


_HOLD_SELECT = (
    "SELECT h.hold_id, h.reason, h.source, h.subject_id, h.from_ts, h.to_ts, h.created_at, h.created_by, "
    "r.released_at, r.released_by, r.reason FROM attestly.legal_holds h "
    "LEFT JOIN attestly.legal_hold_releases r ON r.hold_id = h.hold_id"
)


def list_holds(conn: psycopg.Connection[Any], *, include_released: bool = True) -> list[Hold]:
    query = (
        _HOLD_SELECT
        + ("" if include_released else " WHERE r.hold_id IS NULL")
        + " ORDER BY h.created_at, h.hold_id"
    )
    rows = conn.execute(query).fetchall()
    conn.commit()
    return [Hold(*r) for r in rows]


def get_hold(conn: psycopg.Connection[Any], hold_id: str) -> Hold:
    row = conn.execute(_HOLD_SELECT + " WHERE h.hold_id = %s", (hold_id,)).fetchone()
    conn.commit()
    if row is None:
        raise HoldError(f"no legal hold {hold_id!r}")
    return Hold(*row)


def hold_range(from_date: date | None, to_date: date | None) -> tuple[datetime | None, datetime | None]:
    """``--from D --to D`` as a half-open UTC range: from D 00:00 to the day after ``to`` 00:00."""
    start = datetime.combine(from_date, time(), tzinfo=UTC) if from_date else None
    end = datetime.combine(to_date + timedelta(days=1), time(), tzinfo=UTC) if to_date else None
    if start is not None and end is not None and start >= end:
        raise HoldError(f"--from {from_date} is after --to {to_date}")
    return start, end


# -------------------------------------------------------------------------------------- add / release


def add_hold(
    ctx: RunContext,
    *,
    reason: str,
    source: str | None = None,
    subject_id: str | None = None,
    from_date: date | None = None,
    to_date: date | None = None,
    created_by: str = "attestly-cli",
) -> tuple[Hold, list[str]]:
    """Create a hold, put S3 legal holds on the archive objects it covers, ledger it.

    Returns the hold and the batch ids it covers. Raises :class:`HoldError` for empty criteria, a blank
    reason, an unknown source or an inverted range.
    """
    from attestly.textinput import TextInputError, clean_name, clean_subject_id, clean_text

    if not reason or not reason.strip():
        raise HoldError("--reason must say why the data is held")
    if source is None and subject_id is None and from_date is None and to_date is None:
        raise HoldError("a hold needs at least one of --source, --subject, --from/--to")
    known = ctx.policy.sources.source_names
    if source is not None and source not in known:
        raise HoldError(f"--source {source!r} is not a source of sources.yaml ({', '.join(known)})")
    try:
        reason = clean_text(reason, option="--reason")
        created_by = clean_name(created_by, option="--by")
        if subject_id is not None:
            subject_id = clean_subject_id(
                subject_id, option="--subject", pattern=ctx.policy.sources.audit_table.subject_id_pattern
            )
    except TextInputError as exc:
        raise HoldError(str(exc)) from None
    start, end = hold_range(from_date, to_date)
    hold_id = f"hold-{secrets.token_hex(6)}"
    conn = ctx.db
    with ctx.journal.hold_lock():
        with conn.transaction():
            conn.execute(
                "INSERT INTO attestly.legal_holds (hold_id, reason, source, subject_id, from_ts, to_ts, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (hold_id, reason, source, subject_id, start, end, created_by),
            )
        hold = get_hold(conn, hold_id)
        mirror_holds(ctx, [hold], release=False)
        covered = reconcile_holds(ctx)
    return hold, sorted(covered.get(hold_id, []))


def release_hold(ctx: RunContext, hold_id: str, *, reason: str, released_by: str = "attestly-cli") -> Hold:
    """Release a hold — in ``attestly_db`` and, as the custodian, in the audit database — lift S3 legal
    holds no other active hold needs, ledger the release. Releasing again finishes a release that was
    interrupted between the two databases.

    Releasing needs a person other than the one who placed the hold (:func:`attestly.identity.same_person`:
    ``cli:alice@laptop`` and ``ui:alice`` are the same person); the database refuses it on its own too
    (``attestly.check_hold_release``)."""
    import psycopg

    from attestly.identity import same_person
    from attestly.textinput import TextInputError, clean_name, clean_text

    try:
        reason = clean_text(reason or "released", option="--reason")
        released_by = clean_name(released_by, option="--by")
    except TextInputError as exc:
        raise HoldError(str(exc)) from None
    if not re.fullmatch(r"hold-[0-9a-f]{12}", hold_id or ""):
        raise HoldError(f"{hold_id[:40]!r} is not a hold id (hold-<12 hex digits>; see `attestly hold list`)")
    conn = ctx.db
    with ctx.journal.hold_lock():
        hold = get_hold(conn, hold_id)
        if not hold.active:
            if mirror_holds(ctx, [hold], release=True):
                reconcile_holds(ctx)
                return get_hold(conn, hold_id)
            raise HoldError(f"legal hold {hold_id} was already released at {iso(hold.released_at)}")  # type: ignore[arg-type]
        if same_person(released_by, hold.created_by):
            raise HoldError(
                f"legal hold {hold_id} was placed by {hold.created_by}; {released_by} may not release it: a "
                "different person must (in the Airflow UI's Evidence view, logged in as them)"
            )
        try:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO attestly.legal_hold_releases (hold_id, reason, released_by) VALUES (%s, %s, %s)",
                    (hold_id, reason, released_by),
                )
        except psycopg.errors.CheckViolation as exc:
            raise HoldError(str(exc.diag.message_primary or exc)) from None
        except psycopg.errors.UniqueViolation:
            raise HoldError(f"legal hold {hold_id} was already released") from None
        hold = get_hold(conn, hold_id)
        mirror_holds(ctx, [hold], release=True)
        reconcile_holds(ctx)
        return hold


def mirror_holds(
    ctx: RunContext, holds: list[Hold], *, release: bool, conn: psycopg.Connection[Any] | None = None
) -> list[str]:
    """Make the audit database know ``holds`` (``audit.legal_holds``), which it enforces on its own in
    every purge. Placing is allowed to the archiver (``conn``, the purge path) and the custodian (the hold
    commands, by default); releasing only to the custodian (``release=True`` releases there the holds that
    are released here). Returns the hold ids changed."""
    changed: list[str] = []
    own = conn is None
    if conn is None:
        conn = ctx.custodian()
    try:
        known = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT h.hold_id, r.hold_id IS NOT NULL FROM audit.legal_holds h "
                "LEFT JOIN audit.legal_hold_releases r ON r.hold_id = h.hold_id WHERE h.hold_id = ANY(%s)",
                ([h.hold_id for h in holds],),
            ).fetchall()
        }
        conn.commit()  # so that the block below is a transaction of its own, committed at its end
        with conn.transaction():
            for h in holds:
                if h.hold_id not in known:
                    conn.execute(
                        "SELECT audit.place_hold(%s, %s, %s, %s, %s)",
                        (h.hold_id, h.source, h.subject_id, h.from_ts, h.to_ts),
                    )
                    changed.append(h.hold_id)
                if release and not h.active and not known.get(h.hold_id, False):
                    conn.execute("SELECT audit.release_hold(%s)", (h.hold_id,))
                    changed.append(h.hold_id)
    finally:
        if own:
            conn.close()
    return changed


def audit_active_holds(conn: psycopg.Connection[Any]) -> set[str]:
    """Hold ids active in the audit database (what its purge functions enforce)."""
    rows = conn.execute("SELECT hold_id FROM audit.active_legal_holds").fetchall()
    conn.commit()
    return {r[0] for r in rows}


# ------------------------------------------------------------------------------------------ coverage


def _batch_sources(ctx: RunContext, batch_id: str) -> dict[str, int] | None:
    entry = ctx.journal.last_in_state(batch_id, "verified")
    if entry is None:
        return None
    return dict(entry.details.get("archive", {}).get("sources", {}))


def _batch_has_subject(ctx: RunContext, batch_id: str, subject_id: str) -> bool:
    row = ctx.db.execute(
        "SELECT 1 FROM attestly.archive_batch_subjects WHERE batch_id = %s AND subject_id = %s",
        (batch_id, subject_id),
    ).fetchone()
    ctx.db.commit()
    return row is not None


def covers(ctx: RunContext, hold: Hold, batch: Batch) -> bool:
    """Whether ``hold`` selects rows archived in ``batch`` (a verified batch; conservative for a hold
    combining criteria, which may cover a batch whose rows meet them only separately)."""
    if not hold.overlaps(batch.period_start, batch.period_end):
        return False
    sources = _batch_sources(ctx, batch.batch_id)
    if sources is None:
        return False
    if hold.source is not None and not sources.get(hold.source):
        return False
    return hold.subject_id is None or _batch_has_subject(ctx, batch.batch_id, hold.subject_id)


def reconcile_holds(ctx: RunContext) -> dict[str, list[str]]:
    """Bring S3 legal holds, coverage rows and ledger entries in line with the holds table.

    Self-healing and idempotent (an interrupted ``hold add`` or ``release`` is finished by the next call
    or the next archive run). Call with the hold lock held. Returns active hold id -> covered batch ids.
    """
    from attestly.archive.upload import read_lock, set_legal_hold

    conn = ctx.db
    holds = list_holds(conn)
    states = ctx.journal.states()
    verified = [
        b
        for b in ctx.journal.batches()
        if b.batch_id in states and states[b.batch_id].state in ("verified", "purged")
    ]
    existing = {
        (r[0], r[1])
        for r in conn.execute("SELECT hold_id, batch_id FROM attestly.legal_hold_batches").fetchall()
    }
    conn.commit()
    covered: dict[str, list[str]] = {}
    needed: set[str] = set()
    for hold in holds:
        if not hold.active:
            continue
        for batch in verified:
            if (hold.hold_id, batch.batch_id) in existing or covers(ctx, hold, batch):
                covered.setdefault(hold.hold_id, []).append(batch.batch_id)
                needed.add(batch.batch_id)
                if (hold.hold_id, batch.batch_id) not in existing:
                    with conn.transaction():
                        conn.execute(
                            "INSERT INTO attestly.legal_hold_batches (hold_id, batch_id) VALUES (%s, %s) "
                            "ON CONFLICT DO NOTHING",
                            (hold.hold_id, batch.batch_id),
                        )
    touched = needed | {b for _, b in existing}
    for batch in verified:
        if batch.batch_id not in touched:
            continue
        uploaded = ctx.journal.last_in_state(batch.batch_id, "uploaded")
        if uploaded is None:
            continue
        version = str(uploaded.details["version_id"])
        want = batch.batch_id in needed
        lock = read_lock(ctx.s3, bucket=batch.bucket, key=batch.object_key, version_id=version)
        if lock.legal_hold != want:
            set_legal_hold(ctx.s3, bucket=batch.bucket, key=batch.object_key, version_id=version, on=want)
    for hold in holds:
        body = {
            "hold_id": hold.hold_id,
            "reason": hold.reason,
            "criteria": hold.criteria(hash_subject=True),
            "created_at": iso(hold.created_at),
            "created_by": hold.created_by,
        }
        ctx.ledger.append("hold", body, dedupe_key=f"hold:{hold.hold_id}")
        if not hold.active:
            ctx.ledger.append(
                "hold_release",
                {
                    "hold_id": hold.hold_id,
                    "reason": hold.release_reason,
                    "released_at": iso(hold.released_at),  # type: ignore[arg-type]
                    "released_by": hold.released_by,
                },
                dedupe_key=f"hold_release:{hold.hold_id}",
            )
    return covered
