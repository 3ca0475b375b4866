"""Export one batch: ``COPY (SELECT ...) TO STDOUT`` -> Arrow -> Parquet (zstd) -> AES-256-GCM chunks ->
S3 multipart upload, as one stream.

Memory is bounded whatever the batch size: the COPY stream is parsed by Arrow's CSV reader in blocks,
rows are written in row groups of at most ``row_group_rows``, encrypted in chunks of ``chunk_size`` and
uploaded in parts of ``part_size`` (a few in flight). No plaintext ever touches the disk. The export
reads one consistent snapshot (``REPEATABLE READ READ ONLY``) in ``id`` order, and computes the batch
figures (rows, content hash, id and time range, rows per source) from the very rows it writes.
"""

from __future__ import annotations

import io
import json
import time
from typing import TYPE_CHECKING, Any

from attestly.archive.crypto import EncryptingWriter
from attestly.archive.schema import Figures
from attestly.archive.upload import MultipartSink, abort_stale_uploads, ensure_lock

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa
    from psycopg import sql

    from attestly.archive.context import ArchiveContext
    from attestly.archive.journal import Batch
    from attestly.archive.schema import TableLayout
    from attestly.keys import DataKey

CSV_BLOCK_SIZE = 2 * 1024 * 1024
FORMAT_VERSION = "attestly.archive/v1"


def scope_where(layout: TableLayout, batch: Batch) -> tuple[sql.Composable, list[Any]]:
    """The SQL condition selecting the rows of ``batch`` (its month, its selector values)."""
    from psycopg import sql

    cond = sql.SQL("{ts} >= %s AND {ts} < %s AND {sel} = ANY(%s)").format(
        ts=sql.Identifier(layout.timestamp_column), sel=sql.Identifier(layout.selector_column)
    )
    return cond, [batch.period_start, batch.period_end, list(batch.selector_values)]


class CopyReader(io.RawIOBase):
    """A readable file over a psycopg ``Copy`` (its iterator yields the server's data messages)."""

    def __init__(self, copy: Any) -> None:
        super().__init__()
        self._it = iter(copy)
        self._rest = memoryview(b"")
        self._eof = False
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Exactly ``size`` bytes (fewer only at the end), assembled with a single copy."""
        parts: list[memoryview] = []
        have = 0
        while size is None or size < 0 or have < size:
            if not len(self._rest):
                if self._eof:
                    break
                try:
                    self._rest = memoryview(next(self._it)).cast("B")
                except StopIteration:
                    self._eof = True
                    break
                continue
            take = len(self._rest) if size is None or size < 0 else min(size - have, len(self._rest))
            parts.append(self._rest[:take])
            self._rest = self._rest[take:]
            have += take
        out = b"".join(parts)
        self.bytes_read += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


def _csv_reader(source: CopyReader, layout: TableLayout) -> Any:
    import pyarrow.csv as pcsv

    return pcsv.open_csv(
        source,
        read_options=pcsv.ReadOptions(
            column_names=[c.name for c in layout.columns], block_size=CSV_BLOCK_SIZE, use_threads=True
        ),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types={c.name: c.parse_type() for c in layout.columns},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Attach the archive schema (nullability, metadata) to a parsed batch, casting a column only if its
    parsed type differs (it does not for the types :class:`~attestly.archive.schema.Column` parses)."""
    import pyarrow as pa

    arrays = []
    for i, field in enumerate(schema):
        col = batch.column(i)
        if col.type != field.type:
            col = col.cast(field.type)
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def export_query(layout: TableLayout, where: sql.Composable) -> sql.Composed:
    from psycopg import sql

    return sql.SQL("COPY (SELECT {} FROM {} WHERE {} ORDER BY {}) TO STDOUT (FORMAT csv)").format(
        sql.SQL(", ").join(c.select_expr() for c in layout.columns),
        layout.ident(),
        where,
        sql.Identifier(layout.id_column),
    )


def export_and_upload(ctx: ArchiveContext, batch: Batch, data_key: DataKey) -> dict[str, Any]:
    """Stream the batch into a new, locked object at ``batch.object_key``; returns the upload details
    (version id, object hash and size, and the batch figures as exported).

    The caller has checked that the key holds no version yet. A crash anywhere leaves at most an
    incomplete multipart upload, which the next attempt aborts.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = ctx.layout
    where, params = scope_where(layout, batch)
    schema = layout.arrow_schema(
        {
            "format": FORMAT_VERSION,
            "batch_id": batch.batch_id,
            "source_table": batch.source_table,
            "class": batch.class_name,
            "month": f"{batch.month:%Y-%m}",
            "key_id": batch.key_id,
            "id_column": layout.id_column,
            "row_hash_column": layout.row_hash_column,
            "timestamp_column": layout.timestamp_column,
            "content_hash_definition": "sha256 over '<id>:<row_hash hex>\\n' per row in id order",
        }
    )
    # What verification compares; sources and subjects are counted from the archive when it is read back.
    figures = Figures(id_column=layout.id_column, row_hash_column=layout.row_hash_column)
    started = time.perf_counter()
    s3 = ctx.s3
    abort_stale_uploads(s3, bucket=batch.bucket, key=batch.object_key)
    sink = MultipartSink(
        s3=s3,
        bucket=batch.bucket,
        key=batch.object_key,
        retain_until=batch.retain_until,
        metadata={
            "attestly-batch": batch.batch_id,
            "attestly-key": batch.key_id,
            "attestly-format": FORMAT_VERSION,
        },
        part_size=ctx.part_size,
    )
    try:
        writer = EncryptingWriter(
            data_key=data_key.material(),
            batch_id=batch.batch_id,
            key_id=batch.key_id,
            sink=sink.write,
            chunk_size=ctx.chunk_size,
        )
        row_groups = 0
        conn: psycopg.Connection[Any] = ctx.reader()
        pq_writer = pq.ParquetWriter(
            writer,
            schema,
            compression="zstd",
            use_dictionary=layout.dictionary_columns(),
            write_statistics=True,
            store_schema=True,
        )
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        limit = ctx.row_group_rows

        def flush(*, final: bool) -> None:
            nonlocal pending, pending_rows, row_groups
            while pending_rows >= limit or (final and pending_rows):
                table = pa.Table.from_batches(pending, schema=schema)
                take = min(limit, pending_rows)
                pq_writer.write_table(table.slice(0, take), row_group_size=take)
                row_groups += 1
                rest = table.slice(take)
                pending = rest.to_batches() if rest.num_rows else []
                pending_rows = rest.num_rows

        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            with conn.cursor() as cur, cur.copy(export_query(layout, where), params) as copy:
                source = CopyReader(copy)
                for parsed in _csv_reader(source, layout):
                    rb = _conform(parsed, schema)
                    figures.update(rb)
                    pending.append(rb)
                    pending_rows += rb.num_rows
                    flush(final=False)
                flush(final=True)
        pq_writer.add_key_value_metadata({"attestly.figures": json.dumps(figures.summary(), sort_keys=True)})
        pq_writer.close()
        writer.close()
        version = sink.complete()
    except BaseException:
        sink.abort()
        raise
    lock = ensure_lock(
        s3, bucket=batch.bucket, key=batch.object_key, version_id=version, retain_until=batch.retain_until
    )
    return {
        "version_id": version,
        "created": True,
        "object_sha256": writer.sha256,
        "object_bytes": writer.object_bytes,
        "plaintext_bytes": writer.plaintext_bytes,
        "chunks": writer.chunks,
        "chunk_size": ctx.chunk_size,
        "row_groups": row_groups,
        "csv_bytes": source.bytes_read,
        "lock_mode": lock.mode,
        "retain_until": lock.retain_until.isoformat() if lock.retain_until else None,
        "exported": figures.summary(),
        "seconds": round(time.perf_counter() - started, 3),
    }
