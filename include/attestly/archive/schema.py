"""The audit table as the archive sees it: its columns, how each is exported, and the batch figures.

An archive holds **every** column of the user's table (not only the mapped ones), in table order. Types
are kept exactly: integers, booleans, dates and timestamps become typed Parquet columns (``timestamptz``
as microseconds in UTC); ``bytea`` is stored as lower-case hex text; every other type (uuid, text, inet,
jsonb, numeric, floats, arrays...) as PostgreSQL's own text form, which PostgreSQL reads back
identically. The PostgreSQL type of each column is recorded in the Parquet metadata, so a restore
re-creates the table with the same types.

**Content hash** (the batch's identity for verification): SHA-256 over one line per row, in ``id``
order (PostgreSQL's ``ORDER BY id``), each line ``<id as text>:<row_hash as lower-case hex>\\n`` (an
empty hash for a NULL ``row_hash``). Anyone can recompute it from the database with::

    COPY (SELECT id::text || ':' || coalesce(encode(row_hash, 'hex'), '') FROM ... ORDER BY id) TO STDOUT

piped into ``sha256sum``; from the archive with :class:`Figures`; and from the database, streamed, with
:func:`database_figures`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from attestly.archive.errors import ArchiveConfigError

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa
    from psycopg import sql

    from attestly.policy import Policy

METADATA_KEY = b"attestly.archive"
#: Hash lines the database concatenates per fetched block when computing the content hash.
HASH_BLOCK_ROWS = 16_384
CONTENT_HASH_DEFINITION = (
    "sha256 over '<id>:<row_hash hex>\\n' for every row in ORDER BY id (empty hash text for NULL row_hash)"
)
#: The digest the audit database recomputes when it authorises a purge (audit.scope_figures) and when it
#: deletes rows (audit.purge_batch): the same lines in blocks
#: of HASH_BLOCK_ROWS, hashed per block, then hashed together — computable block by block in SQL.
BLOCK_DIGEST_DEFINITION = (
    "sha256 over the concatenated sha256 of each block of 16384 consecutive content-hash lines "
    "('<id>:<row_hash hex>\\n', ORDER BY id); sha256 of nothing for no rows"
)

_TYPED_KINDS = {
    "int8": "int64",
    "int4": "int32",
    "int2": "int16",
    "bool": "bool",
    "date": "date",
    "timestamptz": "timestamptz",
    "timestamp": "timestamp",
    "bytea": "bytea",
}
#: Kinds the binary COPY carries in PostgreSQL's binary form (decoded to their Arrow type by the driver).
_BINARY_KINDS = frozenset({"int64", "int32", "int16", "bool", "date", "timestamptz", "timestamp"})


@dataclass(frozen=True)
class Column:
    """One column of the audit table: physical ``name``, PostgreSQL ``pg_type`` (``format_type``), the
    archive ``kind`` (int64, int32, int16, bool, date, timestamptz, timestamp, bytea or text)."""

    name: str
    pg_type: str
    kind: str
    nullable: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pg_type": self.pg_type, "kind": self.kind, "nullable": self.nullable}

    @property
    def dictionary_encoded(self) -> bool:
        """Whether Parquet should dictionary-encode the column: plain text types (low cardinality in an
        audit log: sources, actions, results...). Ids, hashes, bytes, JSON and addresses are left plain."""
        return self.kind == "text" and (self.pg_type == "text" or self.pg_type.startswith("character"))

    def select_expr(self) -> sql.Composable:
        """The expression exported for this column (its CSV text is what Arrow parses)."""
        from psycopg import sql

        ident = sql.Identifier(self.name)
        if self.kind == "timestamptz":
            return sql.SQL("(({} AT TIME ZONE 'UTC')::text || 'Z')").format(ident)
        if self.kind == "bytea":
            return sql.SQL("encode({}, 'hex')").format(ident)
        return ident

    def binary_select_expr(self) -> sql.Composable:
        """The expression exported for this column by the binary COPY (``AS`` its name), decoded by the
        PostgreSQL ADBC driver straight into :meth:`arrow_type`: typed columns travel in PostgreSQL's
        binary form (no text formatting, no parsing); ``bytea`` as its bytes (:func:`hex_text` turns them
        into the archive's hex text, vectorised); plain text as is; every
        other type as its output function's text — ``format('%s', v)`` calls exactly the function CSV
        output calls (unlike some casts to text: ``inet::text`` appends ``/32``), NULL kept NULL."""
        from psycopg import sql

        ident = sql.Identifier(self.name)
        if (
            self.kind in _BINARY_KINDS
            or self.kind == "bytea"
            or self.pg_type == "text"
            or self.pg_type.startswith("character")
        ):
            expr: sql.Composable = ident
        else:
            expr = sql.SQL("CASE WHEN {0} IS NULL THEN NULL ELSE format('%s', {0}) END").format(ident)
        return sql.SQL("{} AS {}").format(expr, ident)

    def parse_type(self) -> pa.DataType:
        """Arrow type the CSV text is parsed as."""
        import pyarrow as pa

        return {
            "int64": pa.int64(),
            "int32": pa.int32(),
            "int16": pa.int16(),
            "bool": pa.bool_(),
            "date": pa.date32(),
            "timestamptz": pa.timestamp("us", tz="UTC"),
            "timestamp": pa.timestamp("us"),
        }.get(self.kind, pa.string())

    def arrow_type(self) -> pa.DataType:
        """Arrow (Parquet) type stored in the archive (the parsed type: no conversion pass)."""
        return self.parse_type()


def hex_text(array: pa.Array) -> pa.Array:
    """A binary array as lower-case hex text (``encode(v, 'hex')``; NULL stays NULL), in bulk: each byte
    is looked up in a 256-entry table of two-character codes, and every offset doubles."""
    import numpy as np
    import pyarrow as pa

    if array.offset:  # buffers read from the start: make the array start at its buffers' start
        array = pa.concat_arrays([array])
    n = len(array)
    validity, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=n + 1) if n else np.zeros(1, np.int32)
    start, end = int(offsets[0]), int(offsets[-1])
    if end - start > (2**31 - 1) // 2:
        raise ValueError("binary array too large to hex-encode into one string array")
    raw = np.frombuffer(data_buf, dtype=np.uint8, count=end - start, offset=start) if end > start else None
    text = _hex_codes()[raw] if raw is not None else np.zeros(0, dtype="<u2")
    return pa.StringArray.from_buffers(
        n,
        pa.py_buffer((offsets - start) * 2),
        pa.py_buffer(text),
        validity,
        array.null_count,
    )


@functools.cache
def _hex_codes() -> Any:
    import numpy as np

    # Little-endian 16-bit codes: the first character in the low byte, so memory reads "0f", not "f0".
    return np.array([ord(f"{b:02x}"[0]) | ord(f"{b:02x}"[1]) << 8 for b in range(256)], dtype="<u2")


@dataclass(frozen=True)
class TableLayout:
    """The audit table and the logical columns the archive needs (physical names)."""

    schema_name: str
    table: str
    columns: tuple[Column, ...]
    id_column: str
    timestamp_column: str
    row_hash_column: str
    selector_column: str
    source_column: str
    subject_column: str | None

    @property
    def qualified(self) -> str:
        return f"{self.schema_name}.{self.table}"

    def ident(self) -> sql.Composed:
        from psycopg import sql

        return sql.SQL("{}.{}").format(sql.Identifier(self.schema_name), sql.Identifier(self.table))

    def dictionary_columns(self) -> list[str]:
        """Columns to dictionary-encode (never the id or the row hash)."""
        return [
            c.name
            for c in self.columns
            if c.dictionary_encoded and c.name not in (self.id_column, self.row_hash_column)
        ]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise ArchiveConfigError(f"column {name!r} is not in {self.qualified}")

    def arrow_schema(self, metadata: dict[str, Any]) -> pa.Schema:
        import pyarrow as pa

        meta = {**metadata, "columns": [c.to_dict() for c in self.columns]}
        return pa.schema(
            [pa.field(c.name, c.arrow_type(), nullable=c.nullable) for c in self.columns],
            metadata={METADATA_KEY: json.dumps(meta, sort_keys=True).encode()},
        )

    def hash_line_sql(self) -> sql.Composed:
        """SQL for one content-hash line of a row (see module docstring), without the newline."""
        from psycopg import sql

        return sql.SQL("{}::text || ':' || coalesce(encode({}, 'hex'), '')").format(
            sql.Identifier(self.id_column), sql.Identifier(self.row_hash_column)
        )


def describe_table(conn: psycopg.Connection[Any], policy: Policy) -> TableLayout:
    """Read the audit table's columns from the catalog and check the columns the archive needs."""
    from psycopg import sql

    src = policy.sources
    t = src.audit_table
    needed = ("id", "timestamp", "row_hash", "source", policy.retention.selector_column)
    for logical in needed:
        if not src.has_column(logical):
            raise ArchiveConfigError(
                f"sources.yaml: logical column {logical!r} is not mapped; the archive needs it "
                "(content hash, batch scope, legal holds)"
            )
    qualified = sql.Identifier(t.schema_name, t.table).as_string(conn)
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), ty.typname, NOT a.attnotnull
             FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
            WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""",
        (qualified,),
    ).fetchall()
    conn.commit()
    if not rows:
        raise ArchiveConfigError(f"audit table {t.schema_name}.{t.table} does not exist or has no columns")
    columns = tuple(
        Column(name=r[0], pg_type=r[1], kind=_TYPED_KINDS.get(r[2], "text"), nullable=bool(r[3]))
        for r in rows
    )
    names = {c.name for c in columns}
    for logical in (*needed, "subject"):
        if src.has_column(logical) and src.column(logical) not in names:
            raise ArchiveConfigError(
                f"sources.yaml maps {logical!r} to {src.column(logical)!r}, which is not a column of "
                f"{t.schema_name}.{t.table}"
            )
    layout = TableLayout(
        schema_name=t.schema_name,
        table=t.table,
        columns=columns,
        id_column=src.column("id"),
        timestamp_column=src.column("timestamp"),
        row_hash_column=src.column("row_hash"),
        selector_column=src.column(policy.retention.selector_column),
        source_column=src.column("source"),
        subject_column=src.column("subject") if src.has_column("subject") else None,
    )
    if layout.column(layout.timestamp_column).kind != "timestamptz":
        raise ArchiveConfigError(
            f"{layout.qualified}.{layout.timestamp_column}: the timestamp column must be timestamptz "
            f"(found {layout.column(layout.timestamp_column).pg_type})"
        )
    if layout.column(layout.row_hash_column).kind != "bytea":
        raise ArchiveConfigError(
            f"{layout.qualified}.{layout.row_hash_column}: row_hash must be bytea "
            f"(found {layout.column(layout.row_hash_column).pg_type})"
        )
    return layout


# -------------------------------------------------------------------------------------------- figures


@dataclass
class Figures:
    """Row count, content hash, id and timestamp range, rows per source and the distinct subjects of a
    batch, accumulated from Arrow record batches in id order (the archive side of verification)."""

    id_column: str
    row_hash_column: str
    timestamp_column: str | None = None
    source_column: str | None = None
    subject_column: str | None = None
    rows: int = 0
    min_id: str | None = None
    max_id: str | None = None
    min_ts: str | None = None
    max_ts: str | None = None
    sources: Counter[str] = field(default_factory=Counter)
    subjects: set[str] = field(default_factory=set)
    _hash: Any = field(default_factory=hashlib.sha256)
    _blocks: Any = field(default_factory=hashlib.sha256)
    _block: Any = field(default_factory=hashlib.sha256)
    _block_rows: int = 0

    def columns(self) -> list[str]:
        cols = [self.id_column, self.row_hash_column]
        for c in (self.timestamp_column, self.source_column, self.subject_column):
            if c is not None and c not in cols:
                cols.append(c)
        return cols

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        n = batch.num_rows
        if n == 0:
            return
        ids = batch.column(self.id_column)
        if not pa.types.is_string(ids.type) and not pa.types.is_large_string(ids.type):
            ids = pc.cast(ids, pa.string())
        hashes = batch.column(self.row_hash_column)
        if hashes.null_count:
            hashes = pc.fill_null(hashes, "")
        lines = pc.binary_join_element_wise(ids, ":", hashes, "\n", "")
        chunks = lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]
        for arr in chunks:
            if len(arr) == 0:
                continue
            if arr.null_count:
                raise ArchiveConfigError(f"NULL {self.id_column} in an archive batch: ids must never be NULL")
            offsets = arr.buffers()[1]
            data = arr.buffers()[2]
            import numpy as np

            off = np.frombuffer(offsets, dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
            view = memoryview(data)
            self._hash.update(view[int(off[0]) : int(off[-1])])
            i, n_lines = 0, len(arr)
            while i < n_lines:
                take = min(n_lines - i, HASH_BLOCK_ROWS - self._block_rows)
                self._block.update(view[int(off[i]) : int(off[i + take])])
                self._block_rows += take
                i += take
                if self._block_rows == HASH_BLOCK_ROWS:
                    self._blocks.update(self._block.digest())
                    self._block, self._block_rows = hashlib.sha256(), 0
        first, last = ids[0].as_py(), ids[n - 1].as_py()
        if self.min_id is None:
            self.min_id = first
        self.max_id = last
        self.rows += n
        if self.timestamp_column is not None:
            mm = pc.min_max(batch.column(self.timestamp_column))
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            if lo is not None:
                lo_s, hi_s = lo.isoformat(), hi.isoformat()
                self.min_ts = lo_s if self.min_ts is None or lo_s < self.min_ts else self.min_ts
                self.max_ts = hi_s if self.max_ts is None or hi_s > self.max_ts else self.max_ts
        if self.source_column is not None:
            counts = pc.value_counts(batch.column(self.source_column))
            for item in counts.to_pylist():
                self.sources[str(item["values"])] += int(item["counts"])
        if self.subject_column is not None:
            subjects = pc.unique(pc.drop_null(batch.column(self.subject_column)))
            self.subjects.update(str(s) for s in subjects.to_pylist())

    @property
    def content_hash(self) -> str:
        return str(self._hash.hexdigest())

    @property
    def block_digest(self) -> str:
        """:data:`BLOCK_DIGEST_DEFINITION` of the rows so far."""
        outer = self._blocks.copy()
        if self._block_rows:
            outer.update(self._block.digest())
        return str(outer.hexdigest())

    def summary(self) -> dict[str, Any]:
        """JSON-able figures (no subject ids: only how many)."""
        return {
            "rows": self.rows,
            "content_hash": self.content_hash,
            "block_digest": self.block_digest,
            "min_id": self.min_id,
            "max_id": self.max_id,
            "min_timestamp": self.min_ts,
            "max_timestamp": self.max_ts,
            "sources": dict(sorted(self.sources.items())),
            "subjects": len(self.subjects),
        }


def database_figures(
    conn: psycopg.Connection[Any], layout: TableLayout, where: sql.Composable, params: list[Any]
) -> dict[str, Any]:
    """Rows, content hash, block digest and min/max id of the rows matching ``where``, computed by the
    database.

    The hash lines are produced in SQL, in ``ORDER BY id``, and concatenated server-side into blocks of
    :data:`HASH_BLOCK_ROWS` lines streamed through a server-side cursor; this side only feeds the bytes
    to SHA-256 (the hash is over the lines, the blocks are only transport) and notes the first and last
    line — no per-row work in Python.
    """
    from psycopg import sql

    query = sql.SQL(
        "SELECT string_agg(line, '' ORDER BY rn), count(*) FROM ("
        "SELECT {line} || E'\\n' AS line, row_number() OVER (ORDER BY {id}) AS rn FROM {t} WHERE {w}"
        ") s GROUP BY (rn - 1) / {block} ORDER BY (rn - 1) / {block}"
    ).format(
        line=layout.hash_line_sql(),
        id=sql.Identifier(layout.id_column),
        t=layout.ident(),
        w=where,
        block=sql.Literal(HASH_BLOCK_ROWS),
    )
    h = hashlib.sha256()
    blocks = hashlib.sha256()  # each streamed text is one block of HASH_BLOCK_ROWS lines (the last: fewer)
    rows = 0
    first: str | None = None
    last: str | None = None
    with conn.cursor(name=f"attestly_hash_{id(conn)}") as cur:
        cur.itersize = 8
        cur.execute(query, params)
        for text, n in cur:
            data = text.encode("utf-8")
            h.update(data)
            blocks.update(hashlib.sha256(data).digest())
            rows += int(n)
            if first is None:
                first = text[: text.index("\n")]
            last = text[text.rstrip("\n").rfind("\n") + 1 :].rstrip("\n")
    min_id = first.rsplit(":", 1)[0] if first is not None else None
    max_id = last.rsplit(":", 1)[0] if last is not None else None
    return {
        "rows": rows,
        "content_hash": h.hexdigest(),
        "block_digest": blocks.hexdigest(),
        "min_id": min_id,
        "max_id": max_id,
    }
