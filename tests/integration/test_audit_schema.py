"""The reference audit schema: append-only for every role but the purge path; least-privilege roles."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from attestly.connections import pg_connect

pytestmark = pytest.mark.integration


def _seed_one_day(**kwargs: Any) -> dict[str, Any]:
    from attestly_dev import audit_seed as seed

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
        conn.execute("SELECT audit.purge_batch('x', 'x#1', '{}')")


# ----------------------------------------------------------------------- the purge guard (0004)

M0 = date(datetime.now(UTC).year, datetime.now(UTC).month, 1)


def _month(offset: int) -> date:
    from attestly.policy import add_months

    return add_months(M0, offset)


def _bounds(month: date) -> tuple[datetime, datetime]:
    nxt = _month(0) if False else date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return datetime(month.year, month.month, 1, tzinfo=UTC), datetime(nxt.year, nxt.month, 1, tzinfo=UTC)


def _figures(admin: Any, month: date, values: list[str]) -> tuple[int, str]:
    lo, hi = _bounds(month)
    rows, digest = admin.execute("SELECT * FROM audit.scope_figures(%s, %s, %s)", (lo, hi, values)).fetchone()
    return int(rows), str(digest)


def _authorize(conn: Any, batch_id: str, month: date, values: list[str], rows: int, digest: str) -> None:
    lo, hi = _bounds(month)
    conn.execute(
        "SELECT audit.authorize_purge(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (batch_id, lo, hi, values, rows, digest, "bucket-x", f"archive/{batch_id}", "v1", "ab" * 32),
    )


def _count(admin: Any, where: str = "true", params: tuple[Any, ...] = ()) -> int:
    return int(admin.execute(f"SELECT count(*) FROM audit.events WHERE {where}", params).fetchone()[0])


def test_the_archiver_cannot_purge_live_rows_or_drop_the_live_month(
    fresh_audit: dict[str, str], admin_audit: Any
) -> None:
    """The two deletions found by the adversarial review, reproduced as the archiver and refused."""
    from attestly_dev import audit_seed as seed

    yesterday = datetime.now(UTC).date().replace(day=1)
    seed.seed_audit(start=yesterday, days=1, events_per_day=200)
    live = _count(admin_audit)
    rows, digest = _figures(admin_audit, M0, ["pci", "soc2", "general", "hipaa"])
    with pg_connect("audit_archiver", autocommit=True) as conn:
        # The unchecked 0001 functions are gone or not the archiver's any more.
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("SELECT audit.purge_events(ARRAY[]::uuid[], now(), now(), 0)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT audit.drop_month_partition(%s, %s)", (M0, live))
        # Authorising the live month, however correct its figures, is refused by the database's own clock.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="inside the online floor"):
            _authorize(conn, "audit.events.all.live", M0, ["pci", "soc2", "general", "hipaa"], rows, digest)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no verified archive batch"):
            conn.execute("SELECT audit.purge_batch('audit.events.all.live', 'audit.events.all.live#1', '{}')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="inside the online floor"):
            conn.execute(
                "SELECT audit.drop_partition_authorized(%s, %s, '{}')", (M0, ["audit.events.all.live"])
            )
        # Nor can it edit what the database knows.
        for statement in (
            "UPDATE audit.retention_floor SET online_months = 1",
            "INSERT INTO audit.purge_authorizations (batch_id) VALUES ('x')",
            "INSERT INTO audit.purge_log (purge_id, method, rows, period_from, period_to) VALUES ('x', 'rows', 0, now(), now())",
            "DELETE FROM audit.legal_holds",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    assert _count(admin_audit) == live


def test_a_batch_is_purged_only_with_its_verified_digest_and_exactly_its_rows(
    fresh_audit: dict[str, str], admin_audit: Any
) -> None:
    from attestly_dev import audit_seed as seed

    old = _month(-6)
    seed.seed_audit(start=old + timedelta(days=2), days=1, events_per_day=300)
    seed.seed_audit(start=datetime.now(UTC).date() - timedelta(days=1), days=1, events_per_day=50)
    total = _count(admin_audit)
    lo, hi = _bounds(old)
    pci, pci_digest = _figures(admin_audit, old, ["pci"])
    sec, sec_digest = _figures(admin_audit, old, ["soc2", "general"])
    assert pci > 0 and sec > 0
    with pg_connect("audit_archiver", autocommit=True) as conn:
        # A digest (or count) that is not the rows' — an archive that does not match — cannot even be
        # authorised: the database recomputes its own figures and names them.
        for bad_rows, bad_digest in ((pci, "0" * 64), (pci + 1, pci_digest)):
            with pytest.raises(psycopg.errors.DataException, match="the archive has") as refused:
                _authorize(conn, "audit.events.pci-audit.x", old, ["pci"], bad_rows, bad_digest)
            assert f"holds {pci} rows (digest {pci_digest})" in str(refused.value)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no verified archive batch"):
            conn.execute(
                "SELECT audit.purge_batch('audit.events.pci-audit.x', 'audit.events.pci-audit.x#1', '{}')"
            )
        _authorize(conn, "audit.events.pci-audit.x", old, ["pci"], pci, pci_digest)
        checked = conn.execute(
            "SELECT db_rows, db_digest, db_checked_at IS NOT NULL FROM audit.purge_authorizations "
            "WHERE batch_id = 'audit.events.pci-audit.x'"
        ).fetchone()
        assert checked == (pci, pci_digest, True)
        # A row that lands in the scope after the check: the purge hashes the rows as it deletes them,
        # finds one more, and undoes the delete.
        late = uuid.uuid4()
        with pg_connect("audit_writer") as writer:
            writer.execute(
                "INSERT INTO audit.events (id, occurred_at, source, seq, standard, row_hash) "
                "VALUES (%s, %s, 'billing', %s, 'pci', %s)",
                (late, lo + timedelta(days=3), 10**9, b"\x00" * 32),
            )
            writer.commit()
        with pytest.raises(
            psycopg.errors.DataException, match=rf"holds {pci + 1} rows .* archived and verified"
        ):
            conn.execute(
                "SELECT audit.purge_batch('audit.events.pci-audit.x', 'audit.events.pci-audit.x#1', '{}')"
            )
        assert _count(admin_audit, "id = %s", (late,)) == 1
        total += 1
        # Written once: the same batch cannot be re-authorised with other figures, nor an overlapping scope.
        with pytest.raises(psycopg.errors.UniqueViolation):
            _authorize(conn, "audit.events.pci-audit.x", old, ["pci"], pci + 1, "0" * 64)
        with pytest.raises(psycopg.errors.ExclusionViolation, match="overlaps"):
            _authorize(conn, "audit.events.pci-audit.y", old, ["pci"], pci, pci_digest)
        assert _count(admin_audit) == total

        _authorize(conn, "audit.events.security-audit.x", old, ["soc2", "general"], sec, sec_digest)
        n = conn.execute(
            "SELECT audit.purge_batch('audit.events.security-audit.x', 'audit.events.security-audit.x#1', %s)",
            ('{"round": 1}',),
        ).fetchone()[0]
        assert n == sec
        with pytest.raises(psycopg.errors.UniqueViolation, match="already done"):
            conn.execute(
                "SELECT audit.purge_batch('audit.events.security-audit.x', 'audit.events.security-audit.x#1', '{}')"
            )
    assert _count(admin_audit) == total - sec
    assert (
        _count(admin_audit, "occurred_at >= %s AND occurred_at < %s AND standard = 'pci'", (lo, hi))
        == pci + 1
    )
    log = admin_audit.execute(
        "SELECT batch_id, method, rows, detail FROM audit.purge_log WHERE purge_id = 'audit.events.security-audit.x#1'"
    ).fetchone()
    assert log[:3] == ("audit.events.security-audit.x", "rows", sec)
    assert log[3]["object"] == {
        "bucket": "bucket-x",
        "key": "archive/audit.events.security-audit.x",
        "version_id": "v1",
        "sha256": "ab" * 32,
    }
    assert log[3]["content_digest"] == sec_digest and log[3]["residual_rows"] == 0


def test_held_rows_stay_until_the_custodian_releases_the_hold(
    fresh_audit: dict[str, str], admin_audit: Any
) -> None:
    from attestly_dev import audit_seed as seed

    old = _month(-6)
    seed.seed_audit(start=old + timedelta(days=2), days=1, events_per_day=400)
    subject = admin_audit.execute(
        "SELECT subject_id FROM audit.events WHERE standard = 'hipaa' AND subject_id IS NOT NULL "
        "GROUP BY subject_id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    held = _count(admin_audit, "standard = 'hipaa' AND subject_id = %s", (subject,))
    rows, digest = _figures(admin_audit, old, ["hipaa"])
    with pg_connect("audit_custodian", autocommit=True) as conn:
        conn.execute("SELECT audit.place_hold('hold-00000000000a', NULL, %s, NULL, NULL)", (subject,))
    with pg_connect("audit_archiver", autocommit=True) as conn:
        _authorize(conn, "audit.events.hipaa-audit.x", old, ["hipaa"], rows, digest)
        n = conn.execute(
            "SELECT audit.purge_batch('audit.events.hipaa-audit.x', 'audit.events.hipaa-audit.x#1', '{}')"
        ).fetchone()[0]
        assert n == rows - held
        # The archiver may place holds (the purge path mirrors them) but never release one.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT audit.release_hold('hold-00000000000a')")
        assert (
            conn.execute(
                "SELECT audit.purge_batch('audit.events.hipaa-audit.x', 'audit.events.hipaa-audit.x#2', '{}')"
            ).fetchone()[0]
            == 0
        )  # still held: nothing purged, nothing logged
    assert _count(admin_audit, "standard = 'hipaa'") == held
    detail = admin_audit.execute(
        "SELECT detail FROM audit.purge_log WHERE purge_id = 'audit.events.hipaa-audit.x#1'"
    ).fetchone()[0]
    assert detail["residual_rows"] == held and detail["held_by"] == ["hold-00000000000a"]
    assert (
        admin_audit.execute(
            "SELECT count(*) FROM audit.purge_log WHERE purge_id = 'audit.events.hipaa-audit.x#2'"
        ).fetchone()[0]
        == 0
    )
    with pg_connect("audit_custodian", autocommit=True) as conn:
        conn.execute("SELECT audit.release_hold('hold-00000000000a')")
    with pg_connect("audit_archiver", autocommit=True) as conn:
        assert (
            conn.execute(
                "SELECT audit.purge_batch('audit.events.hipaa-audit.x', 'audit.events.hipaa-audit.x#2', '{}')"
            ).fetchone()[0]
            == held
        )
    assert _count(admin_audit, "standard = 'hipaa'") == 0


def test_a_partition_is_dropped_only_when_every_row_is_a_verified_batch_row(
    fresh_audit: dict[str, str], admin_audit: Any
) -> None:
    from attestly_dev import audit_seed as seed

    old = _month(-7)
    partition = f"audit.events_y{old:%Y}m{old:%m}"
    seed.seed_audit(start=old + timedelta(days=1), days=1, events_per_day=300)
    scopes = {"pci": ["pci"], "sec": ["soc2", "general"], "hipaa": ["hipaa"]}
    figures = {k: _figures(admin_audit, old, v) for k, v in scopes.items()}
    with pg_connect("audit_archiver", autocommit=True) as conn:
        for k in ("pci", "sec"):
            _authorize(conn, f"b.{k}", old, scopes[k], *figures[k])
        with pytest.raises(psycopg.errors.DataException, match="not covered by a verified batch"):
            conn.execute("SELECT audit.drop_partition_authorized(%s, %s, '{}')", (old, ["b.pci", "b.sec"]))
        _authorize(conn, "b.hipaa", old, scopes["hipaa"], *figures["hipaa"])
        checked = conn.execute(
            "SELECT count(*) FROM audit.purge_authorizations WHERE db_checked_at IS NOT NULL"
        ).fetchone()[0]
        assert checked == 3  # each digest checked once, by the authorisation: the drop counts rows
        # A row added to the month after the check is caught by the counts, under the partition's lock.
        late = uuid.uuid4()
        with pg_connect("audit_writer") as writer:
            writer.execute(
                "INSERT INTO audit.events (id, occurred_at, source, seq, standard, row_hash) "
                "VALUES (%s, %s, 'billing', %s, 'hipaa', %s)",
                (late, _bounds(old)[0] + timedelta(days=4), 10**9, b"\x00" * 32),
            )
            writer.commit()
        with pytest.raises(psycopg.errors.DataException, match="batches verified"):
            conn.execute(
                "SELECT audit.drop_partition_authorized(%s, %s, '{}')", (old, ["b.pci", "b.sec", "b.hipaa"])
            )
        assert admin_audit.execute("SELECT to_regclass(%s)", (partition,)).fetchone()[0] is not None
        with admin_audit.transaction():  # the schema owner takes the late row out again (test setup only)
            admin_audit.execute("SET LOCAL session_replication_role = replica")
            admin_audit.execute("DELETE FROM audit.events WHERE id = %s", (late,))
        n = conn.execute(
            "SELECT audit.drop_partition_authorized(%s, %s, '{}')", (old, ["b.pci", "b.sec", "b.hipaa"])
        ).fetchone()[0]
    assert n == sum(r for r, _ in figures.values())
    assert admin_audit.execute("SELECT to_regclass(%s)", (partition,)).fetchone()[0] is None
    logged = admin_audit.execute(
        "SELECT purge_id, method, rows FROM audit.purge_log ORDER BY purge_id"
    ).fetchall()
    assert logged == [
        ("b.hipaa#1", "partition", figures["hipaa"][0]),
        ("b.pci#1", "partition", figures["pci"][0]),
        ("b.sec#1", "partition", figures["sec"][0]),
    ]


def test_the_database_digest_is_the_archive_digest(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    """audit.scope_figures (what the purge recomputes), the streamed database figures (verification) and
    the Arrow figures (the archive side) give the same block digest, across block boundaries."""
    import pyarrow as pa

    from attestly.archive.schema import HASH_BLOCK_ROWS, Figures
    from attestly_dev import audit_seed as seed

    old = _month(-6)
    seed.seed_audit(start=old + timedelta(days=1), days=2, events_per_day=HASH_BLOCK_ROWS // 2 + 700)
    lo, hi = _bounds(old)
    values = ["pci", "soc2", "general", "hipaa"]
    rows, digest = _figures(admin_audit, old, values)
    assert rows > HASH_BLOCK_ROWS
    data = admin_audit.execute(
        "SELECT id::text, encode(row_hash, 'hex') FROM audit.events WHERE occurred_at >= %s AND occurred_at < %s "
        "ORDER BY id",
        (lo, hi),
    ).fetchall()
    figures = Figures(id_column="id", row_hash_column="row_hash")
    for start in range(0, len(data), 5_000):  # record batches that straddle the block boundary
        chunk = data[start : start + 5_000]
        figures.update(
            pa.table({"id": [r[0] for r in chunk], "row_hash": [r[1] for r in chunk]}).to_batches()[0]
        )
    assert (figures.rows, figures.block_digest) == (rows, digest)
