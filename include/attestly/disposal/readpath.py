"""The normal read path for archived rows and for a subject's PHI — the one disposal proves shut.

- :func:`open_batch` opens an archive object through the key registry exactly as ``archive restore``
  does: unwrap the batch's data key through KMS (refused once the key is destroyed or its KMS key is not
  Enabled), then decrypt the object's chunks on demand;
- :func:`subject_phi` finds every row of a data subject, live in the audit database and in archived
  objects, and decrypts each row's PHI with :class:`~attestly.keys.PhiVault`. A row whose subject key
  (or, for an archived row, whose archive key) was destroyed comes back ``erased``; everything else
  about the row — when, which source, who, what action — is returned as it is.

Nothing here logs or returns key material; :func:`subject_phi` returns plaintext PHI only to its caller
(the CLI prints counts, never PHI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from attestly.keys import KeyDestroyed, KeyNotFound, KeyUnavailable, PhiDecryptError

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from attestly.archive.journal import Batch
    from attestly.keys import PhiVault
    from attestly.runcontext import RunContext

#: Why a read failed, for each exception the read path raises by design.
REFUSALS: tuple[type[Exception], ...] = (KeyDestroyed, KeyUnavailable, KeyNotFound)


def refusal(exc: BaseException) -> str:
    """A short, secret-free name for why a read was refused (``KeyDestroyed: data key ... destroyed``)."""
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def batch_version(ctx: RunContext, batch: Batch) -> str | None:
    """The object version of a batch (the first upload), or None if it was never uploaded."""
    uploaded = ctx.journal.last_in_state(batch.batch_id, "uploaded")
    return None if uploaded is None else str(uploaded.details["version_id"])


def open_batch(ctx: RunContext, batch: Batch) -> tuple[pq.ParquetFile, dict[str, Any]]:
    """The decrypted Parquet view of a batch's object and its metadata.

    Raises :class:`~attestly.keys.KeyDestroyed` / :class:`~attestly.keys.KeyUnavailable` when the batch's
    key can no longer be used — the point of crypto-shredding.
    """
    from attestly.archive.errors import ArchiveError
    from attestly.archive.upload import read_lock
    from attestly.archive.verify import open_archive

    version = batch_version(ctx, batch)
    if version is None:
        raise ArchiveError(f"archive batch {batch.batch_id} was never uploaded")
    lock = read_lock(ctx.s3, bucket=batch.bucket, key=batch.object_key, version_id=version)
    with ctx.registry.open(batch.key_id) as key:
        return open_archive(ctx, batch, version_id=version, data_key=key, size=lock.size)


@dataclass
class PhiRow:
    """One row of a subject: where it is, the audit facts, and what became of its PHI."""

    row_id: str
    location: str  # "live" or the archive batch id
    occurred_at: str
    source: str | None
    actor: str | None
    action: str | None
    subject_key_id: str | None
    status: str  # decrypted | erased | unreadable | no_phi
    detail: str = ""
    plaintext: bytes | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Without the plaintext."""
        return {
            "row_id": self.row_id,
            "location": self.location,
            "occurred_at": self.occurred_at,
            "source": self.source,
            "actor": self.actor,
            "action": self.action,
            "subject_key_id": self.subject_key_id,
            "status": self.status,
            "detail": self.detail,
        }


def _columns(ctx: RunContext) -> dict[str, str]:
    src = ctx.policy.sources
    out = {}
    for logical in (
        "id",
        "timestamp",
        "source",
        "actor",
        "action",
        "subject",
        "phi_ciphertext",
        "subject_key_id",
    ):
        if not src.has_column(logical):
            if logical in ("subject", "phi_ciphertext", "subject_key_id"):
                from attestly.archive.errors import ArchiveConfigError

                raise ArchiveConfigError(
                    f"sources.yaml maps no {logical!r} column; subject PHI cannot be located"
                )
            continue
        out[logical] = src.column(logical)
    return out


def _decrypt(
    vault: PhiVault, subject_id: str, key_id: str | None, blob: bytes | str | None
) -> tuple[str, str, bytes | None]:
    if blob is None or key_id is None:
        return "no_phi", "", None
    if isinstance(blob, str):  # archives keep bytea columns as hex text
        blob = bytes.fromhex(blob[2:] if blob.startswith("\\x") else blob)
    try:
        return "decrypted", "", vault.decrypt(subject_id=subject_id, key_id=key_id, ciphertext=bytes(blob))
    except REFUSALS as exc:
        return "erased", refusal(exc), None
    except PhiDecryptError as exc:
        return "unreadable", str(exc)[:200], None


def live_rows(
    ctx: RunContext,
    vault: PhiVault,
    subject_id: str,
    *,
    key_id: str | None = None,
    limit: int | None = None,
) -> list[PhiRow]:
    """The subject's rows still in the audit database (optionally only those sealed under ``key_id``)."""
    from psycopg import sql

    c = _columns(ctx)
    layout = ctx.layout
    select = [
        sql.Identifier(c[k]) if k in c else sql.NULL
        for k in ("id", "timestamp", "source", "actor", "action", "subject_key_id", "phi_ciphertext")
    ]
    where = sql.SQL("{} = %s").format(sql.Identifier(c["subject"]))
    params: list[Any] = [subject_id]
    if key_id is not None:
        where = sql.SQL("{} AND {} = %s").format(where, sql.Identifier(c["subject_key_id"]))
        params.append(key_id)
    query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
        sql.SQL(", ").join(select),
        layout.ident(),
        where,
        sql.Identifier(c["timestamp"]),
    )
    if limit is not None:
        query = sql.SQL("{} LIMIT {}").format(query, sql.Literal(int(limit)))
    conn = ctx.reader()
    rows = conn.execute(query, params).fetchall()
    conn.commit()
    out = []
    for rid, ts, source, actor, action, skid, blob in rows:
        status, detail, plain = _decrypt(vault, subject_id, skid, blob)
        out.append(
            PhiRow(str(rid), "live", ts.isoformat(), source, actor, action, skid, status, detail, plain)
        )
    return out


def archived_rows(
    ctx: RunContext,
    vault: PhiVault,
    subject_id: str,
    *,
    key_id: str | None = None,
    limit_per_batch: int | None = None,
) -> tuple[list[PhiRow], list[dict[str, Any]]]:
    """The subject's rows in archived objects (batches that recorded the subject at verification).

    Returns the rows read and, per batch, what happened: ``{"batch_id", "rows", "read": "ok" | refusal}``
    — a batch whose archive key is destroyed cannot be read at all (its rows, PHI included, are gone).
    """
    import pyarrow.compute as pc

    c = _columns(ctx)
    conn = ctx.db
    batch_ids = [
        r[0]
        for r in conn.execute(
            "SELECT batch_id FROM attestly.archive_batch_subjects WHERE subject_id = %s ORDER BY batch_id",
            (subject_id,),
        ).fetchall()
    ]
    conn.commit()
    rows: list[PhiRow] = []
    batches: list[dict[str, Any]] = []
    wanted = [
        c[k]
        for k in (
            "id",
            "timestamp",
            "source",
            "actor",
            "action",
            "subject",
            "subject_key_id",
            "phi_ciphertext",
        )
        if k in c
    ]
    for bid in batch_ids:
        batch = ctx.journal.batch(bid)
        try:
            pf, _meta = open_batch(ctx, batch)
        except REFUSALS as exc:
            batches.append({"batch_id": bid, "rows": None, "read": refusal(exc)})
            continue
        found = 0
        for i in range(pf.metadata.num_row_groups):
            table = pf.read_row_group(i, columns=wanted)
            mask = pc.equal(table.column(c["subject"]), subject_id)
            if key_id is not None:
                mask = pc.and_(mask, pc.equal(table.column(c["subject_key_id"]), key_id))
            picked = table.filter(mask)
            for rec in picked.to_pylist():
                if limit_per_batch is not None and found >= limit_per_batch:
                    break
                found += 1
                status, detail, plain = _decrypt(
                    vault, subject_id, rec.get(c["subject_key_id"]), rec.get(c["phi_ciphertext"])
                )
                ts = rec[c["timestamp"]]
                rows.append(
                    PhiRow(
                        str(rec[c["id"]]),
                        bid,
                        ts.isoformat() if hasattr(ts, "isoformat") else str(ts),
                        rec.get(c.get("source", "")),
                        rec.get(c.get("actor", "")),
                        rec.get(c.get("action", "")),
                        rec.get(c["subject_key_id"]),
                        status,
                        detail,
                        plain,
                    )
                )
        batches.append({"batch_id": bid, "rows": found, "read": "ok"})
    return rows, batches


@dataclass
class SubjectPhi:
    subject_rows: list[PhiRow]
    batches: list[dict[str, Any]]

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {"live": {}, "archived": {}}
        for r in self.subject_rows:
            where = "live" if r.location == "live" else "archived"
            out[where][r.status] = out[where].get(r.status, 0) + 1
        return out


def subject_phi(ctx: RunContext, subject_id: str, *, vault: PhiVault | None = None) -> SubjectPhi:
    """Every row of ``subject_id``, live and archived, with its PHI decrypted where it still can be."""
    from attestly.keys import PhiVault

    own = vault is None
    v = vault or PhiVault(ctx.registry)
    try:
        live = live_rows(ctx, v, subject_id)
        archived, batches = archived_rows(ctx, v, subject_id)
    finally:
        if own:
            v.forget()
    return SubjectPhi(live + archived, batches)
