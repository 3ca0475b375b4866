"""Verify an uploaded batch by reading it back, before anything is purged.

Checks, all of which must hold (otherwise :class:`VerificationMismatch` names every difference and the
batch stays unpurged):

1. the version is locked in COMPLIANCE mode until at least the batch's retain-until (``head_object``;
   a lock the store did not apply on upload is set here — extended, never shortened);
2. the whole object decrypts: every chunk authenticates, in order, up to the final chunk, and its
   SHA-256 is the one recorded at upload (when the upload was recorded);
3. the Parquet inside belongs to this batch and key, and its rows give the batch figures: row count,
   content hash, min/max id;
4. the database, read now, gives the same figures for the batch's rows (computed in SQL and streamed);
5. the figures recorded at export time (when recorded) are the same again.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from attestly.archive.crypto import RandomAccessDecryptor, decrypt_stream
from attestly.archive.errors import ArchiveError, VerificationMismatch
from attestly.archive.export import FORMAT_VERSION, scope_where
from attestly.archive.schema import METADATA_KEY, Figures, database_figures
from attestly.archive.upload import LOCK_MODE, ensure_lock

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from attestly.archive.context import ArchiveContext
    from attestly.archive.journal import Batch
    from attestly.archive.schema import TableLayout
    from attestly.keys import DataKey

_COMPARED = ("rows", "content_hash", "min_id", "max_id")


def open_archive(
    ctx: ArchiveContext, batch: Batch, *, version_id: str, data_key: DataKey, size: int
) -> tuple[pq.ParquetFile, dict[str, Any]]:
    """The Parquet file inside an archive object (decrypted on demand by ranged reads) and its
    ``attestly.archive`` metadata. Raises :class:`ArchiveError` if it is not this batch's archive."""
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
    return pf, meta


def verify_batch(
    ctx: ArchiveContext, batch: Batch, *, uploaded: dict[str, Any], data_key: DataKey
) -> tuple[dict[str, Any], Figures]:
    """Run every check; returns the verified details (for the journal and manifest) and the archive
    figures (with the distinct subjects). Raises :class:`VerificationMismatch`."""
    problems: list[str] = []
    layout = ctx.layout
    where, params = scope_where(layout, batch)
    # The database computes its figures (a sort and a hash stream) on its own connection while this
    # process reads the object back: the two sides overlap instead of queueing.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-verify-db")
    db_future = pool.submit(_database_side, ctx.reader_conn_id, layout, where, params)
    try:
        archive, figures, details = _archive_side(
            ctx, batch, uploaded=uploaded, data_key=data_key, problems=problems
        )
        db = db_future.result()
    finally:
        pool.shutdown(wait=True)
    for field in _COMPARED:
        if archive[field] != db[field]:
            problems.append(f"{field}: archive {archive[field]!r} != database {db[field]!r}")
    exported = uploaded.get("exported")
    if exported:
        for field in _COMPARED:
            if exported[field] != archive[field]:
                problems.append(f"{field}: archive {archive[field]!r} != exported {exported[field]!r}")
    if problems:
        raise VerificationMismatch(batch.batch_id, problems)
    return {"archive": archive, "database": db, **details}, figures


def _database_side(conn_id: str, layout: TableLayout, where: Any, params: list[Any]) -> dict[str, Any]:
    from attestly.archive.context import connect_audit

    with connect_audit(conn_id) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return database_figures(conn, layout, where, params)


def _archive_side(
    ctx: ArchiveContext, batch: Batch, *, uploaded: dict[str, Any], data_key: DataKey, problems: list[str]
) -> tuple[dict[str, Any], Figures, dict[str, Any]]:
    """Lock, full decryption and the Parquet figures of the object; appends lock problems."""
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

    digest = hashlib.sha256()
    plaintext = 0
    body = s3.get_object(Bucket=batch.bucket, Key=batch.object_key, VersionId=version)["Body"]
    try:
        for piece in decrypt_stream(
            body.iter_chunks(chunk_size=1024 * 1024),
            data_key=data_key.material(),
            on_object_bytes=digest.update,
        ):
            plaintext += len(piece)
    except ValueError as exc:
        raise VerificationMismatch(batch.batch_id, [f"object does not decrypt: {exc}"]) from exc
    object_sha256 = digest.hexdigest()
    if uploaded.get("object_sha256") and uploaded["object_sha256"] != object_sha256:
        problems.append(f"object sha256 {object_sha256} is not the uploaded {uploaded['object_sha256']}")

    layout = ctx.layout
    figures = Figures(
        id_column=layout.id_column,
        row_hash_column=layout.row_hash_column,
        timestamp_column=layout.timestamp_column,
        source_column=layout.source_column,
        subject_column=layout.subject_column,
    )
    try:
        pf, _meta = open_archive(ctx, batch, version_id=version, data_key=data_key, size=lock.size)
        for rb in pf.iter_batches(batch_size=65_536, columns=figures.columns()):
            figures.update(rb)
    except ValueError as exc:
        raise VerificationMismatch(batch.batch_id, [f"archive does not read back: {exc}"]) from exc
    if pf.metadata.num_rows != figures.rows:
        problems.append(f"Parquet metadata says {pf.metadata.num_rows} rows, {figures.rows} were read")
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
            "row_groups": pf.metadata.num_row_groups,
        },
    )
