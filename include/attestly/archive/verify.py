"""Verify an uploaded batch by reading it back, before anything is purged.

Checks, all of which must hold (otherwise :class:`VerificationMismatch` names every difference and the
batch stays unpurged):

1. the version is locked in COMPLIANCE mode until at least the batch's retain-until (``head_object``;
   a lock the store did not apply on upload is set here — extended, never shortened);
2. the whole object decrypts: every chunk authenticates, in order, up to the final chunk, and its
   SHA-256 is the one recorded at upload (when the upload was recorded);
3. the Parquet inside belongs to this batch and key, and its rows give the batch figures: row count,
   content hash, min/max id (its row groups are decoded as the object streams past, in the same read as
   check 2: the object is downloaded once, and only its footer is read ahead by a ranged read);
4. the database holds exactly these rows: while the object is read back, the batch is authorised for
   purge with the figures recorded at export (``audit.authorize_purge``), and the audit database
   recomputes the row count and block digest of the batch's rows itself and refuses unless they are those
   figures. That is the one database-side recompute of the batch: the purge then relies on it (a whole
   partition is dropped on its row counts, rows are hashed as they are deleted — see
   ``db/migrations/audit/0005_check_once.sql``). When the batch cannot be authorised yet (its rows are
   inside the audit database's online floor, or the upload was adopted after a crash and its export
   figures were not recorded), the database's figures are computed read-only instead (streamed in SQL)
   and the purge authorises it later;
5. the figures recorded at export time (when recorded) are the same again.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from attestly import failpoints
from attestly.archive.crypto import ArchiveFormatError, RandomAccessDecryptor, decrypt_stream
from attestly.archive.errors import ArchiveError, VerificationMismatch
from attestly.archive.export import FORMAT_VERSION, Prefetched, scope_where
from attestly.archive.schema import METADATA_KEY, Figures, database_figures
from attestly.archive.upload import LOCK_MODE, ensure_lock

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from attestly.archive.context import ArchiveContext
    from attestly.archive.journal import Batch
    from attestly.keys import DataKey

_COMPARED = ("rows", "content_hash", "block_digest", "min_id", "max_id")
#: Decrypted chunks (``chunk_size`` each) read ahead of the Parquet decoding during verification.
READ_AHEAD_CHUNKS = 1


def open_archive(
    ctx: ArchiveContext, batch: Batch, *, version_id: str, data_key: DataKey, size: int
) -> tuple[pq.ParquetFile, dict[str, Any]]:
    """The Parquet file inside an archive object (decrypted on demand by ranged reads) and its
    ``attestly.archive`` metadata. Raises :class:`ArchiveError` if it is not this batch's archive."""
    pf, meta, _size = _open_archive(ctx, batch, version_id=version_id, data_key=data_key, size=size)
    return pf, meta


def _open_archive(
    ctx: ArchiveContext, batch: Batch, *, version_id: str, data_key: DataKey, size: int
) -> tuple[pq.ParquetFile, dict[str, Any], int]:
    """:func:`open_archive`, and the plaintext size of the object."""
    import pyarrow.parquet as pq

    s3 = ctx.s3

    def fetch(start: int, end: int) -> bytes:
        resp = s3.get_object(
            Bucket=batch.bucket, Key=batch.object_key, VersionId=version_id, Range=f"bytes={start}-{end - 1}"
        )
        return bytes(resp["Body"].read())

    reader = RandomAccessDecryptor(
        fetch=fetch,
        size=size,
        data_key=data_key.material(),
        expect_batch_id=batch.batch_id,
        expect_key_id=batch.key_id,
    )
    pf = pq.ParquetFile(reader)
    raw = (pf.schema_arrow.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ArchiveError(f"{batch.object_key}: Parquet without attestly.archive metadata")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT_VERSION or meta.get("batch_id") != batch.batch_id:
        raise ArchiveError(
            f"{batch.object_key}: archive metadata names batch {meta.get('batch_id')!r} "
            f"format {meta.get('format')!r}, expected {batch.batch_id!r} {FORMAT_VERSION!r}"
        )
    return pf, meta, reader.size


def verify_batch(
    ctx: ArchiveContext, batch: Batch, *, uploaded: dict[str, Any], data_key: DataKey
) -> tuple[dict[str, Any], Figures]:
    """Run every check; returns the verified details (for the journal and manifest) and the archive
    figures (with the distinct subjects). Raises :class:`VerificationMismatch`."""
    problems: list[str] = []
    layout = ctx.layout
    where, params = scope_where(layout, batch)
    # The database checks the batch's rows (a sort and a hash, in SQL) on its own connection while this
    # process reads the object back: the two sides overlap instead of queueing.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-verify-db")
    db_future = pool.submit(_database_side, ctx, batch, uploaded, where, params)
    try:
        archive, figures, details = _archive_side(
            ctx, batch, uploaded=uploaded, data_key=data_key, problems=problems
        )
        db = db_future.result()
    finally:
        pool.shutdown(wait=True)
    failpoints.hit("archive.after_authorize_before_verified")
    if "refused" in db:
        problems.append(f"database: {db['refused']}")
    for field in _COMPARED:
        if field in db and archive[field] != db[field]:
            problems.append(f"{field}: archive {archive[field]!r} != database {db[field]!r}")
    exported = uploaded.get("exported")
    if exported:
        for field in _COMPARED:
            if field in exported and exported[field] != archive[field]:
                problems.append(f"{field}: archive {archive[field]!r} != exported {exported[field]!r}")
    if problems:
        raise VerificationMismatch(batch.batch_id, problems)
    return {"archive": archive, "database": db, **details}, figures


def _database_side(
    ctx: ArchiveContext, batch: Batch, uploaded: dict[str, Any], where: Any, params: list[Any]
) -> dict[str, Any]:
    """The database's figures of the batch's rows (check 4): the authorisation's recompute, or a read-only
    one when the batch cannot be authorised yet. A refusal other than a mismatch is returned as
    ``{"refused": message}``."""
    import psycopg

    from attestly.archive.context import connect_audit
    from attestly.archive.purge import authorize

    exported = uploaded.get("exported") or {}
    if "block_digest" in exported and uploaded.get("object_sha256"):
        with connect_audit(ctx.archiver_conn_id) as conn:
            try:
                authorize(
                    conn,
                    batch,
                    rows=int(exported["rows"]),
                    block_digest=exported["block_digest"],
                    bucket=batch.bucket,
                    key=batch.object_key,
                    version_id=str(uploaded["version_id"]),
                    object_sha256=uploaded["object_sha256"],
                )
                row = conn.execute(
                    "SELECT db_rows, db_digest, db_checked_at FROM audit.purge_authorizations "
                    "WHERE batch_id = %s",
                    (batch.batch_id,),
                ).fetchone()
                conn.commit()
            except psycopg.errors.DataException as exc:  # the database does not hold the exported rows
                conn.rollback()
                found = json.loads(exc.diag.message_detail or "{}")
                return {"rows": found.get("rows"), "block_digest": found.get("digest")}
            except psycopg.errors.InsufficientPrivilege:
                conn.rollback()  # inside the online floor: not yet; checked read-only below
                row = None
            except (psycopg.errors.UniqueViolation, psycopg.errors.ExclusionViolation) as exc:
                conn.rollback()
                diag = exc.diag.message_primary or str(exc)
                return {"refused": diag}
        if row is not None and row[2] is not None:
            return {
                "rows": int(row[0]),
                "block_digest": str(row[1]),
                "checked_by": "audit.authorize_purge",
                "checked_at": row[2].isoformat(),
            }
    with connect_audit(ctx.reader_conn_id) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return {**database_figures(conn, ctx.layout, where, params), "checked_by": "read-only recompute"}


def _archive_side(
    ctx: ArchiveContext, batch: Batch, *, uploaded: dict[str, Any], data_key: DataKey, problems: list[str]
) -> tuple[dict[str, Any], Figures, dict[str, Any]]:
    """Lock, full decryption and the Parquet figures of the object; appends lock problems."""
    import pyarrow.parquet as pq

    s3 = ctx.s3
    version = str(uploaded["version_id"])

    lock = ensure_lock(
        s3, bucket=batch.bucket, key=batch.object_key, version_id=version, retain_until=batch.retain_until
    )
    if lock.mode != LOCK_MODE:
        problems.append(f"lock mode is {lock.mode!r}, not {LOCK_MODE}")
    if lock.retain_until is None or lock.retain_until < batch.retain_until:
        problems.append(
            f"retain-until is {lock.retain_until}, before the required {batch.retain_until.isoformat()}"
        )

    layout = ctx.layout
    figures = Figures(
        id_column=layout.id_column,
        row_hash_column=layout.row_hash_column,
        timestamp_column=layout.timestamp_column,
        source_column=layout.source_column,
        subject_column=layout.subject_column,
    )
    try:
        # The footer (a ranged read of the last chunks): this batch's archive, and where its row groups lie.
        pf, _meta, plain_size = _open_archive(
            ctx, batch, version_id=version, data_key=data_key, size=lock.size
        )
    except ArchiveFormatError as exc:
        raise VerificationMismatch(batch.batch_id, [f"object does not decrypt: {exc}"]) from exc
    except ValueError as exc:
        raise VerificationMismatch(batch.batch_id, [f"archive does not read back: {exc}"]) from exc
    metadata = pf.metadata
    spans = [_row_group_span(metadata.row_group(i)) for i in range(metadata.num_row_groups)]
    columns = figures.columns()

    # One pass over the whole object: every chunk is authenticated and decrypted in order, the object
    # hashed, and each row group is decoded as soon as its bytes have streamed past (memory: one row group
    # and one chunk), so the object is read back once.
    digest = hashlib.sha256()
    plaintext = 0
    window = bytearray()  # plaintext bytes [base, base + len(window))
    base = 0
    group = 0
    material = data_key.material()

    def plaintext_chunks() -> Iterator[bytes]:
        body = s3.get_object(Bucket=batch.bucket, Key=batch.object_key, VersionId=version)["Body"]
        try:
            yield from decrypt_stream(
                body.iter_chunks(chunk_size=1024 * 1024), data_key=material, on_object_bytes=digest.update
            )
        finally:
            body.close()

    # Download, hashing and decryption run a few chunks ahead, on a thread, of the Parquet decoding here.
    try:
        with Prefetched(plaintext_chunks, depth=READ_AHEAD_CHUNKS, name="archive-verify-read") as pieces:
            for piece in pieces:
                plaintext += len(piece)
                window += piece
                while group < len(spans) and spans[group][1] <= plaintext:
                    start, end = spans[group]
                    if start < base:
                        raise ValueError(
                            f"row group {group} starts at {start}, inside the row group before it"
                        )
                    with _WindowFile(window, base, size=plain_size) as source:
                        table = pq.ParquetFile(source, metadata=metadata).read_row_group(
                            group, columns=columns, use_threads=False
                        )
                    figures.update(table)
                    del table
                    group += 1
                    keep_from = spans[group][0] if group < len(spans) else end
                    if keep_from > base:
                        del window[: min(keep_from, plaintext) - base]
                        base = min(keep_from, plaintext)
    except ArchiveFormatError as exc:
        raise VerificationMismatch(batch.batch_id, [f"object does not decrypt: {exc}"]) from exc
    except ValueError as exc:
        raise VerificationMismatch(batch.batch_id, [f"archive does not read back: {exc}"]) from exc
    finally:
        window = bytearray()
    if group != len(spans):
        problems.append(
            f"row groups {group}..{len(spans) - 1} lie beyond the {plaintext} plaintext bytes of the object"
        )
    object_sha256 = digest.hexdigest()
    if uploaded.get("object_sha256") and uploaded["object_sha256"] != object_sha256:
        problems.append(f"object sha256 {object_sha256} is not the uploaded {uploaded['object_sha256']}")
    if metadata.num_rows != figures.rows:
        problems.append(f"Parquet metadata says {metadata.num_rows} rows, {figures.rows} were read")
    return (
        figures.summary(),
        figures,
        {
            "object": {
                "bucket": batch.bucket,
                "key": batch.object_key,
                "version_id": version,
                "sha256": object_sha256,
                "size": lock.size,
                "lock_mode": lock.mode,
                "retain_until": lock.retain_until.isoformat() if lock.retain_until else None,
            },
            "plaintext_bytes": plaintext,
            "row_groups": metadata.num_row_groups,
        },
    )


def _row_group_span(rg: Any) -> tuple[int, int]:
    """Plaintext byte range ``[start, end)`` of a row group's column chunks (from the footer)."""
    start: int | None = None
    end = 0
    for i in range(rg.num_columns):
        col = rg.column(i)
        first = col.data_page_offset
        if col.has_dictionary_page and col.dictionary_page_offset is not None:
            first = min(first, col.dictionary_page_offset)
        start = first if start is None else min(start, first)
        end = max(end, first + col.total_compressed_size)
    return (start or 0), end


class _WindowFile(io.RawIOBase):
    """A read-only, seekable file of ``size`` bytes of which only the part held in ``window`` (from
    offset ``base``) can be read; a read outside it is an error (the footer lied about a row group)."""

    def __init__(self, window: bytearray, base: int, *, size: int) -> None:
        super().__init__()
        self._view = memoryview(window)
        self._base = base
        self._pos = base
        self._size = size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        elif whence == io.SEEK_END:
            self._pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        return self._pos

    def read(self, size: int = -1) -> bytes:
        lo = self._pos - self._base
        hi = len(self._view) if size is None or size < 0 else lo + size
        if lo < 0 or hi > len(self._view):
            raise ValueError(
                f"read of plaintext bytes {self._pos}..{self._base + hi} outside the streamed row group"
            )
        self._pos += hi - lo
        return bytes(self._view[lo:hi])

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._view.release()
        super().close()
