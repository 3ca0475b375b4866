"""Export one batch: ``COPY (SELECT ...) TO STDOUT`` -> Arrow -> Parquet (zstd) -> AES-256-GCM chunks ->
S3 multipart upload, as one stream.

The rows leave the database as ``COPY ... (FORMAT binary)``, decoded into Arrow record batches by the
PostgreSQL ADBC driver (C++): timestamps, integers and booleans travel in binary, so the database formats
no text for them and nothing parses it. The CSV path (``COPY ... (FORMAT csv)`` parsed by Arrow's CSV
reader) gives the same archive and stays available (``decoder="csv"``).

Memory is bounded whatever the batch size: the COPY stream is decoded in blocks,
rows are written in row groups of at most ``row_group_rows``, encrypted in chunks of ``chunk_size`` and
uploaded in parts of ``part_size`` (a few in flight). No plaintext ever touches the disk. The export
reads one consistent snapshot (``REPEATABLE READ READ ONLY``) in ``id`` order, and computes the batch
figures (rows, content hash, id and time range, rows per source) from the very rows it writes.

Three stages overlap, each on its own thread with a short queue between them (so memory stays bounded):
receiving and parsing the COPY stream; figures, Parquet and encryption; the part uploads."""

from __future__ import annotations

import io
import json
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from attestly.archive.crypto import EncryptingWriter
from attestly.archive.errors import ArchiveError
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

T = TypeVar("T")

CSV_BLOCK_SIZE = 2 * 1024 * 1024
#: Decoded record batches of the binary export are about this size (the driver's default, 16 MiB, holds
#: several row groups' worth of rows in the queue: memory, for no speed).
BINARY_BATCH_BYTES = 4 * 1024 * 1024
#: Parsed CSV blocks (of ``CSV_BLOCK_SIZE`` bytes each) or decoded batches waiting between the COPY
#: thread and the writer.
PARSED_QUEUE_DEPTH = 2
FORMAT_VERSION = "attestly.archive/v1"
#: How the export receives the rows by default: "binary" (COPY ... (FORMAT binary), decoded into Arrow by
#: the PostgreSQL ADBC driver) or "csv" (COPY ... (FORMAT csv), parsed by Arrow's CSV reader).
EXPORT_DECODER = "binary"


def scope_where(layout: TableLayout, batch: Batch) -> tuple[sql.Composable, list[Any]]:
    """The SQL condition selecting the rows of ``batch`` (its month, its selector values)."""
    from psycopg import sql

    cond = sql.SQL("{ts} >= %s AND {ts} < %s AND {sel} = ANY(%s)").format(
        ts=sql.Identifier(layout.timestamp_column), sel=sql.Identifier(layout.selector_column)
    )
    return cond, [batch.period_start, batch.period_end, list(batch.selector_values)]


def scope_where_literal(layout: TableLayout, batch: Batch) -> sql.Composable:
    """:func:`scope_where` with its values as SQL literals (quoted by psycopg), for a statement sent
    without bound parameters."""
    from psycopg import sql

    return sql.SQL("{ts} >= {lo} AND {ts} < {hi} AND {sel} = ANY({values})").format(
        ts=sql.Identifier(layout.timestamp_column),
        sel=sql.Identifier(layout.selector_column),
        lo=sql.Literal(batch.period_start),
        hi=sql.Literal(batch.period_end),
        values=sql.Literal(list(batch.selector_values)),
    )


class CopyReader(io.RawIOBase):
    """A readable file over a psycopg ``Copy`` (``COPY ... TO STDOUT``).

    The server sends one message per row. Going through ``Copy.read`` for each would cost a round of
    psycopg's wait machinery per row (more than parsing the row), so the messages are drained straight
    from libpq, as many as are already received, into one buffer per read: the work per row is one
    ``PQgetCopyData`` and one append. The end of the data and the command's result are consumed here too
    (a failed COPY raises), which leaves ``Copy`` nothing to do on exit.
    """

    def __init__(self, copy: Any) -> None:
        super().__init__()
        self._conn = copy.connection
        self._buf = bytearray()
        self._eof = False
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def _fill(self, size: int) -> None:
        if not self._eof:
            self._eof = self._conn.wait(_copy_out(self._conn.pgconn, self._buf, size))

    def read(self, size: int = -1) -> bytes:
        """Exactly ``size`` bytes (fewer only at the end)."""
        buf = self._buf
        if size is None or size < 0:
            while not self._eof:
                self._fill(len(buf) + CSV_BLOCK_SIZE)
            size = len(buf)
        elif len(buf) < size and not self._eof:
            self._fill(size)
        if len(buf) <= size:
            out = bytes(buf)
            buf.clear()
        else:
            with memoryview(buf) as view:
                out = bytes(view[:size])
            del buf[:size]
        self.bytes_read += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


def _copy_out(pgconn: Any, buf: bytearray, size: int) -> Generator[Any, Any, bool]:
    """A generator for ``Connection.wait``: append ``COPY TO STDOUT`` data to ``buf`` until it holds at
    least ``size`` bytes. Returns True at the end of the data, once the command's result is read (raises
    :class:`ArchiveError` if the COPY failed)."""
    from psycopg import pq
    from psycopg.waiting import Wait

    while len(buf) < size:
        nbytes, data = pgconn.get_copy_data(1)
        if nbytes > 0:
            buf += data
            continue
        if nbytes == 0:  # no complete message received yet
            while not (yield Wait.R):
                pass
            pgconn.consume_input()
            continue
        errors: list[str] = []  # end of the data: the command's result(s) follow
        while True:
            while pgconn.is_busy():
                while not (yield Wait.R):
                    pass
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                break
            if result.status != pq.ExecStatus.COMMAND_OK:
                errors.append((result.error_message or b"").decode("utf-8", "replace").strip())
        if errors:
            raise ArchiveError(f"COPY of the batch's rows failed: {'; '.join(errors)}")
        return True
    return False


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
    """Attach the archive schema (nullability, metadata) to a parsed or decoded batch, casting a column
    only if its type differs (it does not for the types :class:`~attestly.archive.schema.Column` parses);
    bytes (``bytea`` from the binary COPY) become their hex text."""
    import pyarrow as pa

    from attestly.archive.schema import hex_text

    arrays = []
    for i, field in enumerate(schema):
        col = batch.column(i)
        if col.type != field.type:
            if pa.types.is_binary(col.type) and pa.types.is_string(field.type):
                col = hex_text(col)
            else:
                col = col.cast(field.type)
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class Prefetched(Generic[T]):
    """The items of ``produce()``, produced on a thread of their own at most ``depth`` ahead of the
    consumer, so producing (waiting on a socket, parsing, decrypting: work that releases the interpreter)
    overlaps with consuming. Memory is bounded by ``depth`` items.

    Iterate inside ``with``. An error in ``produce`` is raised by the iteration; leaving the block early
    (an error downstream) stops the thread and closes the producing generator where it stands, so its
    ``with`` blocks unwind (a COPY is cancelled, a transaction rolled back, a response closed).
    """

    _END = object()

    def __init__(self, produce: Callable[[], Iterable[T]], *, depth: int, name: str) -> None:
        self._produce = produce
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Prefetched[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is self._END:
                break
            yield item
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _run(self) -> None:
        try:
            items = iter(self._produce())
            try:
                for item in items:
                    self._put(item)
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
        except _Stopped:
            return
        except BaseException as exc:  # handed to the consuming thread
            self._error = exc
        try:
            self._put(self._END)
        except _Stopped:
            return


class _Stopped(Exception):
    """The consumer of a :class:`Prefetched` left early."""


def _parsed_rows(
    conn: psycopg.Connection[Any],
    query: sql.Composed,
    params: list[Any],
    layout: TableLayout,
    schema: pa.Schema,
    counted: dict[str, int],
) -> Iterator[pa.RecordBatch]:
    """The batch's rows as record batches of the archive schema, from CSV text: one ``COPY`` in one
    ``REPEATABLE READ READ ONLY`` transaction. ``counted["bytes"]`` receives the size of the COPY data."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        with conn.cursor() as cur, cur.copy(query, params) as copy:
            source = CopyReader(copy)
            try:
                for parsed in _csv_reader(source, layout):
                    yield _conform(parsed, schema)
            finally:
                counted["bytes"] = source.bytes_read


#: PostgreSQL's first timestamp (4714-11-24 00:00 BC) and date, in Arrow's units since 1970. The driver
#: turns ``infinity`` (and years past Arrow's range) into values below these (it wraps); the CSV path
#: refuses them at parsing, and so does this one.
_PG_MIN_TIMESTAMP_US = -210_866_803_200_000_000
_PG_MIN_DATE_DAYS = -2_440_588


def _check_finite(batch: pa.RecordBatch, layout: TableLayout) -> None:
    import pyarrow.compute as pc

    for i, column in enumerate(layout.columns):
        if column.kind in ("timestamptz", "timestamp", "date"):
            arr = batch.column(i)
            if arr.null_count == len(arr):
                continue
            low = pc.min(arr.cast("int64" if column.kind != "date" else "int32")).as_py()
            floor = _PG_MIN_DATE_DAYS if column.kind == "date" else _PG_MIN_TIMESTAMP_US
            if low < floor:
                raise ArchiveError(
                    f"{layout.qualified}.{column.name}: an infinite or out-of-range {column.pg_type} value "
                    "cannot be archived"
                )


def _binary_rows(
    conninfo: str,
    query: str,
    layout: TableLayout,
    schema: pa.Schema,
    counted: dict[str, int],
) -> Iterator[pa.RecordBatch]:
    """The batch's rows as record batches of the archive schema, from ``COPY ... (FORMAT binary)``
    decoded into Arrow by the PostgreSQL ADBC driver (C++; no per-row work in Python), on a connection
    of its own (the reader's connection parameters and session settings) in one ``REPEATABLE READ READ
    ONLY`` transaction. ``counted["bytes"]`` receives the size of the decoded Arrow data.

    ``query`` is complete (its parameters inlined as literals): the driver streams COPY only for a
    statement without bound parameters."""
    import adbc_driver_postgresql.dbapi as adbc

    from attestly.runcontext import AUDIT_SESSION_SETTINGS

    with adbc.connect(conninfo, autocommit=True) as conn, conn.cursor() as cur:
        for statement in AUDIT_SESSION_SETTINGS:
            cur.execute(statement)
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(BINARY_BATCH_BYTES)})
        cur.execute(query)
        reader = cur.fetch_record_batch()
        size = 0
        try:
            for decoded in reader:
                _check_finite(decoded, layout)
                size += decoded.nbytes
                yield _conform(decoded, schema)
        finally:
            counted["bytes"] = size
            reader.close()
        cur.execute("COMMIT")


def export_query(layout: TableLayout, where: sql.Composable) -> sql.Composed:
    from psycopg import sql

    return sql.SQL("COPY (SELECT {} FROM {} WHERE {} ORDER BY {}) TO STDOUT (FORMAT csv)").format(
        sql.SQL(", ").join(c.select_expr() for c in layout.columns),
        layout.ident(),
        where,
        sql.Identifier(layout.id_column),
    )


def binary_export_query(layout: TableLayout, where: sql.Composable) -> sql.Composed:
    """The SELECT the binary export streams (the driver wraps it in ``COPY ... (FORMAT binary)``).

    The sort key is the table's column, qualified: a bare name in ``ORDER BY`` would name the output
    column of that name, which for a non-text id is its text form (a different, slower order)."""
    from psycopg import sql

    return sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}.{}").format(
        sql.SQL(", ").join(c.binary_select_expr() for c in layout.columns),
        layout.ident(),
        where,
        layout.ident(),
        sql.Identifier(layout.id_column),
    )


def export_and_upload(
    ctx: ArchiveContext, batch: Batch, data_key: DataKey, *, decoder: str | None = None
) -> dict[str, Any]:
    """Stream the batch into a new, locked object at ``batch.object_key``; returns the upload details
    (version id, object hash and size, and the batch figures as exported).

    ``decoder`` (default :data:`EXPORT_DECODER`) picks how the rows leave the database: ``"binary"``
    (binary COPY decoded into Arrow by the ADBC driver) or ``"csv"`` (CSV COPY parsed by Arrow). Both
    give the same archive: the same schema, rows and figures.

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
    conn: psycopg.Connection[Any] = ctx.reader()
    counted = {"bytes": 0}
    decoder = decoder or EXPORT_DECODER
    if decoder == "binary":
        from attestly.connections import get_conn

        conninfo = get_conn(ctx.reader_conn_id).pg_conninfo()
        query = binary_export_query(layout, scope_where_literal(layout, batch)).as_string(conn)

        def produce() -> Iterator[pa.RecordBatch]:
            return _binary_rows(conninfo, query, layout, schema, counted)

    elif decoder == "csv":

        def produce() -> Iterator[pa.RecordBatch]:
            return _parsed_rows(conn, export_query(layout, where), params, layout, schema, counted)

    else:
        raise ValueError(f"unknown export decoder {decoder!r} (binary or csv)")
    # The database's rows are received and parsed on a thread of their own while this one computes the
    # figures and writes, compresses and encrypts Parquet (Arrow releases the interpreter for both), so the
    # two overlap; a short queue of parsed blocks between them keeps memory bounded. The COPY starts first:
    # the database sorts the batch while the upload is being set up.
    with Prefetched(
        produce,
        depth=PARSED_QUEUE_DEPTH,
        name="archive-export-copy",
    ) as parsed_rows:
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

            for rb in parsed_rows:
                figures.update(rb)
                pending.append(rb)
                pending_rows += rb.num_rows
                flush(final=False)
            flush(final=True)
            pq_writer.add_key_value_metadata(
                {"attestly.figures": json.dumps(figures.summary(), sort_keys=True)}
            )
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
        "decoder": decoder,
        # The size of what was decoded: the CSV text ("csv"), the Arrow data ("binary").
        "csv_bytes": counted["bytes"],
        "lock_mode": lock.mode,
        "retain_until": lock.retain_until.isoformat() if lock.retain_until else None,
        "exported": figures.summary(),
        "seconds": round(time.perf_counter() - started, 3),
    }
