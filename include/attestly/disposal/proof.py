"""Prove a destroyed key is gone: nothing it protected decrypts through the normal read path any more,
while data under other keys still does.

For every key:

- the registry no longer opens it (:class:`~attestly.keys.KeyDestroyed`), and holds no material;
- its KMS key's state, from ``DescribeKey`` (a local emulator keeps decrypting with keys pending
  deletion, so the state is what is checked): a dedicated key must be ``PendingDeletion`` (or gone);
  the shared PHI key stays ``Enabled`` — it wraps every other subject's key;

for an **archive key**: a sample of its archive objects still exists in the bucket (version, Object Lock
mode and retain-until, legal hold) and fails to open through :func:`~attestly.disposal.readpath.open_batch`;
an object of another, live archive key still opens and decrypts (the control);

for a **subject key**: a sample of the subject's live rows and of its archived rows fail to decrypt
through :class:`~attestly.keys.PhiVault` (a fresh one: no cached key), the rows themselves are all still
there (who, when, what action), and a row of another subject still decrypts (the control).

Each check produces a line of evidence; any failed check fails the proof (``ok`` false) with a problem
naming it. Nothing here returns PHI or key material.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from attestly.disposal.readpath import REFUSALS, archived_rows, batch_version, live_rows, open_batch, refusal
from attestly.evidence import iso
from attestly.keys import KeyDestroyed

if TYPE_CHECKING:
    from attestly.keys import KeyRecord
    from attestly.runcontext import RunContext

SAMPLE_OBJECTS = 3
SAMPLE_ROWS = 5


def _registry_check(ctx: RunContext, rec: KeyRecord, problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "material_present": rec.has_material,
        "destroyed_at": iso(rec.destroyed_at) if rec.destroyed_at else None,
    }
    if rec.has_material or rec.destroyed_at is None:
        problems.append(f"{rec.key_id}: the registry still holds its wrapped material")
    try:
        ctx.registry.open(rec.key_id).close()
    except KeyDestroyed as exc:
        out["open"] = refusal(exc)
    else:
        out["open"] = "opened"
        problems.append(f"{rec.key_id}: the registry still opens it")
    return out


def kms_state(ctx: RunContext, kms_key_id: str) -> dict[str, Any]:
    kms = ctx.registry.kms
    try:
        meta = kms.describe_key(KeyId=kms_key_id)["KeyMetadata"]
    except kms.exceptions.NotFoundException:
        return {"key_id": kms_key_id, "state": "Missing", "deletion_date": None}
    deletion = meta.get("DeletionDate")
    return {
        "key_id": kms_key_id,
        "state": str(meta["KeyState"]),
        "deletion_date": iso(deletion) if deletion is not None else None,
    }


def kms_destruction(kms: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """Whether a key's KMS side is destroyed for good, from its recorded state (``kms_state`` plus
    ``dedicated``) and the trusted current time.

    KMS deletes a key only when its waiting period ends; until then ``CancelKeyDeletion`` brings it back,
    and with it anything a backup of its wrapped data keys could open. So a dedicated key counts as
    ``deleted`` only once it is gone or its deletion date has passed; before that it is ``scheduled``
    (with the date, which is also the last moment it can be cancelled). A shared key is never deleted
    (``not_applicable``: the data key's wrapped copy is what was destroyed)."""
    if not kms.get("dedicated"):
        return {"status": "not_applicable", "detail": "shared KMS key: it stays enabled for other keys"}
    state, when = kms.get("state"), kms.get("deletion_date")
    if state == "Missing":
        return {"status": "deleted", "detail": "the KMS key no longer exists"}
    if state == "PendingDeletion" and when:
        deadline = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
        if deadline <= now:
            return {"status": "deleted", "deletion_date": when, "detail": "its deletion date has passed"}
        return {
            "status": "scheduled",
            "deletion_date": when,
            "cancellable_until": when,
            "detail": f"scheduled for deletion on {when}; until then the deletion can still be cancelled",
        }
    return {"status": "not_scheduled", "detail": f"the KMS key is {state}"}


def _kms_check(ctx: RunContext, rec: KeyRecord, problems: list[str]) -> dict[str, Any]:
    out = kms_state(ctx, rec.kms_key_id)
    out["dedicated"] = rec.dedicated_kms_key
    if rec.dedicated_kms_key:
        out["expected"] = "PendingDeletion"
        if out["state"] not in ("PendingDeletion", "Missing"):
            problems.append(f"{rec.key_id}: its dedicated KMS key is {out['state']}, not PendingDeletion")
    else:
        out["expected"] = "Enabled (shared: wraps other subjects' keys; the data key's material is gone)"
    return out


def _object_state(ctx: RunContext, batch: Any) -> dict[str, Any]:
    from attestly.archive.upload import read_lock

    version = batch_version(ctx, batch)
    obj: dict[str, Any] = {
        "batch_id": batch.batch_id,
        "bucket": batch.bucket,
        "key": batch.object_key,
        "version_id": version,
    }
    if version is None:
        obj["exists"] = False
        return obj
    try:
        lock = read_lock(ctx.s3, bucket=batch.bucket, key=batch.object_key, version_id=version)
    except ctx.s3.exceptions.ClientError as exc:
        obj["exists"] = False
        obj["error"] = exc.response.get("Error", {}).get("Code", "")
        return obj
    obj.update(
        {
            "exists": True,
            "bytes": lock.size,
            "lock_mode": lock.mode,
            "retain_until": iso(lock.retain_until) if lock.retain_until else None,
            "legal_hold": lock.legal_hold,
        }
    )
    return obj


def _archive_rows(ctx: RunContext, batch_id: str) -> int:
    entry = ctx.journal.last_in_state(batch_id, "verified")
    return int(entry.details["archive"]["rows"]) if entry else 0


def prove_archive_key(ctx: RunContext, rec: KeyRecord) -> dict[str, Any]:
    problems: list[str] = []
    proof: dict[str, Any] = {
        "registry": _registry_check(ctx, rec, problems),
        "kms": _kms_check(ctx, rec, problems),
    }
    batches = [b for b in ctx.journal.batches() if b.key_id == rec.key_id]
    objects = []
    for i, batch in enumerate(batches):
        obj = _object_state(ctx, batch)
        obj["rows"] = _archive_rows(ctx, batch.batch_id)
        if i < SAMPLE_OBJECTS and obj.get("exists"):
            try:
                open_batch(ctx, batch)
            except REFUSALS as exc:
                obj["read"] = refusal(exc)
            else:
                obj["read"] = "decrypted"
                problems.append(f"{rec.key_id}: archive object {batch.object_key} still decrypts")
        objects.append(obj)
    proof["objects"] = objects
    proof["objects_sampled"] = sum(1 for o in objects if "read" in o)
    proof["archived_rows"] = sum(o["rows"] for o in objects)
    proof["control"] = _archive_control(ctx, rec.key_id, problems)
    proof["ok"] = not problems
    proof["problems"] = problems
    return proof


def _archive_control(ctx: RunContext, key_id: str, problems: list[str]) -> dict[str, Any]:
    """Open one object under another live archive key: the read path itself still works."""
    live = {r.key_id for r in ctx.registry.records(kind="archive") if r.has_material}
    states = ctx.journal.states()
    for batch in ctx.journal.batches():
        if batch.key_id == key_id or batch.key_id not in live:
            continue
        st = states.get(batch.batch_id)
        if st is None or st.state not in ("verified", "purged"):
            continue
        try:
            pf, _ = open_batch(ctx, batch)
            rows = pf.metadata.num_rows
            if pf.metadata.num_row_groups:
                pf.read_row_group(0, columns=[ctx.layout.id_column])  # decrypts real data
        except Exception as exc:
            problems.append(
                f"control: {batch.object_key} under live key {batch.key_id} does not open: {refusal(exc)}"
            )
            return {"key_id": batch.key_id, "object": batch.object_key, "read": refusal(exc)}
        return {"key_id": batch.key_id, "object": batch.object_key, "read": "decrypted", "rows": rows}
    return {"read": "none: no other live archive key has an archived object to compare with"}


def prove_subject_key(ctx: RunContext, rec: KeyRecord) -> dict[str, Any]:
    from attestly.keys import PhiVault

    problems: list[str] = []
    proof: dict[str, Any] = {
        "registry": _registry_check(ctx, rec, problems),
        "kms": _kms_check(ctx, rec, problems),
    }
    subject = str(rec.subject_id)
    vault = PhiVault(ctx.registry)  # fresh: nothing cached from before the destruction
    try:
        live_total = _count_live(ctx, subject, rec.key_id)
        sampled = live_rows(ctx, vault, subject, key_id=rec.key_id, limit=SAMPLE_ROWS)
        decrypted = [r for r in sampled if r.status == "decrypted"]
        if decrypted:
            problems.append(
                f"{rec.key_id}: {len(decrypted)} live row(s) still decrypt (e.g. {decrypted[0].row_id})"
            )
        trail_gaps = [r.row_id for r in sampled if not (r.occurred_at and r.action)]
        proof["live"] = {
            "rows": live_total,
            "sampled": len(sampled),
            "erased": sum(1 for r in sampled if r.status == "erased"),
            "trail_intact": not trail_gaps,
        }
        arch, batches = archived_rows(ctx, vault, subject, key_id=rec.key_id, limit_per_batch=SAMPLE_ROWS)
        still = [r for r in arch if r.status == "decrypted"]
        if still:
            problems.append(
                f"{rec.key_id}: {len(still)} archived row(s) still decrypt (e.g. {still[0].row_id} in {still[0].location})"
            )
        proof["archived"] = {
            "batches": batches,
            "sampled": len(arch),
            "erased": sum(1 for r in arch if r.status == "erased"),
        }
        if not sampled and not arch:
            proof["note"] = "the subject key sealed no PHI found in live or archived rows"
        proof["control"] = _subject_control(ctx, vault, subject, problems)
    finally:
        vault.forget()
    proof["ok"] = not problems
    proof["problems"] = problems
    return proof


def _count_live(ctx: RunContext, subject: str, key_id: str) -> int:
    from psycopg import sql

    src = ctx.policy.sources
    conn = ctx.reader()
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE {} = %s AND {} = %s").format(
            ctx.layout.ident(),
            sql.Identifier(src.column("subject")),
            sql.Identifier(src.column("subject_key_id")),
        ),
        (subject, key_id),
    ).fetchone()
    conn.commit()
    return int(row[0]) if row else 0


def _subject_control(ctx: RunContext, vault: Any, subject: str, problems: list[str]) -> dict[str, Any]:
    """Decrypt one live row of another subject whose key is live."""
    from psycopg import sql

    src = ctx.policy.sources
    subj, skid, phi = (sql.Identifier(src.column(c)) for c in ("subject", "subject_key_id", "phi_ciphertext"))
    conn = ctx.reader()
    candidates = conn.execute(
        sql.SQL("SELECT DISTINCT {s}, {k} FROM {t} WHERE {s} <> %s AND {p} IS NOT NULL LIMIT 50").format(
            s=subj, k=skid, t=ctx.layout.ident(), p=phi
        ),
        (subject,),
    ).fetchall()
    conn.commit()
    live = {r.key_id for r in ctx.registry.records(kind="subject") if r.has_material}
    for other, key_id in candidates:
        if key_id not in live:
            continue
        rows = live_rows(ctx, vault, other, key_id=key_id, limit=1)
        if not rows:
            continue
        row = rows[0]
        if row.status != "decrypted":
            problems.append(
                f"control: a row of another subject under live key {key_id} does not decrypt ({row.status})"
            )
        return {"key_id": key_id, "row_id": row.row_id, "read": row.status}
    return {"read": "none: no other subject with a live key has PHI to compare with"}


def prove(ctx: RunContext, key_id: str) -> dict[str, Any]:
    rec = ctx.registry.record(key_id)
    if rec.kind == "archive":
        return prove_archive_key(ctx, rec)
    return prove_subject_key(ctx, rec)
