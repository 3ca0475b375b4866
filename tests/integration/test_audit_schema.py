"""The reference audit schema: append-only for every role but the purge path; least-privilege roles."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest

from attestly.connections import pg_connect

pytestmark = pytest.mark.integration


def _seed_one_day(**kwargs: Any) -> dict[str, Any]:
    from attestly.audit import seed

    return seed.seed_audit(start=date(2026, 3, 1), days=1, events_per_day=300, **kwargs)


def _one_row(admin: Any) -> tuple[uuid.UUID, datetime]:
    row = admin.execute("SELECT id, occurred_at FROM audit.events ORDER BY occurred_at LIMIT 1").fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize("conn_id", ["audit_writer", "audit_db", "audit_archiver"])
def test_no_login_role_can_update_or_delete(
    fresh_audit: dict[str, str], admin_audit: Any, conn_id: str
) -> None:
    _seed_one_day()
    row_id, _ = _one_row(admin_audit)
    with pg_connect(conn_id, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE audit.events SET action = 'x' WHERE id = %s", (row_id,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM audit.events WHERE id = %s", (row_id,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE audit.events")
    assert (
        admin_audit.execute("SELECT count(*) FROM audit.events WHERE id = %s", (row_id,)).fetchone()[0] == 1
    )


def test_even_a_superuser_is_refused_by_the_trigger(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    _seed_one_day()
    row_id, _ = _one_row(admin_audit)
    for statement in (
        "UPDATE audit.events SET action = 'x' WHERE id = %s",
        "DELETE FROM audit.events WHERE id = %s",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            admin_audit.execute(statement, (row_id,))
    partition = admin_audit.execute("SELECT tableoid::regclass::text FROM audit.events LIMIT 1").fetchone()[0]
    for target in ("audit.events", partition):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            admin_audit.execute(f"TRUNCATE {target}")


def test_reader_reads_but_writer_cannot(fresh_audit: dict[str, str]) -> None:
    _seed_one_day()
    with pg_connect("audit_db") as conn:
        assert conn.execute("SELECT count(*) FROM audit.events").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO audit.events (id, occurred_at, source, seq, row_hash) VALUES (%s, now(), 'x', 1, '\\x00')",
                (uuid.uuid4(),),
            )
    with pg_connect("audit_writer") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM audit.events")
    with pg_connect("audit_db") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT audit.purge_events(ARRAY[]::uuid[], now(), now(), 0)")


def test_purge_path_deletes_exactly_the_verified_rows(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    _seed_one_day()
    rows = admin_audit.execute("SELECT id FROM audit.events ORDER BY occurred_at LIMIT 5").fetchall()
    ids = [r[0] for r in rows]
    lo, hi = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    before = admin_audit.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    with pg_connect("audit_archiver") as conn:
        # A count that does not match what was verified refuses the whole purge.
        with pytest.raises(psycopg.errors.DataException, match="5 rows matched, 4 were verified"):
            conn.execute("SELECT audit.purge_events(%s, %s, %s, %s)", (ids, lo, hi, 4))
        conn.rollback()
        assert conn.execute("SELECT audit.purge_events(%s, %s, %s, %s)", (ids, lo, hi, 5)).fetchone()[0] == 5
        conn.commit()
    after = admin_audit.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    assert before - after == 5
    # The marker the purge sets is useless outside it: the archiver has no DELETE privilege.
    with pg_connect("audit_archiver", autocommit=True) as conn:
        conn.execute("SELECT set_config('audit.purge_in_progress', 'on', false)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM audit.events")


def test_whole_month_partition_drop_checks_the_count(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    report = _seed_one_day()
    with pg_connect("audit_archiver") as conn:
        with pytest.raises(psycopg.errors.DataException, match="drop refused"):
            conn.execute("SELECT audit.drop_month_partition(%s, %s)", (date(2026, 3, 1), report["rows"] - 1))
        conn.rollback()
        assert (
            conn.execute(
                "SELECT audit.drop_month_partition(%s, %s)", (date(2026, 3, 1), report["rows"])
            ).fetchone()[0]
            == report["rows"]
        )
        conn.commit()
    assert admin_audit.execute("SELECT to_regclass('audit.events_y2026m03')").fetchone()[0] is None
