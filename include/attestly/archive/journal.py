"""The archive journal in ``attestly_db``: one plan row per batch, and its state transitions.

``attestly.archive_batches`` holds what a batch is (insert-only); ``attestly.archive_journal`` holds
its history, one row per transition planned -> uploaded -> verified -> purged (-> purged again when rows
held online are purged after a hold is released). The database refuses invalid transitions and any
UPDATE or DELETE; :meth:`Journal.advance` is idempotent, so a step repeated after a crash adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

from attestly.archive.errors import ArchiveError, BatchNotFound
from attestly.policy import add_months

if TYPE_CHECKING:
    import psycopg

STATES = ("planned", "uploaded", "verified", "purged")
_BATCH_LOCK = 0x41726368  # "Arch"
HOLD_LOCK = 0x486F6C64  # "Hold": holds added vs. purges reading them


@dataclass(frozen=True)
class Batch:
    """One archive batch: the rows of ``source_table`` in class ``class_name`` during ``month``."""

    batch_id: str
    source_table: str
    class_name: str
    classes: tuple[str, ...]
    selector_column: str
    selector_values: tuple[str, ...]
    month: date
    online_until: date
    dispose_after: date
    retain_until: datetime
    key_id: str
    bucket: str
    object_key: str
    planned_at: datetime | None = None
    planned_by: str = ""

    @property
    def period_start(self) -> datetime:
        return datetime.combine(self.month, time(), tzinfo=UTC)

    @property
    def period_end(self) -> datetime:
        return datetime.combine(add_months(self.month, 1), time(), tzinfo=UTC)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "source_table": self.source_table,
            "class": self.class_name,
            "classes": list(self.classes),
            "selector": {"column": self.selector_column, "values": list(self.selector_values)},
            "month": f"{self.month:%Y-%m}",
            "online_until": self.online_until.isoformat(),
            "dispose_after": self.dispose_after.isoformat(),
            "retain_until": self.retain_until.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "key_id": self.key_id,
            "bucket": self.bucket,
            "object_key": self.object_key,
        }


@dataclass(frozen=True)
class Entry:
    batch_id: str
    step: int
    state: str
    at: datetime
    run_id: str
    details: dict[str, Any]


_BATCH_COLUMNS = (
    "batch_id, source_table, class_name, classes, selector_column, selector_values, month, online_until, "
    "dispose_after, retain_until, key_id, bucket, object_key, planned_at, planned_by"
)


def _batch(row: tuple[Any, ...]) -> Batch:
    (
        bid,
        table,
        cls,
        classes,
        sel_col,
        sel_vals,
        month,
        online,
        dispose,
        retain,
        key_id,
        bucket,
        okey,
        at,
        by,
    ) = row
    return Batch(
        batch_id=bid,
        source_table=table,
        class_name=cls,
        classes=tuple(classes),
        selector_column=sel_col,
        selector_values=tuple(sel_vals),
        month=month,
        online_until=online,
        dispose_after=dispose,
        retain_until=retain.astimezone(UTC),
        key_id=key_id,
        bucket=bucket,
        object_key=okey,
        planned_at=at,
        planned_by=by,
    )


class Journal:
    """Journal access over one ``attestly_db`` connection (not autocommit; each call commits)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    @classmethod
    def connect(cls, conn_id: str = "attestly_db") -> Journal:
        from attestly.connections import pg_connect

        return cls(pg_connect(conn_id))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ read

    def batch(self, batch_id: str) -> Batch:
        row = self.conn.execute(
            f"SELECT {_BATCH_COLUMNS} FROM attestly.archive_batches WHERE batch_id = %s", (batch_id,)
        ).fetchone()
        self.conn.commit()
        if row is None:
            raise BatchNotFound(f"no archive batch {batch_id!r} in the journal")
        return _batch(row)

    def batches(self, *, source_table: str | None = None, month: date | None = None) -> list[Batch]:
        query = f"SELECT {_BATCH_COLUMNS} FROM attestly.archive_batches WHERE true"
        params: list[Any] = []
        if source_table is not None:
            query += " AND source_table = %s"
            params.append(source_table)
        if month is not None:
            query += " AND month = %s"
            params.append(month)
        rows = self.conn.execute(query + " ORDER BY month, source_table, class_name", params).fetchall()
        self.conn.commit()
        return [_batch(r) for r in rows]

    def entries(self, batch_id: str) -> list[Entry]:
        rows = self.conn.execute(
            "SELECT batch_id, step, state, at, run_id, details FROM attestly.archive_journal "
            "WHERE batch_id = %s ORDER BY step",
            (batch_id,),
        ).fetchall()
        self.conn.commit()
        return [Entry(*r) for r in rows]

    def latest(self, batch_id: str) -> Entry | None:
        entries = self.entries(batch_id)
        return entries[-1] if entries else None

    def last_in_state(self, batch_id: str, state: str) -> Entry | None:
        matching = [e for e in self.entries(batch_id) if e.state == state]
        return matching[-1] if matching else None

    def states(self) -> dict[str, Entry]:
        rows = self.conn.execute(
            "SELECT batch_id, step, state, at, run_id, details FROM attestly.archive_state"
        ).fetchall()
        self.conn.commit()
        return {r[0]: Entry(*r) for r in rows}

    # ----------------------------------------------------------------------------------------- write

    def plan(self, batch: Batch, *, run_id: str) -> bool:
        """Record ``batch`` as planned; False (and nothing written) if it already is. A batch planned
        before with different content is an error: deterministic ids must mean the same batch."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_BATCH_LOCK, batch.batch_id))
            row = self.conn.execute(
                f"SELECT {_BATCH_COLUMNS} FROM attestly.archive_batches WHERE batch_id = %s",
                (batch.batch_id,),
            ).fetchone()
            if row is not None:
                existing = _batch(row)
                if existing.to_dict() != batch.to_dict():
                    raise ArchiveError(
                        f"archive batch {batch.batch_id} was planned differently before "
                        f"({existing.to_dict()} vs {batch.to_dict()}); was the policy changed?"
                    )
                return False
            self.conn.execute(
                f"INSERT INTO attestly.archive_batches ({_BATCH_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now(), %s)",
                (
                    batch.batch_id,
                    batch.source_table,
                    batch.class_name,
                    list(batch.classes),
                    batch.selector_column,
                    list(batch.selector_values),
                    batch.month,
                    batch.online_until,
                    batch.dispose_after,
                    batch.retain_until,
                    batch.key_id,
                    batch.bucket,
                    batch.object_key,
                    run_id,
                ),
            )
            self._insert(batch.batch_id, 1, "planned", run_id, batch.to_dict())
        return True

    def advance(self, batch_id: str, *, state: str, run_id: str, details: dict[str, Any]) -> Entry:
        """Append a transition to ``state``. Idempotent: if the batch is already in ``state`` (for
        ``purged``: already holds an entry with the same ``purge_id``), the existing entry is returned."""
        if state not in STATES:
            raise ValueError(f"unknown archive state {state!r} (one of {', '.join(STATES)})")
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_BATCH_LOCK, batch_id))
            rows = self.conn.execute(
                "SELECT batch_id, step, state, at, run_id, details FROM attestly.archive_journal "
                "WHERE batch_id = %s ORDER BY step",
                (batch_id,),
            ).fetchall()
            if not rows:
                raise BatchNotFound(f"no archive batch {batch_id!r} in the journal")
            entries = [Entry(*r) for r in rows]
            last = entries[-1]
            if state == "purged":
                for e in entries:
                    if e.state == "purged" and e.details.get("purge_id") == details.get("purge_id"):
                        return e
            elif last.state == state:
                return last
            return self._insert(batch_id, last.step + 1, state, run_id, details)

    def _insert(self, batch_id: str, step: int, state: str, run_id: str, details: dict[str, Any]) -> Entry:
        from psycopg.types.json import Jsonb

        row = self.conn.execute(
            "INSERT INTO attestly.archive_journal (batch_id, step, state, run_id, details) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING batch_id, step, state, at, run_id, details",
            (batch_id, step, state, run_id, Jsonb(details)),
        ).fetchone()
        assert row is not None
        return Entry(*row)

    def add_subjects(self, batch_id: str, subjects: set[str]) -> None:
        """Record the distinct data subjects of a batch (idempotent; in slices of 10,000)."""
        ordered = sorted(subjects)
        with self.conn.transaction():
            for i in range(0, len(ordered), 10_000):
                self.conn.execute(
                    "INSERT INTO attestly.archive_batch_subjects (batch_id, subject_id) "
                    "SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                    (batch_id, ordered[i : i + 10_000]),
                )

    # ----------------------------------------------------------------------------------------- locks

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold a session advisory lock on ``key`` (a batch id, or a month group) while working on it."""
        self.conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_BATCH_LOCK + 1, key))
        self.conn.commit()
        try:
            yield
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_BATCH_LOCK + 1, key))
            self.conn.commit()

    @contextmanager
    def hold_lock(self) -> Iterator[None]:
        """Hold the legal-hold lock: no hold is added or released meanwhile."""
        self.conn.execute("SELECT pg_advisory_lock(%s)", (HOLD_LOCK,))
        self.conn.commit()
        try:
            yield
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (HOLD_LOCK,))
            self.conn.commit()
