"""Erasure requests: ``attestly erase request | approve | status``.

A request names a data subject and a reason. It is acted on by ``key_disposal`` only once approved by
a person other than the requester (four eyes: :func:`attestly.identity.same_person` here, and
``attestly.identity_person`` in the database, which refuses it on its own). The command line records the
OS user (``cli:<user>@<host>``) as requester and approver; a different person approves in the Airflow
UI's Evidence view (``ui:<user>``). Completion is the certificate of
destruction that covers it. Requests, approvals and completions are ledgered (kind ``erasure``) with a
SHA-256 of the subject id, never the id itself.

States: ``requested`` -> ``approved`` -> ``completed``; an approved request that a legal hold keeps from
completing is reported as ``blocked`` (computed from the holds in force, see
:mod:`attestly.disposal.planning`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from attestly.evidence import iso
from attestly.policy.models import DEFAULT_SUBJECT_ID_PATTERN
from attestly.textinput import TextInputError, clean_name, clean_subject_id, clean_text

if TYPE_CHECKING:
    import psycopg

    from attestly.ledger import Ledger


class ErasureError(ValueError):
    """A bad erasure request or approval; the message names the request and why."""


def subject_sha256(subject_id: str) -> str:
    return hashlib.sha256(subject_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ErasureRequest:
    request_id: str
    subject_id: str
    reason: str
    requested_by: str
    requested_at: datetime
    approved_by: str | None = None
    approved_at: datetime | None = None
    completed_at: datetime | None = None
    certificate_id: str | None = None

    @property
    def state(self) -> str:
        if self.completed_at is not None:
            return "completed"
        if self.approved_at is not None:
            return "approved"
        return "requested"

    def to_dict(self, *, hash_subject: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"request_id": self.request_id}
        if hash_subject:
            out["subject_sha256"] = subject_sha256(self.subject_id)
        else:
            out["subject"] = self.subject_id
        out.update(
            {
                "reason": self.reason,
                "state": self.state,
                "requested_by": self.requested_by,
                "requested_at": iso(self.requested_at),
                "approved_by": self.approved_by,
                "approved_at": iso(self.approved_at) if self.approved_at else None,
                "completed_at": iso(self.completed_at) if self.completed_at else None,
                "certificate_id": self.certificate_id,
            }
        )
        return out


_SELECT = (
    "SELECT r.request_id, r.subject_id, r.reason, r.requested_by, r.requested_at, a.approved_by, "
    "a.approved_at, c.completed_at, c.certificate_id FROM attestly.erasure_requests r "
    "LEFT JOIN attestly.erasure_approvals a ON a.request_id = r.request_id "
    "LEFT JOIN attestly.erasure_completions c ON c.request_id = r.request_id"
)


def list_requests(conn: psycopg.Connection[Any], *, state: str | None = None) -> list[ErasureRequest]:
    rows = conn.execute(_SELECT + " ORDER BY r.requested_at, r.request_id").fetchall()
    conn.commit()
    out = [ErasureRequest(*r) for r in rows]
    return [r for r in out if state is None or r.state == state]


def get_request(conn: psycopg.Connection[Any], request_id: str) -> ErasureRequest:
    row = conn.execute(_SELECT + " WHERE r.request_id = %s", (request_id,)).fetchone()
    conn.commit()
    if row is None:
        raise ErasureError(f"no erasure request {request_id!r} (see `attestly erase status`)")
    return ErasureRequest(*row)


def _ledger_request(ledger: Ledger, req: ErasureRequest) -> None:
    ledger.append(
        "erasure",
        {
            "event": "requested",
            "request_id": req.request_id,
            "subject_sha256": subject_sha256(req.subject_id),
            "reason": req.reason,
            "requested_by": req.requested_by,
            "requested_at": iso(req.requested_at),
        },
        dedupe_key=f"erasure:{req.request_id}:requested",
    )


def request_erasure(
    conn: psycopg.Connection[Any],
    ledger: Ledger,
    *,
    subject_id: str,
    reason: str,
    requested_by: str,
    subject_id_pattern: str = DEFAULT_SUBJECT_ID_PATTERN,
) -> ErasureRequest:
    """Record a request (refused while another request for the subject is still open). Every field is
    checked (:mod:`attestly.textinput`) before anything is written."""
    try:
        subject_id = clean_subject_id(subject_id, option="--subject", pattern=subject_id_pattern)
        if not (reason or "").strip():
            raise TextInputError(
                "--reason: an erasure request needs a reason (the legal basis or the ticket)"
            )
        reason = clean_text(reason, option="--reason")
        requested_by = clean_name(requested_by, option="--requested-by")
    except TextInputError as exc:
        raise ErasureError(str(exc)) from None
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('attestly.erasure:' || %s))", (subject_id,))
        open_ = conn.execute(
            "SELECT r.request_id FROM attestly.erasure_requests r WHERE r.subject_id = %s AND NOT EXISTS "
            "(SELECT 1 FROM attestly.erasure_completions c WHERE c.request_id = r.request_id)",
            (subject_id,),
        ).fetchone()
        if open_ is not None:
            raise ErasureError(
                f"subject already has an open erasure request {open_[0]} (approve it, or wait for it to complete)"
            )
        request_id = f"erase-{secrets.token_hex(6)}"
        conn.execute(
            "INSERT INTO attestly.erasure_requests (request_id, subject_id, reason, requested_by) "
            "VALUES (%s, %s, %s, %s)",
            (request_id, subject_id, reason, requested_by),
        )
    req = get_request(conn, request_id)
    _ledger_request(ledger, req)
    return req


def approve_erasure(
    conn: psycopg.Connection[Any], ledger: Ledger, request_id: str, *, approved_by: str
) -> ErasureRequest:
    """Approve a request, by a person other than its requester: the *person* is compared
    (:func:`attestly.identity.same_person`), so ``ui:alice`` cannot approve what ``cli:alice@laptop``
    requested, and the database refuses it on its own (``attestly.check_erasure_approval``). Approving
    twice is refused."""
    import psycopg

    from attestly.identity import same_person

    try:
        approved_by = clean_name(approved_by, option="--approved-by")
    except TextInputError as exc:
        raise ErasureError(str(exc)) from None
    if not re.fullmatch(r"erase-[0-9a-f]{12}", request_id or ""):
        raise ErasureError(f"{request_id[:40]!r} is not an erasure request id (erase-<12 hex digits>)")
    req = get_request(conn, request_id)
    if req.approved_at is not None:
        raise ErasureError(f"erasure request {request_id} was already approved by {req.approved_by}")
    if same_person(approved_by, req.requested_by):
        raise ErasureError(
            f"erasure request {request_id} was requested by {req.requested_by}; {approved_by} may not "
            "approve it: a different person must (in the Airflow UI's Evidence view, logged in as them)"
        )
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO attestly.erasure_approvals (request_id, approved_by) VALUES (%s, %s)",
                (request_id, approved_by),
            )
    except psycopg.errors.CheckViolation as exc:
        raise ErasureError(str(exc.diag.message_primary or exc)) from None
    except psycopg.errors.UniqueViolation:
        raise ErasureError(f"erasure request {request_id} was already approved") from None
    req = get_request(conn, request_id)
    _ledger_request(ledger, req)  # heals a crash between insert and ledger of the request
    ledger.append(
        "erasure",
        {
            "event": "approved",
            "request_id": req.request_id,
            "subject_sha256": subject_sha256(req.subject_id),
            "approved_by": req.approved_by,
            "approved_at": iso(req.approved_at),  # type: ignore[arg-type]
        },
        dedupe_key=f"erasure:{req.request_id}:approved",
    )
    return req
