"""Key disposal, step by step; each step is idempotent and resumes from ``attestly_db``.

``plan`` (due, blocked, pending) -> ``destroy`` (registry material deleted, dedicated KMS key scheduled
for deletion, ``destroyed`` journal row) -> ``verify`` (the proof, ``verified`` journal row) ->
``certify`` (one certificate frozen in ``attestly.disposal_certificates`` with the keys and requests it
covers, in one transaction; then stored as ``disposal.certificate`` evidence and ledgered, kind
``disposal``). The orchestration functions :func:`plan_due`, :func:`destroy_due`, :func:`verify` and
:func:`certify_due` are what the DAG's tasks (:mod:`attestly.workflows.disposal`) call, one per task;
:func:`run_all` (``attestly disposal run``, the crash tests) calls the same ones in order.

Killing the process anywhere and running again ends in the same state as one uninterrupted run: each
key destroyed once (``destroyed_by_run`` names the run that did it), one ``destroyed`` and one
``verified`` row per key, one certificate per key, one ledger entry per certificate.

Blocks are reported: a ``disposal`` ledger entry (``event: blocked``) and an e-mail to the disposal
controls' owners the first time each block is seen, and the list in every certificate issued while it
lasts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from attestly import failpoints
from attestly.disposal.planning import Blocked, DisposalPlan, plan
from attestly.evidence import EvidenceItem, Finding, Method, Population, canonical_json_v1, iso

if TYPE_CHECKING:
    from attestly.runcontext import RunContext

log = logging.getLogger(__name__)

COLLECTOR = "disposal.certificate"
CERTIFICATE_SCHEMA = "attestly.disposal-certificate/v1"
METHOD = {
    "name": "cryptographic erase",
    "standard": "NIST SP 800-88 Rev. 1, section 2.6 (Cryptographic Erase; Purge level)",
    "description": (
        "The data encryption key is destroyed: its KMS-wrapped copy is deleted from the key registry and, "
        "for a key dedicated to the scope, the KMS key that wraps it is scheduled for deletion. The "
        "ciphertext (Object Lock archives, PHI columns) can no longer be decrypted."
    ),
}
_LOCK = 0x446F6421  # advisory lock namespace ("Dod!")


class DisposalFailed(RuntimeError):
    """Some keys could not be destroyed or proven destroyed; the others were done."""

    def __init__(self, problems: dict[str, list[str]]) -> None:
        self.problems = problems
        super().__init__(
            f"{len(problems)} key(s) failed disposal: "
            + "; ".join(f"{k}: {' / '.join(v)}" for k, v in sorted(problems.items()))
        )


# -------------------------------------------------------------------------------------------- journal


def _steps(ctx: RunContext, state: str) -> dict[str, dict[str, Any]]:
    conn = ctx.db
    rows = conn.execute(
        "SELECT key_id, at, run_id, details FROM attestly.disposal_steps WHERE state = %s", (state,)
    ).fetchall()
    conn.commit()
    return {r[0]: {"at": r[1], "run_id": r[2], "details": r[3]} for r in rows}


def _add_step(ctx: RunContext, key_id: str, state: str, details: dict[str, Any]) -> None:
    from psycopg.types.json import Jsonb

    conn = ctx.db
    with conn.transaction():
        conn.execute(
            "INSERT INTO attestly.disposal_steps (key_id, state, run_id, details) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (key_id, state) DO NOTHING",
            (key_id, state, ctx.run_id, Jsonb(details)),
        )


# --------------------------------------------------------------------------------------------- report


def report_blocks(ctx: RunContext, blocked: list[Blocked], *, as_of: date) -> list[dict[str, Any]]:
    """Ledger each distinct block once and e-mail the owners of the disposal controls about new ones."""
    new = []
    for b in blocked:
        dedupe = (
            "disposal-blocked:"
            + hashlib.sha256(
                canonical_json_v1({"scope": b.scope, "why": b.why, "holds": list(b.holds)})
            ).hexdigest()
        )
        entry, created = ctx.ledger.append(
            "disposal", {"event": "blocked", "as_of": as_of.isoformat(), **b.to_dict()}, dedupe_key=dedupe
        )
        log.warning("disposal blocked: %s (%s): %s", b.ident, b.why, b.detail)
        if created:
            new.append({"seq": entry.seq, **b.to_dict()})
    if new:
        _mail_blocks(ctx, new, as_of=as_of)
    return new


def _mail_blocks(ctx: RunContext, new: list[dict[str, Any]], *, as_of: date) -> None:
    from html import escape

    from attestly.notify import NotifyError, send_email

    owners = ctx.policy.owners_for([COLLECTOR])
    items = "".join(
        f"<li><b>{escape(str(b['ident']))}</b> ({escape(b['why'])}): {escape(b['detail'])}</li>" for b in new
    )
    html = (
        f"<p>Key disposal as of {as_of.isoformat()} found {len(new)} new blocked scope(s). Nothing in them "
        f"was destroyed; they are retried every run and disposed of once the block is lifted.</p><ul>{items}</ul>"
        "<p>Each block is recorded in the ledger (kind <code>disposal</code>, event <code>blocked</code>).</p>"
    )
    try:
        send_email(to=owners, subject=f"[Attestly] key disposal blocked ({len(new)} scope(s))", html=html)
    except NotifyError as exc:  # the block is ledgered; the mail is best effort
        log.error("could not e-mail the disposal block report: %s", exc)


# -------------------------------------------------------------------------------------------- destroy


def destroy(ctx: RunContext, p: DisposalPlan) -> list[dict[str, Any]]:
    """Destroy every due key and finish every pending one. Returns one summary per key (no material)."""
    from attestly.disposal.proof import kms_state
    from attestly.keys import KeyRegistryError

    done = _steps(ctx, "destroyed")
    windows = {d.key_id: d.kms_window_days for d in p.due}
    work = [d.key_id for d in p.due] + [k for k in p.pending if k not in {d.key_id for d in p.due}]
    out = []
    for key_id in work:
        if key_id in done:
            continue
        try:
            destroyed_at = ctx.registry.destroy(key_id, run_id=ctx.run_id)
        except KeyRegistryError as exc:  # a hold placed since the plan: reported, not destroyed
            out.append({"key_id": key_id, "destroyed": False, "error": str(exc)})
            continue
        failpoints.hit("disposal.after_registry_destroy")
        rec = ctx.registry.record(key_id)
        window = windows.get(key_id) or _window(ctx, rec)
        if rec.dedicated_kms_key:
            ctx.registry.schedule_kms_deletion(key_id, window_days=window)
        failpoints.hit("disposal.after_kms_schedule")
        kms = kms_state(ctx, rec.kms_key_id)
        details = {
            "destroyed_at": iso(destroyed_at),
            "destroyed_by_run": rec.destroyed_by_run,
            "kms": {
                **kms,
                "dedicated": rec.dedicated_kms_key,
                "window_days": window if rec.dedicated_kms_key else None,
            },
        }
        _add_step(ctx, key_id, "destroyed", details)
        log.info("destroyed data key %s (KMS key %s)", key_id, kms["state"])
        failpoints.hit("disposal.after_destroy")
        out.append({"key_id": key_id, "destroyed": True, "kms_state": kms["state"]})
    return out


def _window(ctx: RunContext, rec: Any) -> int:
    from attestly.disposal.planning import key_retention

    if rec.kind == "archive" and rec.class_name:
        try:
            return int(key_retention(ctx, rec.class_name).kms_key_deletion_window_days)
        except KeyError:
            pass
    return 30  # the longest window when the policy no longer says: the safest


# --------------------------------------------------------------------------------------------- verify


def verify(ctx: RunContext) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Prove every destroyed, unverified key; returns (summaries, problems by key)."""
    from attestly.disposal.proof import prove

    destroyed = _steps(ctx, "destroyed")
    verified = _steps(ctx, "verified")
    out: list[dict[str, Any]] = []
    problems: dict[str, list[str]] = {}
    for key_id in sorted(destroyed):
        if key_id in verified:
            continue
        proof = prove(ctx, key_id)
        if not proof["ok"]:
            problems[key_id] = proof["problems"]
            out.append({"key_id": key_id, "verified": False, "problems": len(proof["problems"])})
            continue
        _add_step(ctx, key_id, "verified", proof)
        failpoints.hit("disposal.after_verify")
        out.append({"key_id": key_id, "verified": True})
    if problems:
        record_failure(ctx, problems)
    return out, problems


def record_failure(ctx: RunContext, problems: dict[str, list[str]]) -> dict[str, Any]:
    """A ``fail`` item naming each key whose destruction could not be proven."""
    from attestly.recording import record_evidence

    now = datetime.now(UTC)
    start = datetime.combine(now.date(), time(), tzinfo=UTC)
    item = EvidenceItem(
        collector=COLLECTOR,
        controls=tuple(ctx.policy.controls_for_collector(COLLECTOR)),
        period_start=start,
        period_end=start + timedelta(days=1),
        scope={"verification": "failed"},
        retroactive=False,
        result="fail",
        findings=tuple(
            Finding(resource=k, status="fail", detail="; ".join(v)[:500]) for k, v in sorted(problems.items())
        ),
        data={"schema": CERTIFICATE_SCHEMA, "verification": "failed", "problems": problems},
        airflow=ctx.airflow,
        observed_at=now,
        method=Method(COLLECTOR, parameters={"method": "cryptographic erase (NIST SP 800-88)"}),
        population=Population(
            "destroyed keys whose destruction could not be proven",
            "the proof of each key destroyed by this run",
            len(problems),
        ),
    )
    return record_evidence(item, store=ctx.store, ledger=ctx.ledger)


# -------------------------------------------------------------------------------------------- certify


def _key_entry(
    ctx: RunContext, key_id: str, destroyed: dict[str, Any], verified: dict[str, Any]
) -> dict[str, Any]:
    from attestly.disposal.erasure import subject_sha256
    from attestly.disposal.planning import key_retention

    rec = ctx.registry.record(key_id)
    proof = verified["details"]
    entry: dict[str, Any] = {
        "key_id": key_id,
        "kind": rec.kind,
        "kms_key_id": rec.kms_key_id,
        "dedicated_kms_key": rec.dedicated_kms_key,
        "created_at": iso(rec.created_at),
        "destroyed_at": iso(rec.destroyed_at) if rec.destroyed_at else None,
        "destroyed_by_run": rec.destroyed_by_run,
        "kms": destroyed["details"]["kms"],
        "verified_at": iso(verified["at"]),
        "verified_by_run": verified["run_id"],
        "verification": proof,
    }
    if rec.kind == "archive":
        month = rec.month
        entry["scope"] = {"class": rec.class_name, "month": f"{month:%Y-%m}" if month else None}
        try:
            eff = key_retention(ctx, str(rec.class_name))
            classes = [ctx.policy.retention.class_named(n) for n in eff.classes]
            entry["legal_basis"] = {
                "reason": "retention period ended",
                "retention_months": eff.retention_months,
                "dispose_after": eff.dispose_after(month).isoformat() if month else None,
                "citations": [
                    {
                        "class": c.name,
                        "framework": c.legal_basis.framework,
                        "citation": c.legal_basis.citation,
                    }
                    for c in classes
                ],
            }
        except KeyError:
            entry["legal_basis"] = {"reason": "retention period ended", "citations": []}
        entry["affected"] = {
            "objects": [
                {k: o.get(k) for k in ("bucket", "key", "version_id", "rows", "retain_until", "lock_mode")}
                for o in proof.get("objects", [])
            ],
            "archived_rows": proof.get("archived_rows", 0),
            "live_rows": 0,
        }
    else:
        conn = ctx.db
        reqs = conn.execute(
            "SELECT r.request_id, r.reason, r.requested_by, a.approved_by FROM attestly.erasure_requests r "
            "JOIN attestly.erasure_approvals a ON a.request_id = r.request_id WHERE r.subject_id = %s "
            "ORDER BY r.request_id",
            (rec.subject_id,),
        ).fetchall()
        conn.commit()
        entry["scope"] = {"subject_sha256": subject_sha256(str(rec.subject_id))}
        entry["legal_basis"] = {
            "reason": "erasure request",
            "requests": [
                {"request_id": r[0], "reason": r[1], "requested_by": r[2], "approved_by": r[3]} for r in reqs
            ],
        }
        entry["affected"] = {
            "objects": [
                {"batch_id": b["batch_id"], "rows_sampled": b.get("rows")}
                for b in proof.get("archived", {}).get("batches", [])
            ],
            "live_rows": proof.get("live", {}).get("rows", 0),
            "archived_rows_sampled": proof.get("archived", {}).get("sampled", 0),
        }
    return entry


def _issue(ctx: RunContext, p: DisposalPlan, period: tuple[datetime, datetime]) -> str | None:
    """Freeze one certificate over every verified, uncertified key (and the requests they complete, plus
    approved requests of subjects with no live key left). Returns its id, or None if nothing is new."""
    from psycopg.types.json import Jsonb

    conn = ctx.db
    conn.execute("SELECT pg_advisory_lock(%s, 0)", (_LOCK,))  # one issuer at a time (session lock)
    conn.commit()
    try:
        keys = [
            r[0]
            for r in conn.execute(
                "SELECT s.key_id FROM attestly.disposal_steps s WHERE s.state = 'verified' AND NOT EXISTS "
                "(SELECT 1 FROM attestly.disposal_certificate_keys c WHERE c.key_id = s.key_id) ORDER BY s.key_id"
            ).fetchall()
        ]
        # Requests complete when their subject has no live key left and every destroyed key is certified
        # (by this certificate or an earlier one).
        ready = conn.execute(
            "SELECT r.request_id, r.subject_id FROM attestly.erasure_requests r "
            "JOIN attestly.erasure_approvals a ON a.request_id = r.request_id "
            "WHERE NOT EXISTS (SELECT 1 FROM attestly.erasure_completions c WHERE c.request_id = r.request_id) "
            "AND NOT EXISTS (SELECT 1 FROM attestly.data_keys k WHERE k.kind = 'subject' "
            "  AND k.subject_id = r.subject_id AND k.destroyed_at IS NULL) "
            "AND NOT EXISTS (SELECT 1 FROM attestly.data_keys k WHERE k.kind = 'subject' "
            "  AND k.subject_id = r.subject_id AND k.destroyed_at IS NOT NULL "
            "  AND NOT EXISTS (SELECT 1 FROM attestly.disposal_certificate_keys c WHERE c.key_id = k.key_id) "
            "  AND k.key_id <> ALL(%s)) "
            "ORDER BY r.request_id",
            (keys,),
        ).fetchall()
        conn.commit()
        blocked_requests = {b.scope.get("request_id") for b in p.blocked}
        requests = [r[0] for r in ready if r[0] not in blocked_requests]
        if not keys and not requests:
            return None
        from attestly.clock import trusted_now
        from attestly.disposal.proof import kms_destruction, kms_state

        destroyed = _steps(ctx, "destroyed")
        verified = _steps(ctx, "verified")
        now = trusted_now(conn)
        entries = [_key_entry(ctx, k, destroyed[k], verified[k]) for k in keys]
        for e in entries:
            current = {**e["kms"], **kms_state(ctx, e["kms_key_id"])}
            e["kms_destruction"] = kms_destruction(current, now=now)
        pending_kms = sorted(
            str(e["kms_destruction"]["deletion_date"])
            for e in entries
            if e["kms_destruction"]["status"] == "scheduled"
        )
        cert_id = (
            "cod-" + hashlib.sha256(canonical_json_v1({"keys": keys, "requests": requests})).hexdigest()[:16]
        )
        issued_at = datetime.now(UTC)
        body = {
            "schema": CERTIFICATE_SCHEMA,
            "certificate_id": cert_id,
            "title": "Certificate of destruction",
            "method": METHOD,
            "issued_at": iso(issued_at),
            "issued_by_run": ctx.run_id,
            "dag_id": ctx.airflow.dag_id if ctx.airflow else None,
            "as_of": p.as_of.isoformat(),
            "period": {"start": iso(period[0]), "end": iso(period[1])},
            "keys": entries,
            # The data keys are destroyed now; a dedicated KMS key is gone for good only on its deletion
            # date (until then the deletion can be cancelled): the destruction is "scheduled" until then.
            "destruction": {
                "status": "scheduled" if pending_kms else "complete",
                "data_keys": "destroyed",
                "kms_deletions_pending": len(pending_kms),
                "final_on": pending_kms[-1] if pending_kms else None,
            },
            "erasure_requests": requests,
            "blocked": [b.to_dict() for b in p.blocked],
            "totals": {
                "keys": len(entries),
                "archive_keys": sum(1 for e in entries if e["kind"] == "archive"),
                "subject_keys": sum(1 for e in entries if e["kind"] == "subject"),
                "objects": sum(len(e["affected"]["objects"]) for e in entries if e["kind"] == "archive"),
                "archived_rows": sum(int(e["affected"].get("archived_rows", 0)) for e in entries),
                "live_rows": sum(int(e["affected"].get("live_rows", 0)) for e in entries),
                "blocked": len(p.blocked),
            },
            "verification": {
                "outcome": "passed" if all(e["verification"]["ok"] for e in entries) else "failed",
                "checks": [
                    "the key registry refuses to open each key and holds no material",
                    "DescribeKey: each dedicated KMS key is PendingDeletion",
                    "a sample of the affected archive objects and rows fails to decrypt through the normal read path",
                    "the affected objects are still in the bucket under Object Lock",
                    "data under other keys still decrypts (control)",
                ],
            },
        }
        with conn.transaction():
            conn.execute(
                "INSERT INTO attestly.disposal_certificates (certificate_id, run_id, issued_at, body) VALUES (%s, %s, %s, %s)",
                (cert_id, ctx.run_id, issued_at, Jsonb(body)),
            )
            for k in keys:
                conn.execute(
                    "INSERT INTO attestly.disposal_certificate_keys (key_id, certificate_id) VALUES (%s, %s)",
                    (k, cert_id),
                )
            for rid in requests:
                conn.execute(
                    "INSERT INTO attestly.erasure_completions (request_id, certificate_id) VALUES (%s, %s)",
                    (rid, cert_id),
                )
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, 0)", (_LOCK,))
        conn.commit()
    failpoints.hit("disposal.after_certificate_issued")
    return cert_id


def _kms_words(entry: dict[str, Any]) -> str:
    d = entry.get("kms_destruction")
    if not d:
        return str(entry["kms"]["state"])
    if d["status"] == "scheduled":
        return f"scheduled for deletion on {d['deletion_date']} (cancellable until then)"
    if d["status"] == "deleted":
        return "deleted"
    return str(entry["kms"]["state"])


def certificate_item(ctx: RunContext, body: dict[str, Any]) -> EvidenceItem:
    findings = []
    for e in body["keys"]:
        a = e["affected"]
        if e["kind"] == "archive":
            basis = ", ".join(c["citation"] for c in e["legal_basis"].get("citations", [])) or "policy"
            detail = (
                f"crypto-erased archive key of {e['scope']['class']} {e['scope']['month']} (retention ended "
                f"{e['legal_basis'].get('dispose_after')}; {basis}): {len(a['objects'])} object(s) still locked, "
                f"{a['archived_rows']} rows; KMS key {_kms_words(e)}"
            )
        else:
            reqs = e["legal_basis"]["requests"]
            detail = (
                f"crypto-erased subject key for erasure request(s) {', '.join(r['request_id'] for r in reqs)} "
                f"(approved by {', '.join(sorted({str(r['approved_by']) for r in reqs}))}): {a['live_rows']} live "
                f"rows' PHI, archived rows in {len(a['objects'])} object(s); the rows themselves remain"
            )
        proof = e["verification"]
        detail += (
            f". Destroyed {e['destroyed_at']} by {e['destroyed_by_run']}; verified {e['verified_at']}: "
            + ("nothing sampled decrypts, the control under another key does" if proof["ok"] else "FAILED")
        )
        findings.append(
            Finding(resource=e["key_id"], status="pass" if e["verification"]["ok"] else "fail", detail=detail)
        )
    for rid in body["erasure_requests"]:
        if not any(
            rid in [r["request_id"] for r in e["legal_basis"].get("requests", [])] for e in body["keys"]
        ):
            findings.append(
                Finding(resource=rid, status="pass", detail="erasure request completed: no live key left")
            )
    period = body["period"]
    return EvidenceItem(
        collector=COLLECTOR,
        controls=tuple(ctx.policy.controls_for_collector(COLLECTOR)),
        period_start=datetime.fromisoformat(period["start"].replace("Z", "+00:00")),
        period_end=datetime.fromisoformat(period["end"].replace("Z", "+00:00")),
        scope={"certificate": body["certificate_id"]},
        retroactive=False,
        result="pass" if body["verification"]["outcome"] == "passed" else "fail",
        findings=tuple(findings),
        data=body,
        airflow=ctx.airflow,
        observed_at=datetime.fromisoformat(str(body["issued_at"]).replace("Z", "+00:00")),
        method=Method(COLLECTOR, parameters={"method": "cryptographic erase (NIST SP 800-88)"}),
        population=Population(
            "data keys destroyed under this certificate",
            "the key registry's keys whose retention ended or whose subject's erasure was approved, "
            "minus those under legal hold",
            len(body["keys"]),
        ),
    )


def record_certificates(ctx: RunContext) -> list[dict[str, Any]]:
    """Store and ledger every issued certificate that is not in the ledger yet (idempotent)."""
    from attestly.recording import record_evidence

    conn = ctx.db
    rows = conn.execute(
        "SELECT certificate_id, body FROM attestly.disposal_certificates ORDER BY issued_at, certificate_id"
    ).fetchall()
    conn.commit()
    out = []
    for cert_id, body in rows:
        dedupe = f"disposal:{cert_id}"
        if ctx.ledger.find(dedupe) is not None:
            continue
        recorded = record_evidence(certificate_item(ctx, body), store=ctx.store, ledger=ctx.ledger)
        failpoints.hit("disposal.after_certificate_stored")
        summary = {
            "event": "certificate",
            "certificate_id": cert_id,
            "issued_at": body["issued_at"],
            "issued_by_run": body["issued_by_run"],
            "keys": [
                {
                    "key_id": e["key_id"],
                    "destroyed_at": e["destroyed_at"],
                    "destroyed_by_run": e["destroyed_by_run"],
                }
                for e in body["keys"]
            ],
            "erasure_requests": body["erasure_requests"],
            "verification": body["verification"]["outcome"],
            "evidence": {k: recorded[k] for k in ("sha256", "key", "version_id")},
        }
        entry, _ = ctx.ledger.append("disposal", summary, dedupe_key=dedupe)
        for rid in body["erasure_requests"]:
            ctx.ledger.append(
                "erasure",
                {"event": "completed", "request_id": rid, "certificate_id": cert_id},
                dedupe_key=f"erasure:{rid}:completed",
            )
        failpoints.hit("disposal.after_certificate")
        out.append({**recorded, "certificate_id": cert_id, "disposal_seq": entry.seq})
    return out


def certify(ctx: RunContext, p: DisposalPlan, period: tuple[datetime, datetime]) -> list[dict[str, Any]]:
    _issue(ctx, p, period)
    recorded = record_certificates(ctx)
    confirm_kms_deletions(ctx)
    return recorded


def confirm_kms_deletions(ctx: RunContext) -> list[dict[str, Any]]:
    """Ledger (once per key) that a KMS deletion a certificate called *scheduled* can no longer be
    cancelled: the key is gone, or its deletion date has passed by the trusted clock. Until then the
    certificate's destruction stays *scheduled*."""
    from attestly.clock import trusted_now
    from attestly.disposal.proof import kms_destruction, kms_state

    conn = ctx.db
    rows = conn.execute(
        "SELECT certificate_id, body->'keys' FROM attestly.disposal_certificates "
        "WHERE body->'destruction'->>'status' = 'scheduled' ORDER BY issued_at"
    ).fetchall()
    conn.commit()
    if not rows:
        return []
    now = trusted_now(conn)
    out = []
    for cert_id, keys in rows:
        for e in keys:
            if e.get("kms_destruction", {}).get("status") != "scheduled":
                continue
            dedupe = f"disposal:kms-final:{e['key_id']}"
            if ctx.ledger.find(dedupe) is not None:
                continue
            state = {**e["kms"], **kms_state(ctx, e["kms_key_id"])}
            final = kms_destruction(state, now=now)
            if final["status"] != "deleted":
                continue
            body = {
                "event": "kms_deletion_final",
                "certificate_id": cert_id,
                "key_id": e["key_id"],
                "kms_key_id": e["kms_key_id"],
                "kms_state": state["state"],
                "deletion_date": state.get("deletion_date"),
                "confirmed_at": iso(now),
            }
            ctx.ledger.append("disposal", body, dedupe_key=dedupe)
            out.append(body)
    return out


# ---------------------------------------------------------------------------------------------- all


def day_period(as_of: date) -> tuple[datetime, datetime]:
    """The day ending at ``as_of`` (what a daily DAG run's interval is)."""
    end = datetime.combine(as_of, time(), tzinfo=UTC)
    return end - timedelta(days=1), end


def plan_due(ctx: RunContext, *, as_of: date) -> tuple[DisposalPlan, list[dict[str, Any]]]:
    """Plan what is due at ``as_of`` (refused, and the refusal ledgered, if ``as_of`` is in the future) and
    report the blocks (ledgered; e-mailed when new). Returns the plan and the new blocks."""
    p = plan(ctx, as_of=as_of)
    return p, report_blocks(ctx, p.blocked, as_of=as_of)


def destroy_due(ctx: RunContext, *, as_of: date) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Destroy every key due at ``as_of``, re-planned now (a hold placed since the plan is honoured), and
    finish every pending one. Returns the summaries and the keys that could not be destroyed (key id ->
    problems)."""
    done = destroy(ctx, plan(ctx, as_of=as_of))
    return done, {d["key_id"]: [d["error"]] for d in done if not d["destroyed"]}


def certify_due(ctx: RunContext, *, as_of: date, period: tuple[datetime, datetime]) -> list[dict[str, Any]]:
    """Issue one certificate over every verified key not yet certified (blocks as planned now), store and
    ledger it, and ledger KMS deletions that became final."""
    return certify(ctx, plan(ctx, as_of=as_of), period)


def run_all(
    ctx: RunContext, *, as_of: date, period: tuple[datetime, datetime] | None = None
) -> dict[str, Any]:
    """Plan, destroy, verify and certify everything due at ``as_of`` — the functions the DAG's tasks call,
    in the same order. Raises :class:`DisposalFailed` at the end when a key could not be destroyed or
    proven destroyed (the others are certified)."""
    p, _new_blocks = plan_due(ctx, as_of=as_of)
    destroyed, errors = destroy_due(ctx, as_of=as_of)
    verified, problems = verify(ctx)
    certified = certify_due(ctx, as_of=as_of, period=period or day_period(as_of))
    summary = {
        "plan": p.to_dict(),
        "destroyed": destroyed,
        "verified": verified,
        "certificates": [{k: c[k] for k in ("certificate_id", "sha256", "result")} for c in certified],
        "problems": problems,
    }
    if problems or errors:
        raise DisposalFailed({**errors, **problems})
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m attestly.disposal.runner --as-of DATE``: every step outside Airflow (tests, manual
    runs). Exit 0 when everything due is destroyed and certified, 1 when a key failed."""
    import argparse
    import sys

    from attestly.runcontext import RunContext

    parser = argparse.ArgumentParser(prog="python -m attestly.disposal.runner", description=main.__doc__)
    parser.add_argument("--as-of", type=date.fromisoformat, required=True)
    parser.add_argument("--run-id", default="manual")
    args = parser.parse_args(argv)
    from attestly.clock import ClockUntrusted, FutureDatedRun

    with RunContext.open(run_id=args.run_id) as ctx:
        try:
            summary = run_all(ctx, as_of=args.as_of)
        except (FutureDatedRun, ClockUntrusted) as exc:
            print(f"disposal refused: {exc}", file=sys.stderr)
            return 2
        except DisposalFailed as exc:
            print(json.dumps({"problems": exc.problems}, indent=2, sort_keys=True))
            print(f"disposal failed: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
