"""``attestly archive restore BATCH --into TABLE``: decrypt an archive into a scratch table and reconcile it.

The table is created (it must not exist) in the audit database, by default in the schema
``archive_restore`` — the only schema the ``audit_archiver`` role may create tables in — with the
archived columns and their original PostgreSQL types, and loaded row group by row group (memory bounded
by a row group). The restored rows are then reconciled with the manifest recorded at verification: row
count, content hash and min/max id, all computed by the database over the new table.
"""

from __future__ import annotations

import dataclasses
import io
import re
from typing import TYPE_CHECKING, Any

from attestly.archive.errors import ArchiveError, VerificationMismatch
from attestly.archive.schema import Column, database_figures
from attestly.archive.upload import read_lock
from attestly.archive.verify import open_archive

if TYPE_CHECKING:
    import pyarrow as pa

    from attestly.archive.context import ArchiveContext

RESTORE_SCHEMA = "archive_restore"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PG_TYPE = re.compile(r'^[A-Za-z0-9 _,()\[\]."]+$')


class RestoreTargetError(ValueError):
    """``--into`` is not a usable table name, or the table already exists."""


def parse_target(into: str) -> tuple[str, str]:
    """``name`` or ``schema.name`` (plain identifiers); the schema defaults to ``archive_restore``."""
    parts = into.split(".")
    if len(parts) == 1:
        parts = [RESTORE_SCHEMA, parts[0]]
    if len(parts) != 2 or not all(_IDENT.match(p) for p in parts):
        raise RestoreTargetError(
            f"--into {into!r} is not a table name (name or schema.name, plain identifiers)"
        )
    return parts[0], parts[1]


def _csv_batch(table: pa.Table, columns: list[Column]) -> bytes:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    arrays = []
    for col, arr in zip(columns, table.columns, strict=True):
        arrays.append(pc.binary_join_element_wise(pa.scalar("\\x"), arr, "") if col.kind == "bytea" else arr)
    out = io.BytesIO()
    pcsv.write_csv(
        pa.table(arrays, names=[c.name for c in columns]),
        out,
        write_options=pcsv.WriteOptions(include_header=False, quoting_style="all_valid"),
    )
    return out.getvalue()


def restore_batch(ctx: ArchiveContext, batch_id: str, *, into: str) -> dict[str, Any]:
    """Restore ``batch_id`` into ``into``; returns the reconciliation. Raises :class:`RestoreTargetError`
    (bad or existing table), :class:`VerificationMismatch` (restored rows differ from the manifest)."""
    from psycopg import sql

    schema_name, table = parse_target(into)
    batch = ctx.journal.batch(batch_id)
    verified = ctx.journal.last_in_state(batch_id, "verified")
    uploaded = ctx.journal.last_in_state(batch_id, "uploaded")
    if verified is None or uploaded is None:
        raise ArchiveError(f"archive batch {batch_id} has not been verified; nothing to restore from")
    version = str(uploaded.details["version_id"])
    lock = read_lock(ctx.s3, bucket=batch.bucket, key=batch.object_key, version_id=version)
    with ctx.registry.open(batch.key_id) as key:
        pf, meta = open_archive(ctx, batch, version_id=version, data_key=key, size=lock.size)
        columns = [Column(c["name"], c["pg_type"], c["kind"], bool(c["nullable"])) for c in meta["columns"]]
        for c in columns:
            if not _PG_TYPE.match(c.pg_type):
                raise ArchiveError(f"archive column {c.name!r} has an unexpected type {c.pg_type!r}")
        target = sql.Identifier(schema_name, table)
        with ctx.archiver() as conn:
            exists = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (sql.Identifier(schema_name, table).as_string(conn),)
            ).fetchone()
            if exists and exists[0]:
                raise RestoreTargetError(
                    f"--into {schema_name}.{table} already exists; restore into a new table"
                )
            with conn.transaction():
                conn.execute(
                    sql.SQL("CREATE TABLE {} ({})").format(
                        target,
                        sql.SQL(", ").join(
                            sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
                            for c in columns  # type: ignore[arg-type]
                        ),
                    )
                )
                copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                    target, sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
                )
                with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                    for i in range(pf.metadata.num_row_groups):
                        copy.write(_csv_batch(pf.read_row_group(i), columns))
            layout = dataclasses.replace(
                ctx.layout, schema_name=schema_name, table=table, columns=tuple(columns)
            )
            restored = database_figures(conn, layout, sql.SQL("true"), [])
            conn.commit()
    expected = verified.details["archive"]
    problems = [
        f"{f}: restored {restored[f]!r} != manifest {expected[f]!r}"
        for f in ("rows", "content_hash", "min_id", "max_id")
        if restored[f] != expected[f]
    ]
    result = {
        "batch_id": batch_id,
        "table": f"{schema_name}.{table}",
        "rows": restored["rows"],
        "content_hash": restored["content_hash"],
        "min_id": restored["min_id"],
        "max_id": restored["max_id"],
        "manifest": {f: expected[f] for f in ("rows", "content_hash", "min_id", "max_id")},
        "reconciled": not problems,
    }
    if problems:
        raise VerificationMismatch(batch_id, [f"restore into {schema_name}.{table}: {p}" for p in problems])
    return result
